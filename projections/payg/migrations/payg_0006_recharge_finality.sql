-- A recharge ends `succeeded`, `failed` or `canceled` (no longer needed, or from history too old to charge:
-- no failure counted, nobody told).
ALTER TABLE recharges DROP CONSTRAINT recharges_state_check;
ALTER TABLE recharges ADD CONSTRAINT recharges_state_check
    CHECK (state IN ('requested', 'succeeded', 'failed', 'canceled'));

-- When the fold recorded the recharge, by the wall clock: the recharger's bound (give up, or charge) runs from
-- here, not from `requested_at`, the log time of the jobs, which is hours old when the consumer was behind.
-- Rows from before this column only have their log time.
ALTER TABLE recharges ADD COLUMN recorded_at timestamptz;
UPDATE recharges SET recorded_at = requested_at;
ALTER TABLE recharges ALTER COLUMN recorded_at SET NOT NULL;
ALTER TABLE recharges ALTER COLUMN recorded_at SET DEFAULT now();

-- Why a recharge was canceled (RechargeCanceled.reason).
ALTER TABLE recharges ADD COLUMN cancel_reason text;

DROP INDEX recharges_due;
CREATE INDEX recharges_due ON recharges (recorded_at) WHERE state = 'requested' AND sent_at IS NULL;
