"""Run a notebook top to bottom as the tests do: nbclient, the venv's python3 kernel, a small world."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]


def execute_notebook(name: str, out_dir: Path, *, customers: int = 2500, months: int = 20):
    """Execute ``notebooks/<name>`` without RETENTION_DB (so it builds its own small simulated world)
    and save the executed copy in ``out_dir``; returns the executed notebook."""
    path = ROOT / "notebooks" / name
    mp = pytest.MonkeyPatch()
    mp.delenv("RETENTION_DB", raising=False)
    mp.setenv("RETENTION_NOTEBOOK_CUSTOMERS", str(customers))
    mp.setenv("RETENTION_NOTEBOOK_MONTHS", str(months))
    mp.setenv("OMP_NUM_THREADS", "1")
    try:
        nb = nbformat.read(path, as_version=4)
        NotebookClient(nb, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    finally:
        mp.undo()
    nbformat.write(nb, out_dir / path.name)
    return nb


def outputs(nb):
    """Every output of every code cell."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            yield from cell.get("outputs", [])
