-- An admin token may carry an expiry (microseconds since the epoch); past it
-- the token is refused. NULL: it does not expire.
ALTER TABLE admin_tokens ADD COLUMN expires_at BIGINT;
