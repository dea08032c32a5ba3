//! Group commit for the trail. Trackers hand accepted positions to the node's writer; each of
//! `LANES` writer tasks owns the matches that hash to it (so one match's positions are stored
//! and published in order) and takes whatever has queued for it (up to `MAX_BATCH`), stores it
//! in one statement (only matches still in transit take points), marks the first entry into a
//! geofence, publishes the stored positions as one bus event — which the trackers of every node
//! fan out to their watchers: persist, commit, then publish — and keeps each match's latest
//! position in Redis for views on any node, in the publication's round trip. A batch that cannot
//! be stored is announced too (`PositionsLost`), so the trackers that accepted those positions
//! forget them. An idle writer stores a lone position within `tracking.trail_linger_ms`; the
//! queues are bounded (a full one refuses the position: 503 `overloaded` on REST).
//!
//! One lane: a batch's statement costs PostgreSQL about as much as a dozen of its points, so
//! while one lane keeps up (it stores ~40 points a batch at 10 000/s here) a second would only
//! halve the batches. The lanes' connections are their own (`trail_pool`): created on the
//! lanes' thread and committing asynchronously unless configured otherwise.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::db::{self, PgPool};
use crate::error::AppError;
use crate::models::positions::{self as rows, Batch};
use crate::redis::Redis;
use crate::services::events::{Event, EventBus, TrackedPosition};

/// Positions waiting for each writer lane, at most.
const QUEUE: usize = 8_192;
/// Positions stored in one statement, at most.
const MAX_BATCH: usize = 2_048;
/// A batch smaller than this waits up to `tracking.trail_linger_ms` for more.
const LINGER_BELOW: usize = 64;
/// Batches in flight at once, each on its own connection of the writer's pool.
const LANES: usize = 1;
/// How long a match's latest position stays in Redis after its last update.
const LATEST_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Attempts at storing a batch before its positions are given up (a later position of the same
/// match replaces a lost one; the trail is a breadcrumb, not a ledger).
const ATTEMPTS: usize = 3;

/// One accepted position for the trail.
pub struct Item {
    pub position: TrackedPosition,
    /// The tracker saw the parcel enter the geofence with this position.
    pub arriving: bool,
    /// Told whether the position was stored (REST waits for it; a WebSocket frame does not).
    pub reply: Option<oneshot::Sender<Result<bool, AppError>>>,
}

pub struct TrackWriter {
    lanes: Vec<mpsc::Sender<Item>>,
}

/// The writer's connections: one per lane, created on the lanes' own thread (their I/O never
/// crosses threads), asynchronously committing unless `synchronous` (see
/// `tracking.trail_synchronous_commit`).
pub fn trail_pool(
    settings: &crate::config::DatabaseSettings,
    synchronous: bool,
) -> Result<PgPool, db::DbSetupError> {
    let session = if synchronous {
        "SET application_name = 'airbar trail writer'"
    } else {
        "SET application_name = 'airbar trail writer'; SET synchronous_commit = off"
    };
    db::pool_with_session(settings, LANES, session)
}

impl std::fmt::Debug for TrackWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackWriter").finish_non_exhaustive()
    }
}

struct Sinks {
    db: PgPool,
    redis: Redis,
    events: Arc<EventBus>,
}

impl TrackWriter {
    /// Starts the writer lanes on the current runtime. `db` is the writer's own pool (`LANES`
    /// connections; see `trail_pool`).
    pub fn start(db: PgPool, redis: Redis, events: Arc<EventBus>, linger: Duration) -> Self {
        let sinks = Arc::new(Sinks { db, redis, events });
        let lanes = (0..LANES)
            .map(|_| {
                let (tx, mut rx) = mpsc::channel::<Item>(QUEUE);
                let sinks = sinks.clone();
                actix_web::rt::spawn(async move {
                    while let Some(first) = rx.recv().await {
                        let batch = gather(&mut rx, first, linger).await;
                        // Announced before the next batch is taken: under load the queue grows
                        // and batches with it, so the publications per position fall (an
                        // announcer running beside the lane measured a growing backlog instead).
                        let outcome = write(&sinks, batch).await;
                        announce(&sinks, outcome).await;
                    }
                });
                tx
            })
            .collect();
        Self { lanes }
    }

