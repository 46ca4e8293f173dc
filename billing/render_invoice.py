"""Render an invoice as a printable, standalone HTML document (inline CSS, no scripts, no links).

Every text that comes from a customer or a person (name, email, postcode, line descriptions, offer
names, credit note notes) is escaped with :func:`html.escape`; amounts are formatted by
:func:`data.money.format_cents` and document numbers by :mod:`data.money`.
"""
from __future__ import annotations

import html

import duckdb

from billing.explain_invoice import InvoiceExplanation, explain_invoice
from data.money import format_cents, format_credit_note_number, format_invoice_number

_CSS = """
body { font-family: "Helvetica Neue", Arial, sans-serif; color: #222; margin: 2rem auto; max-width: 46rem;
       font-size: 11pt; line-height: 1.4; }
h1 { font-size: 20pt; margin: 0 0 .25rem 0; }
h2 { font-size: 12pt; margin: 1.5rem 0 .5rem 0; border-bottom: 1px solid #999; }
.meta { display: flex; justify-content: space-between; gap: 2rem; }
.meta dl { display: grid; grid-template-columns: auto auto; gap: .1rem 1rem; margin: 0; }
.meta dt { color: #555; }
.meta dd { margin: 0; }
table { width: 100%; border-collapse: collapse; }
th, td { padding: .3rem .4rem; text-align: left; vertical-align: top; }
th { border-bottom: 1px solid #555; font-weight: 600; }
.nowrap { white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tbody tr td { border-bottom: 1px solid #ddd; }
table.totals { width: auto; margin-left: auto; }
table.totals td { border: none; }
table.totals tr.grand td { border-top: 2px solid #222; font-weight: 700; }
.status { display: inline-block; padding: .1rem .5rem; border: 1px solid #555; border-radius: .25rem;
          font-size: 9pt; text-transform: uppercase; letter-spacing: .05em; }
.muted { color: #666; }
ul.changes { padding-left: 1.2rem; }
footer { margin-top: 2rem; font-size: 9pt; color: #666; }
@media print {
  body { margin: 0; max-width: none; font-size: 10pt; }
  h2 { page-break-after: avoid; }
  table, ul.changes { page-break-inside: avoid; }
  @page { size: A4; margin: 15mm; }
}
"""


def _e(value: object) -> str:
    """Escaped text of a value ('' for None)."""
    return "" if value is None else html.escape(str(value), quote=True)


