-- RFC 6749 refresh tokens, opt-in per app (issue 3). Keep in step with migrations/postgres/0004.
ALTER TABLE apps ADD COLUMN refresh_tokens INTEGER NOT NULL DEFAULT 0;