    /// Queues a position on its match's lane; `Err` (given back) when that queue is full.
    pub fn submit(&self, item: Item) -> Result<(), Item> {
        let lane = (item.position.match_id.as_u128() % self.lanes.len() as u128) as usize;
        self.lanes[lane].try_send(item).map_err(|e| match e {
            mpsc::error::TrySendError::Full(i) | mpsc::error::TrySendError::Closed(i) => i,
        })
    }
}

/// A batch: what has queued after `first`, up to `MAX_BATCH`; while that is under
/// `LINGER_BELOW` points, what comes within `linger` of `first` too (a light load waits a
/// moment and shares a statement instead of paying one for a handful of points; a heavy one
/// never waits: its batches fill while the previous one is stored).
async fn gather(rx: &mut mpsc::Receiver<Item>, first: Item, linger: Duration) -> Vec<Item> {
    let deadline = tokio::time::Instant::now() + linger;
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(next) => batch.push(next),
            Err(mpsc::error::TryRecvError::Empty) if batch.len() < LINGER_BELOW => {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(next)) => batch.push(next),
                    Ok(None) | Err(_) => break,
                }
            }
            Err(_) => break,
        }
    }
    batch
}

/// A batch after its attempt at the database.
enum Outcome {
    Stored {
        items: Vec<TrackedPosition>,
        arrived: Vec<uuid::Uuid>,
        replies: Vec<(oneshot::Sender<Result<bool, AppError>>, bool)>,
    },
    Lost {
        match_ids: Vec<uuid::Uuid>,
        replies: Vec<oneshot::Sender<Result<bool, AppError>>>,
    },
}

async fn write(sinks: &Sinks, batch: Vec<Item>) -> Outcome {
    let mut columns = Batch::default();
    for item in &batch {
        let p = &item.position;
        columns.match_ids.push(p.match_id);
        columns.recorded_at.push(p.recorded_at);
        columns.lat.push(p.lat);
        columns.lng.push(p.lng);
        columns.accuracy_m.push(p.accuracy_m);
    }
    let mut outcome = Err(AppError::unavailable(
        "postgres",
        "the trail was not stored",
    ));
    for attempt in 0..ATTEMPTS {
        outcome = store(&sinks.db, &columns, &batch).await;
        match &outcome {
            Ok(_) => break,
            Err(e) => {
                tracing::warn!(error = %e, attempt, size = batch.len(), "trail batch not stored")
            }
        }
        tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
    }
    let (stored, arrived) = match outcome {
        Ok(done) => done,
        Err(_) => {
            let mut match_ids: Vec<uuid::Uuid> =
                batch.iter().map(|i| i.position.match_id).collect();
            match_ids.sort_unstable();
            match_ids.dedup();
            let replies = batch.into_iter().filter_map(|i| i.reply).collect();
            return Outcome::Lost { match_ids, replies };
        }
    };
    let mut items = Vec::with_capacity(stored.len());
    let mut replies = Vec::new();
    for (item, kept) in batch.into_iter().zip(&stored) {
        if *kept {
            items.push(item.position);
        }
        if let Some(reply) = item.reply {
            replies.push((reply, *kept));
        }
    }
    Outcome::Stored {
        items,
        arrived,
        replies,
    }
}

