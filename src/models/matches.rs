//! The `matches` and `match_events` tables, the capacity updates on `trips`, and the queue the
//! expiry sweeper claims from.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::schema::{match_events, matches, parcels, trips};

/// Statuses in which a match is live (blocks another request for the same pair).
pub const LIVE: [&str; 6] = [
    "requested",
    "accepted",
    "paid",
    "in_transit",
    "delivered",
    "disputed",
];

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = matches, check_for_backend(diesel::pg::Pg))]
pub struct MatchRow {
    pub id: Uuid,
    pub parcel_id: Uuid,
    pub trip_id: Uuid,
    pub sender_id: Uuid,
    pub traveler_id: Uuid,
    pub requested_by: Uuid,
    pub status: String,
    pub weight_grams: i32,
    pub price: i64,
    pub fee: i64,
    pub currency: String,
    pub room_id: Uuid,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = matches)]
pub struct NewMatch<'a> {
    pub id: Uuid,
    pub parcel_id: Uuid,
    pub trip_id: Uuid,
    pub sender_id: Uuid,
    pub traveler_id: Uuid,
    pub requested_by: Uuid,
    pub status: &'a str,
    pub weight_grams: i32,
    pub price: i64,
    pub fee: i64,
    pub currency: &'a str,
    pub room_id: Uuid,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = match_events, check_for_backend(diesel::pg::Pg))]
pub struct MatchEventRow {
    pub id: Uuid,
    pub match_id: Uuid,
    pub actor_id: Option<Uuid>,
    pub action: String,
    pub from_status: Option<String>,
    pub to_status: String,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = match_events)]
pub struct NewMatchEvent<'a> {
    pub id: Uuid,
    pub match_id: Uuid,
    pub actor_id: Option<Uuid>,
    pub action: &'a str,
    pub from_status: Option<&'a str>,
    pub to_status: &'a str,
    pub reason: Option<&'a str>,
}

pub async fn insert(conn: &mut AsyncPgConnection, new: &NewMatch<'_>) -> QueryResult<MatchRow> {
    diesel::insert_into(matches::table)
        .values(new)
        .returning(MatchRow::as_returning())
        .get_result(conn)
        .await
}

pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<MatchRow>> {
    matches::table
        .find(id)
        .select(MatchRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn find_for_update(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> QueryResult<Option<MatchRow>> {
    matches::table
        .find(id)
        .select(MatchRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

pub async fn set_status(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    status: &str,
    expires_at: Option<DateTime<Utc>>,
) -> QueryResult<MatchRow> {
    diesel::update(matches::table.find(id))
        .set((
            matches::status.eq(status),
            matches::expires_at.eq(expires_at),
        ))
        .returning(MatchRow::as_returning())
        .get_result(conn)
        .await
}

pub async fn append_event(
    conn: &mut AsyncPgConnection,
    new: &NewMatchEvent<'_>,
) -> QueryResult<usize> {
    diesel::insert_into(match_events::table)
        .values(new)
        .execute(conn)
        .await
}

pub async fn events(
    conn: &mut AsyncPgConnection,
    match_id: Uuid,
) -> QueryResult<Vec<MatchEventRow>> {
    match_events::table
        .filter(match_events::match_id.eq(match_id))
        .order(match_events::id.asc())
        .select(MatchEventRow::as_select())
        .load(conn)
        .await
}

/// Live match of this pair, if any.
pub async fn live_for_pair(
    conn: &mut AsyncPgConnection,
    parcel_id: Uuid,
    trip_id: Uuid,
) -> QueryResult<Option<MatchRow>> {
    matches::table
        .filter(matches::parcel_id.eq(parcel_id))
        .filter(matches::trip_id.eq(trip_id))
        .filter(matches::status.eq_any(LIVE))
        .select(MatchRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Open requests made by `requester` for this parcel (or this trip).
pub async fn count_open_requests(
    conn: &mut AsyncPgConnection,
    requester: Uuid,
    parcel_id: Option<Uuid>,
    trip_id: Option<Uuid>,
) -> QueryResult<i64> {
    let mut q = matches::table
        .filter(matches::requested_by.eq(requester))
        .filter(matches::status.eq("requested"))
        .into_boxed();
    if let Some(p) = parcel_id {
        q = q.filter(matches::parcel_id.eq(p));
    }
    if let Some(t) = trip_id {
        q = q.filter(matches::trip_id.eq(t));
    }
    q.count().get_result(conn).await
}

/// The other open requests of a parcel, locked.
pub async fn other_requests_of_parcel(
    conn: &mut AsyncPgConnection,
    parcel_id: Uuid,
    except: Uuid,
) -> QueryResult<Vec<MatchRow>> {
    matches::table
        .filter(matches::parcel_id.eq(parcel_id))
        .filter(matches::id.ne(except))
        .filter(matches::status.eq("requested"))
        .select(MatchRow::as_select())
        .for_update()
        .load(conn)
        .await
}

/// The trip or the parcel whose matches are meant.
#[derive(Debug, Clone, Copy)]
pub enum Of {
    Trip(Uuid),
    Parcel(Uuid),
}

const BOOKED: [&str; 4] = ["paid", "in_transit", "delivered", "disputed"];

fn of_side(of: Of) -> matches::BoxedQuery<'static, diesel::pg::Pg> {
    match of {
        Of::Trip(id) => matches::table.filter(matches::trip_id.eq(id)).into_boxed(),
        Of::Parcel(id) => matches::table
            .filter(matches::parcel_id.eq(id))
            .into_boxed(),
    }
}

async fn any_in(conn: &mut AsyncPgConnection, of: Of, statuses: &[&str]) -> QueryResult<bool> {
    let found: Option<Uuid> = of_side(of)
        .filter(matches::status.eq_any(statuses.to_vec()))
        .select(matches::id)
        .first(conn)
        .await
        .optional()?;
    Ok(found.is_some())
}

/// Open requests (requested or accepted) of a trip or parcel that is closing, locked.
pub async fn open_requests(conn: &mut AsyncPgConnection, of: Of) -> QueryResult<Vec<MatchRow>> {
    // Not through `of_side`: a boxed query cannot take `FOR UPDATE`.
    let open = matches::status.eq_any(["requested", "accepted"]);
    match of {
        Of::Trip(id) => {
            matches::table
                .filter(matches::trip_id.eq(id))
                .filter(open)
                .select(MatchRow::as_select())
                .for_update()
                .load(conn)
                .await
        }
        Of::Parcel(id) => {
            matches::table
                .filter(matches::parcel_id.eq(id))
                .filter(open)
                .select(MatchRow::as_select())
                .for_update()
                .load(conn)
                .await
        }
    }
}

/// Whether there is a booking past payment (blocks cancelling the trip or parcel).
pub async fn has_bookings(conn: &mut AsyncPgConnection, of: Of) -> QueryResult<bool> {
    any_in(conn, of, &BOOKED).await
}

/// Whether there is any live match (blocks editing the trip or parcel).
pub async fn has_live(conn: &mut AsyncPgConnection, of: Of) -> QueryResult<bool> {
    any_in(conn, of, &LIVE).await
}

/// Lapsed requests/acceptances (ids with their trip and parcel), oldest first; not locked.
pub async fn due(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> QueryResult<Vec<(Uuid, Uuid, Uuid)>> {
    matches::table
        .filter(matches::status.eq_any(["requested", "accepted"]))
        .filter(matches::expires_at.le(now))
        .order(matches::expires_at.asc())
        .limit(limit)
        .select((matches::id, matches::trip_id, matches::parcel_id))
        .load(conn)
        .await
}

/// Claims one match: locked, or `None` when another transaction (a sweeper on another node)
/// holds it.
pub async fn claim(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<MatchRow>> {
    matches::table
        .find(id)
        .select(MatchRow::as_select())
        .for_update()
        .skip_locked()
        .first(conn)
        .await
        .optional()
}

/// Reserves capacity; `false` when the trip has not enough left (nothing changes then).
pub async fn reserve(conn: &mut AsyncPgConnection, trip_id: Uuid, grams: i32) -> QueryResult<bool> {
    let n = diesel::update(trips::table.find(trip_id))
        .filter(trips::capacity_grams.ge(trips::reserved_grams + grams))
        .set(trips::reserved_grams.eq(trips::reserved_grams + grams))
        .execute(conn)
        .await?;
    Ok(n == 1)
}

pub async fn release(
    conn: &mut AsyncPgConnection,
    trip_id: Uuid,
    grams: i32,
) -> QueryResult<usize> {
    diesel::update(trips::table.find(trip_id))
        .set(
            trips::reserved_grams.eq(diesel::dsl::sql::<diesel::sql_types::Integer>(
                "greatest(reserved_grams - ",
            )
            .bind::<diesel::sql_types::Integer, _>(grams)
            .sql(", 0)")),
        )
        .execute(conn)
        .await
}

pub async fn set_parcel_status(
    conn: &mut AsyncPgConnection,
    parcel_id: Uuid,
    status: &str,
) -> QueryResult<usize> {
    diesel::update(parcels::table.find(parcel_id))
        .set(parcels::status.eq(status))
        .execute(conn)
        .await
}

#[derive(Debug, Clone, Default)]
pub struct MatchFilter {
    pub user: Uuid,
    /// `sender`, `traveler` or either.
    pub role: Option<&'static str>,
    pub status: Option<String>,
    pub before: Option<Uuid>,
}

/// The user's matches, newest first.
pub async fn list(
    conn: &mut AsyncPgConnection,
    f: &MatchFilter,
    limit: i64,
) -> QueryResult<Vec<MatchRow>> {
    let mut q = matches::table.select(MatchRow::as_select()).into_boxed();
    q = match f.role {
        Some("sender") => q.filter(matches::sender_id.eq(f.user)),
        Some(_) => q.filter(matches::traveler_id.eq(f.user)),
        None => q.filter(
            matches::sender_id
                .eq(f.user)
                .or(matches::traveler_id.eq(f.user)),
        ),
    };
    if let Some(s) = &f.status {
        q = q.filter(matches::status.eq(s.clone()));
    }
    if let Some(b) = f.before {
        q = q.filter(matches::id.lt(b));
    }
    q.order(matches::id.desc())
        .limit(limit + 1)
        .load(conn)
        .await
}

/// Matches by status where the user takes part (dashboard).
pub async fn count_by_status(
    conn: &mut AsyncPgConnection,
    user: Uuid,
) -> QueryResult<Vec<(String, i64)>> {
    matches::table
        .filter(
            matches::sender_id
                .eq(user)
                .or(matches::traveler_id.eq(user)),
        )
        .group_by(matches::status)
        .select((matches::status, diesel::dsl::count_star()))
        .load(conn)
        .await
}

/// Whether `user` is a party of a live match of this parcel (may see it once it is matched).
pub async fn is_party_of_parcel(
    conn: &mut AsyncPgConnection,
    parcel_id: Uuid,
    user: Uuid,
) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        matches::table
            .filter(matches::parcel_id.eq(parcel_id))
            .filter(matches::traveler_id.eq(user))
            .filter(matches::status.eq_any(LIVE)),
    ))
    .get_result(conn)
    .await
}

/// Gives the match its tracking token unless it has one; returns the token it has.
pub async fn ensure_tracking_token(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    token: &str,
) -> QueryResult<String> {
    diesel::update(matches::table.find(id))
        .set(
            matches::tracking_token.eq(diesel::dsl::sql::<
                diesel::sql_types::Nullable<diesel::sql_types::Text>,
            >("coalesce(tracking_token, ")
            .bind::<diesel::sql_types::Text, _>(token)
            .sql(")")),
        )
        .returning(matches::tracking_token.assume_not_null())
        .get_result(conn)
        .await
}

pub async fn tracking_token(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<String>> {
    matches::table
        .find(id)
        .select(matches::tracking_token)
        .first(conn)
        .await
        .optional()
        .map(Option::flatten)
}
