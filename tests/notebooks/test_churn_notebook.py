"""notebooks/churn_exploration.ipynb runs top to bottom on a small simulated world (nbclient,
the venv's python3 kernel) and shows the metrics, cohorts, survival curves and practice hazard ratios an analyst reads."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "churn_exploration.ipynb"


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.delenv("RETENTION_DB", raising=False)
    mp.setenv("RETENTION_NOTEBOOK_CUSTOMERS", "2500")
    mp.setenv("RETENTION_NOTEBOOK_MONTHS", "20")
    mp.setenv("OMP_NUM_THREADS", "1")
    try:
        nb = nbformat.read(NOTEBOOK, as_version=4)
        NotebookClient(nb, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    finally:
        mp.undo()
    nbformat.write(nb, tmp_path_factory.mktemp("nb") / NOTEBOOK.name)
    return nb


def _outputs(nb):
    for cell in nb.cells:
        if cell.cell_type == "code":
            yield from cell.get("outputs", [])


def test_notebook_runs_without_errors(executed):
    assert not [o for o in _outputs(executed) if o.get("output_type") == "error"]


def test_notebook_shows_metrics_cohorts_survival_and_practices(executed):
    plots = [o for o in _outputs(executed) if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(plots) >= 7          # MRR, churn, movements, cohorts, KM, hazard ratios, wait curve
    text = "".join(o.get("text", "") for o in _outputs(executed) if o.get("output_type") == "stream")
    assert "log-rank across plans" in text and "p_value" in text
    tables = "".join(o["data"]["text/html"] for o in _outputs(executed) if "text/html" in o.get("data", {}))
    assert "mrr_cents" in tables and "median" in tables
