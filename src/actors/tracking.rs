//! How handlers and sockets reach a parcel's tracker on this node: found through the
//! `Registry` or started there from what the database says (`services::tracking::seed`), and
//! the REST report of a position, which waits for its storage. Rules and views stay in
//! `services::tracking`; this is only the way to the live actor.

use actix::{Actor, Addr};
use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::registry::{GetOrStart, Lookup};
use super::track_stream::{self, TrackStream};
use super::tracker::{self, Ingest, ParcelTracker};
use crate::domain::ids::MatchId;
use crate::domain::tracking::Refusal;
use crate::error::AppError;
use crate::services::auth::AuthUser;
use crate::services::tracking::{self, refusal, PositionInput, PositionReceipt};
use crate::state::AppState;

/// The match's tracker on this node, started from the database if it has none; `None` when
/// there is no such match.
pub async fn tracker(
    state: &actix_web::web::Data<AppState>,
    match_id: Uuid,
) -> Result<Option<Addr<ParcelTracker>>, AppError> {
    let gone = || AppError::unavailable("registry", "the actor registry stopped");
    let known = state
        .registry
        .send(Lookup::<ParcelTracker>::new(tracker::KIND, match_id))
        .await
        .map_err(|_| gone())?;
    if let Some(addr) = known {
        return Ok(Some(addr));
    }
    let Some((seed, latest)) = tracking::tracker_start(state, match_id).await? else {
        return Ok(None);
    };
    let app = state.clone();
    let get = GetOrStart::<ParcelTracker> {
        kind: tracker::KIND,
        id: match_id,
        start: Box::new(move || ParcelTracker::new(match_id, seed, latest, app).start()),
    };
    state.registry.send(get).await.map(Some).map_err(|_| gone())
}

/// `POST /api/matches/{id}/positions` (the traveler): answered once the position is stored.
pub async fn report(
    state: &actix_web::web::Data<AppState>,
    auth: AuthUser,
    id: MatchId,
    input: &PositionInput,
) -> Result<PositionReceipt, AppError> {
    let fix = input.parse().map_err(AppError::validation)?;
    let addr = tracker(state, id.0)
        .await?
        .ok_or_else(AppError::not_found)?;
    let ingest = Ingest {
        user: auth.user_id.0,
        fix,
        wait: true,
    };
    let ingested = addr
        .send(ingest)
        .await
        .map_err(|_| AppError::unavailable("tracker", "the parcel tracker stopped"))?
        .map_err(refusal)?;
    let stored = match ingested.stored {
        Some(rx) => rx
            .await
            .map_err(|_| AppError::unavailable("tracker", "the trail writer stopped"))??,
        None => false,
    };
    if ingested.accepted && !stored {
        // The trail takes points only while the match is in transit: it was delivered (or
        // disputed) before this one was stored.
        return Err(refusal(Refusal::NotInTransit(
            "no longer in transit".to_owned(),
        )));
    }
    Ok(PositionReceipt {
        accepted: ingested.accepted,
        stored,
        dropped: ingested.dropped.map(str::to_owned),
        eta: ingested.eta,
    })
}

/// `GET /api/track/{token}/stream`: a `TrackStream` watching the match's tracker on this node,
/// its records to send as the response body; `None` when the parcel moves no more (delivered,
/// or the match ended). A tracker that takes no more watchers answers 503.
pub async fn open_recipient_stream(
    state: &actix_web::web::Data<AppState>,
    token: &str,
) -> Result<Option<mpsc::Receiver<Bytes>>, AppError> {
    let Some(id) = tracking::live_match_by_token(state, token).await? else {
        return Ok(None);
    };
    let addr = tracker(state, id).await?.ok_or_else(AppError::not_found)?;
    let (tx, rx) = mpsc::channel(track_stream::QUEUE);
    let (answered, answer) = oneshot::channel();
    TrackStream::new(id, addr, tx, answered, state.clone()).start();
    match answer.await {
        Ok(Ok(())) => Ok(Some(rx)),
        Ok(Err(Refusal::NotFound)) => Err(AppError::not_found()),
        Ok(Err(_)) | Err(_) => Err(AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "This parcel has as many live followers as a node takes; try again shortly.",
        )),
    }
}
