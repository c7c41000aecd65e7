-- Long-lived exchange and refresh (issue 3). Keep in step with migrations/postgres/0002.
-- exchanged_at: when a short-lived token was exchanged for a long-lived one (only once).
-- parent_id: the token this one was exchanged or refreshed from.
ALTER TABLE tokens ADD COLUMN exchanged_at INTEGER;
ALTER TABLE tokens ADD COLUMN parent_id INTEGER;
