-- Jobs the ingest endpoint has had acknowledged by Kafka, to answer "duplicate" to a retry.
-- Written only after the publish succeeded; the ledger, not this table, is what counts jobs.
CREATE TABLE receipts (
    api         text        NOT NULL,
    job_id      text        NOT NULL,
    account_id  text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (api, job_id)
);
