//! Group commit for chat messages. Every post (WebSocket `send` or REST) hands its draft to
//! the node's writer and waits for the result; `LANES` writer tasks each take whatever has
//! queued (up to `MAX_BATCH`) and store it in one statement and one commit. An idle writer
//! stores a lone message at once, so batching adds no delay at low load, and under load one
//! round trip and one WAL flush serve many messages. The queue is bounded: a full one answers
//! 503 `overloaded`.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Mutex};

use crate::db::{self, PgPool};
use crate::error::AppError;
use crate::models::chat::{self, Draft, Posted, RoomRules};

/// Drafts waiting for a writer, at most.
const QUEUE: usize = 4096;
/// Drafts stored in one statement, at most.
const MAX_BATCH: usize = 256;
/// Batches in flight at once (each holds one pooled connection while it runs).
const LANES: usize = 4;

type Reply = oneshot::Sender<Result<Option<Posted>, AppError>>;

pub struct ChatWriter {
    tx: mpsc::Sender<(Draft, Reply)>,
}

impl std::fmt::Debug for ChatWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatWriter").finish_non_exhaustive()
    }
}

impl ChatWriter {
    /// Starts the writer lanes on the current runtime.
    pub fn start(db: PgPool, rules: RoomRules<'static>) -> Self {
        let (tx, rx) = mpsc::channel::<(Draft, Reply)>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..LANES {
            let (rx, db) = (rx.clone(), db.clone());
            actix_web::rt::spawn(async move {
                loop {
                    let batch = {
                        let mut rx = rx.lock().await;
                        let Some(first) = rx.recv().await else {
                            return;
                        };
                        let mut batch = vec![first];
                        while batch.len() < MAX_BATCH {
                            match rx.try_recv() {
                                Ok(next) => batch.push(next),
                                Err(_) => break,
                            }
                        }
                        batch
                    };
                    write(&db, rules, batch).await;
                }
            });
        }
        Self { tx }
    }

    /// Stores (or finds) a message; `None` when refused (not a member, or read-only).
    pub async fn post(&self, draft: Draft) -> Result<Option<Posted>, AppError> {
        let (reply, result) = oneshot::channel();
        self.tx.try_send((draft, reply)).map_err(|_| {
            AppError::new(
                actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "Too many messages at once; try again shortly.",
            )
        })?;
        result
            .await
            .map_err(|_| AppError::internal("the chat writer stopped"))?
    }
}

fn is_unique_violation(e: &diesel::result::Error) -> bool {
    matches!(
        e,
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)
    )
}

async fn write(db: &PgPool, rules: RoomRules<'static>, mut batch: Vec<(Draft, Reply)>) {
    let mut conn = match db::conn(db).await {
        Ok(c) => c,
        Err(_) => {
            for (_, reply) in batch {
                let _ = reply.send(Err(AppError::unavailable(
                    "postgres",
                    "no connection for the chat writer",
                )));
            }
            return;
        }
    };
    // Room order: batches in flight lock room rows in the same order.
    batch.sort_by_key(|(d, _)| d.room_id);
    let (drafts, replies): (Vec<Draft>, Vec<Reply>) = batch.into_iter().unzip();
    if drafts.len() > 1 {
        match chat::post_messages(&mut conn, &drafts, rules).await {
            Ok(rows) => {
                let mut results: Vec<Option<Posted>> = std::iter::repeat_with(|| None)
                    .take(replies.len())
                    .collect();
                for row in rows {
                    if let Some(slot) = usize::try_from(row.idx)
                        .ok()
                        .and_then(|i| results.get_mut(i))
                    {
                        *slot = Some(row.posted);
                    }
                }
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(Ok(result));
                }
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, size = drafts.len(), "chat batch failed; posting one by one");
            }
        }
    }
    // One by one: a lone draft, or the drafts of a batch that failed as a whole.
    for (draft, reply) in drafts.iter().zip(replies) {
        let mut result = chat::post_message(&mut conn, draft, rules).await;
        if result.as_ref().is_err_and(is_unique_violation) {
            // A concurrent retry of the same client_msg_id won: this attempt finds it.
            result = chat::post_message(&mut conn, draft, rules).await;
        }
        let _ = reply.send(result.map_err(AppError::from));
    }
}
