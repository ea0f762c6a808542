-- Every billable job once, by its identity (api, job_id): a job counted once is reported once.
CREATE TABLE jobs_seen (
    api          text        NOT NULL,
    job_id       text        NOT NULL,
    account_id   text        NOT NULL,
    customer_id  text        NOT NULL,
    window_start timestamptz NOT NULL,
    PRIMARY KEY (api, job_id)
);

-- The meter outbox: one row per customer, window and sequence number, written in the fold's transaction.
-- pending: open, the fold still adds jobs to it. sending: claimed by a sender, its value frozen (a send may
-- have reached Stripe, so a retry must carry the same identifier AND the same value). sent: Stripe took it.
-- expired: older than Stripe accepts (needs an invoice item). failed: Stripe refused it for good.
CREATE TABLE reports (
    customer_id     text        NOT NULL,
    window_start    timestamptz NOT NULL,
    seq             integer     NOT NULL CHECK (seq >= 0),
    account_id      text        NOT NULL,
    window_seconds  integer     NOT NULL CHECK (window_seconds > 0),
    identifier      text        NOT NULL UNIQUE,
    value           bigint      NOT NULL CHECK (value >= 0),
    state           text        NOT NULL DEFAULT 'pending'
                                CHECK (state IN ('pending', 'sending', 'sent', 'expired', 'failed')),
    attempts        integer     NOT NULL DEFAULT 0,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    claimed_until   timestamptz,
    sent_at         timestamptz,
    PRIMARY KEY (customer_id, window_start, seq)
);
-- At most one open row per customer and window: late jobs after a claim go to seq + 1.
CREATE UNIQUE INDEX reports_one_pending ON reports (customer_id, window_start) WHERE state = 'pending';
CREATE INDEX reports_due ON reports (window_start) WHERE state IN ('pending', 'sending');
CREATE INDEX reports_account ON reports (account_id, window_start);
