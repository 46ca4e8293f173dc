"""``python cli.py train | recommend | daily-features | models``: fit and save the models, ask the recommender,
store the day's churn-risk features, list models.

:func:`add_model_commands` adds the subcommands to the main CLI's subparsers (``cli.py`` loads it).
Errors are one line on stderr: status 2 for bad input (unknown customer, reason or agent, a
database that cannot be opened), 3 when no usable model is trained ("run python cli.py train").
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys

from data.db import DatabaseError, connect
from data.money import format_cents

EXIT_BAD_INPUT = 2
EXIT_NO_MODEL = 3


def add_model_commands(subparsers) -> None:
    """Add ``train``, ``recommend``, ``daily-features`` and ``models`` to the CLI's subparsers."""
    p = subparsers.add_parser(
        "train", help="fit the churn-risk and offer-uplift models and save them in the registry",
        description="Fit the churn-risk model (time-validated on monthly snapshots) and the offer-uplift "
                    "model (DR-learner on contacts with 180 days of follow-up), save both in the model "
                    "registry (data/models or $RETENTION_MODELS) and print their metrics.")
    p.add_argument("--models-dir", help="registry folder (default data/models or $RETENTION_MODELS)")
    p.add_argument("--max-rows", type=int, default=400_000,
                   help="customer-snapshots for the churn model; larger databases are sampled (default 400,000)")
    p.add_argument("--max-contacts", type=int, default=200_000,
                   help="contacts for the uplift model; more are sampled (default 200,000)")
    p.add_argument("--bootstrap", type=int, default=10, help="bootstrap resamples for the uplift intervals (default 10)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = subparsers.add_parser(
        "recommend", help="which offer to make to a customer on the phone, ranked, and who may grant it",
        description="Rank every offer for a contact by expected net value (uplift x customer value - cost) "
                    "with eligibility and the agent's authority; says 'no offer' when none pays.")
    p.add_argument("customer_id", help="the customer's id")
    p.add_argument("--reason", required=True, help="contact reason, e.g. bill_higher_than_expected, cancel_request")
    p.add_argument("--agent", metavar="LOGIN", help="the agent's login (their tier decides what they may grant)")
    p.add_argument("--intent", action="store_true", help="the customer states an intent to cancel")
    p.add_argument("--at", help="instant of the contact, ISO (default: the database's business day, now)")
    p.add_argument("--models-dir", help="registry folder (default data/models or $RETENTION_MODELS)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_recommend)

    p = subparsers.add_parser(
        "daily-features", help="store every customer's churn-risk features for the day (the agent desk reads them)",
        description="Compute the churn-risk snapshot features of every customer served on the day (data before "
                    "it counts) and store them: the agent desk reads a customer's row instead of computing it "
                    "from their history, while nothing dated before the day is added. Run it once a day, after "
                    "the night's billing and payment runs.")
    p.add_argument("--as-of", help="the day, YYYY-MM-DD (default: the business day)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_daily_features)
    p = subparsers.add_parser("models", help="list the trained models with their status (ok, stale, incompatible)")
    p.add_argument("--models-dir", help="registry folder (default data/models or $RETENTION_MODELS)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_models)


def _error(message: str, status: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return status


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def cmd_train(args: argparse.Namespace) -> int:
    from models.registry import TRAIN_STEPS, train_models
    try:
        con = connect(args.db, create=False, read_only=True)     # training only reads
    except DatabaseError as exc:
        return _error(str(exc), EXIT_BAD_INPUT)
    bar = None
    try:
        if not args.quiet and not args.json:
            from tqdm import tqdm
            bar = tqdm(total=TRAIN_STEPS, unit="step", desc="training")

        def progress(label: str) -> None:
            if bar is not None:
                bar.set_postfix_str(label[:60])
                bar.update(1)

        try:
            report = train_models(con, at=_now(), root=args.models_dir, progress=progress,
                                  churn={"max_rows": args.max_rows}, uplift={"n_bootstrap": args.bootstrap},
                                  max_contacts=args.max_contacts)
        except ValueError as exc:
            return _error(f"cannot train: {exc}", EXIT_BAD_INPUT)
        finally:
            if bar is not None:
                bar.close()
    finally:
        con.close()
    if args.json:
        print(json.dumps({"models": {k: r.model_id for k, r in report.records.items()},
                          "churn_metrics": report.churn_metrics,
                          "uplift": report.uplift_summary.reset_index().to_dict("records"),
                          "seconds": report.seconds, "notes": list(report.notes)}, default=str))
        return 0
    m = report.churn_metrics
    print(f"churn risk ({report.records['churn_risk'].model_id}), 90-day churn on the later snapshots:")
    for name in ("hgb", "logistic"):
        x = m[name]
        label = "gradient boosting" if name == "hgb" else "logistic baseline"
        print(f"  {label:<18} ROC AUC {x['roc_auc']:.3f}  PR AUC {x['pr_auc']:.3f}  Brier {x['brier']:.4f}  "
              f"ECE {x['ece']:.4f}  (n {x['n']:,}, churn rate {x['base_rate']:.3f})")
    print(f"offer uplift ({report.records['uplift'].model_id}), effect on 180-day retention (AIPW, 95% CI):")
    for offer, r in report.uplift_summary.iterrows():
        print(f"  {offer:<12} {100 * r['ate']:+6.1f} pts [{100 * r['ate_lo']:+.1f}, {100 * r['ate_hi']:+.1f}]  "
              f"granted {int(r['n_treated']):,}")
    for note in report.notes:
        print(f"note: {note}")
    print(f"fitted in {sum(report.seconds.values()):.0f} s")
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    from models.recommender import RecommendError, recommend
    from models.registry import ModelUnavailable
    try:
        customer_id = int(args.customer_id)
    except ValueError:
        return _error(f"customer id must be a number, got {args.customer_id!r}", EXIT_BAD_INPUT)
    at = None
    if args.at:
        try:
            at = dt.datetime.fromisoformat(args.at)
        except ValueError:
            return _error(f"--at {args.at!r} is not an ISO date or time", EXIT_BAD_INPUT)
    try:
        con = connect(args.db, create=False, read_only=True)
    except DatabaseError as exc:
        return _error(str(exc), EXIT_BAD_INPUT)
    try:
        if at is None:
            from analytics.overview import business_date
            now = _now()
            at = dt.datetime.combine(business_date(con, today=now.date()), now.time().replace(microsecond=0))
        try:
            rec = recommend(con, customer_id=customer_id, reason=args.reason, is_intent_to_cancel=args.intent,
                            agent_login=args.agent, at=at, registry_root=args.models_dir, with_risk=True)
        except RecommendError as exc:
            return _error(str(exc), EXIT_BAD_INPUT)
        except ModelUnavailable as exc:
            msg = str(exc)
            return _error(msg if "cli.py train" in msg else f"{msg}; run python cli.py train", EXIT_NO_MODEL)
    finally:
        con.close()
    if args.json:
        print(json.dumps(rec.as_dict(), default=str))
        return 0
    who = f"agent tier {rec.agent_tier}" if rec.agent_tier is not None else "no agent signed in"
    print(f"customer {rec.customer_id}, {rec.reason}{' (intent to cancel)' if rec.is_intent_to_cancel else ''}, "
          f"{rec.at:%Y-%m-%d %H:%M}, {who}")
    if rec.churn_risk is not None:
        why = ", ".join(f"{r.feature} ({100 * r.delta:+.1f} pts)" for r in rec.risk_reasons.itertuples())
        print(f"churn risk (90 days): {100 * rec.churn_risk:.1f}%" + (f"; raised by {why}" if why else ""))
    print(rec.message)
    print(f"  {'#':>2} {'offer':<11} {'status':<17} {'uplift pts':>10} {'interval':>15} {'cost':>10} {'net':>11}  note")
    for r in rec.options.itertuples():
        if r.has_estimate:
            nums = (f"{100 * r.uplift:+10.1f} [{100 * r.uplift_lo:+6.1f},{100 * r.uplift_hi:+6.1f}] "
                    f"{format_cents(int(round(r.expected_cost_cents))):>10} {format_cents(int(round(r.net_value_cents))):>11}")
        else:
            nums = f"{'':>10} {'':>15} {'':>10} {'':>11}"
        note = r.why_not if not r.eligible else ("" if r.may_grant else f"needs tier {r.needs_tier}")
        print(f"  {r.rank:>2} {r.code:<11} {r.status:<17} {nums}  {note or ''}")
    for note in rec.notes:
        print(f"note: {note}")
    return 0


def cmd_daily_features(args: argparse.Namespace) -> int:
    from analytics.overview import business_date
    from models.daily_features import store_daily_features
    as_of = None
    if args.as_of:
        try:
            as_of = dt.date.fromisoformat(args.as_of)
        except ValueError:
            return _error(f"--as-of {args.as_of!r} is not a date (YYYY-MM-DD)", EXIT_BAD_INPUT)
    try:
        con = connect(args.db, create=False)
    except DatabaseError as exc:
        return _error(str(exc), EXIT_BAD_INPUT)
    try:
        as_of = as_of or business_date(con, today=dt.date.today())
        if not args.json:
            print(f"computing every customer's churn-risk features for {as_of} ...", file=sys.stderr)
        day = store_daily_features(con, as_of=as_of, at=_now())
    finally:
        con.close()
    if args.json:
        print(json.dumps({"as_of": day.as_of, "customers": day.n_customers, "seconds": day.seconds}, default=str))
    else:
        print(f"stored the churn-risk features of {day.n_customers:,} customers for {day.as_of} in {day.seconds:.1f} s; "
              "the agent desk reads them all day while nothing dated before the day is added")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from models.registry import list_models
    try:
        con = connect(args.db, create=False, read_only=True)
    except DatabaseError as exc:
        return _error(str(exc), EXIT_BAD_INPUT)
    try:
        table = list_models(con=con, root=args.models_dir)
    finally:
        con.close()
    if args.json:
        print(json.dumps(table.to_dict("records"), default=str))
        return 0
    if table.empty:
        print("no trained models; run python cli.py train")
        return 0
    for r in table.itertuples():
        latest = " (newest)" if r.is_latest else ""
        print(f"{r.model_id:<40} {r.status:<12} data {r.window_start} to {r.window_end}{latest}")
        if r.status != "ok":
            print(f"  {r.message}")
    return 0
