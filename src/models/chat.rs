//! The chat tables: rooms (with their sequence counter), messages, read markers.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::schema::{chat_messages, chat_reads, chat_rooms, matches};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = chat_messages, check_for_backend(diesel::pg::Pg))]
pub struct MessageRow {
    pub id: Uuid,
    pub room_id: Uuid,
    pub seq: i64,
    pub sender_id: Uuid,
    pub body: String,
    pub client_msg_id: String,
    pub sent_at: DateTime<Utc>,
}

/// The match a room belongs to: (match id, sender, traveler, status, updated_at).
pub type RoomMatch = (Uuid, Uuid, Uuid, String, DateTime<Utc>);

pub async fn room_match(
    conn: &mut AsyncPgConnection,
    room_id: Uuid,
) -> QueryResult<Option<RoomMatch>> {
    matches::table
        .filter(matches::room_id.eq(room_id))
        .select((
            matches::id,
            matches::sender_id,
            matches::traveler_id,
            matches::status,
            matches::updated_at,
        ))
        .first(conn)
        .await
        .optional()
}

/// Creates the room's row if it has none yet.
pub async fn ensure_room(
    conn: &mut AsyncPgConnection,
    room_id: Uuid,
    match_id: Uuid,
) -> QueryResult<usize> {
    diesel::insert_into(chat_rooms::table)
        .values((
            chat_rooms::room_id.eq(room_id),
            chat_rooms::match_id.eq(match_id),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await
}

/// Hands out the room's next sequence number; the room row stays locked until commit.
pub async fn next_seq(
    conn: &mut AsyncPgConnection,
    room_id: Uuid,
    match_id: Uuid,
) -> QueryResult<i64> {
    ensure_room(conn, room_id, match_id).await?;
    diesel::update(chat_rooms::table.find(room_id))
        .set(chat_rooms::last_seq.eq(chat_rooms::last_seq + 1))
        .returning(chat_rooms::last_seq)
        .get_result(conn)
        .await
}

pub async fn last_seq(conn: &mut AsyncPgConnection, room_id: Uuid) -> QueryResult<i64> {
    Ok(chat_rooms::table
        .find(room_id)
        .select(chat_rooms::last_seq)
        .first(conn)
        .await
        .optional()?
        .unwrap_or(0))
}

pub async fn find_by_client_id(
    conn: &mut AsyncPgConnection,
    room_id: Uuid,
    sender: Uuid,
    client_msg_id: &str,
) -> QueryResult<Option<MessageRow>> {
    chat_messages::table
        .filter(chat_messages::room_id.eq(room_id))
        .filter(chat_messages::sender_id.eq(sender))
        .filter(chat_messages::client_msg_id.eq(client_msg_id))
        .select(MessageRow::as_select())
        .first(conn)
        .await
        .optional()
}

#[allow(clippy::too_many_arguments)]
pub async fn insert(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    room_id: Uuid,
    seq: i64,
    sender: Uuid,
    body: &str,
    client_msg_id: &str,
) -> QueryResult<MessageRow> {
    diesel::insert_into(chat_messages::table)
        .values((
            chat_messages::id.eq(id),
            chat_messages::room_id.eq(room_id),
            chat_messages::seq.eq(seq),
            chat_messages::sender_id.eq(sender),
            chat_messages::body.eq(body),
            chat_messages::client_msg_id.eq(client_msg_id),
        ))
        .returning(MessageRow::as_returning())
        .get_result(conn)
        .await
}

/// Messages with `seq > after`, in order, at most `limit`.
pub async fn after(
    conn: &mut AsyncPgConnection,
    room_id: Uuid,
    after: i64,
    limit: i64,
) -> QueryResult<Vec<MessageRow>> {
    chat_messages::table
        .filter(chat_messages::room_id.eq(room_id))
        .filter(chat_messages::seq.gt(after))
        .order(chat_messages::seq.asc())
        .limit(limit)
        .select(MessageRow::as_select())
        .load(conn)
        .await
}

pub async fn mark_read(
    conn: &mut AsyncPgConnection,
    room_id: Uuid,
    user: Uuid,
    seq: i64,
) -> QueryResult<usize> {
    diesel::insert_into(chat_reads::table)
        .values((
            chat_reads::room_id.eq(room_id),
            chat_reads::user_id.eq(user),
            chat_reads::last_read_seq.eq(seq),
        ))
        .on_conflict((chat_reads::room_id, chat_reads::user_id))
        .do_update()
        .set(
            chat_reads::last_read_seq.eq(diesel::dsl::sql::<diesel::sql_types::BigInt>(
                "greatest(chat_reads.last_read_seq, excluded.last_read_seq)",
            )),
        )
        .execute(conn)
        .await
}

/// The rooms of the user's matches: (room, match, status, last seq, my last read seq).
pub async fn rooms_of(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    limit: i64,
) -> QueryResult<Vec<(Uuid, Uuid, String, Option<i64>, Option<i64>)>> {
    matches::table
        .left_join(chat_rooms::table.on(chat_rooms::room_id.eq(matches::room_id)))
        .left_join(
            chat_reads::table.on(chat_reads::room_id
                .eq(matches::room_id)
                .and(chat_reads::user_id.eq(user))),
        )
        .filter(
            matches::sender_id
                .eq(user)
                .or(matches::traveler_id.eq(user)),
        )
        .order(matches::id.desc())
        .limit(limit)
        .select((
            matches::room_id,
            matches::id,
            matches::status,
            chat_rooms::last_seq.nullable(),
            chat_reads::last_read_seq.nullable(),
        ))
        .load(conn)
        .await
}

/// The people `user` has a match (and so a room) with, newest first, at most `limit`.
pub async fn counterparts(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    limit: i64,
) -> QueryResult<Vec<Uuid>> {
    let pairs: Vec<(Uuid, Uuid)> = matches::table
        .filter(
            matches::sender_id
                .eq(user)
                .or(matches::traveler_id.eq(user)),
        )
        .order(matches::id.desc())
        .limit(limit)
        .select((matches::sender_id, matches::traveler_id))
        .load(conn)
        .await?;
    let mut out: Vec<Uuid> = Vec::with_capacity(pairs.len());
    for (sender, traveler) in pairs {
        let other = if sender == user { traveler } else { sender };
        if !out.contains(&other) {
            out.push(other);
        }
    }
    Ok(out)
}
