//! The metrics hook every actor kind uses: live count, starts, messages handled, mailbox
//! backlog and drops, each labelled with the actor kind.
//!
//! Convention: an actor calls `started`/`stopped` from its lifecycle hooks and `handled` from
//! each handler; senders hold an `InFlight` token from sending until the message is handled
//! (fire-and-forget messages carry it as a field, request/reply sends hold it across the await
//! via [`ActorProbe::send`]), so the backlog gauge counts exactly what is queued.

use actix::dev::ToEnvelope;
use actix::{Actor, Addr, Handler, MailboxError, Message};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use crate::telemetry::metrics::{ActorSeries, KindLabels};

#[derive(Clone, Debug)]
pub struct ActorProbe {
    kind: &'static str,
    live: Gauge,
    started: Counter,
    handled: Counter,
    backlog: Gauge,
    dropped: Counter,
    sent: Counter,
}

impl ActorProbe {
    pub fn new(series: &ActorSeries, kind: &'static str) -> Self {
        let labels = KindLabels { kind };
        Self {
            kind,
            live: series.live.get_or_create_owned(&labels),
            started: series.started.get_or_create_owned(&labels),
            handled: series.handled.get_or_create_owned(&labels),
            backlog: series.backlog.get_or_create_owned(&labels),
            dropped: series.dropped.get_or_create_owned(&labels),
            sent: series.sent.get_or_create_owned(&labels),
        }
    }

    pub fn kind(&self) -> &'static str {
        self.kind
    }

    pub fn started(&self) {
        self.live.inc();
        self.started.inc();
    }

    pub fn stopped(&self) {
        self.live.dec();
    }

    pub fn handled(&self) {
        self.handled.inc();
    }

    /// A message (or frame) this actor sent on.
    pub fn sent(&self) {
        self.sent.inc();
    }

    /// A message that could not be delivered (full or closed mailbox, slow consumer).
    pub fn dropped(&self) {
        self.dropped.inc();
    }

    /// Counts one queued message until the token is dropped.
    pub fn track(&self) -> InFlight {
        self.backlog.inc();
        InFlight(self.backlog.clone())
    }

    /// Request/reply send that counts the message as backlog until the reply arrives.
    pub async fn send<A, M>(&self, addr: &Addr<A>, msg: M) -> Result<M::Result, MailboxError>
    where
        A: Actor + Handler<M>,
        A::Context: ToEnvelope<A, M>,
        M: Message + Send + 'static,
        M::Result: Send,
    {
        let _in_flight = self.track();
        let res = addr.send(msg).await;
        if res.is_err() {
            self.dropped();
        }
        res
    }

    #[cfg(test)]
    pub fn backlog(&self) -> i64 {
        self.backlog.get()
    }
}

/// One message counted in the backlog gauge; dropping it un-counts it.
#[derive(Debug)]
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}
