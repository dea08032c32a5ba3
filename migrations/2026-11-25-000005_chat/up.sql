-- Chat: one room per match (matches.room_id), messages numbered per room without gaps.

CREATE TABLE chat_rooms (
    room_id    uuid PRIMARY KEY,
    match_id   uuid NOT NULL UNIQUE REFERENCES matches (id) ON DELETE CASCADE,
    -- The last sequence number handed out; bumped under the row lock in the message's
    -- transaction, so sequences are gap-free and ordered even with concurrent senders.
    last_seq   bigint NOT NULL DEFAULT 0 CHECK (last_seq >= 0)
);

CREATE TABLE chat_messages (
    id             uuid PRIMARY KEY,
    room_id        uuid NOT NULL REFERENCES chat_rooms (room_id) ON DELETE CASCADE,
    seq            bigint NOT NULL CHECK (seq > 0),
    sender_id      uuid NOT NULL REFERENCES users (id),
    body           text NOT NULL CHECK (char_length(body) BETWEEN 1 AND 2000),
    client_msg_id  text NOT NULL CHECK (char_length(client_msg_id) BETWEEN 1 AND 64),
    sent_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (room_id, seq),
    -- A retried send is stored once.
    UNIQUE (room_id, sender_id, client_msg_id)
);

CREATE TABLE chat_reads (
    room_id        uuid NOT NULL REFERENCES chat_rooms (room_id) ON DELETE CASCADE,
    user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    last_read_seq  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, user_id)
);
