"""Counter-based random numbers: a uniform for every (seed, purpose, month, customer, slot).

The world never draws from a stateful generator in the monthly steps. Each random number is a hash
of its coordinates, so the same customer in the same month for the same purpose always gets the same
number, whether the step runs for all customers at once, for a subset, or again in a replay of the
customer's months under another offer (the potential outcomes of :mod:`data.simulate.truth`). That
is what makes the outcome under the option actually taken equal the observed outcome.

The hash is SplitMix64's finaliser (Steele, Lea & Flood 2014) over a key built from the
coordinates; uniforms are the top 53 bits, in the open interval (0, 1).
"""
from __future__ import annotations

import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MASK = (1 << 64) - 1

# Purposes: one stream each. Never renumber (it would change every world).
SIGNUP, TRAITS, NAMES, WORLD = 1, 2, 3, 4
USAGE, ERROR, ERROR_KIND, ERROR_AMOUNT = 10, 11, 12, 13
CONTACT, REASON, CHANNEL, DAY, TIME, WAIT, HANDLE, AGENT, RESOLUTION, INTENT = range(20, 30)
HOLDOUT, HOLDOUT_ARM, OFFER, OFFER_CHOICE = 30, 31, 32, 33
PAY, PAY_LATE, PAY_DAY, CHURN, CHURN_REASON, PLAN_CHANGE, IDENTITY = 40, 41, 42, 43, 44, 45, 46


def _mix_int(x: int) -> int:
    """SplitMix64 finaliser on a Python int (64-bit wrap-around)."""
    x &= _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def _key(seed: int, purpose: int, month: int, slot: int) -> int:
    k = _mix_int(int(seed) * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019)
    k = _mix_int(k ^ (int(purpose) * 0xD1B54A32D192ED03))
    k = _mix_int(k ^ ((int(month) + 1000) * 0xAEF17502108EF2D9))
    return _mix_int(k ^ ((int(slot) + 1) * 0xE7037ED1A0B428DB))


def uniform(seed: int, purpose: int, month: int, idx: np.ndarray, slot: int = 0) -> np.ndarray:
    """Uniforms in (0, 1), one per entry of ``idx`` (customer indices), for a purpose and month.

    Parameters
    ----------
    seed : int
        The world's seed.
    purpose : int
        One of this module's purpose constants.
    month : int
        Month index (0 = the first simulated month; may be negative or beyond the world).
    idx : numpy.ndarray
        Integer customer indices; repeated indices get the same number.
    slot : int
        A further coordinate when one purpose needs several numbers (e.g. one per offer).

    Returns
    -------
    numpy.ndarray of float64
    """
    key = np.uint64(_key(seed, purpose, month, slot))
    with np.errstate(over="ignore"):
        x = np.asarray(idx).astype(np.uint64) * _GOLDEN + key
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
        x = x ^ (x >> np.uint64(31))
    return ((x >> np.uint64(11)).astype(np.float64) + 0.5) * (1.0 / 9007199254740992.0)


def normal(seed: int, purpose: int, month: int, idx: np.ndarray, slot: int = 0) -> np.ndarray:
    """Standard normal draws by the inverse CDF of :func:`uniform` (same coordinates)."""
    from scipy.special import ndtri
    return ndtri(uniform(seed, purpose, month, idx, slot))


def integers(seed: int, purpose: int, month: int, idx: np.ndarray, low: int, high: int,
             slot: int = 0) -> np.ndarray:
    """Integers in ``[low, high)`` from :func:`uniform`."""
    u = uniform(seed, purpose, month, idx, slot)
    return (low + np.floor(u * (high - low))).astype(np.int64)
