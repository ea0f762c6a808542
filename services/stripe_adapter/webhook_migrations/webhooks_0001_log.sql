-- Stripe events the bridge has had acknowledged by Kafka, with the raw body for the console.
-- Written only after the publish succeeded: a row here means "on the bus", and answers a redelivery.
CREATE TABLE log (
    stripe_event_id text        PRIMARY KEY,
    type            text        NOT NULL,
    customer_id     text,
    account_id      text,
    created         timestamptz NOT NULL,
    livemode        boolean     NOT NULL,
    body            text        NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    deliveries      integer     NOT NULL DEFAULT 1
);
CREATE INDEX log_customer ON log (customer_id, created);
CREATE INDEX log_received ON log (received_at DESC);
