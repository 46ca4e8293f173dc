"""Invoicing (admin): run billing for the next period, find and show invoices, payments and overdue
ageing, credit notes."""
from __future__ import annotations

import datetime as dt

import pandas as pd
import streamlit as st
import streamlit.components.v1 as components

from analytics import figures_pages as fp
from billing.explain_invoice import explain_invoice
from billing.find_customers import find_customers
from billing.issue_credit_note import REASONS as CREDIT_REASONS
from billing.issue_credit_note import issue_credit_note
from billing.pricing import parse_period
from billing.record_payment import record_payment
from billing.render_invoice import render_invoice_html
from billing.run_billing import run_billing
from billing.snapshot_receivables import current_receivables
from data.money import format_cents, parse_cents, parse_document_number
from pages import _ui

METHODS = ("bank_transfer", "card", "direct_debit", "cash")

me = _ui.require("invoicing")
con = _ui.con()
as_of = _ui.today()
ss = st.session_state

_ui.header("Invoicing", f"Business date {as_of:%Y-%m-%d}")
# One task at a time: only the chosen one queries the database.
TASKS = ("Billing run", "Invoices", "Payments and overdue", "Credit notes")
task = st.segmented_control("Task", TASKS, default=TASKS[0], key="inv_task") or TASKS[0]