def render_invoice_html(con: duckdb.DuckDBPyConnection, invoice_id: int, *,
                        explanation: bool = True) -> str | None:
    """A printable HTML document of one invoice.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
    invoice_id : int
    explanation : bool
        Include "What changed since your last invoice" (:func:`billing.explain_invoice.explain_invoice`).

    Returns
    -------
    str or None
        A complete HTML document (``<!DOCTYPE html>`` ... ``</html>``), or None when there is no such
        invoice.

    Notes
    -----
    Shows the customer, the period and dates, the lines, subtotal, discounts, tax (with its rate),
    credits applied, the total, credit notes issued against the invoice, payments allocated to it
    (``invoice_balances``, oldest invoice first) and the balance left.
    """
    exp = explain_invoice(con, invoice_id)
    if exp is None:
        return None
    inv = exp.invoice
    cur = inv.currency
    customer = con.execute("""
        SELECT name, account_number, email, postcode FROM customers WHERE customer_id = ?""",
                           [inv.customer_id]).fetchall()[0]
    notes = con.execute("""
        SELECT credit_note_id, issued_at, reason, net_cents, tax_cents, total_cents, note
        FROM credit_notes WHERE invoice_id = ? ORDER BY credit_note_id""", [invoice_id]).fetchall()
    note_lines = con.execute("""
        SELECT l.credit_note_id, l.description, l.amount_cents FROM credit_note_lines l
        JOIN credit_notes c USING (credit_note_id) WHERE c.invoice_id = ?
        ORDER BY l.credit_note_id, l.line_no""", [invoice_id]).fetchall()
    # Filter on the customer too: it is the view's partition key, so DuckDB computes the FIFO
    # allocation of this customer only (filtering on invoice_id alone computes every customer's).
    balance = con.execute("""
        SELECT credited_cents, due_cents, paid_cents, balance_cents FROM invoice_balances
        WHERE customer_id = ? AND invoice_id = ?""", [inv.customer_id, invoice_id]).fetchall()
    credited, due, paid, left = balance[0] if balance else (0, inv.total_cents, 0, inv.total_cents)

    def money(cents: int) -> str:
        return _e(format_cents(cents, cur))

    number = format_invoice_number(inv.invoice_id)
    if inv.status == "void":
        status = "void"
    elif left == 0:
        status = "paid"
    else:
        status = "open"

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Invoice {_e(number)}</title>",
        f"<style>{_CSS}</style>",
        "</head><body>",
        f'<header><h1>Invoice {_e(number)} <span class="status">{_e(status)}</span></h1>',
        f'<div class="muted">{_e(inv.plan_name)} &middot; {_e(f"{inv.period_start:%B %Y}")}</div></header>',
        '<section class="meta">',
        "<div><h2>Bill to</h2><dl>",
        f"<dt>Name</dt><dd>{_e(customer[0])}</dd>",
        f"<dt>Account</dt><dd>{_e(customer[1])}</dd>",
        f"<dt>Email</dt><dd>{_e(customer[2])}</dd>",
        f"<dt>Postcode</dt><dd>{_e(customer[3])}</dd>",
        "</dl></div>",
        "<div><h2>Invoice</h2><dl>",
        f"<dt>Number</dt><dd>{_e(number)}</dd>",
        f"<dt>Period</dt><dd>{_e(inv.period_start)} to {_e(inv.period_end)}</dd>",
        f"<dt>Issued</dt><dd>{_e(inv.issued_on)}</dd>",
        f"<dt>Due</dt><dd>{_e(inv.due_on)}</dd>",
        f"<dt>Currency</dt><dd>{_e(cur)}</dd>",
        "</dl></div>",
        "</section>",
        "<h2>Lines</h2>",
        '<table class="lines"><thead><tr><th>Description</th><th class="num">Quantity</th>'
        '<th class="num">Unit price</th><th class="num">Amount</th></tr></thead><tbody>',
    ]
    for line in exp.lines:
        qty = "" if line.quantity is None else _e(line.quantity)
        unit = "" if line.unit_amount_cents is None else money(line.unit_amount_cents)
        parts.append(f'<tr class="{_e(line.kind)}"><td>{_e(line.description)}</td><td class="num">{qty}</td>'
                     f'<td class="num">{unit}</td><td class="num">{money(line.amount_cents)}</td></tr>')
    parts.append("</tbody></table>")

    totals = [("Subtotal", inv.subtotal_cents)]
    if inv.discount_cents:
        totals.append(("Discounts", -inv.discount_cents))
    totals.append((f"Tax ({inv.tax_rate_bp / 100:.2f}%)", inv.tax_cents))
    if inv.credit_cents:
        totals.append(("Credits applied", -inv.credit_cents))
    parts.append('<table class="totals"><tbody>')
    parts += [f'<tr><td>{_e(label)}</td><td class="num">{money(amount)}</td></tr>' for label, amount in totals]
    parts.append(f'<tr class="grand"><td>Total</td><td class="num">{money(inv.total_cents)}</td></tr>')
    if credited:
        parts.append(f'<tr><td>Credit notes</td><td class="num">{money(-credited)}</td></tr>')
    parts.append(f'<tr><td>Paid</td><td class="num">{money(-paid)}</td></tr>')
    parts.append(f'<tr class="grand"><td>Balance due</td><td class="num">{money(left)}</td></tr>')
    parts.append("</tbody></table>")

    if notes:
        parts.append("<h2>Credit notes issued against this invoice</h2>")
        parts.append('<table class="credit-notes"><thead><tr><th>Number</th><th>Issued</th><th>Reason</th>'
                     '<th>Details</th><th class="num">Net</th><th class="num">Tax</th>'
                     '<th class="num">Total</th></tr></thead><tbody>')
        for cn_id, issued_at, reason, net, tax, total, note in notes:
            details = "<br>".join(f"{_e(d)}: {money(a)}" for n_id, d, a in note_lines if n_id == cn_id)
            if note:
                details += f'<br><span class="muted">{_e(note)}</span>'
            parts.append(f'<tr><td class="nowrap">{_e(format_credit_note_number(cn_id))}</td>'
                         f'<td class="nowrap">{_e(issued_at.date())}</td>'
                         f"<td>{_e(reason.replace('_', ' '))}</td><td>{details}</td>"
                         f'<td class="num">{money(net)}</td><td class="num">{money(tax)}</td>'
                         f'<td class="num">{money(total)}</td></tr>')
        parts.append("</tbody></table>")

    if explanation:
        parts.append(_explanation_html(exp))
    parts.append(f'<footer>{_e(number)} &middot; payments settle the oldest open invoice first; '
                 "corrections are issued as credit notes.</footer>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _explanation_html(exp: InvoiceExplanation) -> str:
    cur = exp.invoice.currency
    if exp.previous is None:
        head = "<h2>About this invoice</h2>"
    else:
        head = (f"<h2>What changed since your last invoice</h2><p>Compared with "
                f"{_e(exp.previous.number)} ({_e(f'{exp.previous.period_start:%B %Y}')}): "
                f"{_e(format_cents(exp.previous.total_cents, cur))} &rarr; "
                f"{_e(format_cents(exp.invoice.total_cents, cur))}.</p>")
    if not exp.changes:
        return head + "<p>Nothing changed.</p>"
    items = "".join(
        f'<li class="{_e(c.kind)}">{_e(c.reason)} '
        f'<span class="muted">({_e(_signed(c.amount_delta_cents, cur))})</span></li>'
        for c in exp.changes)
    return f'{head}<ul class="changes">{items}</ul>'


def _signed(cents: int, currency: str) -> str:
    """'+€1.00', '-€1.00' or '€0.00'."""
    return ("+" if cents > 0 else "") + format_cents(cents, currency)
