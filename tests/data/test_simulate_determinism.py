"""Same config and seed -> the same database, table for table; another seed -> another world."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data.db import connect
from data.simulate import SimConfig, build_world
from data.simulate.exogenous import make_world
from data.simulate.population import draw_population

SMALL = SimConfig(customers=500, months=6, start="2023-01", seed=5)
SKIP = {("users", "password_hash")}   # bcrypt salts are random by design


def dump(con) -> dict[str, pd.DataFrame]:
    tables = [r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
        "AND table_type = 'BASE TABLE' ORDER BY table_name").fetchall()]
    out = {}
    for t in tables:
        df = con.execute(f'SELECT * FROM "{t}" ORDER BY ALL').df()
        out[t] = df.drop(columns=[c for (tt, c) in SKIP if tt == t])
    return out


@pytest.fixture(scope="module")
def twins():
    worlds = []
    for _ in range(2):
        con = connect(":memory:")
        build_world(con, SMALL)
        worlds.append(dump(con))
        con.close()
    return worlds


def test_same_seed_gives_identical_tables(twins):
    a, b = twins
    assert a.keys() == b.keys()
    assert {"customers", "invoices", "contacts", "offer_grants", "sim_truth_potential_outcomes"} <= a.keys()
    for name in a:
        assert len(a[name]) > 0 or name in ("customer_attributes",), name
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=True, obj=name)


def test_another_seed_gives_another_world():
    a, b = SMALL, SMALL.replace(seed=SMALL.seed + 1)
    wa, wb = make_world(a), make_world(b)
    pa, pb = draw_population(a, wa), draw_population(b, wb)
    assert not np.array_equal(pa.signup_day, pb.signup_day)
    assert not np.array_equal(pa.price_sensitivity, pb.price_sensitivity)
    assert not np.array_equal(wa.agent_generosity, wb.agent_generosity)
    # and the same seed draws the same population
    assert np.array_equal(draw_population(a, make_world(a)).price_sensitivity, pa.price_sensitivity)
