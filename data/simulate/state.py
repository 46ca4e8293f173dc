"""The customers' changing state: one numpy array per field, one entry per customer (or per replay row).

A :class:`State` is a bag of equally long arrays. The monthly step functions of
:mod:`data.simulate.behaviour` and :mod:`data.simulate.care` read and update it in place,
vectorised over its rows. ``take`` copies a subset of rows (the customers alive this month, or the
contacts to replay under each option), ``put`` writes a subset back.
"""
from __future__ import annotations

import numpy as np

NONE = -1
NEVER = -(2 ** 62)  # "no grant yet" as a timestamp key

# name -> (dtype, initial value). Timestamps are keys ((month * 32 + day) * 86400 + second).
FIELDS = {
    "idx": (np.int64, 0),              # customer index (customer_id - 1): the random-number key
    "alive": (np.bool_, False),        # a customer now (signed up, not churned)
    "churned_on": (np.int64, 0),       # day number of the last day served; 0 = not churned
    "churn_kind": (np.int8, 0),        # 1 voluntary, 2 involuntary
    "plan": (np.int64, 0),             # current plan (rank - 1)
    "move_day": (np.int64, 0),         # day of this month's plan move (0 = none)
    "move_from": (np.int64, 0),        # plan before this month's move
    "has_prev": (np.bool_, False),     # a previous recurring bill to compare with
    "prev_rec": (np.int64, 0),         # previous recurring bill (plan - discount + usage), cents
    "disc_pct": (np.int64, 0),         # the percent / free-month grant: percent,
    "disc_first": (np.int64, 0),       # first month covered,
    "disc_end": (np.int64, 0),         # first month no longer covered
    "credit_left": (np.int64, 0),      # fixed credit not yet used, cents
    "eff_log": (np.float64, 0.0),      # log-hazard reduction of the latest offer,
    "eff_until": (np.int64, NONE - 1), # last month it applies
    "n_grants": (np.int64, 0),
    "open_err": (np.int64, 0),         # billing errors not yet corrected
    "open_err_credit": (np.int64, 0),  # what correcting them credits, cents
    "owed": (np.int64, 0),             # invoiced - credited - paid, cents (negative = credit balance)
    "overdue": (np.bool_, False),      # owed something past its due date on the first of the month
    "last_due": (np.int64, 0),         # due amount of the newest period with something to pay,
    "last_due2": (np.int64, 0),        # ... of the one before it,
    "last_due_err": (np.int64, 0),     # ... and the credit that would correct an error on it
    "intent_month": (np.int64, -99),   # last month the customer stated an intent to cancel
    "shock": (np.float64, 0.0),        # this month's bill shock
    "new_err": (np.bool_, False),      # this month's bill carries an error
    "bill_seen": (np.bool_, False),    # a bill arrived this month
    # the bill of the period just ended (made at the end of the month, seen at the start of the next)
    "bill_total": (np.int64, 0),
    "bill_rec": (np.int64, 0),
    "bill_rec_equiv": (np.int64, 0),   # full-month equivalent of a first (prorated) bill
    "bill_list": (np.int64, 0),        # list price of the plan in that period
    "bill_err": (np.int64, 0),         # error charge on it (net cents)
    "bill_err_credit": (np.int64, 0),  # gross credit that corrects it
    "bill_over": (np.bool_, False),    # usage above the allowance
    "bill_first": (np.bool_, False),   # the customer's first bill
    "bill_keep_ref": (np.bool_, False),  # a free month or a plan move: not a new reference bill
    "has_bill": (np.bool_, False),     # a bill for the period just ended exists
    # this month's period draws (for the database)
    "usage_units": (np.int64, 0),
    "err_kind": (np.int64, 0),         # 0 none, 1 duplicate plan line, 2 wrong fee
    "err_amount": (np.int64, 0),
}


class State:
    """Equally long arrays, one per entry of :data:`FIELDS` plus ``last_grant`` (rows x offers)."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        self.__dict__.update(arrays)

    @classmethod
    def new(cls, n: int, n_offers: int) -> "State":
        arrays = {name: np.full(n, init, dtype=dtype) for name, (dtype, init) in FIELDS.items()}
        arrays["idx"] = np.arange(n, dtype=np.int64)
        arrays["last_grant"] = np.full((n, n_offers), NEVER, dtype=np.int64)
        return cls(arrays)

    def __len__(self) -> int:
        return len(self.idx)

    def names(self) -> list[str]:
        return [*FIELDS, "last_grant"]

    def take(self, rows: np.ndarray) -> "State":
        """A copy of some rows (repeats allowed)."""
        return State({name: getattr(self, name)[rows] for name in self.names()})

    def put(self, rows: np.ndarray, sub: "State") -> None:
        """Write ``sub`` (as made by ``take(rows)``) back into these rows."""
        for name in self.names():
            getattr(self, name)[rows] = getattr(sub, name)