/// Publishes what a batch's attempt came to — the latest position of each match is kept in
/// Redis in the publication's round trip — and answers the positions that wait (a client told
/// "stored" finds its position in every view).
async fn announce(sinks: &Sinks, outcome: Outcome) {
    match outcome {
        Outcome::Stored {
            items,
            arrived,
            replies,
        } => {
            if !items.is_empty() {
                let latest = remember_latest(&sinks.redis, &items);
                sinks
                    .events
                    .publish_with(Event::Positions { items }, latest)
                    .await;
            }
            for match_id in arrived {
                sinks.events.publish(Event::Arriving { match_id }).await;
            }
            for (reply, kept) in replies {
                let _ = reply.send(Ok(kept));
            }
        }
        Outcome::Lost { match_ids, replies } => {
            sinks
                .events
                .publish(Event::PositionsLost { match_ids })
                .await;
            for reply in replies {
                let _ = reply.send(Err(AppError::unavailable(
                    "postgres",
                    "the position could not be stored",
                )));
            }
        }
    }
}

/// Stores the batch and marks first geofence entries, in one transaction. Returns, per item,
/// whether it was stored, and the matches that have just started arriving.
async fn store(
    db: &PgPool,
    columns: &Batch,
    batch: &[Item],
) -> Result<(Vec<bool>, Vec<uuid::Uuid>), AppError> {
    use diesel_async::AsyncConnection;
    let mut conn = db::conn(db).await?;
    let arriving: Vec<&TrackedPosition> = batch
        .iter()
        .filter(|i| i.arriving)
        .map(|i| &i.position)
        .collect();
    let (stored, arrived): (Vec<rows::Stored>, _) = if arriving.is_empty() {
        (rows::insert_batch(&mut conn, columns).await?, Vec::new())
    } else {
        conn.transaction(async |conn| {
            let stored = rows::insert_batch(conn, columns).await?;
            let mut arrived = Vec::new();
            for p in arriving {
                let kept = stored
                    .iter()
                    .any(|s| (s.match_id, s.recorded_at) == (p.match_id, p.recorded_at));
                if kept && rows::mark_arriving(conn, p.match_id, p.recorded_at).await? {
                    arrived.push(p.match_id);
                }
            }
            Ok::<_, diesel::result::Error>((stored, arrived))
        })
        .await?
    };
    let stored: std::collections::HashSet<(uuid::Uuid, chrono::DateTime<chrono::Utc>)> = stored
        .into_iter()
        .map(|s| (s.match_id, s.recorded_at))
        .collect();
    let kept = batch
        .iter()
        .map(|i| stored.contains(&(i.position.match_id, i.position.recorded_at)))
        .collect();
    Ok((kept, arrived))
}

/// `<prefix>track:<match_id>` ← the newest position of each match in `items` (with its ETA
/// and speed), as commands for the publication's pipeline.
fn remember_latest(redis: &Redis, items: &[TrackedPosition]) -> deadpool_redis::redis::Pipeline {
    let mut newest: std::collections::HashMap<uuid::Uuid, &TrackedPosition> =
        std::collections::HashMap::with_capacity(items.len());
    for p in items {
        newest
            .entry(p.match_id)
            .and_modify(|q| {
                if p.recorded_at > q.recorded_at {
                    *q = p;
                }
            })
            .or_insert(p);
    }
    let mut pipe = deadpool_redis::redis::pipe();
    for p in newest.into_values() {
        let Ok(json) = serde_json::to_string(p) else {
            continue;
        };
        let key = redis.keys().key("track", &[&p.match_id.to_string()]);
        pipe.cmd("SET")
            .arg(key)
            .arg(json)
            .arg("EX")
            .arg(LATEST_TTL.as_secs())
            .ignore();
    }
    pipe
}

/// The latest position kept in Redis for a match, if any.
pub async fn latest(redis: &Redis, match_id: uuid::Uuid) -> Option<TrackedPosition> {
    let pool = redis.pool()?;
    let key = redis.keys().key("track", &[&match_id.to_string()]);
    let mut conn = pool.get().await.ok()?;
    let json: Option<String> = deadpool_redis::redis::cmd("GET")
        .arg(key)
        .query_async(&mut conn)
        .await
        .ok()?;
    json.and_then(|j| serde_json::from_str(&j).ok())
}
