"""Which care practices go with churn: a Cox model with time-varying covariates.

:func:`analytics.practice_panel.practice_panel` builds the long format (customer-months at risk, cut
on the days a covariate changes, every covariate read from records dated on or before the start of
its row); :class:`PracticeCoxFitter` fits lifelines' ``CoxTimeVaryingFitter`` on it (on a sample of
customers when the world is large: ``n_customers_``, ``sampled_``), reports hazard ratios with
intervals, a proportional-hazards check of the practices and the wait-time dose-response curve.

Specification (defaults: ``within_month`` timing, ``open_on_bill`` billing errors)
-------------------------------------------------------------------------------
The hazard of churning on calendar day t is ``h0(t) exp(b'x(t))``; h0 takes month-wide shocks.

Practices, x(t) for the month so far: the number of contacts, their mean wait in minutes, an
*unresolved* contact, an *escalated* one (handed on, not left unresolved: a different practice), and
an uncorrected billing error (a bill whose lines show an error, with no billing_error credit note
on it yet).

Adjustments: the other things that move churn and go with the practices, all observable: an intent
to cancel stated this month so far and in the two months before, a cancel request this month, an
offer granted this month, a discount covering the month, the last bill's plan price rise and the
rise of its recurring charges (bill shock), autopay, segment, acquisition channel, tenure (months,
plus the first three months and months four to twelve).

Why these. A billing error is corrected when the customer complains (unless the complaint is left
unresolved) or by a periodic audit; complaints come with stated intents to cancel and with offers.
Without the intent terms the corrected months carry those intents, errors look less harmful (1.63
instead of 1.88 on the simulated world below) and so does an unresolved contact (1.53 instead of
1.60). Counting escalated contacts as unresolved diluted that ratio to 1.46. The tenure, bill and
customer terms move the ratios of the practices little there (each under 0.1) but are churn
drivers of their own (autopay 0.83, true 0.82; segment and channel ratios match the truth).

Why the error evidence is read on the bill. An error that only a later credit note reveals (the
``open_credited`` rule) can be uncorrected at a month's end *and* be found only if it is corrected
afterwards, i.e. if the customer did not churn that month: such rows never hold a churn, by
construction. On the simulated world all 42 churns with an uncorrected error are on-bill errors
under both rules, while ``open_credited`` adds about a thousand months of survivors: 1.19 [0.88,
1.62] against a true 1.8. (The last-bill rules ignore corrections: 1.06 for an error shown on the
last bill, 0.32 for one credited at any time.) Errors that look like real fees are then missed for
everyone alike, which costs power, not bias.

Checked against the truth (``tests/analytics/test_practices_on_world.py``, the default demo's
20,000 customers over 36 months, 3,596 voluntary churns): wait 1.027 [1.021, 1.032] per minute
(true 1.025), unresolved contact 1.60 [1.31, 1.96] (1.6), uncorrected billing error 1.88 [1.39,
2.56] (1.8). The ratio of a stated intent is inflated (7-8 against 5): the simulator ties intents to
a hidden frailty, for which they also stand.

Limits. Churn falls at month ends, so each month is one set of tied events (handled by Efron's
approximation). In months with a stated intent or a cancel request a third to a half of the
customers leave; with the simulator's hidden heterogeneity (frailty, patience, price sensitivity,
offers whose effect varies with it) the hazard ratio of what happened in such a month, averaged
over what the data cannot see, is nearer 1 than the simulator's own (non-collapsibility). Wait
shows it once there are enough churns: 150,000 customers of the million-customer world (26,700
churns) give 1.0203 [1.0181, 1.0225] against 1.025; the exact grouped-time (complementary log-log)
likelihood on the same rows gives 1.0213 [1.0190, 1.0236], so the ties cost only 0.001; with a wait
x (intent or cancel request) term, 1.0238 [1.0202, 1.0274] for the contacts without an intent and
1.019 with one. The default 50,000-customer sample there gives 1.019-1.021, its interval reaching
1.025 in two samples of three. Unresolved contacts (1.61) and billing errors (1.70) stay within
their intervals.
"""
from __future__ import annotations

import datetime as dt
import warnings

import duckdb
import numpy as np
import pandas as pd
from lifelines import CoxTimeVaryingFitter
from lifelines.exceptions import ConvergenceError, ConvergenceWarning
from scipy import stats
from threadpoolctl import threadpool_limits

from analytics.practice_panel import CATEGORICAL, COVARIATES, practice_panel

