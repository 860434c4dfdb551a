-- Dossiers the province's one-stop system reports, their status changes,
-- and the outbox that carries both to the national portal: each change is
-- written to the outbox in the same transaction as the change itself, and
-- delivered in order per dossier.
CREATE TABLE sync_dossiers (
    code TEXT PRIMARY KEY,
    partner_id TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    record TEXT NOT NULL,
    status TEXT NOT NULL,
    events INTEGER NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE sync_events (
    dossier_code TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    event TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (dossier_code, seq),
    UNIQUE (dossier_code, event_id)
);

CREATE TABLE portal_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    dossier_code TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_at BIGINT NOT NULL,
    lease_until BIGINT NOT NULL,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    delivered_at BIGINT
);

CREATE INDEX portal_outbox_due ON portal_outbox (state, next_at);
CREATE INDEX portal_outbox_dossier ON portal_outbox (dossier_code, id);
