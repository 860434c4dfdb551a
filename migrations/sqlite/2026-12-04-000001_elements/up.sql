-- Canonical data elements, versioned like adapters and forms: stewards
-- register them at run time; the shipped ones are stored at first start.
-- `enabled` is kept for the shape the versioned store shares; elements are
-- never disabled.
CREATE TABLE elements (
    id TEXT PRIMARY KEY,
    current_version INTEGER NOT NULL,
    enabled INTEGER NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE element_versions (
    element_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    definition TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    PRIMARY KEY (element_id, version)
);
