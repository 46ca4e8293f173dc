"""Counter-based random numbers: the same coordinates always give the same number, in any subset."""
from __future__ import annotations

import numpy as np

from data.simulate import rng


def test_uniforms_lie_in_the_open_unit_interval_and_look_uniform():
    u = rng.uniform(7, rng.CHURN, 3, np.arange(200_000))
    assert u.min() > 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.005
    counts, _ = np.histogram(u, bins=10, range=(0, 1))
    assert (np.abs(counts / len(u) - 0.1) < 0.005).all()


def test_a_number_depends_on_its_coordinates_only_not_on_the_batch():
    idx = np.arange(1000)
    full = rng.uniform(7, rng.PAY, 5, idx)
    some = np.array([999, 3, 3, 500])
    assert np.array_equal(rng.uniform(7, rng.PAY, 5, some), full[some])


def test_seed_purpose_month_and_slot_each_change_the_stream():
    idx = np.arange(1000)
    base = rng.uniform(7, rng.PAY, 5, idx)
    for other in (rng.uniform(8, rng.PAY, 5, idx), rng.uniform(7, rng.CHURN, 5, idx),
                  rng.uniform(7, rng.PAY, 6, idx), rng.uniform(7, rng.PAY, 5, idx, slot=1)):
        assert abs(np.corrcoef(base, other)[0, 1]) < 0.1
        assert not np.array_equal(base, other)


def test_integers_and_normals_follow_from_the_uniforms():
    idx = np.arange(50_000)
    k = rng.integers(1, rng.DAY, 0, idx, 2, 29)
    assert k.min() == 2 and k.max() == 28
    z = rng.normal(1, rng.USAGE, 0, idx)
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.02
