"""Retention Desk command line: one entry over the same functions the app uses.

    python cli.py [--db PATH] COMMAND ...

Errors are one line on stderr with a non-zero exit status, never a traceback.
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from data.db import DatabaseError, connect  # noqa: E402

# Subcommands contributed by other packages: (module, function adding the subparser).
# Each adds a parser whose `func(args) -> int` does the work.
EXTENSIONS = [
    ("data.importers", "add_import_command"),
    ("data.simulate.cli", "add_demo_command"),
    ("analytics.effects_cli", "add_effects_command"),
    ("analytics.practices_cli", "add_practices_command"),
    ("models.cli", "add_model_commands"),
]


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def _period(text: str) -> dt.date:
    from billing.pricing import parse_period
    try:
        return parse_period(text)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def _as_of(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise CliError(f"--as-of {text!r} is not a date (YYYY-MM-DD)") from None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def _snapshot_json(res) -> dict:
    """A receivables snapshot Result as JSON-ready values (the figures summed up, not every customer)."""
    d = {k: v for k, v in res.data.items() if k != "receivables"}
    if "receivables" in res.data:
        d["ageing"] = json.loads(res["receivables"].ageing.to_json(orient="records"))
    return {"ok": res.ok, "code": res.code, "message": res.message, **d}


def cmd_bill(args: argparse.Namespace) -> int:
    from billing.run_billing import run_billing
    from billing.snapshot_receivables import snapshot_receivables
    from data.money import format_cents
    period = _period(args.period)
    as_of = _as_of(args.as_of) if args.as_of else dt.date.today()
    con = connect(args.db, create=False)
    snapshot = None
    try:
        result = run_billing(con, period, as_of=as_of, at=_now())
        if result.ok and result.data.get("invoices_created"):
            # new invoices make the stored receivables stale: store them again for the Invoicing page
            # (after the run and outside its timing)
            snapshot = snapshot_receivables(con, as_of=as_of, at=_now(), min_periods=1)
    finally:
        con.close()
    if args.json:
        print(json.dumps({"ok": result.ok, "code": result.code, "message": result.message, **result.data,
                          "receivables_snapshot": snapshot and _snapshot_json(snapshot)}, default=str))
    elif result.ok:
        d = result.data
        print(result.message)
        print(f"  run {d['run_id']}: {d['invoices_created']} invoices, {d['lines_created']} lines")
        print(f"  subtotal {format_cents(d['subtotal_cents'])}  discounts {format_cents(-d['discount_cents'])}  "
              f"tax {format_cents(d['tax_cents'])}  credits {format_cents(-d['credit_cents'])}  "
              f"total {format_cents(d['total_cents'])}  ({d['seconds']} s)")
        if snapshot is not None and snapshot.ok:
            print(f"  {snapshot.message} ({snapshot['seconds']} s, after the run and not part of its time)")
    else:
        print(f"error: {result.message}", file=sys.stderr)
    if snapshot is not None and not snapshot.ok:
        print(f"warning: {snapshot.message}", file=sys.stderr)
    return 0 if result.ok else 1


def cmd_receivables(args: argparse.Namespace) -> int:
    from analytics.overview import business_date
    from billing.snapshot_receivables import snapshot_receivables
    from data.money import format_cents
    as_of = _as_of(args.as_of) if args.as_of else None
    con = connect(args.db, create=False)
    try:
        as_of = as_of or business_date(con, today=dt.date.today())
        if not args.json:
            print(f"computing the receivables as of {as_of} ...", file=sys.stderr)
        res = snapshot_receivables(con, as_of=as_of, at=_now(), min_periods=1)
    finally:
        con.close()
    if args.json:
        print(json.dumps(_snapshot_json(res), default=str))
    elif not res.ok:
        print(f"error: {res.message}", file=sys.stderr)
    else:
        owed = res["receivables"]
        print(f"{res.message} ({res['seconds']} s)")
        print(f"  {'bucket':<8} {'invoices':>11} {'customers':>11} {'open amount':>18}")
        for r in owed.ageing.itertuples():
            print(f"  {r.bucket:<8} {r.invoice_count:>11,} {r.customer_count:>11,} {format_cents(r.amount_cents):>18}")
        late = owed.overdue_customers
        print(f"  {len(late):,} customers overdue, {owed.n_to_end:,} of them for two periods or more")
        print("The Invoicing page's Payments and overdue task reads it until the next payment, credit note, "
              "billing run or import.")
    return 0 if res.ok else 1


def cmd_invoice(args: argparse.Namespace) -> int:
    from data.money import format_cents, format_invoice_number, parse_document_number
    try:
        invoice_id = parse_document_number(args.number, "INV")
    except ValueError as exc:
        raise CliError(str(exc)) from None
    con = connect(args.db, create=False)
    try:
        rows = con.execute(
            "SELECT i.invoice_id, c.name, c.account_number, i.period_start, i.period_end, i.total_cents, "
            "i.currency, b.balance_cents FROM invoices i JOIN customers c USING (customer_id) "
            "LEFT JOIN invoice_balances b USING (invoice_id) WHERE i.invoice_id = ?", [invoice_id]).fetchall()
        if not rows:
            raise CliError(f"no invoice {format_invoice_number(invoice_id)}")
        inv = rows[0]
        lines = con.execute("SELECT line_no, kind, description, amount_cents FROM invoice_lines "
                            "WHERE invoice_id = ? ORDER BY line_no", [invoice_id]).fetchall()
        if args.html:
            from billing.render_invoice import render_invoice_html
            Path(args.html).write_text(render_invoice_html(con, invoice_id), encoding="utf-8")
            print(f"wrote {args.html}")
            return 0
    finally:
        con.close()
    cur = inv[6]
    print(f"{format_invoice_number(inv[0])}  {inv[1]} ({inv[2]})  period {inv[3]} to {inv[4]}")
    for no, kind, desc, amount in lines:
        print(f"  {no:>2} {kind:<10} {desc:<48} {format_cents(amount, cur):>14}")
    print(f"  {'total':<62}{format_cents(inv[5], cur):>14}")
    print(f"  {'balance':<62}{format_cents(inv[7], cur):>14}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cli.py", description="Retention Desk: billing, care and retention analytics.")
    parser.add_argument("--db", help="database file (default: $RETENTION_DB or data/retention.duckdb)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("bill", help="run billing for a period (YYYY-MM); safe to run twice")
    p.add_argument("period", help="the month to bill, YYYY-MM")
    p.add_argument("--as-of", help="run date (YYYY-MM-DD, default today): invoices are issued on it")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_bill)

    p = sub.add_parser("receivables", help="store the overdue ageing and overdue customers for the Invoicing page",
                       description="Compute what the book is owed (the overdue ageing and the customers with "
                                   "overdue invoices) and store it as the snapshot the Invoicing page's Payments "
                                   "and overdue task reads while no invoice, payment or credit note is written. "
                                   "'bill' stores one after a run that creates invoices.")
    p.add_argument("--as-of", help="the day overdue is judged on (YYYY-MM-DD, default: the app's business date)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_receivables)

    p = sub.add_parser("invoice", help="show an invoice, or write it as printable HTML")
    p.add_argument("number", help="invoice number, e.g. INV-00000042 or 42")
    p.add_argument("--html", metavar="FILE", help="write the printable HTML invoice to FILE")
    p.set_defaults(func=cmd_invoice)

    for module, function in EXTENSIONS:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name and module.startswith(exc.name):
                continue  # that part of the product is not installed in this checkout
            raise
        getattr(mod, function)(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (CliError, DatabaseError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
