-- `app rotate-secret --grace` (issue 3): the previous secret's hash stays valid until
-- previous_secret_expires_at. Keep in step with migrations/sqlite/0003.
ALTER TABLE apps ADD COLUMN previous_secret_hash BYTEA;
ALTER TABLE apps ADD COLUMN previous_secret_expires_at BIGINT;
