//! The per-node address book: finds the live actor for an entity (a chat room, a parcel
//! tracker, a user hub) or starts it on demand, and replaces one that has stopped.

use std::any::Any;
use std::collections::HashMap;
use std::time::Duration;

use actix::dev::ToEnvelope;
use actix::{Actor, Addr, AsyncContext, Context, Handler, Message, MessageResult};

use uuid::Uuid;

use super::probe::ActorProbe;

/// How often entries of stopped actors are swept out, so the map never outgrows the live set.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    kind: &'static str,
    id: Uuid,
}

struct Entry {
    addr: Box<dyn Any + Send>,
    connected: fn(&(dyn Any + Send)) -> bool,
}

pub struct Registry {
    entries: HashMap<Key, Entry>,
    probe: ActorProbe,
}

impl Registry {
    pub fn new(probe: ActorProbe) -> Self {
        Self {
            entries: HashMap::new(),
            probe,
        }
    }

    fn sweep(&mut self) {
        self.entries.retain(|_, e| (e.connected)(e.addr.as_ref()));
    }
}

impl Actor for Registry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.probe.started();
        ctx.run_interval(SWEEP_EVERY, |this, _| this.sweep());
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.probe.stopped();
    }
}

/// Returns the live actor of `kind` for `id`, starting it with `start` when there is none or
/// the previous one has stopped.
pub struct GetOrStart<A: Actor> {
    pub kind: &'static str,
    pub id: Uuid,
    pub start: Box<dyn FnOnce() -> Addr<A> + Send>,
}

impl<A: Actor> Message for GetOrStart<A> {
    type Result = Addr<A>;
}

fn is_connected<A: Actor>(addr: &(dyn Any + Send)) -> bool {
    addr.downcast_ref::<Addr<A>>().is_some_and(Addr::connected)
}

impl<A: Actor> Handler<GetOrStart<A>> for Registry {
    type Result = MessageResult<GetOrStart<A>>;

    fn handle(&mut self, msg: GetOrStart<A>, _: &mut Self::Context) -> Self::Result {
        self.probe.handled();
        let key = Key {
            kind: msg.kind,
            id: msg.id,
        };
        if let Some(addr) = self
            .entries
            .get(&key)
            .and_then(|e| e.addr.downcast_ref::<Addr<A>>())
            .filter(|a| a.connected())
        {
            return MessageResult(addr.clone());
        }
        let addr = (msg.start)();
        self.entries.insert(
            key,
            Entry {
                addr: Box::new(addr.clone()),
                connected: is_connected::<A>,
            },
        );
        MessageResult(addr)
    }
}

/// The live actor of `kind` for `id`, if there is one (nothing is started).
pub struct Lookup<A: Actor> {
    pub kind: &'static str,
    pub id: Uuid,
    _actor: std::marker::PhantomData<fn() -> A>,
}

impl<A: Actor> Lookup<A> {
    pub fn new(kind: &'static str, id: Uuid) -> Self {
        Self {
            kind,
            id,
            _actor: std::marker::PhantomData,
        }
    }
}

impl<A: Actor> Message for Lookup<A> {
    type Result = Option<Addr<A>>;
}

impl<A: Actor> Handler<Lookup<A>> for Registry {
    type Result = MessageResult<Lookup<A>>;

    fn handle(&mut self, msg: Lookup<A>, _: &mut Self::Context) -> Self::Result {
        self.probe.handled();
        let key = Key {
            kind: msg.kind,
            id: msg.id,
        };
        MessageResult(
            self.entries
                .get(&key)
                .and_then(|e| e.addr.downcast_ref::<Addr<A>>())
                .filter(|a| a.connected())
                .cloned(),
        )
    }
}

/// Hands each message to the live actor of `kind` for its id without waiting (nothing is
/// started: an entity with no actor on this node has no one here to tell). A full mailbox drops
/// it. Several at once (a batch of stored positions to each parcel's tracker) are one message.
pub struct Forward<A: Actor, M> {
    pub kind: &'static str,
    pub items: Vec<(Uuid, M)>,
    _actor: std::marker::PhantomData<fn() -> A>,
}

impl<A: Actor, M> Forward<A, M> {
    pub fn new(kind: &'static str, id: Uuid, msg: M) -> Self {
        Self::each(kind, vec![(id, msg)])
    }

    pub fn each(kind: &'static str, items: Vec<(Uuid, M)>) -> Self {
        Self {
            kind,
            items,
            _actor: std::marker::PhantomData,
        }
    }
}

impl<A: Actor, M> Message for Forward<A, M> {
    type Result = ();
}

impl<A, M> Handler<Forward<A, M>> for Registry
where
    A: Actor + Handler<M>,
    A::Context: ToEnvelope<A, M>,
    M: Message + Send + 'static,
    M::Result: Send,
{
    type Result = ();

    fn handle(&mut self, msg: Forward<A, M>, _: &mut Self::Context) {
        self.probe.handled();
        for (id, m) in msg.items {
            self.forward::<A, M>(msg.kind, id, m);
        }
    }
}

impl Registry {
    /// Hands `msg` to the live actor of `kind` for `id`, if any; a full mailbox drops it.
    fn forward<A, M>(&self, kind: &'static str, id: Uuid, msg: M)
    where
        A: Actor + Handler<M>,
        A::Context: ToEnvelope<A, M>,
        M: Message + Send + 'static,
        M::Result: Send,
    {
        let Some(addr) = self
            .entries
            .get(&Key { kind, id })
            .and_then(|e| e.addr.downcast_ref::<Addr<A>>())
        else {
            return;
        };
        match addr.try_send(msg) {
            Ok(()) => self.probe.sent(),
            Err(_) => self.probe.dropped(),
        }
    }
}

/// How many entries the registry holds (after sweeping stopped actors).
pub struct Len;

impl Message for Len {
    type Result = usize;
}

impl Handler<Len> for Registry {
    type Result = usize;

    fn handle(&mut self, _: Len, _: &mut Self::Context) -> usize {
        self.probe.handled();
        self.sweep();
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::metrics::Metrics;
    use actix::ActorContext;

    struct Echo;
    impl Actor for Echo {
        type Context = Context<Self>;
    }

    struct Stop;
    impl Message for Stop {
        type Result = ();
    }
    impl Handler<Stop> for Echo {
        type Result = ();
        fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
            ctx.stop();
        }
    }

    fn get(id: u128) -> GetOrStart<Echo> {
        GetOrStart {
            kind: "echo",
            id: Uuid::from_u128(id),
            start: Box::new(|| Echo.start()),
        }
    }

    #[actix::test]
    async fn the_same_id_gets_the_same_actor_and_a_stopped_one_is_replaced() {
        let metrics = Metrics::new();
        let probe = ActorProbe::new(&metrics.actors, "registry");
        let registry = Registry::new(probe.clone()).start();

        let a = probe.send(&registry, get(1)).await.unwrap();
        let b = probe.send(&registry, get(1)).await.unwrap();
        assert_eq!(a, b);
        let c = probe.send(&registry, get(2)).await.unwrap();
        assert_ne!(a, c);

        a.send(Stop).await.unwrap();
        let d = probe.send(&registry, get(1)).await.unwrap();
        assert_ne!(a, d, "a stopped actor is replaced");
        assert!(d.connected());
        assert_eq!(probe.send(&registry, Len).await.unwrap(), 2);
        assert_eq!(probe.backlog(), 0);
        assert!(metrics
            .render()
            .contains(r#"airbar_actor_messages_handled_total{kind="registry"} 5"#));
    }
}
