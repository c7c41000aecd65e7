-- Monitoring: the audit log, hourly app usage and the networks tokens are used from. Keep in
-- step with migrations/postgres/0007.

-- Append-only: only the janitor deletes, past retention. No foreign keys: events outlive the
-- apps, users and tokens they name. AUTOINCREMENT: ids are never reused, so paging by id holds.
CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         INTEGER NOT NULL,
    event      TEXT NOT NULL,              -- gramkey_domain::audit::AuditKind
    outcome    TEXT NOT NULL,              -- gramkey_domain::audit::Outcome
    app_id     TEXT,
    user_id    INTEGER,
    token_id   INTEGER,                    -- tokens.id, never the token
    ip         TEXT,
    user_agent TEXT,
    detail     TEXT
);
CREATE INDEX audit_log_by_age ON audit_log (at);
CREATE INDEX audit_log_by_app ON audit_log (app_id, id);
CREATE INDEX audit_log_by_user ON audit_log (user_id, id);
CREATE INDEX audit_log_by_event ON audit_log (event, id);

-- Hourly usage per app, summed over every node's flushes (what app insights read). No foreign
-- keys: a flush naming an app deleted meanwhile must not fail; retention deletes the rows.
CREATE TABLE app_usage (
    app_id        TEXT NOT NULL,
    hour          INTEGER NOT NULL,        -- the hour's start
    calls         INTEGER NOT NULL DEFAULT 0,
    throttled     INTEGER NOT NULL DEFAULT 0,
    peak_call_pct INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (app_id, hour)
);
CREATE INDEX app_usage_by_hour ON app_usage (hour);

-- Error answers by Graph error code.
CREATE TABLE app_usage_errors (
    app_id TEXT NOT NULL,
    hour   INTEGER NOT NULL,
    code   INTEGER NOT NULL,
    n      INTEGER NOT NULL,
    PRIMARY KEY (app_id, hour, code)
);
CREATE INDEX app_usage_errors_by_hour ON app_usage_errors (hour);

-- The users who made calls, as a set, so distinct users can be counted over any hours.
CREATE TABLE app_usage_users (
    app_id  TEXT NOT NULL,
    hour    INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    PRIMARY KEY (app_id, hour, user_id)
);
CREATE INDEX app_usage_users_by_hour ON app_usage_users (hour);

-- The networks each token was used from (new-network alerts); they go with their token.
CREATE TABLE token_networks (
    token_id   INTEGER NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    network    TEXT NOT NULL,              -- e.g. 203.0.113.0/24
    first_seen INTEGER NOT NULL,
    PRIMARY KEY (token_id, network)
);
