"""notebooks/discount_effectiveness.ipynb runs top to bottom on a small simulated world (nbclient,
the venv's python3 kernel) and shows the tables and figures an analyst reads."""
from __future__ import annotations

import pytest

from tests.notebooks.execute import execute_notebook, outputs as _outputs


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    return execute_notebook("discount_effectiveness.ipynb", tmp_path_factory.mktemp("nb"))


def test_notebook_runs_without_errors(executed):
    assert not [o for o in _outputs(executed) if o.get("output_type") == "error"]


def test_notebook_shows_the_forest_plot_the_strategy_bars_and_the_truth_check(executed):
    plots = [o for o in _outputs(executed) if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(plots) >= 3
    text = "".join(o.get("text", "") for o in _outputs(executed) if o.get("output_type") == "stream")
    assert "contacts with 180 days of follow-up" in text
    assert "model-targeted captures" in text
    tables = [o for o in _outputs(executed) if "text/html" in o.get("data", {})]
    assert any("adjusted_lo" in t["data"]["text/html"] for t in tables)
