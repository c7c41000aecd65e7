-- Sandbox tools (issue 19). Keep in step with migrations/sqlite/0012.
-- An app's test clock: its time is the real time plus this many seconds.
ALTER TABLE apps ADD COLUMN clock_offset BIGINT NOT NULL DEFAULT 0;
-- Fault rules added since the last clear: while 0, no call needs to look for rules.
ALTER TABLE apps ADD COLUMN fault_rules BIGINT NOT NULL DEFAULT 0;

CREATE TABLE test_faults (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id          TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    path            TEXT NOT NULL,
    method          TEXT,
    fault           TEXT NOT NULL,
    ms              BIGINT NOT NULL DEFAULT 0,
    remaining       BIGINT,                  -- matching calls it still fires for; NULL: not counted
    probability_ppm BIGINT,                  -- fires with this chance in a million; NULL: always
    expires_at      BIGINT,
    created_at      BIGINT NOT NULL
);
CREATE INDEX test_faults_by_app ON test_faults (app_id, id);
