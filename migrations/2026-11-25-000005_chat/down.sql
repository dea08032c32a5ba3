DROP TABLE IF EXISTS chat_reads;
DROP TABLE IF EXISTS chat_messages;
DROP TABLE IF EXISTS chat_rooms;
