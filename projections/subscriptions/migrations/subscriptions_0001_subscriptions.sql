-- Each Stripe subscription as the newest Stripe event about it left it. Stripe delivers events out of order and
-- more than once: a row only moves forward, to an event created later (ties broken by event id).
CREATE TABLE subscriptions (
    subscription_id      text        PRIMARY KEY,
    customer_id          text        NOT NULL,
    status               text        NOT NULL,
    price_ids            text[]      NOT NULL,
    base_item_id         text,
    base_price_id        text,
    interval             text,
    current_period_start timestamptz,
    current_period_end   timestamptz,
    cancel_at_period_end boolean     NOT NULL DEFAULT false,
    last_event_created   timestamptz NOT NULL,
    last_event_id        text        NOT NULL
);
CREATE INDEX subscriptions_customer ON subscriptions (customer_id);
