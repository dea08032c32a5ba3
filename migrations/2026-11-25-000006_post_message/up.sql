-- The chat hot path in one call with a cached plan: a plpgsql function keeps its statement's
-- plan for the connection's lifetime, where the same statement sent as text would be parsed
-- and planned on every message (most of PostgreSQL's CPU per message, measured).
-- Checks the sender is a member, returns the stored message for a repeated client_msg_id,
-- otherwise (unless the room is read-only) bumps the room's sequence under its row lock and
-- inserts. One statement: a failed insert (a concurrent retry of the same client_msg_id)
-- undoes the bump, so sequences stay gap-free.
CREATE FUNCTION airbar_post_message(
    p_room uuid, p_sender uuid, p_client_msg_id text, p_id uuid, p_body text, p_masked text,
    p_paid text[], p_ended text[], p_read_only_hours int)
RETURNS TABLE (id uuid, room_id uuid, seq bigint, sender_id uuid, body text,
               client_msg_id text, sent_at timestamptz, created boolean,
               member_sender uuid, member_traveler uuid)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH m AS (
        SELECT id AS match_id, sender_id, traveler_id,
               status = ANY(p_paid) AS paid,
               NOT (status = ANY(p_ended)) OR updated_at > now() - make_interval(hours => p_read_only_hours) AS writable
          FROM matches
         WHERE room_id = p_room AND (sender_id = p_sender OR traveler_id = p_sender)
    ), dup AS (
        SELECT c.id, c.room_id, c.seq, c.sender_id, c.body, c.client_msg_id, c.sent_at
          FROM chat_messages c
         WHERE c.room_id = p_room AND c.sender_id = p_sender AND c.client_msg_id = p_client_msg_id
    ), bump AS (
        INSERT INTO chat_rooms (room_id, match_id, last_seq)
        SELECT p_room, m.match_id, 1 FROM m WHERE m.writable AND NOT EXISTS (SELECT 1 FROM dup)
        ON CONFLICT (room_id) DO UPDATE SET last_seq = chat_rooms.last_seq + 1
        RETURNING last_seq
    ), ins AS (
        INSERT INTO chat_messages (id, room_id, seq, sender_id, body, client_msg_id)
        SELECT p_id, p_room, bump.last_seq, p_sender, CASE WHEN m.paid THEN p_body ELSE p_masked END, p_client_msg_id FROM bump, m
        RETURNING id, room_id, seq, sender_id, body, client_msg_id, sent_at
    )
    SELECT ins.*, true AS created, m.sender_id AS member_sender, m.traveler_id AS member_traveler
      FROM ins, m
    UNION ALL
    SELECT dup.*, false, m.sender_id, m.traveler_id FROM dup, m;
END
$$;
