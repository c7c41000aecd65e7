-- gramkey schema v1 (SQLite). Keep in step with migrations/postgres/0001_init.sql.
-- Times are Unix seconds. Tokens and codes are stored only as SHA-256 hashes, client secrets
-- only as HMAC-SHA256 under the server key, passwords only as Argon2id PHC strings.

CREATE TABLE apps (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    secret_hash   BLOB NOT NULL,
    redirect_uris TEXT NOT NULL,          -- newline-separated
    scopes        TEXT NOT NULL,          -- comma-separated
    mode          TEXT NOT NULL CHECK (mode IN ('development', 'live')),
    created_at    INTEGER NOT NULL
);

CREATE TABLE users (
    id                  INTEGER PRIMARY KEY,
    username            TEXT NOT NULL UNIQUE,
    password_hash       TEXT NOT NULL,
    full_name           TEXT NOT NULL DEFAULT '',
    biography           TEXT NOT NULL DEFAULT '',
    website             TEXT NOT NULL DEFAULT '',
    account_type        TEXT NOT NULL DEFAULT 'PERSONAL',
    profile_picture_url TEXT NOT NULL DEFAULT '',
    followers_count     INTEGER NOT NULL DEFAULT 0,
    follows_count       INTEGER NOT NULL DEFAULT 0,
    created_at          INTEGER NOT NULL
);

CREATE TABLE app_roles (
    app_id     TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       TEXT NOT NULL CHECK (role IN ('admin', 'developer', 'tester')),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (app_id, user_id)
);

CREATE TABLE grants (
    app_id     TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    scoped_id  TEXT NOT NULL UNIQUE,
    scopes     TEXT NOT NULL,
    granted_at INTEGER NOT NULL,
    PRIMARY KEY (app_id, user_id)
);

CREATE TABLE media (
    id             TEXT PRIMARY KEY,
    user_id        INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    media_type     TEXT NOT NULL CHECK (media_type IN ('IMAGE', 'VIDEO', 'CAROUSEL_ALBUM')),
    caption        TEXT NOT NULL DEFAULT '',
    media_url      TEXT NOT NULL,
    permalink      TEXT NOT NULL,
    thumbnail_url  TEXT,
    created_at     INTEGER NOT NULL,
    like_count     INTEGER NOT NULL DEFAULT 0,
    comments_count INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX media_by_user ON media (user_id, created_at DESC);

CREATE TABLE auth_codes (
    hash           BLOB PRIMARY KEY,
    app_id         TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    user_id        INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    scoped_id      TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    scopes         TEXT NOT NULL,
    code_challenge TEXT,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    redeemed_at    INTEGER,
    -- The token issued from this code, so a replay can revoke it (RFC 6749 §4.1.2).
    token_id       INTEGER
);
CREATE INDEX auth_codes_by_expiry ON auth_codes (expires_at);

CREATE TABLE tokens (
    id            INTEGER PRIMARY KEY,
    hash          BLOB NOT NULL UNIQUE,
    kind          TEXT NOT NULL,
    flavour       TEXT NOT NULL,
    app_id        TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    user_id       INTEGER REFERENCES users (id) ON DELETE CASCADE,
    scopes        TEXT NOT NULL,
    issued_at     INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    revoked_at    INTEGER,
    revoke_reason TEXT
);
CREATE INDEX tokens_by_app_user ON tokens (app_id, user_id);
CREATE INDEX tokens_by_expiry ON tokens (expires_at);
