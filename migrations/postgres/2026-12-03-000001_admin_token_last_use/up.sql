-- When an admin token was last presented (microseconds since the epoch), as
-- each node stores it once a minute. NULL: never used since this was added.
ALTER TABLE admin_tokens ADD COLUMN last_used_at BIGINT;
