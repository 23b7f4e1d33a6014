-- The ledger's lookups by caller and by subject, built off the commit path (ledger::lookup).
-- An index on ledger_entries by subject (and by caller, with many callers) put one random
-- B-tree page into every group commit per entry; built here by a background task in large
-- sorted batches, they cost a fraction of that and nothing on the path a query waits for.
-- Entries below `indexed` are in ledger_lookup; listings scan the rest (the last seconds of
-- traffic) from ledger_entries itself, so they are complete however far behind the task is.
-- Like the other copies in ledger_entries, verification never reads them.
CREATE TABLE ledger_lookup (
    field  TEXT NOT NULL,   -- 'caller' or 'subject'
    value  TEXT NOT NULL,
    seq    BIGINT NOT NULL,
    PRIMARY KEY (field, value, seq)
) WITHOUT ROWID;

CREATE TABLE ledger_lookup_head (
    id       BIGINT PRIMARY KEY CHECK (id = 0),
    indexed  BIGINT NOT NULL
);
INSERT INTO ledger_lookup_head (id, indexed) VALUES (0, 0);

-- The indexes this replaces (ledger_entries_by_caller, ledger_entries_by_subject) are dropped
-- by `Store::open` after the activity split, not here: on a store already split they are in
-- the activity file, and a migration writing both files would not commit atomically.
