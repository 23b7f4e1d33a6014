-- Each record's public id: random, given once when the record is first stored (records.rs,
-- `RecordId`). The id recipients saw until now was `record_key`, a SHA-256 of the subject, item
-- and basis document, which a recipient can reverse by enumerating basis numbers; it no longer
-- leaves the node. Records stored before get their random id here (gen_random_uuid: built in
-- since PostgreSQL 13, from the server's strong random source).
ALTER TABLE records ADD COLUMN record_id BYTEA;
UPDATE records SET record_id = uuid_send(gen_random_uuid());
ALTER TABLE records ALTER COLUMN record_id SET NOT NULL;
CREATE UNIQUE INDEX records_by_id ON records (record_id);
