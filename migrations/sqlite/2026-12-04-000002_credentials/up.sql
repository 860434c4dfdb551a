-- Upstream credentials set by stewards at run time, sealed (ChaCha20-Poly1305,
-- bound to the name) under a key each node reads from its configuration.
CREATE TABLE credentials (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    sealed TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL
);
