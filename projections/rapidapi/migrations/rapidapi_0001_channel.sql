-- Marketplace users and the accounts derived from them; the current plan is the last change folded.
CREATE TABLE users (
    rapidapi_user text        PRIMARY KEY,
    account_id    text        NOT NULL UNIQUE,
    plan          text,
    plan_seen_at  timestamptz,
    linked_at     timestamptz NOT NULL
);

-- Every change of plan, in the order the log holds them (a repeat of the current plan is not a change).
CREATE TABLE plans (
    rapidapi_user text        NOT NULL,
    seen_at       timestamptz NOT NULL,
    plan          text        NOT NULL,
    PRIMARY KEY (rapidapi_user, seen_at, plan)
);

-- What RapidAPI was told, once per job; period is the UTC month of the declaration (RapidAPI's month).
CREATE TABLE declared (
    api            text        NOT NULL,
    job_id         text        NOT NULL,
    rapidapi_user  text        NOT NULL,
    account_id     text        NOT NULL,
    billing_object text        NOT NULL,
    units          bigint      NOT NULL CHECK (units > 0),
    declared_at    timestamptz NOT NULL,
    period         text        NOT NULL,
    PRIMARY KEY (api, job_id)
);
CREATE INDEX declared_user_period ON declared (rapidapi_user, period);

-- Rows of RapidAPI's exports as imported (a re-import of the same file is the same rows); the reconciler
-- waits until a month's rows have settled (no new row logged for a while) before it compares.
CREATE TABLE reported_rows (
    source_digest         text   NOT NULL,
    line                  int    NOT NULL,
    source_file           text   NOT NULL,
    period                text   NOT NULL,
    rapidapi_user         text   NOT NULL,
    subscription_owner_id text,
    api_name              text   NOT NULL,
    plan                  text,
    billing_object        text   NOT NULL,
    units                 bigint NOT NULL CHECK (units >= 0),
    logged_at             timestamptz NOT NULL,  -- the broker's log time: replay reproduces it
    PRIMARY KEY (source_digest, line)
);

-- RapidAPI's figure per user, API, object and month: rows of one file add up; a later file replaces it.
CREATE TABLE reported (
    period         text   NOT NULL,
    rapidapi_user  text   NOT NULL,
    api_name       text   NOT NULL,
    billing_object text   NOT NULL,
    units          bigint NOT NULL CHECK (units >= 0),
    source_digest  text   NOT NULL,
    PRIMARY KEY (period, rapidapi_user, api_name, billing_object)
);

-- The ledger's side: jobs that came through RapidAPI, once per (api, job_id).
CREATE TABLE ledger_jobs (
    api          text        NOT NULL,
    job_id       text        NOT NULL,
    account_id   text        NOT NULL,
    completed_at timestamptz NOT NULL,
    period       text        NOT NULL,
    PRIMARY KEY (api, job_id)
);
CREATE INDEX ledger_jobs_account_period ON ledger_jobs (account_id, period);
