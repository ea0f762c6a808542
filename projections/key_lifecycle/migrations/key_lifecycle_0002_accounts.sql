-- The key lifecycle's own view of the account registry, folded from the accounts topic (projections.account_view):
-- which account a Stripe customer bills is read here, never from the registry's tables, so the fold and its
-- replays decide from the log alone, whatever another consumer has applied.
CREATE TABLE accounts (
    account_id  text PRIMARY KEY,
    model       text NOT NULL,
    customer_id text
);
CREATE INDEX accounts_customer ON accounts (customer_id) WHERE customer_id IS NOT NULL;
