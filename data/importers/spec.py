"""The canonical import layout: one file per table, its columns, keys, references and rules.

This module is data, not code: :mod:`data.importers.canonical` turns it into set-based SQL checks,
and ``docs/IMPORT_FORMAT.md`` documents it (a test keeps the two in step through
:func:`columns_markdown`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

CONTACT_REASONS = ("bill_higher_than_expected", "billing_error", "bill_not_understood",
                   "wants_cheaper_plan", "service_issue", "cancel_request")
ROLES = ("admin", "leader", "analyst", "agent")
OFFER_KINDS = ("percent_off", "fixed_credit", "free_months", "plan_move")
LINE_KINDS = ("plan", "proration", "usage", "charge", "discount", "tax", "credit")

# Logical column types -> DuckDB types.
SQL_TYPES = {
    "id": "BIGINT",        # an identifier (integer)
    "int": "INTEGER",      # a small integer
    "count": "BIGINT",     # a non-money integer quantity
    "cents": "BIGINT",     # money: integer minor units (cents)
    "date": "DATE",        # YYYY-MM-DD
    "month": "DATE",       # YYYY-MM-DD and the first day of a month
    "ts": "TIMESTAMP",     # YYYY-MM-DD HH:MM:SS in UTC
    "bool": "BOOLEAN",     # true/false (also 1/0, yes/no)
    "text": "VARCHAR",
    "reasons": "VARCHAR[]",  # contact reason codes separated by '|'
}

TYPE_DOC = {
    "id": "integer id",
    "int": "integer",
    "count": "integer",
    "cents": "integer cents",
    "date": "date",
    "month": "date, 1st of month",
    "ts": "timestamp (UTC)",
    "bool": "boolean",
    "text": "text",
    "reasons": "reason codes, `\\|`-separated",
}


@dataclass(frozen=True)
class Col:
    """One column of an import file.

    required: the column must be in the file and every row must have a value.
    default: SQL literal used when the column is absent or a cell is empty (None = NULL).
    derived: filled from related rows when absent or empty (explained in ``doc``).
    """

    name: str
    type: str
    required: bool = False
    default: str | None = None
    derived: bool = False
    not_null: bool = False            # may be absent only because a default or derivation fills it
    enum: tuple[str, ...] | None = None
    min: int | None = None
    max: int | None = None
    doc: str = ""

    @property
    def sql_type(self) -> str:
        return SQL_TYPES[self.type]


@dataclass(frozen=True)
class Ref:
    """A reference ``column -> parent.parent_column``.

    scope ``any``: the parent row may be in this import or already in the database;
    ``import``: it must be in this import (existing invoices and credit notes are never edited).
    """

    column: str
    parent: str
    parent_column: str
    scope: str = "any"


@dataclass(frozen=True)
class Table:
    name: str
    doc: str
    columns: tuple[Col, ...]
    key: tuple[str, ...]
    unique: tuple[tuple[str, ...], ...] = ()
    refs: tuple[Ref, ...] = ()
    rules: tuple[str, ...] = field(default=())   # human-readable extra rules (checked in canonical.py)

    def col(self, name: str) -> Col:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


TABLES: dict[str, Table] = {}


def _t(table: Table) -> None:
    TABLES[table.name] = table


_t(Table(
    "tax_rates", "Sales tax (VAT) rate per region with history.",
    (Col("region", "text", True, doc="region code as used in customers.region"),
     Col("effective_from", "date", True, doc="first day the rate applies"),
     Col("rate_bp", "int", True, min=0, max=10000, doc="basis points: 2000 = 20.00 %")),
    key=("region", "effective_from")))

_t(Table(
    "plans", "The plan catalogue (prices are in plan_prices).",
    (Col("plan_id", "int", True),
     Col("code", "text", True, doc="short unique code"),
     Col("name", "text", True),
     Col("currency", "text", default="'EUR'", not_null=True, doc="ISO 4217 code, 3 capital letters"),
     Col("rank", "int", True, doc="orders plans by value: 1 = cheapest"),
     Col("is_active", "bool", default="TRUE", not_null=True, doc="still sold")),
    key=("plan_id",), unique=(("code",),),
    rules=("every plan in the import has at least one plan_prices row (in the import or the database)",)))

_t(Table(
    "plan_prices", "Price history of each plan: the row with the latest effective_from on or before a "
    "period's first day prices the whole period.",
    (Col("plan_id", "int", True),
     Col("effective_from", "month", True),
     Col("monthly_price_cents", "cents", True, min=0),
     Col("usage_allowance_units", "count", default="0", not_null=True, min=0),
     Col("overage_price_cents", "cents", default="0", not_null=True, min=0, doc="per unit over the allowance")),
    key=("plan_id", "effective_from"),
    refs=(Ref("plan_id", "plans", "plan_id"),)))

_t(Table(
    "users", "People who act in the history (care agents who took contacts or granted offers). "
    "Imported users have no password and cannot sign in until an admin sets one.",
    (Col("user_id", "id", True),
     Col("login", "text", True),
     Col("display_name", "text", True),
     Col("role", "text", True, enum=ROLES),
     Col("agent_tier", "int", min=1, max=3, doc="for agents; 3 = supervisor"),
     Col("is_active", "bool", default="TRUE", not_null=True),
     Col("created_at", "ts", default="@at", doc="default: the import time")),
    key=("user_id",), unique=(("login",),)))

_t(Table(
    "customers", "One row per customer (account).",
    (Col("customer_id", "id", True),
     Col("account_number", "text", True, doc="the business's own account number; unique"),
     Col("name", "text", True),
     Col("email", "text"),
     Col("phone", "text"),
     Col("postcode", "text"),
     Col("birth_date", "date", doc="used for identity checks"),
     Col("segment", "text", default="'unknown'", not_null=True),
     Col("region", "text", default="'unknown'", not_null=True, doc="tax region (tax_rates.region)"),
     Col("channel", "text", default="'unknown'", not_null=True, doc="acquisition channel"),
     Col("signup_date", "date", True),
     Col("currency", "text", default="'EUR'", not_null=True, doc="ISO 4217 code, 3 capital letters"),
     Col("is_autopay", "bool", default="FALSE", not_null=True),
     Col("is_paperless", "bool", default="FALSE", not_null=True),
     Col("churned_on", "date", doc="last day served; empty = active; not before signup_date"),
     Col("churn_kind", "text", enum=("voluntary", "involuntary"), doc="only with churned_on"),
     Col("churn_reason", "text"),
     Col("created_at", "ts", default="@at", doc="default: the import time")),
    key=("customer_id",), unique=(("account_number",),)))

_t(Table(
    "customer_attributes", "Extra facts about a customer that have no column (any name/value), "
    "so analytics can group by them.",
    (Col("customer_id", "id", True),
     Col("name", "text", True),
     Col("value", "text")),
    key=("customer_id", "name"),
    refs=(Ref("customer_id", "customers", "customer_id"),)))

_t(Table(
    "subscriptions", "One row per contract of a customer on one plan; a plan change ends one row "
    "(end_reason plan_change) and starts the next.",
    (Col("subscription_id", "id", True),
     Col("customer_id", "id", True),
     Col("plan_id", "int", True),
     Col("start_date", "date", True, doc="first day served"),
     Col("end_date", "date", doc="last day served (inclusive); empty = open; not before start_date"),
     Col("end_reason", "text", derived=True, enum=("plan_change", "cancelled", "non_payment", "imported"),
         doc="only with end_date; default `imported` when end_date is set"),
     Col("previous_subscription_id", "id", doc="the subscription this one replaced")),
    key=("subscription_id",),
    refs=(Ref("customer_id", "customers", "customer_id"), Ref("plan_id", "plans", "plan_id"),
          Ref("previous_subscription_id", "subscriptions", "subscription_id"))))

_t(Table(
    "usage_records", "Metered usage per subscription and period (several rows per period are summed).",
    (Col("subscription_id", "id", True),
     Col("period_start", "month", True),
     Col("units", "count", True, min=0),
     Col("recorded_at", "ts")),
    key=(),
    refs=(Ref("subscription_id", "subscriptions", "subscription_id"),)))

_t(Table(
    "one_off_charges", "One-off fees billed with a subscription's invoice for a period.",
    (Col("charge_id", "id", True),
     Col("subscription_id", "id", True),
     Col("period_start", "month", True),
     Col("description", "text", True),
     Col("amount_cents", "cents", True, min=0),
     Col("created_at", "ts")),
    key=("charge_id",),
    refs=(Ref("subscription_id", "subscriptions", "subscription_id"),)))

_t(Table(
    "offers", "The discount/offer catalogue.",
    (Col("offer_id", "int", True),
     Col("code", "text", True),
     Col("name", "text", True),
     Col("kind", "text", True, enum=OFFER_KINDS),
     Col("percent_off", "int", min=1, max=100, doc="required for percent_off"),
     Col("credit_cents", "cents", min=1, doc="required for fixed_credit"),
     Col("cycles", "int", min=1, doc="periods covered; required for percent_off and free_months"),
     Col("target_plan_id", "int", doc="plan_move: the plan to move to (empty = next cheaper)"),
     Col("min_tier", "int", default="1", not_null=True, min=1, max=3, doc="lowest agent tier allowed to grant"),
     Col("min_tenure_months", "int", default="0", not_null=True, min=0),
     Col("cooldown_months", "int", default="0", not_null=True, min=0),
     Col("eligible_reasons", "reasons", doc="contact reasons it may be offered for; empty = any"),
     Col("is_active", "bool", default="TRUE", not_null=True)),
    key=("offer_id",), unique=(("code",),),
    refs=(Ref("target_plan_id", "plans", "plan_id"),),
    rules=("percent_off needs percent_off and cycles; free_months needs cycles; "
           "fixed_credit needs credit_cents",)))

_t(Table(
    "invoices", "One invoice per subscription per calendar month (billing in arrears). "
    "invoice_id is the invoice number.",
    (Col("invoice_id", "id", True),
     Col("subscription_id", "id", True),
     Col("customer_id", "id", derived=True, doc="default: the subscription's customer; if given it must match"),
     Col("plan_id", "int", derived=True, doc="default: the subscription's plan; if given it must match"),
     Col("period_start", "month", True),
     Col("period_end", "date", derived=True, doc="default and only allowed value: last day of the month"),
     Col("issued_on", "date", True),
     Col("due_on", "date", derived=True, doc="default: issued_on; not before issued_on"),
     Col("currency", "text", derived=True, doc="default: the customer's currency"),
     Col("subtotal_cents", "cents", derived=True,
         doc="plan, proration, usage and charge lines; default: from the lines"),
     Col("discount_cents", "cents", derived=True, min=0, doc="positive; default: minus the discount lines"),
     Col("tax_cents", "cents", derived=True, doc="default: the tax lines"),
     Col("credit_cents", "cents", derived=True, min=0, doc="positive; default: minus the credit lines"),
     Col("total_cents", "cents", True, min=0,
         doc="= subtotal - discount + tax - credit = sum of the invoice's lines"),
     Col("tax_rate_bp", "int", default="0", not_null=True, min=0, max=10000),
     Col("status", "text", default="'finalized'", not_null=True, enum=("draft", "finalized", "void")),
     Col("finalized_at", "ts")),
    key=("invoice_id",), unique=(("subscription_id", "period_start"),),
    refs=(Ref("subscription_id", "subscriptions", "subscription_id"),
          Ref("customer_id", "customers", "customer_id"), Ref("plan_id", "plans", "plan_id")),
    rules=("the subscription serves at least one day of the period",
           "total_cents = sum of the invoice's lines in invoice_lines (an invoice without lines has total 0)",
           "total_cents = subtotal_cents - discount_cents + tax_cents - credit_cents",
           "(subscription_id, period_start) is unique, also against invoices already in the database")))

_t(Table(
    "invoice_lines", "The lines of the invoices in this import (existing invoices are never edited).",
    (Col("invoice_id", "id", True),
     Col("line_no", "int", True),
     Col("kind", "text", True, enum=LINE_KINDS),
     Col("description", "text", derived=True, doc="default: the kind"),
     Col("quantity", "count", doc="days (plan, proration) or units over the allowance (usage)"),
     Col("unit_amount_cents", "cents"),
     Col("amount_cents", "cents", True,
         doc="signed: discount and credit lines <= 0; plan, usage and charge lines >= 0"),
     Col("grant_id", "id", doc="discount and credit lines: the offer grant"),
     Col("charge_id", "id", doc="charge lines: the one-off charge")),
    key=("invoice_id", "line_no"),
    refs=(Ref("invoice_id", "invoices", "invoice_id", scope="import"),
          Ref("grant_id", "offer_grants", "grant_id"), Ref("charge_id", "one_off_charges", "charge_id"))))

_t(Table(
    "contacts", "Each time a customer reached customer care.",
    (Col("contact_id", "id", True),
     Col("customer_id", "id", True),
     Col("contacted_at", "ts", True),
     Col("channel", "text", True, enum=("phone", "chat", "email")),
     Col("reason", "text", True, enum=CONTACT_REASONS),
     Col("wait_seconds", "int", min=0),
     Col("handle_seconds", "int", min=0),
     Col("agent_id", "id", doc="users.user_id of the agent"),
     Col("is_identity_verified", "bool", default="FALSE", not_null=True),
     Col("resolution", "text", True, enum=("resolved", "unresolved", "escalated")),
     Col("is_intent_to_cancel", "bool", default="FALSE", not_null=True),
     Col("invoice_id", "id", doc="the bill the contact was about; must be the same customer's"),
     Col("notes", "text")),
    key=("contact_id",),
    refs=(Ref("customer_id", "customers", "customer_id"), Ref("agent_id", "users", "user_id"),
          Ref("invoice_id", "invoices", "invoice_id"))))

_t(Table(
    "offer_grants", "Offers granted to customers; the grant keeps the offer's terms as they were.",
    (Col("grant_id", "id", True),
     Col("customer_id", "id", True),
     Col("offer_id", "int", True),
     Col("contact_id", "id", doc="the contact it was granted in; must be the same customer's"),
     Col("granted_by", "id", doc="users.user_id"),
     Col("granted_at", "ts", True),
     Col("kind", "text", derived=True, enum=OFFER_KINDS, doc="default: the offer's kind"),
     Col("percent_off", "int", derived=True, min=1, max=100, doc="default: the offer's"),
     Col("credit_cents", "cents", derived=True, min=1, doc="default: the offer's"),
     Col("cycles", "int", derived=True, min=1, doc="periods covered; default: the offer's, else 1"),
     Col("first_period", "month", True, doc="first billing period covered"),
     Col("assignment", "text", default="'import'", not_null=True,
         enum=("agent", "holdout", "import", "system"), doc="how it was assigned; `holdout` = randomized")),
    key=("grant_id",),
    refs=(Ref("customer_id", "customers", "customer_id"), Ref("offer_id", "offers", "offer_id"),
          Ref("contact_id", "contacts", "contact_id"), Ref("granted_by", "users", "user_id"))))

_t(Table(
    "credit_notes", "Corrections of invoices (an invoice is never edited).",
    (Col("credit_note_id", "id", True),
     Col("invoice_id", "id", True),
     Col("customer_id", "id", derived=True, doc="default: the invoice's customer; if given it must match"),
     Col("issued_at", "ts", True),
     Col("reason", "text", True, enum=("billing_error", "goodwill", "service_issue", "price_dispute", "other")),
     Col("net_cents", "cents", True, min=0),
     Col("tax_cents", "cents", default="0", not_null=True, min=0),
     Col("total_cents", "cents", derived=True, min=1, doc="= net_cents + tax_cents (the default)"),
     Col("issued_by", "id", doc="users.user_id"),
     Col("contact_id", "id"),
     Col("note", "text")),
    key=("credit_note_id",),
    refs=(Ref("invoice_id", "invoices", "invoice_id"), Ref("issued_by", "users", "user_id"),
          Ref("contact_id", "contacts", "contact_id")),
    rules=("total_cents = sum of its credit_note_lines in this import",
           "all credit notes of an invoice (imported and existing) total at most the invoice's total")))

_t(Table(
    "credit_note_lines", "The lines of the credit notes in this import.",
    (Col("credit_note_id", "id", True),
     Col("line_no", "int", True),
     Col("description", "text", True),
     Col("amount_cents", "cents", True, min=1, doc="positive: the amount credited")),
    key=("credit_note_id", "line_no"),
    refs=(Ref("credit_note_id", "credit_notes", "credit_note_id", scope="import"),)))

_t(Table(
    "payments", "Payments received and failed payment attempts.",
    (Col("payment_id", "id", True),
     Col("customer_id", "id", True),
     Col("received_at", "ts", True),
     Col("amount_cents", "cents", True, min=1),
     Col("method", "text", default="'imported'", not_null=True,
         enum=("card", "direct_debit", "bank_transfer", "cash", "imported")),
     Col("status", "text", default="'settled'", not_null=True, enum=("settled", "failed")),
     Col("reference", "text")),
    key=("payment_id",),
    refs=(Ref("customer_id", "customers", "customer_id"),)))

# The order tables are loaded, derived and written in (parents first).
ORDER: tuple[str, ...] = tuple(TABLES)


def _default_text(c: Col) -> str:
    if c.required:
        return "-"
    if c.derived:
        return "derived"
    if c.default == "@at":
        return "import time"
    if c.default is not None:
        text = c.default.strip("'")
        return "`" + (text.lower() if text in ("TRUE", "FALSE") else text) + "`"
    return "empty"


def columns_markdown(table: str) -> str:
    """The Markdown table of one file's columns."""
    t = TABLES[table]
    rows = ["| column | type | required | if absent or empty | meaning and rules |",
            "| --- | --- | --- | --- | --- |"]
    for c in t.columns:
        notes = [c.doc] if c.doc else []
        if c.enum:
            notes.append("one of " + ", ".join(f"`{v}`" for v in c.enum))
        if c.min is not None and c.max is not None:
            notes.append(f"{c.min}..{c.max}")
        elif c.min is not None:
            notes.append(f">= {c.min}")
        rows.append(f"| `{c.name}` | {TYPE_DOC[c.type]} | {'yes' if c.required else 'no'} | {_default_text(c)} "
                    f"| {'; '.join(notes)} |".replace("|  |", "| |"))
    return "\n".join(rows)


def table_markdown(table: str) -> str:
    """The section of docs/IMPORT_FORMAT.md for one file (a test checks the doc contains it verbatim)."""
    t = TABLES[table]
    out = [f"### `{table}.csv` / `{table}.parquet`", "", t.doc, ""]
    out.append("- key: " + (", ".join(f"`{c}`" for c in t.key) + " (unique in the file and new to the database)"
                            if t.key else "none (rows are summed)"))
    for u in t.unique:
        out.append("- unique: " + ", ".join(f"`{c}`" for c in u) + " (in the file and against the database)")
    for r in t.refs:
        where = "in this import" if r.scope == "import" else "in this import or already in the database"
        out.append(f"- `{r.column}` -> `{r.parent}.{r.parent_column}` ({where})")
    for rule in t.rules:
        out.append(f"- rule: {rule}")
    out += ["", columns_markdown(table)]
    return "\n".join(out)
