-- Sandbox tools (issue 19). Keep in step with migrations/postgres/0012.
-- An app's test clock: its time is the real time plus this many seconds.
ALTER TABLE apps ADD COLUMN clock_offset INTEGER NOT NULL DEFAULT 0;
-- Fault rules added since the last clear: while 0, no call needs to look for rules.
ALTER TABLE apps ADD COLUMN fault_rules INTEGER NOT NULL DEFAULT 0;

CREATE TABLE test_faults (
    id              INTEGER PRIMARY KEY,
    app_id          TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    path            TEXT NOT NULL,
    method          TEXT,
    fault           TEXT NOT NULL,
    ms              INTEGER NOT NULL DEFAULT 0,
    remaining       INTEGER,                 -- matching calls it still fires for; NULL: not counted
    probability_ppm INTEGER,                 -- fires with this chance in a million; NULL: always
    expires_at      INTEGER,
    created_at      INTEGER NOT NULL
);
CREATE INDEX test_faults_by_app ON test_faults (app_id, id);
