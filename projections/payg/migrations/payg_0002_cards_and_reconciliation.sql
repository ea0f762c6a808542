-- Set when anyone configured the account's recharging (PaygConfigured): a card saved by a top-up turns
-- auto-recharge on only for an account nobody configured, so an operator's "off" stands.
ALTER TABLE balances ADD COLUMN configured_at timestamptz;

-- Cards to capture: written by the fold when a top-up Checkout completes for an account without a card; the
-- worker retrieves the PaymentIntent, publishes PaygCardSaved and sets `sent_at`; the fold sets `saved_at`.
CREATE TABLE card_captures (
    payment_intent_id text        PRIMARY KEY,
    account_id        text        NOT NULL,
    session_id        text        NOT NULL,
    customer_id       text,
    requested_at      timestamptz NOT NULL,
    attempts          integer     NOT NULL DEFAULT 0,
    claimed_until     timestamptz,
    payment_method_id text,
    sent_at           timestamptz,
    last_error        text,
    saved_at          timestamptz
);
CREATE INDEX card_captures_due ON card_captures (requested_at) WHERE sent_at IS NULL AND saved_at IS NULL;

-- When the reconciler last asked Stripe about a recharge that was sent and never settled by a webhook.
ALTER TABLE recharges ADD COLUMN checked_at timestamptz;
CREATE INDEX recharges_unsettled ON recharges (sent_at) WHERE state = 'requested' AND sent_at IS NOT NULL;
