-- Outgoing webhooks: where each account wants its events, the events that map to a webhook type, and one delivery
-- per (event, endpoint) — the outbox the sender works through. Secrets are nowhere: they are derived when signing.
CREATE TABLE endpoints (
    endpoint_id text        PRIMARY KEY,
    account_id  text        NOT NULL,
    url         text        NOT NULL,
    event_types text[]      NOT NULL,  -- empty: every type
    added_at    timestamptz NOT NULL,
    removed_at  timestamptz
);
CREATE INDEX endpoints_account ON endpoints (account_id);

-- Kept so an endpoint whose addition is folded after an event it should receive still gets it.
CREATE TABLE events (
    event_id    uuid        PRIMARY KEY,
    account_id  text        NOT NULL,
    type        text        NOT NULL,
    occurred_at timestamptz NOT NULL,
    data        text        NOT NULL  -- JSON, as sent
);
CREATE INDEX events_account_time ON events (account_id, occurred_at);

CREATE TABLE deliveries (
    delivery_id     uuid        PRIMARY KEY,  -- the `id` every attempt sends: uuid5(event id, endpoint id)
    event_id        uuid        NOT NULL,
    endpoint_id     text        NOT NULL,
    account_id      text        NOT NULL,
    type            text        NOT NULL,
    body            text        NOT NULL,     -- the exact JSON every attempt POSTs
    state           text        NOT NULL CHECK (state IN ('pending', 'delivered', 'failed', 'cancelled')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,              -- pending: due then (a claim moves it past its lease); else NULL
    last_attempt_at timestamptz,
    last_status     integer,                  -- the endpoint's HTTP status, NULL when no answer came
    last_error      text,
    delivered_at    timestamptz
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_account ON deliveries (account_id, created_at DESC);
