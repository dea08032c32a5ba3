//! `ParcelTracker`: one per match in transit on each node that has a watcher of it or receives
//! its positions. Started on demand by the `Registry` from the database (`services::tracking::
//! seed`: the match, its destination, scheduled arrival, the latest stored position and, from
//! Redis, the speed and ETA computed with it), so a tracker that stopped or a node that
//! restarted picks up where the trail ends. Stops after `tracking.tracker_idle_secs` without a
//! watcher or a position.
//!
//! A position from the traveler (WebSocket frame or REST) is checked (the traveler's, in
//! transit), filtered (`domain::tracking`), given an ETA and a geofence check, and handed to the
//! node's `TrackWriter`. Watchers are told only once it is stored: the writer publishes the
//! batch on the bus and the `RedisBridge` of every node hands each tracker its positions
//! (`Stored`), which it fans out — through one coalescing slot per watcher, so a slow watcher
//! gets the newest position and never a queue — and also takes as its own latest (another node
//! may have ingested it).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{
    Actor, ActorContext, ActorFutureExt, AsyncContext, Context, Handler, Message, Recipient,
    ResponseActFuture, WrapFuture,
};
use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use super::outlet::{Offer, Push, RoomFrame, Slot, Watcher};
use super::probe::ActorProbe;
use crate::domain::geo::LatLng;
use crate::domain::tracking::{self, Fix, Motion, Refusal};
use crate::services::events::{now_us, TrackedPosition};
use crate::services::tracking::writer::Item;
use crate::services::tracking::Seed;
use crate::state::AppState;

pub const KIND: &str = "parcel_tracker";
const MAILBOX: usize = 4096;
/// How often a tracker whose status says "not in transit" may re-read it for a traveler's
/// position (the pickup's event may still be on its way).
const RECHECK_EVERY: Duration = Duration::from_secs(1);
/// How soon a watcher whose mailbox was full for its wake-up is woken again.
const RETRY_WAKE: Duration = Duration::from_millis(250);

pub struct ParcelTracker {
    match_id: Uuid,
    state: actix_web::web::Data<AppState>,
    probe: ActorProbe,
    seed: Seed,
    motion: Motion,
    /// The newest stored position (what a new watcher gets at once) and its frame.
    latest: Option<(TrackedPosition, Arc<str>)>,
    watchers: HashMap<Uuid, Watcher>,
    active_at: Instant,
    rechecked_at: Option<Instant>,
    /// This node sent a position inside the geofence to be stored (`arriving` not yet seen).
    arriving_pending: bool,
    /// A retry of the wake-ups that found a full mailbox is scheduled.
    retry_scheduled: bool,
}

impl ParcelTracker {
    pub fn new(
        match_id: Uuid,
        seed: Seed,
        latest: Option<TrackedPosition>,
        state: actix_web::web::Data<AppState>,
    ) -> Self {
        let mut motion = Motion::default();
        if let Some(p) = &latest {
            motion.observe(fix_of(p), p.speed_mps);
        }
        Self {
            match_id,
            probe: ActorProbe::new(&state.metrics.actors, KIND),
            latest: latest.map(|p| {
                let frame = Arc::from(p.frame());
                (p, frame)
            }),
            seed,
            motion,
            watchers: HashMap::new(),
            active_at: Instant::now(),
            rechecked_at: None,
            arriving_pending: false,
            retry_scheduled: false,
            state,
        }
    }

