-- Group commit for chat: many messages (of any rooms) stored in one statement, so one
-- round trip and one WAL flush serve a whole batch. The caller sorts a batch by room, so two
-- batches in flight lock room rows in the same order and cannot deadlock. A unique violation
-- (a concurrent retry of one of the client_msg_ids) fails the whole batch; the caller then
-- posts its messages one by one. Returns one row per stored or found message, with the
-- 1-based index of its input; a message without a row was refused (not a member, read-only).
CREATE FUNCTION airbar_post_messages(
    p_rooms uuid[], p_senders uuid[], p_client_msg_ids text[], p_ids uuid[], p_bodies text[],
    p_masked text[], p_paid text[], p_ended text[], p_read_only_hours int)
RETURNS TABLE (idx int, id uuid, room_id uuid, seq bigint, sender_id uuid, body text,
               client_msg_id text, sent_at timestamptz, created boolean,
               member_sender uuid, member_traveler uuid)
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_rooms, 1), 0) LOOP
        RETURN QUERY SELECT i, r.*
          FROM airbar_post_message(p_rooms[i], p_senders[i], p_client_msg_ids[i], p_ids[i],
                                   p_bodies[i], p_masked[i], p_paid, p_ended,
                                   p_read_only_hours) r;
    END LOOP;
END
$$;
