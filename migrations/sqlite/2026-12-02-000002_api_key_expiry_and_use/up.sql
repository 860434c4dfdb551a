-- An API key may carry an expiry (microseconds since the epoch, like every
-- timestamp here); past it the key is refused. NULL: it does not expire.
ALTER TABLE api_keys ADD COLUMN expires_at BIGINT;
-- When the key was last used, as the nodes record it (at most a minute late).
ALTER TABLE api_keys ADD COLUMN last_used_at BIGINT;
