-- Linked procedures (Decree 63/2024): flows, versioned like forms, and the
-- dossiers carried through them. A dossier's state lives here, never only in
-- a node's memory: each step is claimed by one node at a time with a lease
-- (lease_owner, lease_until) and picked up again when its next_at comes.
CREATE TABLE flows (
    id TEXT PRIMARY KEY,
    current_version INTEGER NOT NULL,
    enabled INTEGER NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE flow_versions (
    flow_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    definition TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    PRIMARY KEY (flow_id, version)
);

CREATE TABLE dossiers (
    code TEXT PRIMARY KEY,
    flow_id TEXT NOT NULL,
    flow_version INTEGER NOT NULL,
    partner_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    -- SHA-256 of the request a repeated key must match.
    request_hash TEXT NOT NULL,
    requester_id TEXT NOT NULL,
    subject_id TEXT,
    declaration TEXT NOT NULL,
    procedures TEXT NOT NULL,
    callback_url TEXT,
    callback_secret TEXT,
    state TEXT NOT NULL,
    received_on TEXT NOT NULL,
    due_on TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (partner_id, idempotency_key)
);

CREATE INDEX dossiers_subject ON dossiers (subject_id);

-- The last sequence number given to each agency's dossiers on each day.
CREATE TABLE dossier_days (
    agency TEXT NOT NULL,
    day TEXT NOT NULL,
    last INTEGER NOT NULL,
    PRIMARY KEY (agency, day)
);

CREATE TABLE dossier_steps (
    dossier_code TEXT NOT NULL,
    step_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    state TEXT NOT NULL,
    reference TEXT,
    request TEXT,
    result TEXT,
    reason TEXT,
    supplement TEXT,
    supplement_deadline TEXT,
    attempts INTEGER NOT NULL,
    next_at BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until BIGINT NOT NULL,
    started_on TEXT,
    due_on TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (dossier_code, step_id)
);

CREATE INDEX dossier_steps_due ON dossier_steps (next_at);

CREATE TABLE dossier_events (
    seq BIGSERIAL PRIMARY KEY,
    dossier_code TEXT NOT NULL,
    step_id TEXT,
    state TEXT NOT NULL,
    detail TEXT NOT NULL,
    at BIGINT NOT NULL
);

CREATE INDEX dossier_events_dossier ON dossier_events (dossier_code, seq);

-- Status changes to send to a dossier's callback URL, in order.
CREATE TABLE dossier_callbacks (
    seq BIGSERIAL PRIMARY KEY,
    dossier_code TEXT NOT NULL,
    body TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_at BIGINT NOT NULL,
    lease_until BIGINT NOT NULL,
    delivered_at BIGINT,
    last_error TEXT
);

CREATE INDEX dossier_callbacks_due ON dossier_callbacks (delivered_at, next_at);

-- The province's electronic records of what its procedures gave: a birth
-- certificate, a card, a decision, each kept for reuse.
CREATE TABLE results (
    id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    number TEXT,
    issued_on TEXT,
    agency TEXT NOT NULL,
    dossier_code TEXT NOT NULL,
    step_id TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE INDEX results_owner ON results (owner_id, created_at);
