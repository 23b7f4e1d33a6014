-- Credit records a department's node holds. Dates are ISO 'YYYY-MM-DD' text (they compare
-- correctly as text); times are Unix milliseconds.
CREATE TABLE subjects (
    id          TEXT PRIMARY KEY,          -- canonical USCC or resident identity number
    kind        TEXT NOT NULL CHECK (kind IN ('legal_person', 'natural_person')),
    created_ms  BIGINT NOT NULL
);

CREATE TABLE records (
    record_key          BLOB PRIMARY KEY,   -- SHA-256(subject, item, basis kind, basis number)
    subject_id          TEXT NOT NULL REFERENCES subjects(id),
    item_id             TEXT NOT NULL,
    fields              TEXT NOT NULL,      -- JSON object: field name -> value text
    basis_kind          TEXT NOT NULL CHECK (basis_kind <> ''),
    basis_number        TEXT NOT NULL CHECK (basis_number <> ''),
    basis_date          TEXT NOT NULL,
    basis_issuer        TEXT NOT NULL CHECK (basis_issuer <> ''),
    severity            TEXT,
    decision_date       TEXT NOT NULL,
    disclosure_end      TEXT,
    restored_on         TEXT,
    restoration_basis   TEXT,
    designated_on       TEXT,
    removal_conditions  TEXT,
    removed_on          TEXT,
    removal_basis       TEXT,
    ingested_ms         BIGINT NOT NULL
) WITHOUT ROWID;

CREATE INDEX records_by_subject ON records (subject_id, item_id);
