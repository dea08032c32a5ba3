DROP TABLE IF EXISTS match_events;
DROP FUNCTION IF EXISTS match_events_append_only();
DROP TABLE IF EXISTS matches;
