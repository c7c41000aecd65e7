-- `app rotate-secret --grace` (issue 3): the previous secret's hash stays valid until
-- previous_secret_expires_at. Keep in step with migrations/postgres/0003.
ALTER TABLE apps ADD COLUMN previous_secret_hash BLOB;
ALTER TABLE apps ADD COLUMN previous_secret_expires_at INTEGER;
