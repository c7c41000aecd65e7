-- Long-lived exchange and refresh (issue 3). Keep in step with migrations/postgres/0002.
-- exchanged_at: when a short-lived token was exchanged for a long-lived one (only once).
-- parent_id: the token this one was exchanged or refreshed from.
ALTER TABLE tokens ADD COLUMN exchanged_at INTEGER;
ALTER TABLE tokens ADD COLUMN parent_id INTEGER;
-- A replayed code revokes its token and every token derived from it.
CREATE INDEX tokens_by_parent ON tokens (parent_id) WHERE parent_id IS NOT NULL;