__all__ = ["COVARIATES", "practice_panel", "PracticeCoxFitter", "practice_hazard_ratios", "wait_time_curve",
           "ratio_table", "RATIO_COLUMNS", "WAIT_COLUMNS"]

WAIT_TERMS = ("wait_minutes_last_month", "wait_minutes_this_month")
# the care practices the model is for; the other terms adjust for what else moves churn
PRACTICES = ("wait_minutes_this_month", "unresolved_this_month", "escalated_this_month", "contacts_this_month",
             "wait_minutes_last_month", "unresolved_last_month", "escalated_last_month", "contacts_last_month",
             "billing_error_open", "billing_error_last_bill")
# lifelines' warnings that a fit did not converge (it still returns one): the fitter retries instead
_NOT_CONVERGED = ("failed to converge", "suspiciously close to 0", "norm(delta) is still high")
MIN_LEVEL_ROWS = 100   # a segment or channel value with fewer rows joins the reference group
# the columns of practice_hazard_ratios / wait_time_curve (also those of a stored run)
RATIO_COLUMNS = ("term", "label", "hazard_ratio", "lo", "hi", "coef", "se", "z", "p", "practice",
                 "n_customers", "n_events", "sampled")
WAIT_COLUMNS = ("wait_minutes", "hazard_ratio", "lo", "hi", "monthly_churn", "churn_lo", "churn_hi")


