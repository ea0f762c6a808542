-- Whether a balance is below its threshold as the rules last saw it, and how often it went below: `BalanceLow` is
-- raised on the way down only (the flag set), re-armed once the balance is back at or above (the flag cleared);
-- `low_crossings` is the last one's ordinal, its natural id. Both change in the transaction that folds the batch,
-- so a refold raises nothing new. A balance opens low (it has never been at its threshold: no alert until it has
-- been); balances from before start as they are now, with no alert for the past.
ALTER TABLE balances ADD COLUMN low boolean NOT NULL DEFAULT true;
ALTER TABLE balances ADD COLUMN low_crossings integer NOT NULL DEFAULT 0;
UPDATE balances SET low = balance_minor < threshold_minor;
