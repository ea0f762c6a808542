-- PAYG's own view of the account registry, folded from the accounts topic (projections.account_view): the
-- registry is another consumer, and a job whose account it has not applied yet was never debited.
CREATE TABLE accounts (
    account_id  text PRIMARY KEY,
    model       text NOT NULL,
    customer_id text
);

-- Direct-channel jobs of accounts not registered yet: debited when the account's registration says PAYG,
-- dropped when it says otherwise.
CREATE TABLE parked_jobs (
    api          text        NOT NULL,
    job_id       text        NOT NULL,
    account_id   text        NOT NULL,
    completed_at timestamptz NOT NULL,
    event_id     uuid        NOT NULL,
    PRIMARY KEY (api, job_id)
);
CREATE INDEX parked_jobs_account ON parked_jobs (account_id);
