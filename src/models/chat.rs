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

pub async fn last_seq(conn: &mut AsyncPgConnection, room_id: Uuid) -> QueryResult<i64> {
    Ok(chat_rooms::table
        .find(room_id)
        .select(chat_rooms::last_seq)
        .first(conn)
        .await
        .optional()?
        .unwrap_or(0))
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

/// A message as `post_message` returns it: the row, whether this call stored it, and the
/// room's two members.
#[derive(Debug, QueryableByName)]
pub struct Posted {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub room_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub seq: i64,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub sender_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub body: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub client_msg_id: String,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    pub sent_at: DateTime<Utc>,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    pub created: bool,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub member_sender: Uuid,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub member_traveler: Uuid,
}

impl Posted {
    pub fn row(self) -> MessageRow {
        MessageRow {
            id: self.id,
            room_id: self.room_id,
            seq: self.seq,
            sender_id: self.sender_id,
            body: self.body,
            client_msg_id: self.client_msg_id,
            sent_at: self.sent_at,
        }
    }
}

/// The hot path of chat: `airbar_post_message` (migration `000006_post_message`) checks
/// membership, dedupes, checks the room is writable, bumps the sequence and inserts, in one
/// statement with a plan cached per connection.
const POST_MESSAGE: &str = "SELECT * FROM airbar_post_message($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// A message to store (see `post_message`).
#[derive(Debug, Clone)]
pub struct Draft {
    pub id: Uuid,
    pub room_id: Uuid,
    pub sender: Uuid,
    pub client_msg_id: String,
    /// The body as sent (stored once the match is paid) and with contacts masked (before).
    pub body: String,
    pub masked_body: String,
}

/// Which match statuses show contact details, which have ended, and how long an ended
/// match's room stays writable.
#[derive(Debug, Clone, Copy)]
pub struct RoomRules<'a> {
    pub paid_statuses: &'a [&'a str],
    pub ended_statuses: &'a [&'a str],
    pub read_only_after_hours: i32,
}

/// Stores (or finds) a message; `None` when the sender is not a member or the room is
/// read-only (the caller tells which).
pub async fn post_message(
    conn: &mut AsyncPgConnection,
    m: &Draft,
    rules: RoomRules<'_>,
) -> QueryResult<Option<Posted>> {
    use diesel::sql_types::{Array, Integer, Text, Uuid as SqlUuid};
    diesel::sql_query(POST_MESSAGE)
        .bind::<SqlUuid, _>(m.room_id)
        .bind::<SqlUuid, _>(m.sender)
        .bind::<Text, _>(&m.client_msg_id)
        .bind::<SqlUuid, _>(m.id)
        .bind::<Text, _>(&m.body)
        .bind::<Text, _>(&m.masked_body)
        .bind::<Array<Text>, _>(rules.paid_statuses)
        .bind::<Array<Text>, _>(rules.ended_statuses)
        .bind::<Integer, _>(rules.read_only_after_hours)
        .get_result(conn)
        .await
        .optional()
}

/// One row of `post_messages`: the stored or found message and its draft's index (0-based).
#[derive(Debug, QueryableByName)]
pub struct BatchPosted {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pub idx: i32,
    #[diesel(embed)]
    pub posted: Posted,
}

const POST_MESSAGES: &str =
    "SELECT * FROM airbar_post_messages($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// Stores (or finds) a batch of messages in one statement and one commit (migration
/// `000007_post_messages`). `drafts` must be sorted by room (lock order). A draft with no row
/// in the result was refused.
pub async fn post_messages(
    conn: &mut AsyncPgConnection,
    drafts: &[Draft],
    rules: RoomRules<'_>,
) -> QueryResult<Vec<BatchPosted>> {
    use diesel::sql_types::{Array, Integer, Text, Uuid as SqlUuid};
    let column = |f: fn(&Draft) -> Uuid| drafts.iter().map(f).collect::<Vec<_>>();
    let text = |f: fn(&Draft) -> &str| drafts.iter().map(f).collect::<Vec<_>>();
    let mut rows: Vec<BatchPosted> = diesel::sql_query(POST_MESSAGES)
        .bind::<Array<SqlUuid>, _>(column(|d| d.room_id))
        .bind::<Array<SqlUuid>, _>(column(|d| d.sender))
        .bind::<Array<Text>, _>(text(|d| &d.client_msg_id))
        .bind::<Array<SqlUuid>, _>(column(|d| d.id))
        .bind::<Array<Text>, _>(text(|d| &d.body))
        .bind::<Array<Text>, _>(text(|d| &d.masked_body))
        .bind::<Array<Text>, _>(rules.paid_statuses)
        .bind::<Array<Text>, _>(rules.ended_statuses)
        .bind::<Integer, _>(rules.read_only_after_hours)
        .load(conn)
        .await?;
    for row in &mut rows {
        row.idx -= 1;
    }
    Ok(rows)
}
