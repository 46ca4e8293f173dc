"""notebooks/churn_exploration.ipynb runs top to bottom on a small simulated world (nbclient,
the venv's python3 kernel) and shows the metrics, cohorts, survival curves and practice hazard ratios an analyst reads."""
from __future__ import annotations

import pytest

from tests.notebooks.execute import execute_notebook, outputs as _outputs


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    return execute_notebook("churn_exploration.ipynb", tmp_path_factory.mktemp("nb"))


def test_notebook_runs_without_errors(executed):
    assert not [o for o in _outputs(executed) if o.get("output_type") == "error"]


def test_notebook_shows_metrics_cohorts_survival_and_practices(executed):
    plots = [o for o in _outputs(executed) if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(plots) >= 7          # MRR, churn, movements, cohorts, KM, hazard ratios, wait curve
    text = "".join(o.get("text", "") for o in _outputs(executed) if o.get("output_type") == "stream")
    assert "log-rank across plans" in text and "p_value" in text
    tables = "".join(o["data"]["text/html"] for o in _outputs(executed) if "text/html" in o.get("data", {}))
    assert "mrr_cents" in tables and "median" in tables
