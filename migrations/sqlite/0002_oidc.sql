-- Single sign-on: the keys pimgate signs tokens with, and the grants behind them (SQLite).

-- Signing keys. A key is published in the JWKS from `created`, signs from `signs_from`
-- until the next generation starts signing, and is deleted once the last token it signed
-- has expired. The private key is AES-256-GCM encrypted with the key-encryption key.
CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY,
    generation  INTEGER NOT NULL UNIQUE,
    alg         TEXT NOT NULL,
    public_jwk  TEXT NOT NULL,
    private_key TEXT NOT NULL,
    created     TEXT NOT NULL,
    signs_from  TEXT NOT NULL
);

-- One grant per completed sign-in: who signed in to which client, with which scope and
-- login-token groups. Tokens name their grant (`sid`); a refresh token is kept hashed.
CREATE TABLE oauth_grants (
    id           TEXT PRIMARY KEY,
    client_id    TEXT NOT NULL,
    connection   TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    scope        TEXT NOT NULL,
    token_groups TEXT,
    auth_time    TEXT NOT NULL,
    created      TEXT NOT NULL,
    expires      TEXT NOT NULL,
    refresh_hash TEXT UNIQUE,
    revoked      TEXT,
    -- 1 when the login token's groups claim was an overage marker (SCIM groups were used).
    groups_overage INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX oauth_grants_user ON oauth_grants (connection, user_id);

-- Refresh tokens already rotated away (SHA-256, hex): presenting one again is the sign of a
-- stolen token, and revokes its grant. Deleted with the grant.
CREATE TABLE oauth_refresh_used (
    refresh_hash TEXT PRIMARY KEY,
    grant_id     TEXT NOT NULL REFERENCES oauth_grants (id) ON DELETE CASCADE
);
CREATE INDEX oauth_refresh_used_grant ON oauth_refresh_used (grant_id);
CREATE INDEX oauth_grants_expires ON oauth_grants (expires);
