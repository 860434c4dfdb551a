-- The audit trail's seq becomes the table's rowid (INTEGER PRIMARY KEY): a
-- BIGINT primary key is a separate unique index in SQLite, one more b-tree
-- written for every record. The rows, their order and the indexes stay as
-- they were.
CREATE TABLE audit_log_new (
    seq INTEGER PRIMARY KEY,
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
INSERT INTO audit_log_new
    SELECT seq, record_id, ts, request_id, partner_id, key_id, action, subject, purpose, resource,
           adapters, elements, outcome, status, latency_us, detail, prev_hash, hash
    FROM audit_log ORDER BY seq;
DROP TABLE audit_log;
ALTER TABLE audit_log_new RENAME TO audit_log;
CREATE INDEX audit_log_subject ON audit_log (subject, ts);
CREATE INDEX audit_log_partner ON audit_log (partner_id, ts);
CREATE INDEX audit_log_ts ON audit_log (ts);
