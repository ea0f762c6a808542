-- Every job row pays for every index at fold time. The usage reads go to `hourly`; only the late-arrivals
-- report reads `jobs`, by log time, which grows with the log: a BRIN index serves it for almost nothing.
DROP INDEX jobs_account_completed;
DROP INDEX jobs_logged;
CREATE INDEX jobs_logged_brin ON jobs USING brin (logged_at);
