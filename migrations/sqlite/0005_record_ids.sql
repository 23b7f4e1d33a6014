-- Each record's public id: random, given once when the record is first stored (records.rs,
-- `RecordId`). The id recipients saw until now was `record_key`, a SHA-256 of the subject, item
-- and basis document, which a recipient can reverse by enumerating basis numbers; it no longer
-- leaves the node. Records stored before get their random id here.
ALTER TABLE records ADD COLUMN record_id BLOB;
UPDATE records SET record_id = randomblob(16);
CREATE UNIQUE INDEX records_by_id ON records (record_id);
