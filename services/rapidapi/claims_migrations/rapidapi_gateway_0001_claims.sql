-- The gateway's claim on declaring a job to RapidAPI: taken before the X-RapidAPI-Billing header is sent, so
-- concurrent polls in any number of processes declare a job at most once. Released if the declaration could
-- not be recorded on the bus (the next poll then declares it).
CREATE TABLE claims (
    api           text        NOT NULL,
    job_id        text        NOT NULL,
    rapidapi_user text        NOT NULL,
    account_id    text        NOT NULL,
    units         integer     NOT NULL CHECK (units > 0),
    claimed_at    timestamptz NOT NULL,
    PRIMARY KEY (api, job_id)
);