    /// Reads the match again, before any other message is handled.
    fn refresh(&mut self, ctx: &mut Context<Self>) {
        let (state, match_id) = (self.state.clone(), self.match_id);
        ctx.wait(
            async move { crate::services::tracking::seed(&state, match_id).await }
                .into_actor(self)
                .map(|seed, this, _| match seed {
                    Ok(Some(seed)) => this.apply(seed),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "parcel tracker could not re-read its match")
                    }
                }),
        );
    }

    /// Takes what the database says now.
    fn apply(&mut self, seed: Seed) {
        if let Some(point) = seed.latest_point {
            let newer = self
                .latest
                .as_ref()
                .is_none_or(|(p, _)| point.recorded_at > p.recorded_at);
            if newer {
                let p = crate::services::tracking::stored_position(self.match_id, &seed, point);
                self.motion.observe(fix_of(&p), None);
                let frame = Arc::from(p.frame());
                self.latest = Some((p, frame));
            }
        }
        let arriving = self.seed.arriving || seed.arriving;
        self.seed = Seed { arriving, ..seed };
    }

    fn eta(&self, motion: &Motion) -> DateTime<Utc> {
        motion.eta(
            self.seed.destination,
            self.seed.scheduled_arrival,
            Utc::now(),
        )
    }

    /// The current ETA (what a new watcher is told with the status).
    fn current_eta(&self) -> DateTime<Utc> {
        self.latest
            .as_ref()
            .map(|(p, _)| p.eta)
            .unwrap_or_else(|| self.eta(&self.motion))
    }

    fn ingest(&mut self, msg: Ingest) -> Result<Ingested, Refusal> {
        if msg.user != self.seed.traveler_id {
            return Err(if msg.user == self.seed.sender_id {
                Refusal::NotTraveler
            } else {
                Refusal::NotFound
            });
        }
        if self.seed.status != "in_transit" {
            return Err(Refusal::NotInTransit(self.seed.status.clone()));
        }
        let metrics = &self.state.metrics.realtime;
        let now = Utc::now();
        let rules = self.state.settings.tracking.filter();
        if let Err(dropped) = self
            .motion
            .judge(&msg.fix, now, self.seed.picked_up_at, &rules)
        {
            metrics.position(dropped.code());
            return Ok(Ingested {
                accepted: false,
                dropped: Some(dropped.code()),
                eta: self.current_eta(),
                stored: None,
            });
        }
        let mut motion = self.motion;
        motion.accept(msg.fix);
        let eta = self.eta(&motion);
        let radius = self.state.settings.tracking.geofence_m;
        let arriving = !self.seed.arriving
            && !self.arriving_pending
            && tracking::inside(&msg.fix, self.seed.destination, radius);
        let (reply, stored) = if msg.wait {
            let (tx, rx) = tokio::sync::oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let item = Item {
            position: TrackedPosition {
                match_id: self.match_id,
                lat: msg.fix.at.lat(),
                lng: msg.fix.at.lng(),
                accuracy_m: msg.fix.accuracy_m,
                recorded_at: msg.fix.recorded_at,
                eta,
                speed_mps: motion.speed_mps,
            },
            arriving,
            reply,
        };
        if self.state.tracking.submit(item).is_err() {
            metrics.position("refused");
            return Err(Refusal::Overloaded);
        }
        metrics.position("accepted");
        self.motion = motion;
        self.arriving_pending |= arriving;
        Ok(Ingested {
            accepted: true,
            dropped: None,
            eta,
            stored,
        })
    }

    fn fan_out_latest(&mut self, published_us: i64, ctx: &mut Context<Self>) {
        let Some((_, frame)) = &self.latest else {
            return;
        };
        let coalesced = &self.state.metrics.realtime.coalesced;
        let (probe, match_id) = (&self.probe, self.match_id);
        let mut stranded = false;
        self.watchers.retain(|_, w| {
            match w.offer_latest(match_id, frame.clone(), published_us, probe, coalesced) {
                Offer::Sent => true,
                Offer::Slow => {
                    stranded = true;
                    true
                }
                Offer::Gone => false,
            }
        });
        if stranded {
            self.wake_stranded_later(ctx);
        }
    }

    /// Some watcher's mailbox was full for its wake-up: it is woken again in a while (its slot
    /// keeps the newest frame meanwhile), until every slot's frame is covered by a wake-up.
    fn wake_stranded_later(&mut self, ctx: &mut Context<Self>) {
        if self.retry_scheduled {
            return;
        }
        self.retry_scheduled = true;
        ctx.run_later(RETRY_WAKE, |this, ctx| {
            this.retry_scheduled = false;
            let (probe, match_id) = (&this.probe, this.match_id);
            let mut still = false;
            for w in this.watchers.values().filter(|w| w.stranded()) {
                still |= w.wake(match_id, probe) == Offer::Slow;
            }
            if still {
                this.wake_stranded_later(ctx);
            }
        });
    }

    fn fan_out(&mut self, text: &str, recipients_only: bool) {
        let text: Arc<str> = Arc::from(text);
        let (probe, match_id) = (&self.probe, self.match_id);
        let frame = Some(RoomFrame::Tracking { match_id });
        self.watchers.retain(|_, w| {
            if recipients_only && w.user.is_some() {
                return true;
            }
            w.offer(Push::new(text.clone(), frame, None, now_us()), probe)
        });
    }
}

fn fix_of(p: &TrackedPosition) -> Fix {
    Fix {
        at: LatLng::clamped(p.lat, p.lng),
        accuracy_m: p.accuracy_m,
        recorded_at: p.recorded_at,
    }
}

