-- The subscription's base price beside its period grid: what the period includes (the plan's jobs), for the alerts
-- on included jobs. Null with no live subscription.
ALTER TABLE grids ADD COLUMN base_price_id text;
