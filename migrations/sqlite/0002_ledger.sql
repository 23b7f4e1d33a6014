-- The registration-and-review ledger (design.md promises 5 and 6). Every row here is covered
-- by the Merkle log: verification recomputes leaf hashes from `entry` and roots from them, so
-- nothing stored is trusted on its own. Sequence numbers and sizes are BIGINT (i64) because
-- both engines store them so; a log never reaches 2^63 entries.

-- One row per entry. `entry` is the canonical encoding (the leaf hash is taken over it); the
-- other columns are denormalised copies for filtering (`ledger list`, reviews) and are never
-- used by verification.
CREATE TABLE ledger_entries (
    seq        BIGINT PRIMARY KEY,
    entry      BLOB NOT NULL,
    leaf_hash  BLOB NOT NULL,
    time_ms    BIGINT NOT NULL,
    caller     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    purpose    TEXT NOT NULL,
    outcome    TEXT NOT NULL
);
CREATE INDEX ledger_entries_by_caller ON ledger_entries (caller, seq);
CREATE INDEX ledger_entries_by_subject ON ledger_entries (subject, seq);
CREATE INDEX ledger_entries_by_time ON ledger_entries (time_ms);

-- Hashes of the complete perfect subtrees of level >= 1: node (level, node_index) covers
-- leaves [node_index << level, (node_index + 1) << level). Level 0 is the leaf hash column
-- above, not repeated here. Proofs and the writer's frontier are read from these.
CREATE TABLE ledger_nodes (
    level       BIGINT NOT NULL,
    node_index  BIGINT NOT NULL,
    hash        BLOB NOT NULL,
    PRIMARY KEY (level, node_index)
);

-- Signed tree heads, one per size.
CREATE TABLE ledger_sths (
    tree_size     BIGINT PRIMARY KEY,
    root_hash     BLOB NOT NULL,
    timestamp_ms  BIGINT NOT NULL,
    key_id        BLOB NOT NULL,
    signature     BLOB NOT NULL
);

-- The one-row head. Every writer (one per replica) locks it first in its transaction, which
-- serialises appenders across replicas; it also tells a writer whether another replica has
-- appended or signed since its last batch.
CREATE TABLE ledger_head (
    id                BIGINT PRIMARY KEY CHECK (id = 0),
    size              BIGINT NOT NULL,
    sth_size          BIGINT NOT NULL,
    sth_timestamp_ms  BIGINT NOT NULL
);
INSERT INTO ledger_head (id, size, sth_size, sth_timestamp_ms) VALUES (0, 0, 0, 0);
