-- What the stream has seen of each legacy job: enough for events.legacy.step to emit each job once.
CREATE TABLE progress (
    api      text    NOT NULL,
    job_id   text    NOT NULL,
    emitted  boolean NOT NULL,
    failed   boolean NOT NULL,
    pages    bigint  NOT NULL,
    PRIMARY KEY (api, job_id)
);
