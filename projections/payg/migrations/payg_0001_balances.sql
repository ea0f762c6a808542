-- One row per PAYG account: its balance, how it recharges, and what the rules need to remember.
CREATE TABLE balances (
    account_id        text        PRIMARY KEY,
    currency          text        NOT NULL,
    balance_minor     bigint      NOT NULL DEFAULT 0,
    threshold_minor   bigint      NOT NULL CHECK (threshold_minor >= 0),
    recharge_minor    bigint      NOT NULL CHECK (recharge_minor >= 0),
    auto_recharge     boolean     NOT NULL DEFAULT false,
    customer_id       text,
    payment_method_id text,
    recharge_seq      integer     NOT NULL DEFAULT 0,   -- recharges requested so far
    failures          integer     NOT NULL DEFAULT 0,   -- failed recharges in a row
    backoff_until     timestamptz,
    keys_suspended    boolean     NOT NULL DEFAULT false,
    key_decisions     integer     NOT NULL DEFAULT 0,   -- the `sequence` of our KeySuspended/KeyRestored
    updated_at        timestamptz NOT NULL
);

-- Every movement of a balance, once, by the identity of its cause: job:<api>:<job_id> for a debit,
-- checkout:<cs_…> for a top-up, recharge:<pi_…> for a recharge. The primary key is the dedupe.
CREATE TABLE movements (
    movement_id  text        PRIMARY KEY,
    account_id   text        NOT NULL,
    kind         text        NOT NULL CHECK (kind IN ('debit', 'topup', 'recharge')),
    amount_minor bigint      NOT NULL,  -- signed: debits are negative
    reference    text        NOT NULL,
    at           timestamptz NOT NULL,
    event_id     uuid        NOT NULL
);
CREATE INDEX movements_account ON movements (account_id, at);

-- Recharges: written `requested` by the fold; the recharger charges the card (idempotency key = recharge_id)
-- and records the PaymentIntent and `sent_at`; the fold settles them from Stripe's events or a RechargeFailed.
CREATE TABLE recharges (
    recharge_id       text        PRIMARY KEY,
    account_id        text        NOT NULL,
    seq               integer     NOT NULL CHECK (seq >= 1),
    amount_minor      bigint      NOT NULL CHECK (amount_minor > 0),
    currency          text        NOT NULL,
    customer_id       text        NOT NULL,
    payment_method_id text        NOT NULL,
    state             text        NOT NULL DEFAULT 'requested' CHECK (state IN ('requested', 'succeeded', 'failed')),
    idempotency_key   text        NOT NULL UNIQUE,
    payment_intent_id text,
    attempts          integer     NOT NULL DEFAULT 0,
    claimed_until     timestamptz,
    sent_at           timestamptz,
    last_error        text,
    failure_code      text,
    requested_at      timestamptz NOT NULL,
    settled_at        timestamptz,
    UNIQUE (account_id, seq)
);
-- Never a second recharge while one is in flight, whatever the code above it does.
CREATE UNIQUE INDEX recharges_one_in_flight ON recharges (account_id) WHERE state = 'requested';
CREATE INDEX recharges_due ON recharges (requested_at) WHERE state = 'requested' AND sent_at IS NULL;

-- Customer notifications decided by the fold (a failed recharge), sent by the recharger's worker.
CREATE TABLE notifications (
    notification_id text        PRIMARY KEY,
    account_id      text        NOT NULL,
    kind            text        NOT NULL,
    recharge_id     text,
    amount_minor    bigint      NOT NULL,
    currency        text        NOT NULL,
    detail          text        NOT NULL,
    created_at      timestamptz NOT NULL,
    pay_url         text,
    sent_at         timestamptz
);
CREATE INDEX notifications_unsent ON notifications (created_at) WHERE sent_at IS NULL;
