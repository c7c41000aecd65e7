-- Legacy v1's "Enforce signed requests" app setting.
ALTER TABLE apps ADD COLUMN signed_requests INTEGER NOT NULL DEFAULT 0;