impl Actor for ParcelTracker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX);
        self.probe.started();
        self.refresh(ctx);
        let idle = Duration::from_secs(self.state.settings.tracking.tracker_idle_secs);
        ctx.run_interval(
            (idle / 2).max(Duration::from_millis(100)),
            move |this, ctx| {
                this.watchers.retain(|_, w| w.wake.connected());
                if this.watchers.is_empty() && this.active_at.elapsed() >= idle {
                    tracing::debug!(match_id = %this.match_id, "idle parcel tracker stopped");
                    ctx.stop();
                }
            },
        );
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.probe.stopped();
    }
}

/// A position from `user`. `wait`: the reply carries a receiver told once it is stored.
pub struct Ingest {
    pub user: Uuid,
    pub fix: Fix,
    pub wait: bool,
}

pub struct Ingested {
    pub accepted: bool,
    /// The filter's reason for not taking it.
    pub dropped: Option<&'static str>,
    pub eta: DateTime<Utc>,
    pub stored: Option<tokio::sync::oneshot::Receiver<Result<bool, crate::error::AppError>>>,
}

impl Message for Ingest {
    type Result = Result<Ingested, Refusal>;
}

impl ParcelTracker {
    /// A traveler's position finds the status still short of `in_transit`: it may have moved
    /// on before its event reached this tracker. At most once a second.
    fn stale_for(&self, user: Uuid) -> bool {
        user == self.seed.traveler_id
            && self.seed.status != "in_transit"
            && self
                .rechecked_at
                .is_none_or(|at| at.elapsed() >= RECHECK_EVERY)
    }

    /// Reads the match again, then runs `then`, holding every other message back meanwhile
    /// (so positions keep their order).
    fn recheck_then(&mut self, ctx: &mut Context<Self>, then: impl FnOnce(&mut Self) + 'static) {
        self.rechecked_at = Some(Instant::now());
        let (state, match_id) = (self.state.clone(), self.match_id);
        ctx.wait(
            async move { crate::services::tracking::seed(&state, match_id).await }
                .into_actor(self)
                .map(move |seed, this, _| {
                    if let Ok(Some(seed)) = seed {
                        this.apply(seed);
                    }
                    then(this);
                }),
        );
    }
}

impl Handler<Ingest> for ParcelTracker {
    type Result = ResponseActFuture<Self, Result<Ingested, Refusal>>;

    fn handle(&mut self, msg: Ingest, ctx: &mut Context<Self>) -> Self::Result {
        self.probe.handled();
        self.active_at = Instant::now();
        if !self.stale_for(msg.user) {
            let result = self.ingest(msg);
            return Box::pin(actix::fut::ready(result));
        }
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.recheck_then(ctx, move |this| {
            let _ = answer.send(this.ingest(msg));
        });
        Box::pin(async move { answered.await.unwrap_or(Err(Refusal::Overloaded)) }.into_actor(self))
    }
}

/// A position from a traveler's socket: nothing comes back unless it is refused, when `errors`
/// gets an `error` frame (no answer to wait for per position).
pub struct Report {
    pub user: Uuid,
    pub fix: Fix,
    pub errors: Recipient<Push>,
}

impl Message for Report {
    type Result = ();
}

/// A refusal as the socket's `error` frame.
fn refuse(errors: &Recipient<Push>, result: Result<Ingested, Refusal>) {
    let Err(refusal) = result else { return };
    let e = crate::services::tracking::refusal(refusal);
    let code = if e.status().as_u16() == 404 {
        "forbidden"
    } else {
        e.code()
    };
    let frame = json!({"type": "error", "code": code, "message": e.problem().detail});
    let _ = errors.try_send(Push::new(Arc::from(frame.to_string()), None, None, 0));
}

impl Handler<Report> for ParcelTracker {
    type Result = ();

    fn handle(&mut self, msg: Report, ctx: &mut Context<Self>) {
        self.probe.handled();
        self.active_at = Instant::now();
        let Report { user, fix, errors } = msg;
        let ingest = Ingest {
            user,
            fix,
            wait: false,
        };
        if !self.stale_for(user) {
            let result = self.ingest(ingest);
            return refuse(&errors, result);
        }
        self.recheck_then(ctx, move |this| refuse(&errors, this.ingest(ingest)));
    }
}

/// A watcher joins; `user` `None` is the recipient's link (already checked by its token).
pub struct Watch(pub Watcher);

/// What a new watcher is told at once.
pub struct Watching {
    pub status: String,
    pub eta: DateTime<Utc>,
    /// The latest position's frame.
    pub latest: Option<Arc<str>>,
}

