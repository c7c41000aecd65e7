-- The janitor finds revoked tokens past retention through this index, and expired ones
-- through tokens_by_expiry; with one condition over both (expires_at < t OR revoked_at < t)
-- each batch scanned the table. Partial: most tokens are never revoked.
CREATE INDEX tokens_by_revocation ON tokens (revoked_at) WHERE revoked_at IS NOT NULL;
