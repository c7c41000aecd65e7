-- Legacy v1's "Enforce signed requests" app setting.
ALTER TABLE apps ADD COLUMN signed_requests BOOLEAN NOT NULL DEFAULT FALSE;
