-- Each Stripe customer's dunning standing, with what the ordering rules remember (see projections/keys/dunning.py).
CREATE TABLE customers (
    customer_id    text        PRIMARY KEY,
    account_id     text,
    standing       text        NOT NULL CHECK (standing IN ('good', 'past_due', 'suspended')),
    reason         text,
    past_due_since timestamptz,            -- the open past-due episode's start (the dunning clock reads it)
    decided_at     timestamptz,            -- Stripe's time of the latest decisive event
    decided_ids    text[]      NOT NULL DEFAULT '{}',
    suspends       boolean     NOT NULL DEFAULT false,
    decided_reason text,
    signals        timestamptz[] NOT NULL DEFAULT '{}',
    clock          timestamptz,
    paid_invoices  text[]      NOT NULL DEFAULT '{}',
    decisions      integer     NOT NULL DEFAULT 0,  -- how many suspensions and restorations so far
    updated_at     timestamptz NOT NULL   -- the time of the last event that changed the row
);
CREATE INDEX customers_past_due ON customers (past_due_since) WHERE standing = 'past_due';

-- One row per change of standing to tell the customer about; the notifier sends it and marks it sent.
CREATE TABLE notifications (
    id              bigserial   PRIMARY KEY,
    notification_id uuid        NOT NULL UNIQUE,
    account_id      text        NOT NULL,
    customer_id     text        NOT NULL,
    kind            text        NOT NULL CHECK (kind IN ('suspended', 'restored')),
    reason          text        NOT NULL,
    recipient       text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    attempts        integer     NOT NULL DEFAULT 0,
    last_error      text,
    sent_at         timestamptz
);
CREATE INDEX notifications_unsent ON notifications (id) WHERE sent_at IS NULL;
