-- Retention Desk: the one schema file (DESIGN.md section 3).
--
-- Conventions: money is integer cents in BIGINT columns ending _cents; dates are DATE, instants
-- TIMESTAMP (UTC) ending _at; keys are <entity>_id; flags start with is_.
-- Date ranges are INCLUSIVE: a subscription serves start_date .. end_date (both days included),
-- an invoice covers period_start .. period_end (first and last day of a calendar month).
-- Large append-only ledgers (invoice_lines, payments, usage_records, audit_log) carry no key: their
-- ids are assigned in one transaction as max(id) + row_number() and checked by tests. Invoices and
-- payments have one index each, on customer_id: the agent desk reads one customer's bills and
-- payments at every step of a call (a tenth of the time, against a tenth more per billing run).
-- The schema version lives in schema_meta (data/db.py SCHEMA_VERSION); upgrades in data/migrations.py.

CREATE TABLE IF NOT EXISTS schema_meta (
    key   VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL
);

-- Sales tax (VAT) by region, with history. rate_bp is basis points: 2000 = 20.00 %.
CREATE TABLE IF NOT EXISTS tax_rates (
    region         VARCHAR NOT NULL,
    effective_from DATE    NOT NULL,
    rate_bp        INTEGER NOT NULL CHECK (rate_bp BETWEEN 0 AND 10000),
    PRIMARY KEY (region, effective_from)
);

-- Plans. rank orders plans by value (1 = cheapest): "a cheaper plan" means a lower rank.
CREATE TABLE IF NOT EXISTS plans (
    plan_id   INTEGER PRIMARY KEY,
    code      VARCHAR NOT NULL UNIQUE,
    name      VARCHAR NOT NULL,
    currency  VARCHAR NOT NULL DEFAULT 'EUR',
    rank      INTEGER NOT NULL,
    is_active BOOLEAN NOT NULL DEFAULT TRUE
);

-- Price history: the row with the latest effective_from <= period_start prices the whole period.
-- effective_from is always the first day of a month (price changes take effect from a period).
CREATE TABLE IF NOT EXISTS plan_prices (
    plan_id               INTEGER NOT NULL,
    effective_from        DATE    NOT NULL,
    monthly_price_cents   BIGINT  NOT NULL CHECK (monthly_price_cents >= 0),
    usage_allowance_units BIGINT  NOT NULL CHECK (usage_allowance_units >= 0),
    overage_price_cents   BIGINT  NOT NULL CHECK (overage_price_cents >= 0),
    PRIMARY KEY (plan_id, effective_from),
    CHECK (day(effective_from) = 1)
);

CREATE TABLE IF NOT EXISTS customers (
    customer_id    BIGINT  PRIMARY KEY,
    account_number VARCHAR NOT NULL UNIQUE,
    name           VARCHAR NOT NULL,
    email          VARCHAR,
    phone          VARCHAR,
    postcode       VARCHAR,
    birth_date     DATE,
    segment        VARCHAR NOT NULL,
    region         VARCHAR NOT NULL,
    channel        VARCHAR NOT NULL,           -- acquisition channel
    signup_date    DATE    NOT NULL,
    currency       VARCHAR NOT NULL DEFAULT 'EUR',
    is_autopay     BOOLEAN NOT NULL DEFAULT FALSE,
    is_paperless   BOOLEAN NOT NULL DEFAULT FALSE,
    churned_on     DATE,                       -- last day served of the last subscription; NULL = active
    churn_kind     VARCHAR CHECK (churn_kind IN ('voluntary', 'involuntary')),
    churn_reason   VARCHAR,
    created_at     TIMESTAMP
);

