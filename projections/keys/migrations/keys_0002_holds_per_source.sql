-- One hold per (account, source): dunning, PAYG and caps each hold or release the account's keys on their own,
-- numbered by their own decisions; a key works only while no source holds it.
-- Rows from before named no source: their cause tells it (PAYG's start with `payg:`). Such a row kept only the
-- latest decision across both sources, so a hold the other source had overwritten is not recovered here:
-- `jobmeter replay keys --swap` rebuilds every hold exactly from the log.
ALTER TABLE suspensions ADD COLUMN source text;
UPDATE suspensions SET source = CASE WHEN cause LIKE 'payg:%' THEN 'payg' ELSE 'dunning' END;
ALTER TABLE suspensions ALTER COLUMN source SET NOT NULL;
ALTER TABLE suspensions ADD CONSTRAINT suspensions_source CHECK (source IN ('dunning', 'payg', 'cap'));
ALTER TABLE suspensions DROP CONSTRAINT suspensions_pkey;
ALTER TABLE suspensions ADD PRIMARY KEY (account_id, source);
-- When a hold ends by itself (a cap: its period's end): the key check's Retry-After.
ALTER TABLE suspensions ADD COLUMN until timestamptz;
