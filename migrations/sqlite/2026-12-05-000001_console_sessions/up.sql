-- Console sessions: the hash of the cookie (never the cookie), the admin
-- token the session was opened with (its role is the token's, as it is now),
-- and the session's CSRF token.
CREATE TABLE console_sessions (
    id_hash TEXT PRIMARY KEY,
    token_id TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    ended_at BIGINT
);