class PracticeCoxFitter:
    """Cox model of the churn hazard on care practices, with time-varying covariates.

    Parameters
    ----------
    penalizer : float
        L2 penalty of lifelines' ``CoxTimeVaryingFitter`` (0 = plain partial likelihood).
    sample_customers : int or None
        Fit on a pseudo-random sample of this many customers (None = all); the default keeps a fit
        on a million-customer world within a minute (panel and both fits: 25 to 45 s on the shared
        2-core machine). ``n_customers_`` and ``sampled_`` say what was used.
    random_state : int
        Seed of the sample.
    churn_kind, error_evidence, timing : str
        The panel's options (see :func:`practice_panel`).
    alpha : float
        1 - confidence level of the intervals.
    check_ph : bool
        Also test proportional hazards of the practices (a second fit with practice x log(time)
        terms).
    ph_sample_customers : int or None
        Customers of the panel used for that second fit (None = all): it has a term more per
        practice.
    max_work : float or None
        lifelines' fit costs about rows x distinct event times per iteration. When a panel exceeds
        this (churn on many different days), a random subset of its customers is fitted instead
        (``n_customers_`` reports it); None = no limit. Month-end churn stays far below it.
    first_month : datetime.date, optional
        First month of the window.

    Attributes
    ----------
    summary_ : pandas.DataFrame
        One row per term: term, label, hazard_ratio, lo, hi (1 - alpha interval), coef, se, z, p,
        practice (a care practice, not an adjustment). Segment and channel become one term per value
        (``segment=student``) against the commonest value.
    labels_ : dict
        Term -> what one unit means.
    ph_test_ : pandas.DataFrame or None
        One row per practice: term, time_coef (of x log t), se, p, proportional (p >= alpha); with
        many rows small departures are "significant", so read time_coef's size too. None when not
        asked for or when that larger model does not converge.
    dropped_ : list of str
        Terms left out because they do not vary.
    penalizer_used_ : float
        The reported fit's penalty (above ``penalizer`` only when the plain fit did not converge).
    model_ : lifelines.CoxTimeVaryingFitter
    n_customers_, n_rows_, n_events_ : int
        What the reported fit used.
    sampled_, work_limited_ : bool
        Whether a sample of customers was used; whether ``max_work`` made it smaller.
    contact_month_churn_, mean_wait_minutes_ : float
        Observed churn of the customer-months with contacts, and the mean wait of those contacts.
    """

    def __init__(self, penalizer: float = 0.0, sample_customers: int | None = 50_000, random_state: int = 0,
                 churn_kind: str = "voluntary", error_evidence: str = "open_on_bill",
                 timing: str = "within_month", alpha: float = 0.05,
                 check_ph: bool = True, ph_sample_customers: int | None = 20_000,
                 max_work: float | None = 6e7, first_month: dt.date | None = None):
        self.penalizer = penalizer
        self.sample_customers = sample_customers
        self.random_state = random_state
        self.churn_kind = churn_kind
        self.error_evidence = error_evidence
        self.timing = timing
        self.alpha = alpha
        self.check_ph = check_ph
        self.ph_sample_customers = ph_sample_customers
        self.max_work = max_work
        self.first_month = first_month

    def fit(self, con: duckdb.DuckDBPyConnection, as_of: dt.date, **filters) -> PracticeCoxFitter:
        """Build the panel from the database (see :func:`practice_panel`) and fit it.

        ``filters`` are segment, region, plan, channel. Returns self.
        """
        n_total = con.execute("select count(*) from customers where signup_date <= ?", [as_of]).fetchall()[0][0]
        small = self.sample_customers is None or self.sample_customers >= int(n_total)
        sample = None if small else self.sample_customers
        panel = practice_panel(con, as_of, first_month=self.first_month, sample_customers=sample,
                               random_state=self.random_state, churn_kind=self.churn_kind,
                               error_evidence=self.error_evidence, timing=self.timing, **filters)
        self.fit_panel(panel)
        self.sampled_ = sample is not None or self.work_limited_
        return self

    def fit_panel(self, panel: pd.DataFrame) -> PracticeCoxFitter:
        """Fit on a long-format frame (columns customer_id, start, stop, event and covariates).

        Any subset of :data:`COVARIATES` present is used, and the categorical columns of
        :data:`~analytics.practice_panel.CATEGORICAL` (see :func:`_design`); constant terms are
        dropped. Returns self.

        Raises
        ------
        ValueError
            When the panel has no events or no covariate that varies.
        """
        design, self.labels_ = _design(panel)
        cols = list(self.labels_)
        self.dropped_ = [c for c in cols if design[c].nunique() < 2]
        used = [c for c in cols if c not in self.dropped_]
        if not used or int(panel["event"].sum()) == 0:
            raise ValueError("the panel has no churn events or no covariate that varies: nothing to fit")
        design = self._limit_work(design, self.max_work)
        panel = panel.loc[design.index]
        data = design[["customer_id", "start", "stop", "event", *used]]
        self.model_ = self._fit(data)
        main_penalizer = self.penalizer_used_
        self.summary_ = self._summary(self.model_, used)
        self.ph_test_ = self._ph_test(data, [c for c in used if c in PRACTICES] or used) if self.check_ph else None
        self.penalizer_used_ = main_penalizer
        self.n_customers_ = int(panel["customer_id"].nunique())
        self.n_rows_ = len(panel)
        self.n_events_ = int(panel["event"].sum())
        self.sampled_ = self.work_limited_
        contacts = next((c for c in ("contacts_last_month", "contacts_this_month") if c in panel), None)
        wait = next((c for c in WAIT_TERMS if c in panel), None)
        if contacts is None or wait is None or not (panel[contacts] > 0).any():
            self.contact_month_churn_ = self.mean_wait_minutes_ = float("nan")
        else:
            had = panel[panel[contacts] > 0]
            keys = ["customer_id", "mi"] if "mi" in panel else ["customer_id", "start"]
            months = panel.merge(had[keys].drop_duplicates(), on=keys)
            self.contact_month_churn_ = float(months.groupby(keys)["event"].max().mean())
            self.mean_wait_minutes_ = float(had[wait].mean())
        return self

    def _fit(self, data: pd.DataFrame) -> CoxTimeVaryingFitter:
        """Fit. Newton-Raphson starts with steps of 0.4 (lifelines lengthens them as it converges):
        from zero, full steps overshoot on large effects such as a stated intent to cancel and the
        fit diverges. When it still does not converge, retry with shorter steps, then with a small
        ridge penalty (0.01, then 0.1, for near-separation) recorded in ``penalizer_used_``."""
        for penalizer in dict.fromkeys([self.penalizer, max(self.penalizer, 0.01), max(self.penalizer, 0.1)]):
            for step in (0.4, 0.15):
                model = CoxTimeVaryingFitter(penalizer=penalizer, alpha=self.alpha)
                try:
                    # the products are small (rows at risk x terms): BLAS threads only add overhead,
                    # and on a busy machine they spin and wait (30x slower on two loaded cores)
                    with warnings.catch_warnings(record=True) as caught, threadpool_limits(limits=1, user_api="blas"):
                        warnings.simplefilter("always")
                        model.fit(data, id_col="customer_id", event_col="event", start_col="start",
                                  stop_col="stop", show_progress=False, fit_options={"step_size": step})
                except (ConvergenceError, np.linalg.LinAlgError):
                    continue
                if any(issubclass(w.category, ConvergenceWarning) and any(m in str(w.message) for m in _NOT_CONVERGED)
                       for w in caught):
                    continue
                self.penalizer_used_ = penalizer
                return model
        raise ValueError("the Cox model did not converge, even with a ridge penalty of 0.1")

    def _summary(self, model: CoxTimeVaryingFitter, used: list[str]) -> pd.DataFrame:
        s = model.summary.loc[used]
        z = stats.norm.ppf(1 - self.alpha / 2)
        coef, se = s["coef"].to_numpy(), s["se(coef)"].to_numpy()
        with np.errstate(over="ignore"):       # an unstable term gets an unbounded (inf) interval
            return pd.DataFrame({"term": used, "label": [self.labels_[c] for c in used],
                                 "hazard_ratio": np.exp(coef), "lo": np.exp(coef - z * se),
                                 "hi": np.exp(coef + z * se), "coef": coef, "se": se,
                                 "z": s["z"].to_numpy(), "p": s["p"].to_numpy(),
                                 "practice": [c in PRACTICES for c in used]})

    def _limit_work(self, panel: pd.DataFrame, max_work: float | None) -> pd.DataFrame:
        """A random subset of the panel's customers whose rows x distinct event times fits in
        ``max_work`` (the whole panel when it already does); sets ``work_limited_``."""
        times = panel.loc[panel["event"] == 1, "stop"].nunique()
        self.work_limited_ = bool(max_work is not None and len(panel) * times > max_work)
        if not self.work_limited_:
            return panel
        ids = panel["customer_id"].unique()
        n = max(1, int(len(ids) * max_work / (len(panel) * times)))
        keep = np.random.default_rng(self.random_state).choice(ids, n, replace=False)
        return panel[panel["customer_id"].isin(keep)]

    def _ph_test(self, data: pd.DataFrame, used: list[str]) -> pd.DataFrame:
        """Proportional hazards: refit with x * log(stop) for every covariate; a time-varying
        effect shows as a non-zero interaction (a Wald test per covariate, in the spirit of the
        Grambsch-Therneau test on Schoenfeld residuals)."""
        ids = data["customer_id"].unique()
        if self.ph_sample_customers is not None and len(ids) > self.ph_sample_customers:
            keep = np.random.default_rng(self.random_state).choice(ids, self.ph_sample_customers, replace=False)
            data = data[data["customer_id"].isin(keep)]
        if self.max_work is not None:       # twice the terms: a quarter of the work budget
            limited = self.work_limited_
            data = self._limit_work(data, self.max_work / 4)
            self.work_limited_ = limited
        extended = data.copy()
        log_t = np.log(extended["stop"].astype("float64").clip(lower=1.0))
        inter = [f"{c}:log_t" for c in used]
        for c, name in zip(used, inter):
            extended[name] = extended[c] * log_t
        try:
            model = self._fit(extended)
        except ValueError:
            return None
        s = model.summary.loc[inter]
        return pd.DataFrame({"term": used, "time_coef": s["coef"].to_numpy(), "se": s["se(coef)"].to_numpy(),
                             "p": s["p"].to_numpy(), "proportional": s["p"].to_numpy() >= self.alpha})

    def wait_curve(self, minutes=None) -> pd.DataFrame:
        """What a minute of waiting costs in churn: relative hazard and monthly churn by wait.

        Parameters
        ----------
        minutes : array-like, optional
            Mean wait (minutes) of the contacts (this month's so far, or last month's); default
            0 to 30.

        Returns
        -------
        pandas.DataFrame
            Columns wait_minutes, hazard_ratio, lo, hi (relative to no wait, with the 1 - alpha
            band), monthly_churn, churn_lo, churn_hi. Empty when wait was not in the model.

        Notes
        -----
        ``HR(w) = exp(b w)`` with band ``exp((b -/+ z se) w)`` for the wait coefficient b, all else
        equal. Monthly churn of a customer-month with contacts: ``1 - (1 - p) ^ (HR(w) / HR(w_bar))``,
        where p is the observed churn rate of such customer-months and w_bar their mean wait (the
        proportional-hazards link between monthly probabilities).
        """
        term = next((t for t in WAIT_TERMS if t in set(self.summary_["term"])), None)
        if term is None:
            return pd.DataFrame(columns=["wait_minutes", "hazard_ratio", "lo", "hi", "monthly_churn",
                                         "churn_lo", "churn_hi"])
        w = np.arange(0, 31, dtype="float64") if minutes is None else np.asarray(minutes, dtype="float64")
        row = self.summary_.set_index("term").loc[term]
        z = stats.norm.ppf(1 - self.alpha / 2)
        b, se = float(row["coef"]), float(row["se"])
        with np.errstate(over="ignore"):
            hr, lo, hi = np.exp(b * w), np.exp((b - z * se) * w), np.exp((b + z * se) * w)
        p, w_bar = self.contact_month_churn_, self.mean_wait_minutes_
        # monthly churn keeps its observed value at the mean wait; the band moves b within its interval
        churn = 1 - (1 - p) ** np.exp(b * (w - w_bar))
        c1 = 1 - (1 - p) ** np.exp((b - z * se) * (w - w_bar))
        c2 = 1 - (1 - p) ** np.exp((b + z * se) * (w - w_bar))
        return pd.DataFrame({"wait_minutes": w, "hazard_ratio": hr, "lo": lo, "hi": hi, "monthly_churn": churn,
                             "churn_lo": np.minimum(c1, c2), "churn_hi": np.maximum(c1, c2)})


