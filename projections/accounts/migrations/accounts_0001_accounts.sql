CREATE TABLE accounts (
    account_id         text        PRIMARY KEY,
    model              text        NOT NULL CHECK (model IN ('subscription', 'payg', 'rapidapi')),
    stripe_customer_id text,
    display_name       text,
    registered_at      timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL
);
CREATE UNIQUE INDEX accounts_stripe_customer ON accounts (stripe_customer_id) WHERE stripe_customer_id IS NOT NULL;