def _month(day: dt.date, shift: int) -> dt.date:
    index = day.year * 12 + day.month - 1 + shift
    return dt.date(index // 12, index % 12 + 1, 1)


# Billing run --------------------------------------------------------------------------------------
if task == "Billing run":
    recent = _ui.cached("analytics.metrics", "billing_metrics", _month(as_of, -3), _month(as_of, 0), as_of=as_of)
    billed = [pd.Timestamp(m).date() for m, n in zip(recent["month"], recent["invoices"]) if n > 0]
    suggested = _month(max(billed), 1) if billed else _month(as_of, -1)
    suggested = min(suggested, _month(as_of, 0))
    st.markdown("A run invoices every subscription active in the period that has no invoice for it yet; "
                "running a period twice creates nothing.")
    if billed:
        st.caption(f"Last billed period: {max(billed):%Y-%m}.")
    with st.form("billing_run"):
        period_text = st.text_input("Period to bill (YYYY-MM)", value=f"{suggested:%Y-%m}", key="run_period")
        go = st.form_submit_button("Run billing", type="primary", icon=":material/play_arrow:")
    if go:
        try:
            period = parse_period(period_text)
        except ValueError as exc:
            st.error(str(exc))
        else:
            progress = _ui.Progress(f"Billing {period:%Y-%m}")
            progress(0.1, "rating subscriptions")
            res = run_billing(con, period, as_of=as_of, at=_ui.now(), triggered_by=me["user_id"])
            progress(1.0, "done")
            progress.done()
            if _ui.result(res):
                d = res.data
                ss["run.last"] = d
                _ui.data_changed()
    last = ss.get("run.last")
    if last:
        c = st.columns(5)
        c[0].metric("Invoices", f"{last['invoices_created']:,}")
        c[1].metric("Subtotal", format_cents(last["subtotal_cents"]))
        c[2].metric("Discounts", format_cents(-last["discount_cents"]))
        c[3].metric("Tax", format_cents(last["tax_cents"]))
        c[4].metric("Total", format_cents(last["total_cents"]))

# Invoices -----------------------------------------------------------------------------------------
elif task == "Invoices":
    with st.form("invoice_find"):
        number = st.text_input("Invoice number (INV-00000042 or 42)", key="invoice_number")
        show = st.form_submit_button("Show", icon=":material/search:")
    if show:
        try:
            ss["invoice.id"] = parse_document_number(number, "INV")
        except ValueError as exc:
            st.error(str(exc))
            ss.pop("invoice.id", None)
    invoice_id = ss.get("invoice.id")
    if invoice_id is None:
        _ui.empty("Enter an invoice number; a customer's invoices are on the Agent desk and in the "
                  "customer's account.")
    else:
        exp = explain_invoice(con, invoice_id)
        if exp is None:
            st.error(f"No invoice INV-{invoice_id:08d}.")
        else:
            inv = exp.invoice
            c = st.columns(4)
            c[0].metric("Invoice", inv.number)
            c[1].metric("Period", f"{inv.period_start:%Y-%m}")
            c[2].metric("Total", format_cents(inv.total_cents, inv.currency))
            c[3].metric("Status", inv.status)
            st.markdown(f"**What changed:** {exp.summary}")
            lines = pd.DataFrame([{"line": ln.line_no, "kind": ln.kind, "description": ln.description,
                                   "quantity": ln.quantity, "amount_cents": ln.amount_cents} for ln in exp.lines])
            _ui.table(lines, f"{inv.number}-lines", "dl_invoice_lines")
            if exp.changes:
                st.dataframe(pd.DataFrame([{"change": ch.kind.replace("_", " "),
                                            "amount": format_cents(ch.amount_delta_cents, inv.currency),
                                            "why": ch.reason} for ch in exp.changes]),
                             hide_index=True, width="stretch")
            document = render_invoice_html(con, invoice_id)
            components.html(document, height=900, scrolling=True)
            st.download_button("Download printable invoice (HTML)", data=document.encode("utf-8"),
                               file_name=f"{inv.number}.html", mime="text/html", key="dl_invoice_html",
                               icon=":material/print:")

# Payments and overdue -----------------------------------------------------------------------------
elif task == "Payments and overdue":
    figures = st.container()   # drawn after the payment form is handled, so they include a payment just made
    st.markdown("**Record a payment**")
    with st.form("payment"):
        p1, p2, p3 = st.columns(3)
        account = p1.text_input("Account number", key="pay_account")
        amount_text = p2.text_input("Amount", key="pay_amount")
        method = p3.selectbox("Method", METHODS, key="pay_method")
        reference = st.text_input("Reference", key="pay_reference")
        pay = st.form_submit_button("Record payment")
    if pay:
        hit = find_customers(con, account, limit=1)
        matches = hit["customers"] if hit.ok else pd.DataFrame()
        if matches.empty or str(matches["account_number"].iloc[0]).lower() != account.strip().lower():
            st.error(f"No customer with account number {account!r}.")
        else:
            try:
                cents = parse_cents(amount_text)
            except ValueError as exc:
                st.error(str(exc))
            else:
                res = record_payment(con, customer_id=int(matches["customer_id"].iloc[0]), amount_cents=cents,
                                     received_at=_ui.now(), method=method, user_id=me["user_id"],
                                     reference=reference or None)
                if _ui.result(res):
                    _ui.data_changed()

    with figures:
        # The stored snapshot while no invoice, payment or credit note has been written since it was made
        # (its watermark says); otherwise computed now and stored, so the next load reads it.
        current = current_receivables(con, as_of=as_of, at=_ui.now(), min_periods=1)
        owed = current.data.get("receivables")
        if owed is None:
            _ui.result(current)
            st.stop()
        st.caption(f"Receivables as of {owed.as_of:%Y-%m-%d}, computed at {owed.computed_at:%Y-%m-%d %H:%M} "
                   "(stored; computed again on the first load after a payment, credit note, billing run or import).")
        ageing = owed.ageing
        _ui.chart(fp.ageing_figure(ageing), "ageing")
        _ui.table(ageing, f"overdue-ageing-{as_of:%Y-%m-%d}", "dl_ageing")
        late = owed.overdue_customers
        st.markdown(f"**Customers with overdue invoices:** {len(late):,} "
                    f"({owed.n_to_end:,} with two periods or more, "
                    "which ends their subscription unless they pay)")
        if late.empty:
            _ui.empty("No customer is overdue.")
        else:
            _ui.table(late, f"overdue-customers-{as_of:%Y-%m-%d}", "dl_overdue", height=280)

# Credit notes -------------------------------------------------------------------------------------
else:
    st.markdown("A credit note corrects an invoice without editing it; it never exceeds what is left to credit.")
    with st.form("credit_note"):
        c1, c2, c3 = st.columns(3)
        cn_invoice = c1.text_input("Invoice number", key="cn_invoice")
        cn_amount = c2.text_input("Amount to credit (tax included)", key="cn_amount")
        cn_reason = c3.selectbox("Reason", CREDIT_REASONS, key="cn_reason")
        cn_note = st.text_input("Note", key="cn_note")
        issue = st.form_submit_button("Issue credit note", type="primary")
    if issue:
        try:
            target = parse_document_number(cn_invoice, "INV")
            cents = parse_cents(cn_amount)
        except ValueError as exc:
            st.error(str(exc))
        else:
            res = issue_credit_note(con, invoice_id=target, reason=cn_reason, amount_cents=cents, at=_ui.now(),
                                    user_id=me["user_id"], note=cn_note or None)
            if _ui.result(res):
                st.caption(f"{res['number']}: {format_cents(res['total_cents'])} credited; "
                           f"{format_cents(res['left_to_credit_cents'])} left to credit on the invoice.")
                _ui.data_changed()
