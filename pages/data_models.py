"""Data & models (admin): build a demo world, import files with the validation report, model status
and retraining, users."""
from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from billing.manage_users import create_user, set_user_active
from data.db import DatabaseError, connect, has_table
from pages import _ui

me = _ui.require("data_models")
con = _ui.con()
as_of = _ui.today()
ss = st.session_state
WORLDS = Path("data/worlds")

_ui.header("Data & models", f"Database {_ui.db_key()} · business date {as_of:%Y-%m-%d}")
tab_demo, tab_import, tab_models, tab_users = st.tabs(["Demo world", "Import", "Models", "Users"])


def _new_file(text: str) -> Path | None:
    """A database file to create: must not exist yet and must not be the open database."""
    path = Path(text.strip()).expanduser()
    if not text.strip() or path.suffix != ".duckdb":
        st.error("Give a file name ending in .duckdb.")
        return None
    if path.exists() or str(path.resolve()) == str(Path(_ui.db_key()).resolve()):
        st.error(f"{path} already exists; choose a new file.")
        return None
    return path


# Demo world ---------------------------------------------------------------------------------------
with tab_demo:
    simulate = _ui.function("data.simulate", "build_world")
    if simulate is None:
        _ui.not_available("Building a demo world", "the simulator (data.simulate) is not installed")
    else:
        from data.simulate import DEFAULT_DEMO, default_start
        st.markdown("Build a simulated world into a **new database file** (the open database is not touched). "
                    "Open it with `RETENTION_DB=<file> streamlit run app.py`.")
        with st.form("demo_build"):
            c1, c2, c3, c4 = st.columns(4)
            customers = c1.number_input("Customers", 100, 2_000_000, 2_000, step=1_000, key="demo_customers")
            months = c2.number_input("Months", 1, 120, 12, key="demo_months")
            start = c3.text_input("First month (YYYY-MM)", default_start(12, _ui.calendar_today()),
                                  key="demo_start")
            seed = c4.number_input("Seed", 0, 2**31, DEFAULT_DEMO.seed, key="demo_seed")
            target = st.text_input("New database file", str(WORLDS / f"demo-{dt.date.today():%Y%m%d}.duckdb"),
                                   key="demo_target")
            build = st.form_submit_button("Build the world", type="primary", icon=":material/construction:")
        if build and (path := _new_file(target)) is not None:
            try:
                config = DEFAULT_DEMO.replace(customers=int(customers), months=int(months), start=start,
                                              seed=int(seed))
                config.check()
            except ValueError as exc:
                st.error(f"Cannot build this world: {exc}")
            else:
                progress = _ui.Progress("Building the world")
                other = connect(path)
                try:
                    summary = simulate(other, config, progress=progress)
                except ValueError as exc:
                    st.error(f"Cannot build this world: {exc}")
                else:
                    progress.done()
                    st.success(f"Built {path}: {summary.customers:,} customers over {summary.months} months, "
                               f"{summary.invoices:,} invoices, {summary.contacts:,} contacts, "
                               f"{summary.grants:,} offers granted ({summary.seconds:.0f} s).")
                finally:
                    other.close()