-- Extra attributes of a customer that an import brings and the schema has no column for
-- (e.g. the Telco file's contract, internet service, monthly charges). One row per customer and name.
CREATE TABLE IF NOT EXISTS customer_attributes (
    customer_id BIGINT  NOT NULL,
    name        VARCHAR NOT NULL,
    value       VARCHAR,
    PRIMARY KEY (customer_id, name)
);

-- One row per contract on one plan. A plan change closes one (end_reason 'plan_change') and opens
-- the next (previous_subscription_id). end_date is the last day served (inclusive); NULL = open.
CREATE TABLE IF NOT EXISTS subscriptions (
    subscription_id          BIGINT  PRIMARY KEY,
    customer_id              BIGINT  NOT NULL,
    plan_id                  INTEGER NOT NULL,
    start_date               DATE    NOT NULL,
    end_date                 DATE,
    end_reason               VARCHAR CHECK (end_reason IN ('plan_change', 'cancelled', 'non_payment', 'imported')),
    previous_subscription_id BIGINT,
    CHECK (end_date IS NULL OR end_date >= start_date)
);

-- Metered usage, units per subscription and period (summed by the billing run).
CREATE TABLE IF NOT EXISTS usage_records (
    subscription_id BIGINT NOT NULL,
    period_start    DATE   NOT NULL,
    units           BIGINT NOT NULL CHECK (units >= 0),
    recorded_at     TIMESTAMP
);

-- One-off charges (fees) billed on the subscription's invoice for the period, as lines of kind 'charge'.
CREATE TABLE IF NOT EXISTS one_off_charges (
    charge_id       BIGINT  PRIMARY KEY,
    subscription_id BIGINT  NOT NULL,
    period_start    DATE    NOT NULL,
    description     VARCHAR NOT NULL,
    amount_cents    BIGINT  NOT NULL CHECK (amount_cents >= 0),
    created_at      TIMESTAMP
);

-- The offer catalogue. kind decides which value columns apply:
--   percent_off  : percent_off for cycles periods       free_months : 100 % for cycles periods
--   fixed_credit : credit_cents once (carried forward)   plan_move   : move to target_plan_id (NULL = next cheaper)
-- min_tier is the lowest agent tier allowed to grant it. Eligibility: min_tenure_months, cooldown_months
-- (no second grant of this offer within that many months), eligible_reasons (NULL = any contact reason).
CREATE TABLE IF NOT EXISTS offers (
    offer_id          INTEGER PRIMARY KEY,
    code              VARCHAR NOT NULL UNIQUE,
    name              VARCHAR NOT NULL,
    kind              VARCHAR NOT NULL CHECK (kind IN ('percent_off', 'fixed_credit', 'free_months', 'plan_move')),
    percent_off       INTEGER CHECK (percent_off BETWEEN 1 AND 100),
    credit_cents      BIGINT  CHECK (credit_cents > 0),
    cycles            INTEGER CHECK (cycles > 0),
    target_plan_id    INTEGER,
    min_tier          INTEGER NOT NULL DEFAULT 1 CHECK (min_tier BETWEEN 1 AND 3),
    min_tenure_months INTEGER NOT NULL DEFAULT 0,
    cooldown_months   INTEGER NOT NULL DEFAULT 0,
    eligible_reasons  VARCHAR[],
    is_active         BOOLEAN NOT NULL DEFAULT TRUE
);

CREATE TABLE IF NOT EXISTS users (
    user_id       BIGINT  PRIMARY KEY,
    login         VARCHAR NOT NULL UNIQUE,
    display_name  VARCHAR NOT NULL,
    password_hash VARCHAR,                   -- bcrypt; NULL = cannot sign in (e.g. simulated agents)
    role          VARCHAR NOT NULL CHECK (role IN ('admin', 'leader', 'analyst', 'agent')),
    agent_tier    INTEGER CHECK (agent_tier BETWEEN 1 AND 3),   -- 3 = supervisor
    is_active     BOOLEAN NOT NULL DEFAULT TRUE,
    created_at    TIMESTAMP
);

-- Each time a customer reaches care.
CREATE TABLE IF NOT EXISTS contacts (
    contact_id           BIGINT    PRIMARY KEY,
    customer_id          BIGINT    NOT NULL,
    contacted_at         TIMESTAMP NOT NULL,
    channel              VARCHAR   NOT NULL CHECK (channel IN ('phone', 'chat', 'email')),
    reason               VARCHAR   NOT NULL CHECK (reason IN ('bill_higher_than_expected', 'billing_error',
                                   'bill_not_understood', 'wants_cheaper_plan', 'service_issue', 'cancel_request')),
    wait_seconds         INTEGER   CHECK (wait_seconds >= 0),
    handle_seconds       INTEGER   CHECK (handle_seconds >= 0),
    agent_id             BIGINT,
    is_identity_verified BOOLEAN   NOT NULL DEFAULT FALSE,
    resolution           VARCHAR   NOT NULL CHECK (resolution IN ('resolved', 'unresolved', 'escalated')),
    is_intent_to_cancel  BOOLEAN   NOT NULL DEFAULT FALSE,
    invoice_id           BIGINT,              -- the bill the contact is about, if any
    notes                VARCHAR
);

-- Grants snapshot the offer's terms, so later catalogue edits never change a grant.
-- first_period: the first billing period covered (the first not yet invoiced at grant time);
-- cycles: periods covered (percent_off, free_months), 1 for fixed_credit and plan_move.
CREATE TABLE IF NOT EXISTS offer_grants (
    grant_id     BIGINT    PRIMARY KEY,
    customer_id  BIGINT    NOT NULL,
    offer_id     INTEGER   NOT NULL,
    contact_id   BIGINT,
    granted_by   BIGINT,                      -- users.user_id
    granted_at   TIMESTAMP NOT NULL,
    kind         VARCHAR   NOT NULL,
    percent_off  INTEGER,
    credit_cents BIGINT,
    cycles       INTEGER   NOT NULL,
    first_period DATE      NOT NULL,
    assignment   VARCHAR   NOT NULL CHECK (assignment IN ('agent', 'holdout', 'import', 'system')),
    CHECK (day(first_period) = 1)
);

CREATE TABLE IF NOT EXISTS billing_runs (
    run_id           BIGINT    PRIMARY KEY,
    period_start     DATE      NOT NULL,
    started_at       TIMESTAMP NOT NULL,
    finished_at      TIMESTAMP,
    status           VARCHAR   NOT NULL CHECK (status IN ('running', 'finished', 'failed')),
    invoices_created BIGINT    NOT NULL DEFAULT 0,
    lines_created    BIGINT    NOT NULL DEFAULT 0,
    total_cents      BIGINT    NOT NULL DEFAULT 0,
    triggered_by     BIGINT
);

-- One invoice per subscription per period, enforced by the unique key. invoice_id IS the invoice
-- number: sequential and gap-free, shown as INV-00000042. Like the ledgers above it has no index:
-- each billing run numbers its invoices max(invoice_id) + row_number() in its own transaction, under
-- the billing_runs primary key that lets one run at a time commit, and the importer checks the
-- numbers it brings against the file and the database (an index on it would cost a third of a
-- million-invoice run). total = subtotal - discount + tax - credit = sum of its lines, always.
-- A finalized invoice is never edited: corrections are credit notes.
CREATE TABLE IF NOT EXISTS invoices (
    invoice_id      BIGINT  NOT NULL,
    subscription_id BIGINT  NOT NULL,
    customer_id     BIGINT  NOT NULL,
    plan_id         INTEGER NOT NULL,
    period_start    DATE    NOT NULL,
    period_end      DATE    NOT NULL,
    issued_on       DATE    NOT NULL,
    due_on          DATE    NOT NULL,
    currency        VARCHAR NOT NULL,
    subtotal_cents  BIGINT  NOT NULL,         -- plan/proration + usage + charges
    discount_cents  BIGINT  NOT NULL CHECK (discount_cents >= 0),
    tax_cents       BIGINT  NOT NULL,
    credit_cents    BIGINT  NOT NULL CHECK (credit_cents >= 0),
    total_cents     BIGINT  NOT NULL CHECK (total_cents >= 0),
    tax_rate_bp     INTEGER NOT NULL,
    status          VARCHAR NOT NULL DEFAULT 'finalized' CHECK (status IN ('draft', 'finalized', 'void')),
    run_id          BIGINT,
    finalized_at    TIMESTAMP,
    UNIQUE (subscription_id, period_start)
);

CREATE INDEX IF NOT EXISTS invoices_customer ON invoices (customer_id);

-- Lines: kind plan (full period), proration (part of a period), usage, charge, discount (negative),
-- tax, credit (negative). amount_cents signed; sum(amount_cents) = invoices.total_cents.
CREATE TABLE IF NOT EXISTS invoice_lines (
    invoice_id        BIGINT  NOT NULL,
    line_no           INTEGER NOT NULL,
    kind              VARCHAR NOT NULL CHECK (kind IN ('plan', 'proration', 'usage', 'charge', 'discount', 'tax', 'credit')),
    description       VARCHAR NOT NULL,
    quantity          BIGINT,                 -- days (plan, proration) or units over the allowance (usage)
    unit_amount_cents BIGINT,
    amount_cents      BIGINT  NOT NULL,
    grant_id          BIGINT,                 -- discount and credit lines
    charge_id         BIGINT                  -- charge lines
);

-- Corrections: a credit note references one invoice and never exceeds what is left to credit on it.
CREATE TABLE IF NOT EXISTS credit_notes (
    credit_note_id BIGINT    PRIMARY KEY,     -- sequential number, shown as CN-00000007
    invoice_id     BIGINT    NOT NULL,
    customer_id    BIGINT    NOT NULL,
    issued_at      TIMESTAMP NOT NULL,
    reason         VARCHAR   NOT NULL CHECK (reason IN ('billing_error', 'goodwill', 'service_issue', 'price_dispute', 'other')),
    net_cents      BIGINT    NOT NULL CHECK (net_cents >= 0),
    tax_cents      BIGINT    NOT NULL CHECK (tax_cents >= 0),
    total_cents    BIGINT    NOT NULL CHECK (total_cents > 0),
    issued_by      BIGINT,
    contact_id     BIGINT,
    note           VARCHAR
);

CREATE TABLE IF NOT EXISTS credit_note_lines (
    credit_note_id BIGINT  NOT NULL,
    line_no        INTEGER NOT NULL,
    description    VARCHAR NOT NULL,
    amount_cents   BIGINT  NOT NULL,          -- positive: the amount credited, tax included on a tax line
    PRIMARY KEY (credit_note_id, line_no)
);

-- Payments received (and failed attempts). Settled payments settle the oldest open invoices first;
-- what exceeds all invoices is the customer's credit balance (see the invoice_balances view).
CREATE TABLE IF NOT EXISTS payments (
    payment_id   BIGINT    NOT NULL,
    customer_id  BIGINT    NOT NULL,
    received_at  TIMESTAMP NOT NULL,
    amount_cents BIGINT    NOT NULL CHECK (amount_cents > 0),
    method       VARCHAR   NOT NULL CHECK (method IN ('card', 'direct_debit', 'bank_transfer', 'cash', 'imported')),
    status       VARCHAR   NOT NULL CHECK (status IN ('settled', 'failed')),
    reference    VARCHAR
);

CREATE INDEX IF NOT EXISTS payments_customer ON payments (customer_id);

-- Who viewed or changed what. detail is JSON text.
CREATE TABLE IF NOT EXISTS audit_log (
    audit_id  BIGINT    NOT NULL,
    logged_at TIMESTAMP NOT NULL,
    user_id   BIGINT,
    action    VARCHAR   NOT NULL,
    entity    VARCHAR   NOT NULL,
    entity_id VARCHAR,
    detail    VARCHAR
);

-- Invoice balances with payments allocated oldest invoice first (FIFO), derived, never stored.
-- Grain: one row per invoice. due = total - credited; paid = the part of the customer's settled
-- payments that reaches this invoice after all older invoices; balance = due - paid.
CREATE OR REPLACE VIEW invoice_balances AS
WITH credited AS (
    SELECT invoice_id, CAST(sum(total_cents) AS BIGINT) AS credited_cents
    FROM credit_notes GROUP BY invoice_id
),
paid AS (
    SELECT customer_id, CAST(sum(amount_cents) AS BIGINT) AS paid_cents
    FROM payments WHERE status = 'settled' GROUP BY customer_id
),
due AS (
    SELECT i.invoice_id, i.customer_id, i.subscription_id, i.period_start, i.issued_on, i.due_on,
           i.total_cents,
           coalesce(c.credited_cents, 0) AS credited_cents,
           i.total_cents - coalesce(c.credited_cents, 0) AS due_cents
    FROM invoices i LEFT JOIN credited c USING (invoice_id)
    WHERE i.status = 'finalized'
),
ordered AS (
    SELECT d.*,
           CAST(coalesce(sum(d.due_cents) OVER (PARTITION BY d.customer_id ORDER BY d.issued_on, d.invoice_id
                    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS BIGINT) AS due_before_cents,
           coalesce(p.paid_cents, 0) AS customer_paid_cents
    FROM due d LEFT JOIN paid p USING (customer_id)
),
final AS (
    SELECT invoice_id, customer_id, subscription_id, period_start, issued_on, due_on, total_cents,
           credited_cents, due_cents,
           CAST(least(due_cents, greatest(0, customer_paid_cents - due_before_cents)) AS BIGINT) AS paid_cents
    FROM ordered
)
SELECT *, due_cents - paid_cents AS balance_cents FROM final;
