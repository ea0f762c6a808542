-- Top-ups (completed Checkout Sessions) of accounts PAYG has not seen registered yet, e.g. folded first after an
-- outage: credited when the registration says PAYG. One we opened for an account that turns out to be billed
-- otherwise stays here, refused, for an operator (as a top-up of a known non-PAYG account is dead-lettered).
CREATE TABLE parked_topups (
    session_id text        PRIMARY KEY,
    account_id text        NOT NULL,
    envelope   text        NOT NULL,  -- the StripeEventReceived as logged
    refused_at timestamptz
);
CREATE INDEX parked_topups_account ON parked_topups (account_id);
