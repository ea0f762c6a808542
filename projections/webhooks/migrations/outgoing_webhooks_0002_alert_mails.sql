-- Alert emails: the fold's own view of each account's contact address (from the accounts topic), and one mail per
-- alert event, the outbox the alert mailer works through (leased, sent with no transaction open, then marked).
CREATE TABLE contacts (
    account_id    text        PRIMARY KEY,
    contact_email text,                   -- NULL: none on file; the billing inbox gets the account's alerts
    set_at        timestamptz NOT NULL
);

CREATE TABLE alert_mails (
    event_id      uuid        PRIMARY KEY REFERENCES events (event_id),  -- the alert's: a refold adds nothing
    account_id    text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    attempts      integer     NOT NULL DEFAULT 0,
    claimed_until timestamptz,            -- leased to one mailer while it sends
    last_error    text,
    sent_to       text,                   -- the address it went to (resolved when sent)
    sent_at       timestamptz
);
CREATE INDEX alert_mails_unsent ON alert_mails (created_at) WHERE sent_at IS NULL;
CREATE INDEX alert_mails_account ON alert_mails (account_id, created_at DESC);
