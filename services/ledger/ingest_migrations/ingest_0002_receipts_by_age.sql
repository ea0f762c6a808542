-- Receipts are pruned by age (services.retention). They are written in time order, so a BRIN index finds the
-- old ones for almost nothing at insert time.
CREATE INDEX receipts_received_brin ON receipts USING brin (received_at);
