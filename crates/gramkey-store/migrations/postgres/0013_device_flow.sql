-- The device authorization grant (RFC 8628, issue 20). Keep in step with migrations/sqlite/0013.
-- An app opts in, as it does for refresh tokens.
ALTER TABLE apps ADD COLUMN device_flow BOOLEAN NOT NULL DEFAULT FALSE;

-- A pair of codes a device asked for. Both codes are stored only as hashes. An approval
-- writes an authorization code under `device_hash`, which the device's next poll redeems.
CREATE TABLE device_authorizations (
    device_hash    BYTEA PRIMARY KEY,
    user_code_hash BYTEA NOT NULL UNIQUE,
    app_id         TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    scopes         TEXT NOT NULL,
    state          TEXT NOT NULL DEFAULT 'pending',   -- pending, approved, denied
    user_id        BIGINT REFERENCES users (id) ON DELETE CASCADE,
    poll_interval  BIGINT NOT NULL,
    last_polled_at BIGINT,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL
);
CREATE INDEX device_authorizations_by_expiry ON device_authorizations (expires_at);
