-- Withdrawal notices (CreditQuery/ListWithdrawals). A restored or delisted record stops being
-- shared at once (promise 8), but a department that received it earlier keeps using it unless
-- told: these columns say when this node withdrew a record it had been sharing (node clock,
-- Unix milliseconds) and by which change. Set only by the change that ended the sharing (the
-- first of a restoration and a removal from a list); NULL for records never withdrawn and for
-- records ingested already restored or removed, which never reached anyone.
ALTER TABLE records ADD COLUMN withdrawn_ms BIGINT;
ALTER TABLE records ADD COLUMN withdrawn_by TEXT
    CHECK (withdrawn_by IN ('restored', 'removed_from_list'));

-- Recipients page through withdrawals by (withdrawn_ms, record_key); only withdrawn records
-- are indexed, a small part of the table.
CREATE INDEX records_by_withdrawal ON records (withdrawn_ms, record_key)
    WHERE withdrawn_ms IS NOT NULL;
