-- Webhooks (issue 18). Keep in step with migrations/postgres/0011.
-- An app's subscription to the instagram object: where to POST and which fields. The verify
-- token served once, for the verification, and is not kept.
CREATE TABLE webhook_subscriptions (
    app_id       TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    object       TEXT NOT NULL,
    callback_url TEXT NOT NULL,
    fields       TEXT NOT NULL,          -- comma-separated
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (app_id, object)
);

-- The accounts that subscribed an app (POST /{ig-user-id}/subscribed_apps).
CREATE TABLE subscribed_apps (
    app_id     TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    fields     TEXT NOT NULL,            -- comma-separated, as subscribed_fields gave them
    created_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, app_id)
);

-- The outbox of notifications, kept after delivery until the janitor's callback cutoff.
CREATE TABLE webhook_deliveries (
    id              INTEGER PRIMARY KEY,
    app_id          TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    field           TEXT NOT NULL,
    body            TEXT NOT NULL,
    test            BOOLEAN NOT NULL DEFAULT FALSE,
    created_at      INTEGER NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    url             TEXT,
    status          INTEGER,
    last_error      TEXT,
    finished_at     INTEGER
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (finished_at) WHERE state <> 'pending';
CREATE INDEX webhook_deliveries_by_app ON webhook_deliveries (app_id, id);
