-- An API key may carry an expiry (microseconds since the epoch, like every
-- timestamp here); past it the key is refused. NULL: it does not expire.
ALTER TABLE api_keys ADD COLUMN expires_at BIGINT;
