-- RFC 6749 refresh tokens, opt-in per app (issue 3). Keep in step with migrations/sqlite/0004.
ALTER TABLE apps ADD COLUMN refresh_tokens BOOLEAN NOT NULL DEFAULT FALSE;