def _design(panel: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """The panel's model columns and the label of each term: the covariates of :data:`COVARIATES`
    it has, and one indicator per value of each categorical attribute (segment, channel) with at
    least :data:`MIN_LEVEL_ROWS` rows, against the commonest value (rarer values join it)."""
    labels = {c: COVARIATES[c] for c in COVARIATES if c in panel.columns}
    design = panel[[c for c in ("customer_id", "mi", "start", "stop", "event") if c in panel] + list(labels)].copy()
    for col, name in CATEGORICAL.items():
        if col not in panel:
            continue
        counts = panel[col].value_counts()
        for level in counts.index[1:][counts.iloc[1:].to_numpy() >= MIN_LEVEL_ROWS]:
            term = f"{col}={level}"
            design[term] = (panel[col] == level).astype("int64")
            labels[term] = f"{name} {level} (vs {counts.index[0]})"
    return design, labels


def ratio_table(fitter: PracticeCoxFitter) -> pd.DataFrame:
    """A fitted :class:`PracticeCoxFitter`'s ``summary_`` with what it was fitted on: one row per term,
    columns :data:`RATIO_COLUMNS` (n_customers, n_events and sampled repeat on every row)."""
    return fitter.summary_.assign(n_customers=fitter.n_customers_, n_events=fitter.n_events_,
                                  sampled=fitter.sampled_)[list(RATIO_COLUMNS)]


def _page_fit(con, as_of, sample_customers, random_state, min_events, filters) -> PracticeCoxFitter | None:
    try:
        fitter = PracticeCoxFitter(sample_customers=sample_customers, random_state=random_state,
                                   check_ph=False).fit(con, as_of, **filters)
    except ValueError:
        return None
    return fitter if fitter.n_events_ >= min_events else None


def practice_hazard_ratios(con: duckdb.DuckDBPyConnection, as_of: dt.date, *, sample_customers: int | None = 20_000,
                           random_state: int = 0, min_events: int = 20, **filters) -> pd.DataFrame:
    """Hazard ratios of care practices: :func:`ratio_table` of a :class:`PracticeCoxFitter` fitted now
    (without the proportional-hazards check); empty with fewer than ``min_events`` churn events or
    nothing to fit (e.g. an import without contacts). ``filters``: segment, region, plan, channel.

    A fit takes up to a minute on a million customers: the Churn explorer reads a stored run
    instead (:mod:`analytics.practice_runs`, ``python cli.py practices``)."""
    fitter = _page_fit(con, as_of, sample_customers, random_state, min_events, filters)
    if fitter is None:
        return pd.DataFrame(columns=list(RATIO_COLUMNS[:10]))
    return ratio_table(fitter)


def wait_time_curve(con: duckdb.DuckDBPyConnection, as_of: dt.date, *, max_minutes: int = 30,
                    sample_customers: int | None = 20_000, random_state: int = 0, min_events: int = 20,
                    **filters) -> pd.DataFrame:
    """:meth:`PracticeCoxFitter.wait_curve` of a default fitter from 0 to ``max_minutes``; empty when
    there is not enough data to fit."""
    fitter = _page_fit(con, as_of, sample_customers, random_state, min_events, filters)
    if fitter is None:
        return pd.DataFrame(columns=list(WAIT_COLUMNS[:4]))
    return fitter.wait_curve(np.arange(0, max_minutes + 1))
