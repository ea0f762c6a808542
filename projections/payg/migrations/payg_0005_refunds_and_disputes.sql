-- Money going back: a refund (refund:<ch_…>:<cumulative refunded>) or a dispute (dispute:<dp_…>, and
-- dispute-won:<dp_…> when it is won) moves the balance of the account its payment credited, once.
ALTER TABLE movements DROP CONSTRAINT movements_kind_check;
ALTER TABLE movements ADD CONSTRAINT movements_kind_check
    CHECK (kind IN ('debit', 'topup', 'recharge', 'refund', 'dispute'));

-- The PaymentIntent that paid a top-up or a recharge: how a refund or a dispute finds the account it credited.
ALTER TABLE movements ADD COLUMN payment_intent_id text;
UPDATE movements SET payment_intent_id = reference WHERE kind = 'recharge';
-- Top-ups credited before this column: their PaymentIntent is known where the fold asked for their card.
UPDATE movements m SET payment_intent_id = c.payment_intent_id
    FROM card_captures c WHERE m.kind = 'topup' AND m.movement_id = 'checkout:' || c.session_id;
CREATE INDEX movements_payment_intent ON movements (payment_intent_id) WHERE payment_intent_id IS NOT NULL;
-- A charge's refunds so far, a dispute's debit: looked up by the charge or the dispute.
CREATE INDEX movements_reversals ON movements (reference) WHERE kind IN ('refund', 'dispute');
