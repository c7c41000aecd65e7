-- The web pages (issue 7). Keep in step with migrations/postgres/0008_access.sql.

-- Invitations to take a role on an app. The role is held (in app_roles) only once accepted.
CREATE TABLE app_invitations (
    app_id      TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role        TEXT NOT NULL CHECK (role IN ('developer', 'tester')),
    state       TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'accepted', 'declined')),
    invited_at  INTEGER NOT NULL,
    invited_by  INTEGER REFERENCES users (id) ON DELETE SET NULL,
    answered_at INTEGER,
    PRIMARY KEY (app_id, user_id)
);
CREATE INDEX app_invitations_by_user ON app_invitations (user_id);

-- The apps a person removed: the Removed tab of "Apps and Websites", and the app-scoped id a
-- later data-deletion request names. Kept until the janitor's token cutoff.
CREATE TABLE grant_removals (
    app_id     TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    scoped_id  TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    granted_at INTEGER NOT NULL,
    removed_at INTEGER NOT NULL,
    -- When the person last asked the app to delete their data (at removal or later).
    deletion_requested_at INTEGER,
    PRIMARY KEY (app_id, user_id)
);
CREATE INDEX grant_removals_by_time ON grant_removals (removed_at);

-- A person's grants and roles, read by their settings page and the dashboard.
CREATE INDEX grants_by_user ON grants (user_id);
CREATE INDEX app_roles_by_user ON app_roles (user_id);
