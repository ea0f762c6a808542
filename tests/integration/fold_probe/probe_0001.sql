-- A table whose CHECK refuses some rows, so the fold's isolation of bad records can be seen.
CREATE TABLE seen (job_id text PRIMARY KEY CHECK (job_id NOT LIKE 'poison%'));
