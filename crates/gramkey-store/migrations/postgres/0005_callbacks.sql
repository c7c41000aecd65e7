-- Deauthorize and data-deletion callbacks (issue 3). Keep in step with migrations/sqlite/0005.
-- The client secret is derived from the server key and secret_seed, never stored; apps created
-- before this migration have no seed until their secret is rotated.
ALTER TABLE apps ADD COLUMN secret_seed BYTEA;
ALTER TABLE apps ADD COLUMN deauthorize_url TEXT;
ALTER TABLE apps ADD COLUMN data_deletion_url TEXT;

-- The outbox: one row per callback to deliver, kept after delivery until the janitor's cutoff.
CREATE TABLE callbacks (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id            TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    kind              TEXT NOT NULL CHECK (kind IN ('deauthorize', 'data_deletion')),
    user_id           BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    scoped_id         TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    state             TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   BIGINT NOT NULL,
    url               TEXT,
    last_error        TEXT,
    finished_at       BIGINT,
    confirmation_code TEXT,
    status_url        TEXT
);
CREATE INDEX callbacks_due ON callbacks (next_attempt_at) WHERE state = 'pending';
CREATE INDEX callbacks_finished ON callbacks (finished_at) WHERE state <> 'pending';
CREATE INDEX callbacks_by_app ON callbacks (app_id, id);
