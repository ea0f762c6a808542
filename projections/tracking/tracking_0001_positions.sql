-- How far this projection has read each partition, written in the same transaction as its rows.
CREATE TABLE positions (
    topic       text    NOT NULL,
    partition   integer NOT NULL,
    next_offset bigint  NOT NULL,
    PRIMARY KEY (topic, partition)
);
