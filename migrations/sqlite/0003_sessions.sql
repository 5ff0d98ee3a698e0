-- Sessions, logout and audit (expand only: new tables and nullable columns, so a build
-- without them keeps running beside one with them during a rolling upgrade).

-- A pimgate browser session: one sign-in at the connection's IdP, which every client the
-- person then signs in to shares (one grant per client, naming the session). The browser
-- holds a random cookie; only its SHA-256 is kept. Ending the session revokes its grants.
CREATE TABLE oidc_sessions (
    id                TEXT PRIMARY KEY,
    cookie_hash       TEXT NOT NULL UNIQUE,
    connection        TEXT NOT NULL,
    user_id           TEXT NOT NULL,
    -- The IdP's subject and session id (`sid`), for its back-channel logout.
    upstream_sub      TEXT NOT NULL,
    upstream_sid      TEXT,
    -- The IdP's ID token, sent back as `id_token_hint` when the person signs out.
    upstream_id_token TEXT,
    token_groups      TEXT,
    groups_overage    INTEGER NOT NULL DEFAULT 0,
    auth_time         TEXT NOT NULL,
    created           TEXT NOT NULL,
    last_seen         TEXT NOT NULL,
    expires           TEXT NOT NULL,
    ended             TEXT,
    end_reason        TEXT
);
CREATE INDEX oidc_sessions_user ON oidc_sessions (connection, user_id);
CREATE INDEX oidc_sessions_upstream ON oidc_sessions (connection, upstream_sid);
CREATE INDEX oidc_sessions_upstream_sub ON oidc_sessions (connection, upstream_sub);
CREATE INDEX oidc_sessions_expires ON oidc_sessions (expires);

-- The session a grant was made in (NULL for grants made before sessions existed), and when
-- its refresh token was last used (the idle lifetime counts from there).
ALTER TABLE oauth_grants ADD COLUMN session_id TEXT;
ALTER TABLE oauth_grants ADD COLUMN last_used TEXT;
CREATE INDEX oauth_grants_session ON oauth_grants (session_id);

-- Audit events: every sign-in, refresh, revocation, logout and refused attempt.
CREATE TABLE audit_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          TEXT NOT NULL,
    kind        TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    connection  TEXT,
    user_id     TEXT,
    user_name   TEXT,
    client_id   TEXT,
    session_id  TEXT,
    reason      TEXT
);
CREATE INDEX audit_events_user ON audit_events (user_id, at);
CREATE INDEX audit_events_user_name ON audit_events (user_name, at);
CREATE INDEX audit_events_at ON audit_events (at);
