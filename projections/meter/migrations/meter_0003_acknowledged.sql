-- An expired report (past the 35 days Stripe takes meter events for) is final, but its jobs are still unbilled:
-- it stays on `jobmeter doctor` until an operator billed them by hand and acknowledged it, with a note saying how
-- (an invoice item's id, say). Only an expired report can be acknowledged.
ALTER TABLE reports ADD COLUMN acknowledged_at timestamptz;
ALTER TABLE reports ADD COLUMN acknowledged_note text;
ALTER TABLE reports ADD CONSTRAINT reports_acknowledged_expired CHECK (acknowledged_at IS NULL OR state = 'expired');
