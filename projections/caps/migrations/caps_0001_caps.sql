-- Each job counted once, whatever how often it was published (the key, as the ledger's).
CREATE TABLE seen (
    api          text        NOT NULL,
    job_id       text        NOT NULL,
    account_id   text        NOT NULL,
    completed_at timestamptz NOT NULL,
    PRIMARY KEY (api, job_id)
);
-- An account's jobs by time: recounted onto a new period grid when its subscription's grid changes.
CREATE INDEX seen_account ON seen (account_id, completed_at);

-- Jobs per account, billing period and API surface.
CREATE TABLE usage (
    account_id   text        NOT NULL,
    period_start timestamptz NOT NULL,
    api          text        NOT NULL,
    jobs         bigint      NOT NULL,
    PRIMARY KEY (account_id, period_start, api)
);

-- The caps in force: scope '' is every API surface. The latest set for a scope wins (log order, per account).
CREATE TABLE caps (
    account_id  text        NOT NULL,
    scope       text        NOT NULL,
    jobs        integer     NOT NULL,
    hard        boolean     NOT NULL,
    spend_minor bigint,
    set_at      timestamptz NOT NULL,
    PRIMARY KEY (account_id, scope)
);

-- Per account: the latest time the log has shown for it (a job, a cap, a tick: its current period is the one
-- holding that time), the period it is in, and this source's hold on its keys with its decision number.
CREATE TABLE standing (
    account_id   text        PRIMARY KEY,
    latest_at    timestamptz NOT NULL,
    period_start timestamptz NOT NULL,
    period_end   timestamptz NOT NULL,
    held         boolean     NOT NULL DEFAULT false,
    reason       text,
    decisions    integer     NOT NULL DEFAULT 0
);
CREATE INDEX standing_held_until ON standing (period_end) WHERE held;

-- The alerts already raised: once per (account, period, limit, threshold).
CREATE TABLE alerts (
    account_id   text        NOT NULL,
    period_start timestamptz NOT NULL,
    alert        text        NOT NULL,
    raised_at    timestamptz NOT NULL,
    PRIMARY KEY (account_id, period_start, alert)
);

-- This fold's own view of the registry (projections.account_view): which Stripe customer bills an account.
CREATE TABLE accounts (
    account_id  text PRIMARY KEY,
    model       text NOT NULL,
    customer_id text
);
CREATE INDEX accounts_customer ON accounts (customer_id);

-- Per Stripe customer, its subscription's period grid as of the latest subscription event (by Stripe's
-- `created`); an ended subscription keeps no grid (the calendar month applies).
CREATE TABLE grids (
    customer_id  text        PRIMARY KEY,
    anchor       timestamptz,
    months       integer,
    period_start timestamptz,
    period_end   timestamptz,
    created      timestamptz NOT NULL
);
