"""Stored care-practices runs: what is loaded is what was fitted, runs accumulate, the CLI stores one."""
from __future__ import annotations

import argparse
import datetime as dt

import numpy as np
import pandas as pd
import pytest

from analytics.practice_runs import PRACTICES_DDL, load_latest, run_practices
from analytics.practices import RATIO_COLUMNS, WAIT_COLUMNS, PracticeCoxFitter, ratio_table
from analytics.practices_cli import add_practices_command
from data.db import connect
from tests.analytics.fixtures import AS_OF, build_tiny_world
from tests.analytics.test_practices import synthetic_panel

AT = dt.datetime(2024, 7, 1, 6, 30)


@pytest.fixture(scope="module")
def fitter():
    # with the proportional-hazards check, so every stored table has rows
    return PracticeCoxFitter(ph_sample_customers=None).fit_panel(synthetic_panel(n=3000, seed=3))


def test_the_stored_run_is_what_was_fitted(fitter):
    con = connect(":memory:")
    try:
        assert load_latest(con) is None                         # no tables yet
        run_id = run_practices(con, as_of=AS_OF, at=AT, fitter=fitter)
        stored = load_latest(con)
    finally:
        con.close()
    assert stored.run_id == run_id == 1
    assert (stored.as_of, stored.created_at) == (AS_OF, AT)
    assert (stored.n_customers, stored.n_events, stored.sampled) == (fitter.n_customers_, fitter.n_events_,
                                                                     fitter.sampled_)
    assert stored.run["n_rows"] == fitter.n_rows_ and stored.run["penalizer_used"] == fitter.penalizer_used_
    assert stored.run["params"]["sample_customers"] == fitter.sample_customers
    pd.testing.assert_frame_equal(stored.hazard_ratios, ratio_table(fitter).reset_index(drop=True),
                                  check_dtype=False, check_exact=True)
    assert list(stored.hazard_ratios.columns) == list(RATIO_COLUMNS)
    pd.testing.assert_frame_equal(stored.wait_curve, fitter.wait_curve(np.arange(0, 31)), check_exact=True)
    assert list(stored.wait_curve.columns) == list(WAIT_COLUMNS)
    pd.testing.assert_frame_equal(stored.ph_test, fitter.ph_test_.reset_index(drop=True), check_dtype=False,
                                  check_exact=True)


def test_runs_accumulate_and_the_newest_is_loaded(fitter):
    con = connect(":memory:")
    try:
        first = run_practices(con, as_of=AS_OF, at=AT, fitter=fitter, max_minutes=10)
        second = run_practices(con, as_of=AS_OF, at=AT + dt.timedelta(days=1), fitter=fitter, max_minutes=20)
        assert (first, second) == (1, 2)
        assert load_latest(con).run_id == 2 and len(load_latest(con).wait_curve) == 21
        assert load_latest(con, first).run_id == 1 and len(load_latest(con, first).wait_curve) == 11
        assert load_latest(con, 99) is None
    finally:
        con.close()


def test_empty_tables_and_too_few_events_store_nothing():
    con = build_tiny_world()
    try:
        con.execute(PRACTICES_DDL)
        assert load_latest(con) is None                         # tables, but no run
        with pytest.raises(ValueError, match="churn events"):   # two churns in the tiny world
            run_practices(con, as_of=AS_OF, at=AT, penalizer=0.5, check_ph=False)
        assert con.execute("select count(*) from practices_runs").fetchall()[0][0] == 0
    finally:
        con.close()


def _args(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("--db")
    add_practices_command(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_cli_refuses_bad_options_and_too_little_data(tmp_path, capsys):
    db = tmp_path / "tiny.duckdb"
    con = connect(str(db))
    con.close()
    args = _args(["--db", str(db), "practices", "--as-of", "2024-13-01"])
    assert args.func(args) == 2 and "not a date" in capsys.readouterr().err
    args = _args(["--db", str(db), "practices", "--sample", "5"])
    assert args.func(args) == 2 and "at least 100" in capsys.readouterr().err
    args = _args(["--db", str(db), "practices"])
    assert args.func(args) == 1 and "empty" in capsys.readouterr().err
    args = _args(["--db", str(tmp_path / "missing.duckdb"), "practices"])
    assert args.func(args) == 2


def test_cli_prints_the_stored_run_as_text_and_json(fitter):
    import json

    from analytics.practices_cli import _as_json, _as_text
    con = connect(":memory:")
    try:
        stored = load_latest(con, run_practices(con, as_of=AS_OF, at=AT, fitter=fitter))
    finally:
        con.close()
    text = _as_text(stored, 12.0)
    assert f"{fitter.n_events_:,} churn events" in text
    assert all(label[:62] in text for label in fitter.summary_["label"])
    out = json.loads(json.dumps(_as_json(stored), default=str))
    assert out["as_of"] == AS_OF.isoformat() and out["n_customers"] == fitter.n_customers_
    assert [r["term"] for r in out["hazard_ratios"]] == list(fitter.summary_["term"])
    assert out["hazard_ratios"][0]["hazard_ratio"] == pytest.approx(fitter.summary_["hazard_ratio"].iloc[0])
    assert len(out["ph_test"]) == len(fitter.ph_test_)
