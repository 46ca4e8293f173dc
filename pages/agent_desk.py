"""Agent desk: a customer is on the phone about their bill.

Search -> verify identity (nothing about the account shows before) -> account -> latest bill explained
-> fairness check -> churn risk -> offers (eligibility and the agent's authority) -> plan change preview
-> record the contact and grant an offer (checked again in billing/) or ask a supervisor.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st
import streamlit.components.v1 as components

from analytics import figures_pages as fp
from billing import audit
from billing.account import customer_balance
from billing.change_plan import change_plan, preview_plan_change
from billing.eligibility import offer_eligibility
from billing.explain_invoice import explain_invoice
from billing.find_customers import find_customers
from billing.grant_offer import grant_offer
from billing.record_contact import record_contact
from billing.render_invoice import render_invoice_html
from billing.verify_identity import verify_identity
from data.export import mask_pii
from data.money import format_cents, parse_cents
from pages import _ui

REASONS = {
    "bill_higher_than_expected": "Bill higher than expected",
    "billing_error": "Billing error",
    "bill_not_understood": "Does not understand the bill",
    "wants_cheaper_plan": "Wants a cheaper plan",
    "service_issue": "Service issue",
    "cancel_request": "Wants to cancel",
}
CHANNELS = ("phone", "chat", "email")
RESOLUTIONS = ("resolved", "unresolved", "escalated")

K_RESULTS, K_CUSTOMER, K_VERIFIED = "desk.results", "desk.customer", "desk.verified"
K_CONTACT, K_OUTCOMES, K_REFUSED = "desk.contact", "desk.outcomes", "desk.refused"

me = _ui.require("agent_desk")
con = _ui.con()
as_of = _ui.today()
ss = st.session_state


def end_call() -> None:
    for key in (K_RESULTS, K_CUSTOMER, K_VERIFIED, K_CONTACT, K_OUTCOMES, K_REFUSED, "desk_query"):
        ss.pop(key, None)


def note(message: str) -> None:
    ss.setdefault(K_OUTCOMES, []).append(message)


_ui.header("Agent desk", f"Signed in as {me['display_name']} · "
                         f"business date {as_of:%Y-%m-%d}")

# 1. Find the caller -----------------------------------------------------------------------------
with st.form("desk_search"):
    query = st.text_input("Find the caller: name, email, phone or account number", key="desk_query")
    searched = st.form_submit_button("Search", icon=":material/search:")
if searched:
    for key in (K_CUSTOMER, K_VERIFIED, K_CONTACT, K_OUTCOMES, K_REFUSED):
        ss.pop(key, None)
    found = find_customers(con, query)
    if not found.ok:
        st.error(found.message)
        ss.pop(K_RESULTS, None)
    else:
        ss[K_RESULTS] = {"customers": found["customers"], "message": found.message}

results = ss.get(K_RESULTS)
customer = ss.get(K_CUSTOMER)
if results is not None and customer is None:
    df = results["customers"]
    st.caption(results["message"])
    if df.empty:
        _ui.empty("No customer matches. Try part of the name, the email, the phone number or the "
                  "account number from the caller's bill.")
        st.stop()
    # Before verification the agent sees only what identifies the account, never personal data.
    st.dataframe(mask_pii(df)[["account_number", "name", "email", "phone", "postcode", "plan_name", "is_active"]],
                 hide_index=True, width="stretch")
    labels = {int(r.customer_id): f"{r.name} · {r.account_number} · {r.plan_name or 'no plan'}"
                                  f"{'' if r.is_active else ' · former customer'}" for r in df.itertuples()}
    chosen = st.selectbox("Caller", list(labels), format_func=labels.get, key="desk_pick")
    if st.button("Take this call", type="primary", key="desk_take"):
        row = df[df["customer_id"] == chosen].iloc[0]
        ss[K_CUSTOMER] = {"customer_id": int(chosen), "name": row["name"],
                          "account_number": row["account_number"]}
        st.rerun()

if customer is None:
    if results is None:
        _ui.empty("Search for the caller to start.")
    st.stop()

cid = customer["customer_id"]
top_left, top_right = st.columns([4, 1])
top_left.subheader(f"{customer['name']} · {customer['account_number']}")
top_right.button("End call", on_click=end_call, key="desk_end", icon=":material/call_end:")

# 2. Verify identity before anything about the account shows --------------------------------------
if ss.get(K_VERIFIED) != cid:
    st.markdown("**Verify the caller.** Ask two of: postcode, birth date, amount of the last invoice.")
    with st.form("desk_verify"):
        c1, c2, c3 = st.columns(3)
        postcode = c1.text_input("Postcode", key="verify_postcode")
        birth = c2.text_input("Birth date (YYYY-MM-DD)", key="verify_birth")
        amount_text = c3.text_input("Last invoice amount", key="verify_amount")
        check = st.form_submit_button("Verify", type="primary")
    if check:
        amount = None
        if amount_text.strip():
            try:
                amount = parse_cents(amount_text)
            except ValueError as exc:
                st.error(str(exc))
                st.stop()
        res = verify_identity(con, customer_id=cid, user_id=me["user_id"], at=_ui.now(), postcode=postcode or None,
                              birth_date=birth or None, last_invoice_amount_cents=amount)
        if res.ok:
            ss[K_VERIFIED] = cid
            st.rerun()
        st.error(res.message, icon=":material/gpp_bad:")
    st.stop()

st.success("Identity verified", icon=":material/verified_user:")

# 3. The account ----------------------------------------------------------------------------------
fair = _ui.cached("analytics.fairness", "fairness_check", cid, as_of=as_of)
balance = customer_balance(con, cid, as_of=as_of)
found = find_customers(con, customer["account_number"], limit=1)
profile = found["customers"].iloc[0] if found.ok and len(found["customers"]) else None
currency = balance.currency if balance else "EUR"

m1, m2, m3, m4 = st.columns(4)
m1.metric("Plan", (profile["plan_name"] if profile is not None else None) or "-", border=True)
m2.metric("Status", "active" if profile is not None and profile["is_active"] else "not active", border=True)
if balance is not None:
    m3.metric("Open balance", format_cents(balance.open_balance_cents, currency),
              f"{format_cents(balance.overdue_cents, currency)} overdue" if balance.overdue_cents else None,
              delta_color="inverse", border=True)
    m4.metric("Credit balance", format_cents(balance.credit_balance_cents, currency), border=True)
if profile is not None:
    st.caption(f"Customer since {profile['signup_date']:%Y-%m-%d} · {profile['email'] or 'no email'} · "
               f"{profile['phone'] or 'no phone'} · postcode {profile['postcode'] or '-'}")

tab_bills, tab_payments, tab_contacts, tab_discounts = st.tabs(["Bills", "Payments", "Contacts", "Discounts"])
with tab_bills:
    if fair is None or fair.invoices.empty:
        _ui.empty("No invoices yet for this customer: the first bill comes with the next billing run.")
    else:
        _ui.chart(fp.invoice_history_figure(fair.invoices, currency=currency), "desk_invoices")
        _ui.table(fair.invoices, f"invoices-{customer['account_number']}", "desk_dl_invoices")
for tab, fn, what, key in ((tab_payments, "customer_payments", "Payments", "payments"),
                           (tab_contacts, "customer_contacts", "Contacts", "contacts"),
                           (tab_discounts, "active_discounts", "Active discounts", "discounts")):
    with tab:
        reader = _ui.function("billing.account", fn)
        if reader is None:
            _ui.not_available(what, f"waiting for billing.account.{fn}")
            continue
        frame = reader(con, cid, as_of=as_of)
        if frame.empty:
            _ui.empty(f"No {what.lower()} recorded for this customer.")
        else:
            _ui.table(frame, f"{key}-{customer['account_number']}", f"desk_dl_{key}")

# 4. The latest bill, explained -------------------------------------------------------------------
st.subheader("Latest bill explained")
latest_id = None if fair is None or fair.invoices.empty else int(fair.invoices["invoice_id"].iloc[0])
if latest_id is None:
    _ui.empty("There is no bill to explain yet.")
else:
    exp = explain_invoice(con, latest_id)
    st.markdown(f"**{exp.invoice.number}** for {exp.invoice.period_start:%B %Y}: "
                f"{format_cents(exp.invoice.total_cents, exp.invoice.currency)}. {exp.summary}")
    changes = pd.DataFrame([{"change": c.kind.replace("_", " "), "amount": format_cents(c.amount_delta_cents,
                             exp.invoice.currency), "why": c.reason} for c in exp.changes])
    if not changes.empty:
        st.dataframe(changes, hide_index=True, width="stretch")
    if st.toggle("Show the invoice as the customer sees it", key="desk_show_invoice"):
        # in an iframe: the invoice's own print styles must not restyle the app
        components.html(render_invoice_html(con, latest_id), height=800, scrolling=True)

# 5. Is the customer treated fairly? --------------------------------------------------------------
st.subheader("Fairness check")
if fair is not None:
    for line in fair.findings:
        st.markdown(f"- {line}")
    _ui.chart(fp.peer_figure(fair.peers, currency=currency), "desk_peers")
    if not fair.billing_errors.empty:
        _ui.table(fair.billing_errors, f"billing-errors-{customer['account_number']}", "desk_dl_errors")

# 6. The call: what it is about decides the offers ------------------------------------------------
st.subheader("This call")
c1, c2, c3 = st.columns(3)
reason = c1.selectbox("What is the call about?", list(REASONS), format_func=REASONS.get, key="desk_reason")
channel = c2.selectbox("Channel", CHANNELS, key="desk_channel")
intent = c3.checkbox("Says they will cancel", key="desk_intent")

# 7. Churn risk and recommended offers (models), or eligibility and authority alone ---------------
at = _ui.now()
catalogue = _ui.cached("analytics.discounts", "offer_catalogue")
catalogue = catalogue[catalogue["is_active"].astype(bool)]
assessed, no_model = _ui.churn_risk(cid, at.date())

st.subheader("Churn risk")
if assessed is not None and assessed.risk is not None:
    st.metric("Probability of leaving within 90 days", f"{assessed.risk:.0%}",
              help=f"From the data before {assessed.as_of:%d %b %Y}: the same all day.")
    _ui.chart(fp.risk_reasons_figure(assessed.reasons), "desk_risk")
elif assessed is not None:
    _ui.empty(assessed.note or "No churn-risk model yet: an administrator retrains the models "
                               "on the Data & models page.")
elif not _ui.background_notice("The churn-risk model"):
    _ui.not_available("The churn risk", f"{no_model}; an administrator trains the models on the Data & models "
                                        "page (or runs `python cli.py train`)")

st.subheader("Offers")
recommendation, no_model = _ui.recommendation(cid, reason, at.replace(second=0), intent, me["user_id"])
if recommendation is not None:
    st.info(recommendation.message, icon=":material/recommend:")
    options = recommendation.options.merge(catalogue[["offer_id", "code"]], on="code", how="left")
    offers = options.rename(columns={"eligibility_message": "message"})
    shown_cols = ["name", "status", "eligible", "needs_tier", "uplift", "net_value_cents", "message"]
else:
    if catalogue.empty:
        offers = pd.DataFrame(columns=["offer_id", "name", "eligible", "may_grant", "needs_tier", "message"])
    else:
        checked = offer_eligibility(con, pd.DataFrame({"customer_id": cid, "offer_id": catalogue["offer_id"],
                                                       "at": at, "reason": reason,
                                                       "agent_tier": me.get("agent_tier") or 0}))
        offers = checked.drop(columns=["kind"]).merge(catalogue[["offer_id", "code", "name", "kind"]],
                                                      on="offer_id", how="left")
    shown_cols = ["name", "eligible", "needs_tier", "message"]
if offers.empty:
    _ui.empty("The offer catalogue is empty: an administrator defines offers before agents can grant them.")
else:
    authority = offers["may_grant"].map({True: "you may grant", False: "needs a supervisor"})
    view = offers.assign(authority=authority.where(offers["eligible"].astype(bool), "-"))
    cols = [c for c in shown_cols[:2] + ["authority"] + shown_cols[2:] if c in view.columns]
    st.dataframe(view[cols], hide_index=True, width="stretch")
    if not offers["eligible"].astype(bool).any():
        _ui.empty("No offer is eligible for this customer and reason; resolve the call without one.")

with st.expander("Change of plan: preview the month of the change"):
    plans = dict(_ui.cached("analytics.overview", "filter_options")["plan"])
    p1, p2 = st.columns(2)
    new_plan = p1.selectbox("New plan", list(plans), format_func=plans.get, key="desk_new_plan")
    effective = p2.date_input("From", value=as_of, key="desk_plan_from")
    preview = preview_plan_change(con, cid, int(new_plan), effective) if new_plan is not None else None
    if preview is None:
        _ui.empty("No plans are defined.")
    elif not preview.ok:
        st.warning(preview.message)
    else:
        pv = preview["preview"]
        st.write(preview.message)
        st.dataframe(pd.DataFrame({
            "": [pv.old_plan_name, pv.new_plan_name, "with the change", "without it"],
            "days": [pv.old_days, pv.new_days, pv.old_days + pv.new_days, None],
            "monthly price": [format_cents(pv.old_monthly_price_cents, pv.currency),
                              format_cents(pv.new_monthly_price_cents, pv.currency), None, None],
            "plan charge": [format_cents(v, pv.currency) for v in (pv.old_charge_cents, pv.new_charge_cents,
                                                                    pv.total_cents, pv.without_change_cents)]}),
            hide_index=True)
        agree = st.checkbox("The customer agrees to the change", key="desk_plan_agree")
        if st.button("Change the plan", disabled=not agree, key="desk_plan_go"):
            done = change_plan(con, customer_id=cid, new_plan_id=int(new_plan), effective_date=effective,
                               at=_ui.now(), user_id=me["user_id"])
            _ui.result(done)
            if done.ok:
                _ui.data_changed()

# 8. Record the contact, then grant (or ask a supervisor) -----------------------------------------
st.subheader("Record the call")
contact_id = ss.get(K_CONTACT)
if contact_id is None:
    with st.form("desk_record"):
        resolution = st.selectbox("Outcome", RESOLUTIONS, key="desk_resolution")
        notes = st.text_area("Notes", key="desk_notes", max_chars=2000)
        save = st.form_submit_button("Record the call", type="primary")
    if save:
        res = record_contact(con, customer_id=cid, channel=channel, reason=reason, resolution=resolution,
                             at=_ui.now(), agent_id=me["user_id"], is_identity_verified=True,
                             is_intent_to_cancel=intent, invoice_id=latest_id, notes=notes or None)
        if _ui.result(res):
            ss[K_CONTACT] = res["contact_id"]
            _ui.data_changed()
            st.rerun()
else:
    st.success(f"Call recorded (contact {contact_id}).", icon=":material/check_circle:")
    eligible = offers[offers["eligible"].astype(bool)] if len(offers) else offers
    if eligible.empty:
        _ui.empty("No offer to grant for this call.")
    else:
        names = dict(zip(eligible["offer_id"].astype(int), eligible["name"]))
        tiers = dict(zip(eligible["offer_id"].astype(int), eligible["needs_tier"]))
        offer_id = st.selectbox("Offer", list(names), key="desk_offer",
                                format_func=lambda o: f"{names[o]} (tier {tiers[o]}+)")
        agreed = st.checkbox(f"The customer accepts: {names[offer_id]}", key="desk_offer_agree")
        g1, g2 = st.columns(2)
        if g1.button("Grant the offer", type="primary", disabled=not agreed, key="desk_grant"):
            res = grant_offer(con, customer_id=cid, offer_id=int(offer_id), agent_id=me["user_id"],
                              contact_id=int(contact_id), reason=reason, at=_ui.now())
            if res.ok:
                note(f"{res.message}; the next invoice shows it.")
                ss.pop(K_REFUSED, None)
                _ui.data_changed()
            else:
                ss[K_REFUSED] = {"offer_id": int(offer_id), "message": res.message, "code": res.code}
        refused = ss.get(K_REFUSED)
        if refused and refused["offer_id"] == int(offer_id):
            st.error(f"Not granted: {refused['message']} ({refused['code']})", icon=":material/block:")
        if g2.button("Ask a supervisor to grant it", key="desk_supervisor", icon=":material/escalator_warning:"):
            audit.log(con, at=_ui.now(), user_id=me["user_id"], action="request_supervisor_offer",
                      entity="customer", entity_id=cid,
                      detail={"offer_id": int(offer_id), "contact_id": int(contact_id), "reason": reason})
            note(f"Supervisor approval requested for {names[offer_id]}; nothing was granted.")
            ss.pop(K_REFUSED, None)
for line in ss.get(K_OUTCOMES, []):
    st.info(line, icon=":material/task_alt:")