# Import -------------------------------------------------------------------------------------------
with tab_import:
    import_folder = _ui.function("data.importers", "import_folder")
    import_telco = _ui.function("data.importers", "import_telco")
    if import_folder is None:
        _ui.not_available("Importing", "the importers (data.importers) are not installed")
    else:
        simulated = has_table(con, "sim_world")
        st.markdown("Imports are all or nothing: every rejected row is reported and nothing is written. "
                    "File layout: `docs/IMPORT_FORMAT.md`.")
        with st.form("import_form"):
            kind = st.radio("Format", ["canonical", "telco"], horizontal=True, key="import_kind",
                            format_func={"canonical": "Canonical files (one CSV per table)",
                                         "telco": "IBM Telco churn CSV"}.get)
            files = st.file_uploader("Files", type=["csv", "parquet"], accept_multiple_files=True,
                                     key="import_files")
            folder = st.text_input("... or a folder / file on the server", key="import_path")
            snapshot = st.date_input("Telco snapshot date", value=as_of, key="import_snapshot")
            default_target = str(WORLDS / "imported.duckdb") if simulated else _ui.db_key()
            target = st.text_input("Into database file", default_target, key="import_target",
                                   help="A simulated world refuses imports: import real data into a new file.")
            run = st.form_submit_button("Import", type="primary", icon=":material/upload:")
        if run:
            work = tempfile.mkdtemp(prefix="retention-import-")
            source = Path(folder.strip()).expanduser() if folder.strip() else None
            if files:
                for f in files:
                    (Path(work) / Path(f.name).name).write_bytes(f.getvalue())
                source = Path(work) if kind == "canonical" else Path(work) / Path(files[0].name).name
            if source is None:
                st.error("Upload the files or give a path on the server.")
            else:
                same = Path(target).expanduser().resolve() == Path(_ui.db_key()).resolve()
                try:
                    target_con = con if same else connect(Path(target).expanduser())
                except DatabaseError as exc:
                    st.error(str(exc))
                else:
                    progress = _ui.Progress("Importing")
                    progress(0.2, "checking the files")
                    try:
                        if kind == "telco":
                            report = import_telco(target_con, source, snapshot=snapshot, at=_ui.now(),
                                                  user_id=me["user_id"])
                        else:
                            report = import_folder(target_con, source, at=_ui.now(), user_id=me["user_id"])
                    finally:
                        if not same:
                            target_con.close()
                    progress.done()
                    ss["import.report"] = report
                    if report.ok and same:
                        _ui.data_changed()
        report = ss.get("import.report")
        if report is not None:
            (st.success if report.ok else st.error)(report.message)
            counts = pd.DataFrame(sorted(report.counts.items()), columns=["table", "rows"])
            if not counts.empty:
                st.dataframe(counts, hide_index=True)
            if not report.rejected.empty:
                st.markdown(f"**Rejected rows** ({len(report.rejected):,})")
                _ui.table(report.rejected, "import-rejected-rows", "dl_rejected")

# Models -------------------------------------------------------------------------------------------
with tab_models:
    list_models = _ui.function("models.registry", "list_models")
    train = _ui.function("models.registry", "train_models")
    if list_models is None:
        _ui.not_available("Model status", "the model registry (models.registry) is not installed")
    else:
        models = list_models(con=con)
        if models.empty and _ui.background_notice("The churn-risk and uplift models"):
            pass
        elif models.empty:
            _ui.empty("No model trained yet: press Retrain (or run `python cli.py train`). The agent desk shows "
                      "churn risk and recommended offers once they are trained.")
        else:
            view = models.assign(metrics=models["metrics"].map(lambda m: ", ".join(
                f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in (m or {}).items()
                if not isinstance(v, (dict, list)))))
            _ui.table(view, "models", "dl_models")
        if train is not None and st.button("Retrain the models", key="models_train",
                                           icon=":material/model_training:"):
            steps = _ui.function("models.registry", "TRAIN_STEPS") or 10
            progress = _ui.Progress("Training", steps=steps)
            try:
                report = train(con, at=_ui.now(), progress=progress)
            except ValueError as exc:
                progress.done()
                st.error(f"Cannot train: {exc}")
            else:
                progress.done()
                st.success("Trained and saved: " + ", ".join(f"{kind} ({rec.model_id})"
                                                             for kind, rec in report.records.items()))
                for line in report.notes:
                    st.caption(line)
                _ui.models_changed()

# Users --------------------------------------------------------------------------------------------
with tab_users:
    list_users = _ui.function("billing.manage_users", "list_users")
    if list_users is None:
        _ui.not_available("The user list", "waiting for billing.manage_users.list_users")
    else:
        users = list_users(con)
        _ui.table(users, "users", "dl_users")
    st.markdown("**New user**")
    with st.form("user_create", clear_on_submit=True):
        u1, u2, u3, u4 = st.columns(4)
        login = u1.text_input("Login", key="user_login")
        name = u2.text_input("Name", key="user_name")
        role = u3.selectbox("Role", ["agent", "analyst", "leader", "admin"], key="user_role")
        tier = u4.selectbox("Agent tier", [None, 1, 2, 3], key="user_tier",
                            format_func=lambda t: "-" if t is None else f"tier {t}")
        password = st.text_input("Initial password (8+ characters)", type="password", key="user_password")
        create = st.form_submit_button("Create user")
    if create:
        _ui.result(create_user(con, login=login, display_name=name, password=password or None, role=role,
                               agent_tier=tier, at=_ui.now(), created_by=me["user_id"]))
    st.markdown("**Enable or disable a user**")
    with st.form("user_active"):
        a1, a2 = st.columns(2)
        user_id = a1.number_input("User id", min_value=1, step=1, key="active_user_id")
        active = a2.selectbox("Set to", ["disabled", "active"], key="active_value")
        apply = st.form_submit_button("Apply")
    if apply:
        _ui.result(set_user_active(con, user_id=int(user_id), is_active=active == "active", at=_ui.now(),
                                   by_user_id=me["user_id"]))
