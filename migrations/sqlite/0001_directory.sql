-- The directory: users, groups and memberships, scoped per connection (SQLite).
-- Attributes identity providers filter on are copied from the JSON document into indexed
-- columns; *_lc columns hold the case-folded form for caseExact=false attributes.

CREATE TABLE users (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT, -- stable insertion order for paging
    id             TEXT NOT NULL UNIQUE,
    connection     TEXT NOT NULL,
    user_name      TEXT NOT NULL,
    user_name_lc   TEXT NOT NULL,
    external_id    TEXT,
    display_name   TEXT,
    display_name_lc TEXT,
    active         INTEGER NOT NULL,
    created        TEXT NOT NULL,
    last_modified  TEXT NOT NULL,
    version        INTEGER NOT NULL,
    doc            TEXT NOT NULL
);
CREATE UNIQUE INDEX users_user_name ON users (connection, user_name_lc);
CREATE INDEX users_external_id ON users (connection, external_id);
CREATE INDEX users_display_name ON users (connection, display_name_lc);
CREATE INDEX users_last_modified ON users (connection, last_modified);
CREATE INDEX users_active ON users (connection, active);
CREATE INDEX users_seq ON users (connection, seq);

CREATE TABLE user_emails (
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    connection TEXT NOT NULL,
    value_lc   TEXT NOT NULL,
    PRIMARY KEY (user_id, value_lc)
);
CREATE INDEX user_emails_value ON user_emails (connection, value_lc);

CREATE TABLE groups (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    connection      TEXT NOT NULL,
    display_name    TEXT NOT NULL,
    display_name_lc TEXT NOT NULL,
    external_id     TEXT,
    created         TEXT NOT NULL,
    last_modified   TEXT NOT NULL,
    version         INTEGER NOT NULL,
    member_count    INTEGER NOT NULL DEFAULT 0,
    doc             TEXT NOT NULL
);
CREATE INDEX groups_display_name ON groups (connection, display_name_lc);
CREATE INDEX groups_external_id ON groups (connection, external_id);
CREATE INDEX groups_last_modified ON groups (connection, last_modified);
CREATE INDEX groups_seq ON groups (connection, seq);

-- One row per membership. member_id names a user or a group of the same connection.
CREATE TABLE group_members (
    group_id    TEXT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    member_id   TEXT NOT NULL,
    member_type TEXT NOT NULL,
    connection  TEXT NOT NULL,
    PRIMARY KEY (group_id, member_id)
);
CREATE INDEX group_members_member ON group_members (member_id);

-- SCIM bearer tokens: only the SHA-256 of the secret is kept.
CREATE TABLE scim_tokens (
    id         TEXT PRIMARY KEY,
    connection TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    label      TEXT NOT NULL,
    created    TEXT NOT NULL
);
CREATE INDEX scim_tokens_connection ON scim_tokens (connection);
