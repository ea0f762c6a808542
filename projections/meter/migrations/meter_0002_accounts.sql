-- The meter's own view of the account registry, folded from the accounts topic, so that which jobs are billable
-- never depends on how far another consumer has read.
CREATE TABLE accounts (
    account_id  text PRIMARY KEY,
    model       text NOT NULL,
    customer_id text
);

-- Jobs of accounts not yet known, or subscription accounts not yet linked to a Stripe customer: held here until
-- the account's events arrive, then counted (or dropped, when the account turns out not to bill through Stripe).
CREATE TABLE parked (
    api          text        NOT NULL,
    job_id       text        NOT NULL,
    account_id   text        NOT NULL,
    completed_at timestamptz NOT NULL,
    PRIMARY KEY (api, job_id)
);
CREATE INDEX parked_account ON parked (account_id);
