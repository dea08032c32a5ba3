DROP TABLE positions;
ALTER TABLE matches DROP COLUMN arriving_at, DROP COLUMN custody_head, DROP COLUMN custody_seq;
DROP TABLE custody_events;
