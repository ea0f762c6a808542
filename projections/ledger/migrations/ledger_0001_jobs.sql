-- Every job once, by its identity (api, job_id). logged_at is the broker's log time, so replay
-- reproduces it and "arrived after the period was reported" is a question the log can answer.
CREATE TABLE jobs (
    api          text        NOT NULL,
    job_id       text        NOT NULL,
    account_id   text        NOT NULL,
    channel      text        NOT NULL,
    mode         text        NOT NULL,
    completed_at timestamptz NOT NULL,
    logged_at    timestamptz NOT NULL,
    event_id     uuid        NOT NULL,
    PRIMARY KEY (api, job_id)
);
CREATE INDEX jobs_account_completed ON jobs (account_id, completed_at);
CREATE INDEX jobs_logged ON jobs (logged_at);

-- Counts per account, API surface, channel and UTC hour; days, months and billing periods are sums of hours.
CREATE TABLE hourly (
    account_id text        NOT NULL,
    api        text        NOT NULL,
    channel    text        NOT NULL,
    hour       timestamptz NOT NULL,
    jobs       bigint      NOT NULL CHECK (jobs >= 0),
    PRIMARY KEY (account_id, api, channel, hour)
);
