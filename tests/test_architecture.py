"""The house rules of docs/CONVENTIONS.md, enforced on the source tree.

- Streamlit is imported only in app.py and pages/.
- Arrows point down: billing/, analytics/, models/ import data/ (models/ may import analytics/);
  data/ imports none of them except data/simulate -> billing (the demo is made by the real engine).
- analytics/ and models/ never read sim_truth_* tables.
- Pages compute no numbers themselves: no SQL in pages/, only calls to functions below.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("app", "pages", "billing", "analytics", "models", "data", "cli", "benchmarks", "notebooks")

# Which top-level packages each layer may import.
ALLOWED = {
    "billing": {"billing", "data"},
    "analytics": {"analytics", "data"},
    "models": {"models", "analytics", "data"},
    "data": {"data"},
}
EXCEPTIONS = {("data", "simulate"): {"billing"}}


def _sources(folder: str) -> list[Path]:
    base = ROOT / folder
    return sorted(p for p in base.rglob("*.py") if ".venv" not in p.parts) if base.exists() else []


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _all_python() -> list[Path]:
    files = []
    for p in ROOT.rglob("*.py"):
        rel = p.relative_to(ROOT)
        if rel.parts[0] in (".venv", "venv", "tests") or "site-packages" in rel.parts:
            continue
        files.append(p)
    return files


def test_streamlit_only_in_app_and_pages():
    offenders = []
    for path in _all_python():
        rel = path.relative_to(ROOT)
        if rel.parts[0] == "pages" or rel.as_posix() == "app.py":
            continue
        if any(name == "streamlit" or name.startswith("streamlit.") for name in _imports(path)):
            offenders.append(rel.as_posix())
    assert offenders == [], f"streamlit imported outside app.py and pages/: {offenders}"


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layers_import_only_downwards(layer):
    offenders = []
    for path in _sources(layer):
        rel = path.relative_to(ROOT)
        allowed = set(ALLOWED[layer])
        for (pkg, sub), extra in EXCEPTIONS.items():
            if pkg == layer and len(rel.parts) > 2 and rel.parts[1] == sub:
                allowed |= extra
        for name in _imports(path):
            top = name.split(".")[0]
            if top in PACKAGES and top not in allowed:
                offenders.append(f"{rel.as_posix()} imports {name}")
    assert offenders == [], "imports that point up or sideways:\n" + "\n".join(offenders)


@pytest.mark.parametrize("layer", ["analytics", "models"])
def test_analytics_and_models_never_read_the_simulated_truth(layer):
    offenders = [p.relative_to(ROOT).as_posix() for p in _sources(layer)
                 if "sim_truth" in p.read_text(encoding="utf-8")]
    assert offenders == [], f"{layer}/ mentions sim_truth tables: {offenders}"


def test_pages_run_no_sql_themselves():
    offenders = []
    for path in _sources("pages"):
        text = path.read_text(encoding="utf-8")
        for needle in (".execute(", ".sql(", "SELECT ", "select "):
            if needle in text:
                offenders.append(f"{path.relative_to(ROOT).as_posix()}: {needle!r}")
    assert offenders == [], "pages must call functions below them, not query the database:\n" + "\n".join(offenders)


def test_the_rules_see_the_code():
    # Guard against a rule passing because it looked at nothing.
    assert _sources("billing") and _sources("data")
    assert any("duckdb" in _imports(p) for p in _sources("billing"))
