-- Catalogue: adapters, forms, partners and their keys. Every change bumps
-- catalog_version so that each node reloads what changed.
CREATE TABLE catalog_version (
    id INTEGER PRIMARY KEY,
    version BIGINT NOT NULL
);
INSERT INTO catalog_version (id, version) VALUES (1, 1);

CREATE TABLE adapters (
    id TEXT PRIMARY KEY,
    current_version INTEGER NOT NULL,
    enabled INTEGER NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE adapter_versions (
    adapter_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    manifest TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    PRIMARY KEY (adapter_id, version)
);

CREATE TABLE forms (
    id TEXT PRIMARY KEY,
    current_version INTEGER NOT NULL,
    enabled INTEGER NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE form_versions (
    form_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    definition TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    PRIMARY KEY (form_id, version)
);

CREATE TABLE partners (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    policy TEXT NOT NULL,
    rate_per_minute INTEGER NOT NULL,
    burst INTEGER NOT NULL,
    enabled INTEGER NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    partner_id TEXT NOT NULL REFERENCES partners (id),
    key_hash TEXT NOT NULL UNIQUE,
    label TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX api_keys_partner ON api_keys (partner_id);

CREATE TABLE admin_tokens (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    label TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

-- The audit trail: one row per prefill or exchange, hash-chained in seq order.
CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    record_id TEXT NOT NULL,
    ts BIGINT NOT NULL,
    request_id TEXT NOT NULL,
    partner_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT,
    purpose TEXT,
    resource TEXT NOT NULL,
    adapters TEXT NOT NULL,
    elements TEXT NOT NULL,
    outcome TEXT NOT NULL,
    status INTEGER NOT NULL,
    latency_us BIGINT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_log_subject ON audit_log (subject, ts);
CREATE INDEX audit_log_partner ON audit_log (partner_id, ts);
CREATE INDEX audit_log_ts ON audit_log (ts);

-- The head of the chain: one row, locked by the writer of each batch so that
-- several nodes sharing one database extend one chain.
CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
