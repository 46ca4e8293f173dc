"""Build a simulated world month by month through the real billing engine.

:func:`build_world` is the entry point. Each month: the billing run of the month just ended and the
non-payment check (the engine's own rules), sign-ups, then the customers' month
(:mod:`.behaviour`, :mod:`.care`), the potential outcomes of the month's contacts (:mod:`.truth`) and
the month's writes through the billing use cases (:mod:`.ledger`). Nothing here reads the clock:
every instant written is a simulated one.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from dataclasses import dataclass
from typing import Callable

import duckdb
import numpy as np
import pandas as pd

from billing.account import customer_group_by
from billing.create_customers import create_customers
from billing.eligibility import offer_eligibility
from billing.end_for_non_payment import end_for_non_payment
from billing.manage_catalogue import define_offer, define_plan, set_plan_price, set_tax_rate
from billing.manage_users import create_users
from billing.run_billing import run_billing
from data.db import transaction
from data.simulate import ledger, rng, tables, truth
from data.simulate.behaviour import CHURN_REASONS, finish_month, split_usage, start_month
from data.simulate.care import decide, draw_contacts
from data.simulate.config import CHANNELS, DEFAULT_DEMO, DEMO_USERS, REASONS, SimConfig
from data.simulate.exogenous import World, make_world
from data.simulate.ledger import Checks, ErrorBook, as_datetime, stamp
from data.simulate.population import FIRST_NAMES, LAST_NAMES, Population, customers_frame, draw_population
from data.simulate.state import State

Progress = Callable[[int, int, str], None]
WRONG_FEES = ("Late payment fee", "Paper bill fee", "Roaming charge", "Reconnection fee")


@dataclass(frozen=True)
class WorldSummary:
    """What :func:`build_world` made.

    ``checks`` maps each kind of disagreement between the simulator and the engine to its count and a
    first example (``invoice_totals_differ``, ``non_payment_differs``, ``eligibility_differs``,
    ``grants_refused`` ...); it is empty in a consistent world.
    """

    customers: int
    months: int
    first_day: dt.date
    last_day: dt.date
    invoices: int
    contacts: int
    grants: int
    holdout_contacts: int
    churned_voluntary: int
    churned_involuntary: int
    billing_errors: int
    seconds: float
    checks: dict = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def build_world(con: duckdb.DuckDBPyConnection, config: SimConfig = DEFAULT_DEMO, *,
                progress: Progress | None = None, check_eligibility: bool = False) -> WorldSummary:
    """Build a simulated world into an empty database.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        An empty Retention Desk database (no plans, customers or users).
    config : SimConfig
        Size, calendar, seed and every mechanism's parameters; the same config gives the same data.
    progress : callable, optional
        ``progress(done, total, label)`` after each simulated month and at the end.
    check_eligibility : bool
        Also ask :func:`billing.eligibility.offer_eligibility` about every contact and offer and count
        disagreements with the simulator's own eligibility in ``checks`` (slower; for tests).

    Returns
    -------
    WorldSummary

    Raises
    ------
    ValueError
        When the database is not empty or the config is out of range (one-line message).

    Notes
    -----
    The world, its mechanisms and its ground truth are described in docs/SIMULATION.md and in the
    docstrings of :mod:`data.simulate.behaviour`, :mod:`.care` and :mod:`.truth`. Month ``t`` is
    billed at the start of month ``t + 1``; the world ends with the billing run of its last month.
    """
    started = time.perf_counter()
    config.check()
    for table in ("plans", "customers", "users", "offers"):
        if con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]:
            raise ValueError(f"build_world needs an empty database; this one already has {table}")
    tables.create_sim_tables(con)
    world = make_world(config)
    pop = draw_population(config, world)
    # a bulk build: checkpoint the write-ahead log less often than after every 16 MB, and group by
    # customer with perfect hash tables (billing.account.customer_group_by); both restored after
    threshold = con.execute("SELECT current_setting('checkpoint_threshold')").fetchall()[0][0]
    con.execute(f"SET checkpoint_threshold = '{BUILD_CHECKPOINT_THRESHOLD}'")
    try:
        with customer_group_by(con):
            _catalogue(con, world)
            _users(con, world)
            builder = _Builder(con, world, pop, check_eligibility)
            total = config.months + 2
            for t in range(config.months):
                builder.month(t)
                if progress:
                    progress(t + 1, total, f"{world.month_start[t]:%Y-%m}")
            builder.close()
            if progress:
                progress(config.months + 1, total, "ground truth")
            builder.write_truth()
    finally:
        con.execute(f"SET checkpoint_threshold = '{_size_text(threshold)}'")
    if progress:
        progress(total, total, "done")
    return builder.summary(time.perf_counter() - started)


BUILD_CHECKPOINT_THRESHOLD = "1GB"


def _size_text(setting: str) -> str:
    """A DuckDB size setting as it reads back (``'16.0 MiB'``) in a form SET accepts (``'16.0MiB'``)."""
    return str(setting).replace(" ", "")


def _catalogue(con, w: World) -> None:
    """Plans with their price history, tax rates, the offer catalogue."""
    first = w.month_start[0]
    cfg = w.config
    for i, p in enumerate(sorted(cfg.plans, key=lambda p: p.rank)):
        res = define_plan(con, code=p.code, name=p.name, rank=p.rank, monthly_price_cents=p.price_cents,
                          usage_allowance_units=p.allowance_units, overage_price_cents=p.overage_cents,
                          effective_from=first)
        if not res.ok or res["plan_id"] != i + 1:
            raise RuntimeError(f"catalogue set-up failed: {res.message}")
        for m in range(1, cfg.months):
            if w.price[i, m] != w.price[i, m - 1]:
                assert set_plan_price(con, plan_id=i + 1, effective_from=w.month_start[m],
                                      monthly_price_cents=int(w.price[i, m])).ok
    for region, rate in cfg.regions:
        assert set_tax_rate(con, region=region, rate_bp=rate, effective_from=first).ok
    for j, o in enumerate(cfg.offers):
        res = define_offer(con, code=o.code, name=o.name, kind=o.kind, min_tier=o.min_tier,
                           percent_off=o.percent_off, credit_cents=o.credit_cents, cycles=o.cycles,
                           min_tenure_months=o.min_tenure_months, cooldown_months=o.cooldown_months,
                           eligible_reasons=o.eligible_reasons)
        if not res.ok or res["offer_id"] != j + 1:
            raise RuntimeError(f"catalogue set-up failed: {res.message}")


def _users(con, w: World) -> None:
    """The demo sign-ins (known passwords) and the simulated agents (no password)."""
    at = as_datetime(w.month_day0[0] - 1, 9 * 3600)
    demo = pd.DataFrame([{"login": u.login, "display_name": u.display_name, "role": u.role,
                          "agent_tier": u.agent_tier, "password": u.password} for u in DEMO_USERS])
    n = len(w.agent_tier)
    ag = np.arange(n)
    first = np.array(FIRST_NAMES, dtype=object)[rng.integers(w.config.seed, rng.NAMES, -1, ag, 0, len(FIRST_NAMES))]
    last = np.array(LAST_NAMES, dtype=object)[rng.integers(w.config.seed, rng.NAMES, -2, ag, 0, len(LAST_NAMES))]
    agents = pd.DataFrame({"login": [f"sim.agent{i + 1:04d}" for i in ag],
                           "display_name": pd.Series(first) + " " + pd.Series(last),
                           "role": "agent", "agent_tier": w.agent_tier, "password": None})
    out = create_users(con, pd.concat([demo, agents], ignore_index=True), at=at)
    if (out["code"] != "ok").any():
        raise RuntimeError(f"user set-up failed: {out.loc[out['code'] != 'ok', 'message'].iloc[0]}")
    w.agent_user_id[:] = out["user_id"].to_numpy()[len(demo):]


class _Builder:
    """The month loop's state: the customers' arrays, the error book, the truth parts, the checks."""

    def __init__(self, con, world: World, pop: Population, check_eligibility: bool):
        self.con, self.w, self.pop = con, world, pop
        self.st = State.new(pop.n, world.n_offers)
        self.errors = ErrorBook()
        self.checks = Checks()
        self.po_parts: list[pd.DataFrame] = []
        self.latest = pd.Series(dtype=np.int64)
        self.engine_ended: set[int] = set()
        self.payments: list[pd.DataFrame] = []
        self.counts = {"contacts": 0, "grants": 0, "holdout": 0}
        self.check_eligibility = check_eligibility

    # --- the first of the month ------------------------------------------------------------------
    def _bill(self, period: int) -> None:
        """Billing run of ``period`` on the first of the next month, then the non-payment check."""
        con, w, st = self.con, self.w, self.st
        as_of = w.month_start[period + 1]
        res = run_billing(con, w.month_start[period], as_of=as_of, at=as_datetime(w.month_day0[period + 1], 3600))
        if not res.ok:
            raise RuntimeError(f"billing run failed: {res.message}")
        run_id = int(res["run_id"])
        made = ledger.run_invoices(con, run_id)
        totals = made["total"]
        expected_rows = np.flatnonzero(st.has_bill)
        expected = pd.Series(st.bill_total[expected_rows], index=expected_rows + 1)
        both = expected.index.intersection(totals.index)
        self.checks.add("invoices_missing_or_extra", len(expected) + len(totals) - 2 * len(both),
                        f"period {w.month_start[period]}: customers "
                        f"{sorted(set(expected.index) ^ set(totals.index))[:5]}")
        diff = (expected.loc[both] != totals.loc[both]).to_numpy()
        self.checks.add("invoice_totals_differ", int(diff.sum()),
                        f"customer {both[diff][0] if diff.any() else ''}")
        if len(made):
            self.errors.set_invoices(con, int(made["first_invoice_id"].min()), int(made["invoice_id"].max()))
        self.latest = made["invoice_id"]
        ended = end_for_non_payment(con, as_of=as_of, at=as_datetime(w.month_day0[period + 1], 2 * 3600))
        self.engine_ended = set(ended["customer_ids"])
        # customers who left at the end of the period pay their final bill on the 10th
        leavers = np.flatnonzero(~st.alive & st.has_bill)
        amount = st.owed[leavers] + st.bill_total[leavers]
        pay = leavers[amount > 0]
        self.payments.append(pd.DataFrame({
            "customer_id": pay + 1, "amount_cents": amount[amount > 0],
            "received_at": stamp(w.month_day0[period + 1] + 9, 10 * 3600),
            "method": np.where(self.pop.pays_by_card[pay], "card", "bank_transfer"),
            "status": "settled", "reference": "final bill"}))
        st.owed[leavers] = 0
        st.has_bill[leavers] = False

    def _signups(self, t: int) -> None:
        new = np.flatnonzero(self.pop.signup_month == t)
        if len(new) == 0:
            return
        res = create_customers(self.con, customers_frame(self.pop, new, self.w),
                               at=as_datetime(self.w.month_day0[t]))
        if not res.ok:
            raise RuntimeError(f"sign-ups failed: {res.message}")
        self.st.alive[new] = True
        self.st.plan[new] = self.pop.plan[new]

    # --- the month -------------------------------------------------------------------------------
    def month(self, t: int) -> None:
        w, st, pop = self.w, self.st, self.pop
        self.payments = []
        if t > 0:
            self._bill(t - 1)
        self._signups(t)
        rows = np.flatnonzero(st.alive)
        sub = st.take(rows)
        ms = start_month(sub, w, pop, t)
        ours = set((sub.idx[ms.involuntary] + 1).tolist())
        self.checks.add("non_payment_differs", len(ours ^ self.engine_ended),
                        f"month {t}: customers {sorted(ours ^ self.engine_ended)[:5]}")
        c = draw_contacts(sub, w, pop, t)
        d = decide(sub, w, pop, c, t)
        po = truth.replay(sub, c, d, w, pop, t)
        ev = finish_month(sub, w, pop, t, c, d)
        st.put(rows, sub)
        self._write_month(t, sub, c, d, ev, po)

    def _write_month(self, t, sub: State, c, d, ev, po) -> None:
        con, w, checks = self.con, self.w, self.checks
        day0 = int(w.month_day0[t])
        last_day = int(w.month_day0[t + 1]) - 1
        cid = sub.idx + 1
        # contacts, in time order
        crow = np.flatnonzero(c.has)
        crow = crow[np.lexsort((sub.idx[crow], c.second[crow], c.day[crow]))]
        reasons = np.array(REASONS, dtype=object)[c.reason[crow]]
        invoice = pd.Series(cid[crow]).map(self.latest).astype("Int64")
        invoice[reasons == "service_issue"] = pd.NA
        resolution = np.where(c.unresolved[crow], "unresolved", np.where(c.escalated[crow], "escalated", "resolved"))
        contacts = pd.DataFrame({
            "customer_id": cid[crow], "contacted_at": stamp(day0 + c.day[crow] - 1, c.second[crow]),
            "channel": np.array(CHANNELS, dtype=object)[c.channel[crow]], "reason": reasons,
            "wait_seconds": c.wait_seconds[crow], "handle_seconds": c.handle_seconds[crow],
            "agent_id": w.agent_user_id[c.agent[crow]], "is_identity_verified": c.channel[crow] != 2,
            "resolution": resolution, "is_intent_to_cancel": c.intent[crow], "invoice_id": invoice.to_numpy()})
        contact_ids = ledger.write_contacts(con, contacts, checks)
        contact_by_row = np.zeros(len(sub), dtype=np.int64)
        contact_by_row[crow] = contact_ids
        self.counts["contacts"] += len(crow)
        granted_at = stamp(day0 + c.day - 1, c.grant_second)
        if self.check_eligibility and len(crow):
            self._check_eligibility(crow, cid, granted_at, reasons, d)
        # offers: agents' choices and the holdout's arms
        grow = crow[d.option[crow] >= 0]
        grants = pd.DataFrame({
            "customer_id": cid[grow], "offer_id": d.option[grow] + 1,
            "granted_by": w.agent_user_id[c.agent[grow]], "contact_id": contact_by_row[grow],
            "assignment": np.where(d.holdout[grow], "holdout", "agent"),
            "reason": np.array(REASONS, dtype=object)[c.reason[grow]], "granted_at": granted_at[grow]})
        ledger.write_grants(con, grants, checks)
        self.counts["grants"] += len(grow)
        hrow = crow[d.holdout[crow]]
        offer_ids = np.arange(1, w.n_offers + 1)
        arm = pd.array(d.option[hrow] + 1, dtype="Int64")
        arm[d.option[hrow] < 0] = pd.NA
        tables.append(con, "holdout_assignments", pd.DataFrame({
            "contact_id": contact_by_row[hrow], "customer_id": cid[hrow], "offer_id": arm,
            "candidate_offer_ids": [offer_ids[e].tolist() for e in d.eligible[hrow]],
            "assigned_at": stamp(day0 + c.day[hrow] - 1, c.second[hrow])}))
        self.counts["holdout"] += len(hrow)
        # billing errors reported at a contact or found by the audit: credit notes at the month's end
        corr = np.flatnonzero(ev.corrected)
        err_rows = self.errors.open_for(cid[ev.corrected | ev.audited], before_period=t)
        self.errors.correct(con, err_rows, complaint=cid[corr], day=last_day,
                            at=as_datetime(last_day, 17 * 3600), checks=checks,
                            contact_of=pd.Series(contact_by_row[corr], index=cid[corr]),
                            agent_of=pd.Series(w.agent_user_id[c.agent[corr]], index=cid[corr]))
        self._write_payments(t, sub, ev)
        at_end = as_datetime(last_day, 18 * 3600)
        ch = np.flatnonzero(ev.plan_changed)
        ledger.write_plan_changes(con, pd.DataFrame({
            "customer_id": cid[ch], "new_plan_id": ev.new_plan[ch] + 1,
            "effective_date": pd.Timestamp(w.month_start[t + 1])}), at_end, checks)
        gone = np.flatnonzero(ev.churned)
        ledger.write_cancellations(con, pd.DataFrame({
            "customer_id": cid[gone], "end_date": pd.Timestamp(w.month_start[t + 1] - dt.timedelta(days=1)),
            "churn_reason": np.array(CHURN_REASONS, dtype=object)[ev.churn_reason[gone]],
            "churn_kind": "voluntary", "end_reason": "cancelled"}), at_end, checks)
        self._write_period(t, sub, ev)
        self._truth_part(t, sub, c, po, contact_by_row)

    def _write_payments(self, t: int, sub: State, ev) -> None:
        w, pop = self.w, self.pop
        day0 = int(w.month_day0[t])
        idx = sub.idx
        auto = pop.is_autopay[idx]
        card = pop.pays_by_card[idx]
        u = rng.uniform(w.config.seed, rng.PAY_DAY, t, idx)
        late_day = 16 + np.floor(u * 13).astype(np.int64)
        on_time_day = 5 + np.floor(u * 10).astype(np.int64)
        a = np.flatnonzero(ev.due & auto)
        parts = [pd.DataFrame({
            "customer_id": idx[a] + 1, "amount_cents": ev.due_cents[a], "received_at": stamp(day0 + 2, 6 * 3600),
            "method": np.where(card[a], "card", "direct_debit"),
            "status": np.where(ev.attempt_failed[a], "failed", "settled"), "reference": "automatic"})]
        r = np.flatnonzero(ev.due & auto & ev.attempt_failed & ev.paid)
        parts.append(pd.DataFrame({
            "customer_id": idx[r] + 1, "amount_cents": ev.paid_cents[r],
            "received_at": stamp(day0 + late_day[r] - 1, 12 * 3600), "method": "card", "status": "settled",
            "reference": "after failed debit"}))
        m = np.flatnonzero(ev.due & ~auto & ev.paid)
        parts.append(pd.DataFrame({
            "customer_id": idx[m] + 1, "amount_cents": ev.paid_cents[m],
            "received_at": stamp(day0 + np.where(ev.late[m], late_day[m], on_time_day[m]) - 1, 15 * 3600),
            "method": np.where(card[m], "card", "bank_transfer"), "status": "settled", "reference": None}))
        df = pd.concat([*self.payments, *parts], ignore_index=True)
        df = df.sort_values(["received_at", "customer_id"], kind="stable").reset_index(drop=True)
        ledger.write_payments(self.con, df, self.checks)

    def _write_period(self, t: int, sub: State, ev) -> None:
        """The period's metered usage and its injected billing errors (before its billing run)."""
        con, w = self.con, self.w
        p_start, p_end = w.month_start[t], w.month_start[t + 1] - dt.timedelta(days=1)
        subs = ledger.period_subscriptions(con, p_start, p_end).reindex(sub.idx[rows := np.flatnonzero(ev.billed)] + 1)
        cid = sub.idx[rows] + 1
        if subs["last_id"].isna().any():
            missing = subs.index[subs["last_id"].isna()].tolist()
            raise RuntimeError(f"{len(missing)} billed customers have no subscription in {p_start:%Y-%m}, e.g. "
                               f"{missing[0]}; checks so far: {self.checks.counts} {self.checks.examples}")
        sub_ids = subs["last_id"].to_numpy(dtype=np.int64)
        first_ids = subs["first_id"].to_numpy(dtype=np.int64)
        units_a, units_b = split_usage(sub, w, t)
        two = (first_ids != sub_ids) & (units_a[rows] > 0)
        recorded = pd.Timestamp(as_datetime(w.month_day0[t + 1], 1800))
        ledger.write_usage(con, pd.DataFrame({
            "subscription_id": np.concatenate([first_ids[two], sub_ids]), "period_start": pd.Timestamp(p_start),
            "units": np.concatenate([units_a[rows][two], units_b[rows]]), "recorded_at": recorded}))
        e = np.flatnonzero(sub.err_kind[rows] > 0)
        er = rows[e]
        plan_names = np.array([p.name for p in sorted(w.config.plans, key=lambda p: p.rank)], dtype=object)
        fee = np.array(WRONG_FEES, dtype=object)[rng.integers(w.config.seed, rng.ERROR_KIND, t, sub.idx[er], 0,
                                                              len(WRONG_FEES), slot=1)]
        desc = np.where(sub.err_kind[er] == 1, plan_names[sub.plan[er]], fee)
        charge_ids = ledger.write_charges(con, pd.DataFrame({
            "subscription_id": sub_ids[e], "period_start": pd.Timestamp(p_start), "description": desc,
            "amount_cents": sub.err_amount[er]}), as_datetime(w.month_day0[t + 1], 2400), self.checks)
        self.errors.add(t, cid[e], sub_ids[e], np.where(sub.err_kind[er] == 1, "duplicate", "wrong_fee"),
                        charge_ids, sub.err_amount[er], sub.bill_err_credit[er])

    def _check_eligibility(self, crow, cid, granted_at, reasons, d) -> None:
        n_off = self.w.n_offers
        cand = pd.DataFrame({"customer_id": np.repeat(cid[crow], n_off),
                             "offer_id": np.tile(np.arange(1, n_off + 1), len(crow)),
                             "at": np.repeat(granted_at[crow], n_off), "reason": np.repeat(reasons, n_off)})
        engine = offer_eligibility(self.con, cand)["eligible"].to_numpy(dtype=bool)
        ours = d.eligible[crow].reshape(-1)
        bad = np.flatnonzero(engine != ours)
        self.checks.add("eligibility_differs", len(bad),
                        f"customer {cand.iloc[bad[0]]['customer_id']} offer {cand.iloc[bad[0]]['offer_id']}"
                        if len(bad) else "")

    def _truth_part(self, t, sub: State, c, po, contact_by_row) -> None:
        if len(po["row"]) == 0:
            return
        r = po["row"]
        self.po_parts.append(pd.DataFrame({
            "contact_id": contact_by_row[r], "customer_id": sub.idx[r] + 1,
            "contact_day": self.w.month_day0[t] + c.day[r] - 1, "option": po["option"],
            "is_taken": po["is_taken"], "churned_on": po["churned_on"]}))

    # --- the end ---------------------------------------------------------------------------------
    def close(self) -> None:
        """The last month's billing run and non-payment check (the first day after the world)."""
        m = self.w.months
        self._bill(m - 1)
        rows = np.flatnonzero(self.st.alive)
        sub = self.st.take(rows)
        ms = start_month(sub, self.w, self.pop, m)
        ours = set((sub.idx[ms.involuntary] + 1).tolist())
        self.checks.add("non_payment_differs", len(ours ^ self.engine_ended), f"month {m}")
        self.st.put(rows, sub)

    def write_truth(self) -> None:
        con, w, pop = self.con, self.w, self.pop
        last_day = int(w.month_day0[w.months]) - 1
        po = truth.potential_outcomes_frame(self.po_parts, w, last_day)
        with transaction(con):
            tables.append(con, "sim_customers", pop.sim_customers())
            tables.append(con, "sim_agents", pd.DataFrame({
                "user_id": w.agent_user_id, "agent_tier": w.agent_tier, "generosity": w.agent_generosity,
                "sloppiness": w.agent_sloppiness, "habit": list(w.agent_habit)}))
            tables.append(con, "sim_truth_billing_errors", self.errors.frame(w.month_start))
            tables.append(con, "sim_truth_potential_outcomes", po)
            con.execute(truth.OFFER_EFFECTS_SQL)
            tables.append(con, "sim_truth_hazard_ratios", truth.hazard_ratio_rows(w))
            meta = {"config": json.dumps(dataclasses.asdict(w.config), default=str, sort_keys=True),
                    "seed": str(w.config.seed), "first_day": str(w.month_start[0]),
                    "last_day": str(w.month_start[w.months] - dt.timedelta(days=1)),
                    "customers": str(pop.n), "months": str(w.months)}
            tables.append(con, "sim_world", pd.DataFrame({"key": list(meta), "value": list(meta.values())}))

    def summary(self, seconds: float) -> WorldSummary:
        w, st = self.w, self.st
        invoices = self.con.execute("SELECT count(*) FROM invoices").fetchall()[0][0]
        return WorldSummary(
            customers=self.pop.n, months=w.months, first_day=w.month_start[0],
            last_day=w.month_start[w.months] - dt.timedelta(days=1), invoices=int(invoices),
            contacts=self.counts["contacts"], grants=self.counts["grants"],
            holdout_contacts=self.counts["holdout"],
            churned_voluntary=int((st.churn_kind == 1).sum()), churned_involuntary=int((st.churn_kind == 2).sum()),
            billing_errors=len(self.errors.frame(w.month_start)), seconds=round(seconds, 2),
            checks={k: f"{v} ({self.checks.examples.get(k, '')})" for k, v in self.checks.counts.items()})
