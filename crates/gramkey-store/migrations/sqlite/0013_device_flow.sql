-- The device authorization grant (RFC 8628, issue 20). Keep in step with migrations/postgres/0013.
-- An app opts in, as it does for refresh tokens.
ALTER TABLE apps ADD COLUMN device_flow INTEGER NOT NULL DEFAULT 0;

-- A pair of codes a device asked for. Both codes are stored only as hashes. An approval
-- writes an authorization code under `device_hash`, which the device's next poll redeems.
CREATE TABLE device_authorizations (
    device_hash    BLOB PRIMARY KEY,
    user_code_hash BLOB NOT NULL UNIQUE,
    app_id         TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    scopes         TEXT NOT NULL,
    state          TEXT NOT NULL DEFAULT 'pending',   -- pending, approved, denied
    user_id        INTEGER REFERENCES users (id) ON DELETE CASCADE,
    poll_interval  INTEGER NOT NULL,
    last_polled_at INTEGER,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL
);
CREATE INDEX device_authorizations_by_expiry ON device_authorizations (expires_at);
