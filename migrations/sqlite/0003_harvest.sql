-- Anti-harvesting state (design.md promise 7). It lives in the store, not in memory, so that
-- several replicas of one node over one PostgreSQL enforce one quota, and memory stays bounded
-- however many callers and subjects there are.

-- The distinct subjects each caller has obtained records about, per quota window. Asking
-- again about a subject already here costs nothing.
CREATE TABLE quota_subjects (
    caller     TEXT NOT NULL,
    window_id  BIGINT NOT NULL,
    subject    TEXT NOT NULL,
    PRIMARY KEY (caller, window_id, subject)
) WITHOUT ROWID;

-- How many rows of quota_subjects each caller has in each window: the row every charge
-- updates under the condition used + new <= quota, so concurrent replicas cannot overshoot.
CREATE TABLE quota_usage (
    caller     TEXT NOT NULL,
    window_id  BIGINT NOT NULL,
    used       BIGINT NOT NULL,
    PRIMARY KEY (caller, window_id)
) WITHOUT ROWID;

-- Callers suspended after an enumeration alert, until an officer lifts the suspension
-- (itself a ledger entry). alert_seq is the ledger entry of the alert.
CREATE TABLE suspensions (
    caller     TEXT PRIMARY KEY,
    since_ms   BIGINT NOT NULL,
    alert_seq  BIGINT NOT NULL,
    reason     TEXT NOT NULL
) WITHOUT ROWID;
