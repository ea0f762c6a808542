-- API keys: only the sha256 of the secret and a short visible prefix are kept.
CREATE TABLE keys (
    key_id        text        PRIMARY KEY,
    account_id    text        NOT NULL,
    prefix        text        NOT NULL,
    key_hash      text        NOT NULL UNIQUE,
    state         text        NOT NULL CHECK (state IN ('active', 'revoked')),
    issued_at     timestamptz NOT NULL,
    revoked_at    timestamptz,
    revoke_reason text
);
CREATE INDEX keys_account ON keys (account_id);

-- Per account: suspended or not, why, and the decision number that set it (the highest wins).
CREATE TABLE suspensions (
    account_id   text        PRIMARY KEY,
    suspended    boolean     NOT NULL,
    reason       text        NOT NULL,
    cause        text        NOT NULL,
    effective_at timestamptz NOT NULL,
    sequence     integer     NOT NULL
);
