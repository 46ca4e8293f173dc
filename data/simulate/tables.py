"""Tables only a simulated database has: the hidden traits, the agents' habits and the ground truth.

Created by :func:`create_sim_tables` when a world is built, never by ``data/schema.sql``: a real
deployment has none of them. ``analytics/`` and ``models/`` never read ``sim_truth_*`` (only tests and
benchmarks compare their results with it).

``holdout_assignments`` is the exception: it is observable, not truth. It is the experiment log of
the randomized holdout (which contacts were randomized, to which arm, among which offers), the
record a real retention programme keeps next to ``offer_grants.assignment = 'holdout'``. Analytics
may read it where it exists (``data.db.has_table``); it identifies the holdout's no-offer arm,
which leaves no grant behind.
"""
from __future__ import annotations

import duckdb
import pandas as pd

SIM_DDL = """
-- World metadata: the config it was built from (JSON), its seed, first and last day.
CREATE TABLE IF NOT EXISTS sim_world (
    key   VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL
);

-- Hidden traits, one row per customer (see data/simulate/population.py).
CREATE TABLE IF NOT EXISTS sim_customers (
    customer_id       BIGINT PRIMARY KEY,
    price_sensitivity DOUBLE NOT NULL,   -- multiplies the bill-shock hazard term and discount effects
    patience          DOUBLE NOT NULL,   -- (0, 1): impatient customers complain and leave more
    log_frailty       DOUBLE NOT NULL,   -- unobserved log hazard
    usage_need        DOUBLE NOT NULL,   -- units a month in the first month
    reliability       DOUBLE NOT NULL    -- (0, 1): how reliably the customer pays
);

-- The simulated care agents (users with role agent and no password) and their habits.
CREATE TABLE IF NOT EXISTS sim_agents (
    user_id      BIGINT PRIMARY KEY,
    agent_tier   INTEGER NOT NULL,
    generosity   DOUBLE  NOT NULL,      -- added to the log-odds of making any offer
    sloppiness   DOUBLE  NOT NULL,      -- added to the log-odds of leaving a contact unresolved
    habit        DOUBLE[] NOT NULL      -- liking of each offer, in offer_id order
);

-- Every injected billing error: one row per erroneous invoice (a one-off charge the customer did
-- not owe). detected_by: 'complaint' (a billing_error contact, credit note at the month's end),
-- 'audit' (the periodic audit), NULL (never corrected, e.g. the customer left first).
CREATE TABLE IF NOT EXISTS sim_truth_billing_errors (
    error_id        BIGINT PRIMARY KEY,
    customer_id     BIGINT  NOT NULL,
    subscription_id BIGINT  NOT NULL,
    period_start    DATE    NOT NULL,
    kind            VARCHAR NOT NULL CHECK (kind IN ('duplicate', 'wrong_fee')),
    charge_id       BIGINT  NOT NULL,
    invoice_id      BIGINT,
    amount_cents    BIGINT  NOT NULL,    -- net amount of the wrong charge
    credit_cents    BIGINT  NOT NULL,    -- gross amount that corrects it (capped at the invoice total)
    detected_by     VARCHAR CHECK (detected_by IN ('complaint', 'audit')),
    detected_on     DATE,
    contact_id      BIGINT,
    credit_note_id  BIGINT
);

-- One row per contact and option ('none' or an offer code): the potential outcome
-- "still a customer 180 days after the contact" (data/simulate/truth.py for the definition).
-- retained_180d and churned_on are NULL when the option was not eligible at the contact.
CREATE TABLE IF NOT EXISTS sim_truth_potential_outcomes (
    contact_id     BIGINT  NOT NULL,
    customer_id    BIGINT  NOT NULL,
    option         VARCHAR NOT NULL,
    offer_id       INTEGER,
    is_eligible    BOOLEAN NOT NULL,
    is_taken       BOOLEAN NOT NULL,
    retained_180d  BOOLEAN,
    churned_on     DATE,               -- last day served under this option, if before the replay's end
    outcome_date   DATE    NOT NULL,   -- contact day + 180
    is_followed_up BOOLEAN NOT NULL,   -- outcome_date falls inside the world
    PRIMARY KEY (contact_id, option)
);

-- The true average effect of each offer on 180-day retention over the contacts where it was eligible.
CREATE TABLE IF NOT EXISTS sim_truth_offer_effects (
    offer_id               INTEGER PRIMARY KEY,
    code                   VARCHAR NOT NULL,
    contacts_eligible      BIGINT,  -- with 180 days of follow-up inside the world
    retained_with_offer    DOUBLE,
    retained_without_offer DOUBLE,
    ate                    DOUBLE,  -- mean of Y(offer) - Y(none) over those contacts
    contacts_eligible_all  BIGINT,
    ate_all_contacts       DOUBLE
);

-- True hazard ratios of the care practices (kind 'practice') and other observable hazard terms.
CREATE TABLE IF NOT EXISTS sim_truth_hazard_ratios (
    name             VARCHAR PRIMARY KEY,
    kind             VARCHAR NOT NULL,
    hazard_ratio     DOUBLE  NOT NULL,
    log_hazard_ratio DOUBLE  NOT NULL,
    unit             VARCHAR NOT NULL,
    definition       VARCHAR NOT NULL
);

-- Observable (not truth): the randomized holdout's experiment log, one row per randomized contact.
-- offer_id NULL = the no-offer arm; candidate_offer_ids = the eligible offers it was drawn among
-- (each arm, no offer included, had probability 1 / (1 + number of candidates)).
CREATE TABLE IF NOT EXISTS holdout_assignments (
    contact_id          BIGINT    PRIMARY KEY,
    customer_id         BIGINT    NOT NULL,
    offer_id            INTEGER,
    candidate_offer_ids INTEGER[] NOT NULL,
    assigned_at         TIMESTAMP NOT NULL
);
"""

SIM_TABLES = ("sim_world", "sim_customers", "sim_agents", "sim_truth_billing_errors",
              "sim_truth_potential_outcomes", "sim_truth_offer_effects", "sim_truth_hazard_ratios",
              "holdout_assignments")


def create_sim_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create the simulated world's own tables (idempotent)."""
    con.execute(SIM_DDL)


def append(con: duckdb.DuckDBPyConnection, table: str, df: pd.DataFrame) -> None:
    """Bulk-append a DataFrame whose columns are (a prefix of) the table's, in order.

    ``table`` is a code constant of this package, never user input.
    """
    if df.empty:
        return
    if table not in SIM_TABLES and table != "usage_records":
        raise ValueError(f"not a table the simulator writes directly: {table}")
    name = "_sim_append"
    con.register(name, df)
    try:
        cols = ", ".join(f'"{c}"' for c in df.columns)
        con.execute(f'INSERT INTO {table} ({cols}) SELECT {cols} FROM {name}')
    finally:
        con.unregister(name)