impl Message for Watch {
    type Result = Result<Watching, Refusal>;
}

impl Handler<Watch> for ParcelTracker {
    type Result = Result<Watching, Refusal>;

    fn handle(&mut self, msg: Watch, _: &mut Context<Self>) -> Self::Result {
        self.probe.handled();
        let watcher = msg.0;
        if let Some(user) = watcher.user {
            if user != self.seed.sender_id && user != self.seed.traveler_id {
                return Err(Refusal::NotFound);
            }
        }
        let max = self.state.settings.tracking.max_watchers;
        if self.watchers.len() >= max {
            // Watchers that went away without a word free their places first.
            self.watchers.retain(|_, w| w.wake.connected());
        }
        if self.watchers.len() >= max && !self.watchers.contains_key(&watcher.socket_id) {
            return Err(Refusal::Overloaded);
        }
        self.watchers.insert(watcher.socket_id, watcher);
        Ok(Watching {
            status: self.seed.status.clone(),
            eta: self.current_eta(),
            latest: self.latest.as_ref().map(|(_, f)| f.clone()),
        })
    }
}

/// A watcher leaves; `slot` tells its subscription from a newer one of the same socket.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unwatch {
    pub socket_id: Uuid,
    pub slot: Arc<Slot>,
}

impl Handler<Unwatch> for ParcelTracker {
    type Result = ();

    fn handle(&mut self, msg: Unwatch, _: &mut Context<Self>) {
        self.probe.handled();
        if self
            .watchers
            .get(&msg.socket_id)
            .is_some_and(|w| Arc::ptr_eq(&w.slot, &msg.slot))
        {
            self.watchers.remove(&msg.socket_id);
        }
        self.active_at = Instant::now();
    }
}

/// Positions of this match stored by some node's writer.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stored {
    pub items: Vec<TrackedPosition>,
    pub published_us: i64,
}

impl Handler<Stored> for ParcelTracker {
    type Result = ();

    fn handle(&mut self, msg: Stored, ctx: &mut Context<Self>) {
        self.probe.handled();
        // Several positions of this parcel in one stored batch: watchers get the newest.
        let older = msg.items.len().saturating_sub(1) as u64;
        self.state
            .metrics
            .realtime
            .coalesced
            .inc_by(older * self.watchers.len() as u64);
        let Some(newest) = msg.items.into_iter().max_by_key(|p| p.recorded_at) else {
            return;
        };
        self.motion.observe(fix_of(&newest), newest.speed_mps);
        if self
            .latest
            .as_ref()
            .is_some_and(|(p, _)| p.recorded_at >= newest.recorded_at)
        {
            return;
        }
        let frame = Arc::from(newest.frame());
        self.latest = Some((newest, frame));
        self.fan_out_latest(msg.published_us, ctx);
    }
}

/// The parcel entered its destination's geofence (stored once, for every node).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Arrived;

impl Handler<Arrived> for ParcelTracker {
    type Result = ();

    fn handle(&mut self, _: Arrived, _: &mut Context<Self>) {
        self.probe.handled();
        self.seed.arriving = true;
        self.arriving_pending = false;
        let frame = json!({"type": "arriving", "match_id": self.match_id}).to_string();
        self.fan_out(&frame, false);
    }
}

/// The match changed state.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StatusChanged {
    pub status: String,
}

impl Handler<StatusChanged> for ParcelTracker {
    type Result = ();

    fn handle(&mut self, msg: StatusChanged, ctx: &mut Context<Self>) {
        self.probe.handled();
        if msg.status == self.seed.status {
            return;
        }
        self.seed.status = msg.status;
        // The pickup time and the like come with the match row.
        self.refresh(ctx);
        // The parties hear of it on their hubs (`match_updated`); the recipient's stream here.
        let frame =
            json!({"type": "status", "match_id": self.match_id, "status": self.seed.status})
                .to_string();
        self.fan_out(&frame, true);
    }
}

/// Positions this tracker may have accepted could not be stored: it goes back to the stored
/// trail (the next position is judged against what watchers have seen).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Lost;

impl Handler<Lost> for ParcelTracker {
    type Result = ();

    fn handle(&mut self, _: Lost, _: &mut Context<Self>) {
        self.probe.handled();
        self.motion = Motion::default();
        if let Some((p, _)) = &self.latest {
            self.motion.observe(fix_of(p), p.speed_mps);
        }
        self.arriving_pending = false;
    }
}
