//! `TrackStream`: one actor per `GET /api/track/{token}/stream` — the recipient's live view as
//! Server-Sent Events, no account. It watches the match's `ParcelTracker` on this node: first a
//! `status` record (status and ETA) and the latest position, then every newer position
//! (coalesced: a reader that falls behind gets the newest one, never a backlog), `arriving`, and
//! status changes. The stream ends after the parcel is delivered (or the match ends); a link
//! whose parcel is already delivered gets 204, which tells `EventSource` not to reconnect.
//! Frames carry the match id, coordinates, times and status — nothing about the people.

use std::sync::Arc;
use std::time::Duration;

use actix::{
    Actor, ActorContext, ActorFutureExt, Addr, AsyncContext, Context, Handler, WrapFuture,
};
use actix_web::web::Bytes;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::outlet::{delivered, Close, Push, Slot, Wake, Watcher};
use super::probe::ActorProbe;
use super::tracker::{ParcelTracker, Unwatch, Watch};
use crate::domain::tracking::{self, Refusal};
use crate::state::AppState;

pub const KIND: &str = "track_stream";
/// Records buffered towards the response body; a full buffer holds the position in the slot.
pub const QUEUE: usize = 16;
const MAILBOX: usize = 64;
const RETRY_MS: u32 = 2000;
/// How soon a position held back by a full body buffer is tried again.
const RETRY_FULL: Duration = Duration::from_millis(100);

pub struct TrackStream {
    socket_id: Uuid,
    match_id: Uuid,
    tracker: Addr<ParcelTracker>,
    tx: mpsc::Sender<Bytes>,
    slot: Arc<Slot>,
    watching: bool,
    /// A retry of a held-back position is scheduled.
    retrying: bool,
    /// Told whether the tracker took this stream as a watcher (before the response starts).
    answered: Option<oneshot::Sender<Result<(), Refusal>>>,
    state: actix_web::web::Data<AppState>,
    probe: ActorProbe,
}

impl TrackStream {
    /// The stream's records go to `tx`; `answered` is told whether the tracker took it.
    pub fn new(
        match_id: Uuid,
        tracker: Addr<ParcelTracker>,
        tx: mpsc::Sender<Bytes>,
        answered: oneshot::Sender<Result<(), Refusal>>,
        state: actix_web::web::Data<AppState>,
    ) -> Self {
        Self {
            socket_id: Uuid::now_v7(),
            match_id,
            tracker,
            tx,
            slot: Arc::new(Slot::held()),
            watching: false,
            retrying: false,
            answered: Some(answered),
            probe: ActorProbe::new(&state.metrics.actors, KIND),
            state,
        }
    }

    fn refused(&mut self, refusal: Refusal, ctx: &mut Context<Self>) {
        if let Some(answered) = self.answered.take() {
            let _ = answered.send(Err(refusal));
        }
        ctx.stop();
    }

    /// Queues one record; `false` when the buffer is full (the client is behind) or gone (the
    /// actor stops then).
    fn send(&self, ctx: &mut Context<Self>, text: &str) -> bool {
        let mut out = String::with_capacity(text.len() + 8);
        out.push_str("data: ");
        out.push_str(text);
        out.push_str("\n\n");
        match self.tx.try_send(Bytes::from(out)) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => false,
            Err(mpsc::error::TrySendError::Closed(_)) => {
                ctx.stop();
                false
            }
        }
    }

    /// Writes the waiting position if the body has room; else keeps it (a newer one may
    /// replace it meanwhile) and tries again shortly.
    fn drain(&mut self, ctx: &mut Context<Self>) {
        if self.tx.capacity() == 0 {
            if !self.retrying {
                self.retrying = true;
                ctx.run_later(RETRY_FULL, |this, ctx| {
                    this.retrying = false;
                    this.drain(ctx);
                });
            }
            return;
        }
        if let Some((text, published_us)) = self.slot.take() {
            if self.send(ctx, &text) {
                delivered(&self.state.metrics, &self.probe, published_us);
            }
        }
    }
}

impl Actor for TrackStream {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX);
        self.probe.started();
        let _ = self
            .tx
            .try_send(Bytes::from(format!("retry: {RETRY_MS}\n\n")));
        let keep_alive = Duration::from_secs(self.state.settings.realtime.sse_keepalive_secs);
        ctx.run_interval(keep_alive, |this, ctx| {
            if this.tx.is_closed() {
                return ctx.stop();
            }
            let _ = this.tx.try_send(Bytes::from_static(b": keep-alive\n\n"));
        });
        let addr = ctx.address();
        let watcher = Watcher {
            socket_id: self.socket_id,
            user: None,
            slot: self.slot.clone(),
            wake: addr.clone().recipient(),
            push: addr.recipient(),
        };
        ctx.spawn(
            self.tracker
                .send(Watch(watcher))
                .into_actor(self)
                .map(|result, this, ctx| {
                    let watching = match result {
                        Ok(Ok(watching)) => watching,
                        Ok(Err(refusal)) => return this.refused(refusal, ctx),
                        Err(_) => return this.refused(Refusal::Overloaded, ctx),
                    };
                    if let Some(answered) = this.answered.take() {
                        let _ = answered.send(Ok(()));
                    }
                    this.watching = true;
                    let status = json!({
                        "type": "status", "match_id": this.match_id,
                        "status": watching.status, "eta": watching.eta,
                    });
                    this.send(ctx, &status.to_string());
                    if let Some(latest) = &watching.latest {
                        this.send(ctx, latest);
                    }
                    this.drain(ctx);
                    if tracking::moves_no_more(&watching.status) {
                        ctx.stop();
                    }
                }),
        );
        ctx.spawn(
            self.state
                .shutting_down()
                .into_actor(self)
                .map(|(), _, ctx| ctx.stop()),
        );
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.tracker.do_send(Unwatch {
            socket_id: self.socket_id,
            slot: self.slot.clone(),
        });
        self.probe.stopped();
    }
}

impl Handler<Wake> for TrackStream {
    type Result = ();

    fn handle(&mut self, _: Wake, ctx: &mut Self::Context) {
        self.probe.handled();
        if self.watching {
            self.drain(ctx);
        }
    }
}

impl Handler<Push> for TrackStream {
    type Result = ();

    fn handle(&mut self, msg: Push, ctx: &mut Self::Context) {
        self.probe.handled();
        if !self.watching {
            return; // the answer to the subscription carries the status
        }
        if self.send(ctx, &msg.text) {
            delivered(&self.state.metrics, &self.probe, msg.published_us);
        }
        let ended = serde_json::from_str::<serde_json::Value>(&msg.text)
            .ok()
            .filter(|f| f["type"] == "status")
            .and_then(|f| f["status"].as_str().map(tracking::moves_no_more))
            .unwrap_or(false);
        if ended {
            ctx.stop();
        }
    }
}

impl Handler<Close> for TrackStream {
    type Result = ();

    fn handle(&mut self, _: Close, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
