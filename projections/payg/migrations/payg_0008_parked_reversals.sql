-- A refund or a dispute folded before the credit of the payment it reverses (Stripe does not order its webhooks,
-- and a lagging or replaying consumer may meet them first) waits here, by PaymentIntent, as it was logged, and is
-- applied right after that payment credits a balance (top-up or recharge), with the same rules, once.
-- One row per distinct fact (refund:<charge>:<cumulative refunded>, dispute:<dispute>:<status>:<open|closed>): a
-- redelivery parks nothing more. Refunds and disputes of payments that never credit PAYG (a subscription
-- invoice's charge) stay here, harmless; the doctor does not list them (docs/payg.md).
CREATE TABLE parked_reversals (
    parked_key text PRIMARY KEY,
    seq bigint GENERATED ALWAYS AS IDENTITY,  -- the order they were folded in, the order they are applied in
    payment_intent_id text NOT NULL,
    envelope text NOT NULL,  -- the StripeEventReceived as logged: applied as if it came now
    logged_at timestamptz NOT NULL,
    parked_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX parked_reversals_intent ON parked_reversals (payment_intent_id, seq);
