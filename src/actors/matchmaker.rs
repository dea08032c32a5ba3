//! The matchmaker, one per node: the in-memory index of open trips and parcels, kept current
//! from bus events and rebuilt from PostgreSQL (through a service) at start and periodically;
//! answers suggestion queries. Holds no connection and runs no SQL.

use std::sync::Arc;

use actix::{Actor, Context, Handler, Message, MessageResult};
use chrono::Utc;

use super::probe::ActorProbe;
use crate::domain::match_index::{best_parcels, best_trips, GridIndex, Ranked};
use crate::domain::matching::{ParcelFacts, Rules, TripFacts};
use crate::services::events::{Event, Published};

/// Messages beyond this wait are refused (`try_send` fails) rather than queued without bound.
const MAILBOX: usize = 4096;

pub struct Matchmaker {
    trips: GridIndex<TripFacts>,
    parcels: GridIndex<ParcelFacts>,
    rules: Rules,
    probe: ActorProbe,
}

impl Matchmaker {
    pub fn new(rules: Rules, probe: ActorProbe) -> Self {
        Self {
            trips: GridIndex::new(),
            parcels: GridIndex::new(),
            rules,
            probe,
        }
    }
}

impl Actor for Matchmaker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX);
        self.probe.started();
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.probe.stopped();
    }
}

/// An index change from the bus.
pub struct Apply(pub Arc<Published>);

impl Message for Apply {
    type Result = ();
}

impl Handler<Apply> for Matchmaker {
    type Result = ();

    fn handle(&mut self, msg: Apply, _: &mut Context<Self>) {
        self.probe.handled();
        match &msg.0.event {
            Event::TripUpserted { trip } if trip.open => self.trips.upsert(trip.clone()),
            Event::TripUpserted { trip } => {
                self.trips.remove(&trip.id);
            }
            Event::TripRemoved { trip_id } => {
                self.trips.remove(trip_id);
            }
            Event::ParcelUpserted { parcel } if parcel.open => self.parcels.upsert(parcel.clone()),
            Event::ParcelUpserted { parcel } => {
                self.parcels.remove(&parcel.id);
            }
            Event::ParcelRemoved { parcel_id } => {
                self.parcels.remove(parcel_id);
            }
            _ => {}
        }
    }
}

/// Replaces the whole index (start-up and periodic resynchronisation). The indexes are built
/// by the sender, off this actor, so suggestions never wait for a rebuild.
pub struct ReplaceAll {
    pub trips: GridIndex<TripFacts>,
    pub parcels: GridIndex<ParcelFacts>,
}

impl Message for ReplaceAll {
    type Result = ();
}

impl Handler<ReplaceAll> for Matchmaker {
    type Result = ();

    fn handle(&mut self, msg: ReplaceAll, _: &mut Context<Self>) {
        self.probe.handled();
        self.trips = msg.trips;
        self.parcels = msg.parcels;
    }
}

/// The best open trips for a parcel.
pub struct SuggestTrips {
    pub parcel: ParcelFacts,
    pub limit: usize,
}

impl Message for SuggestTrips {
    type Result = Ranked<TripFacts>;
}

impl Handler<SuggestTrips> for Matchmaker {
    type Result = MessageResult<SuggestTrips>;

    fn handle(&mut self, msg: SuggestTrips, _: &mut Context<Self>) -> Self::Result {
        self.probe.handled();
        MessageResult(best_trips(
            &self.trips,
            &msg.parcel,
            &self.rules,
            Utc::now(),
            msg.limit,
        ))
    }
}

/// The best open parcels for a trip.
pub struct SuggestParcels {
    pub trip: TripFacts,
    pub limit: usize,
}

impl Message for SuggestParcels {
    type Result = Ranked<ParcelFacts>;
}

impl Handler<SuggestParcels> for Matchmaker {
    type Result = MessageResult<SuggestParcels>;

    fn handle(&mut self, msg: SuggestParcels, _: &mut Context<Self>) -> Self::Result {
        self.probe.handled();
        MessageResult(best_parcels(
            &self.parcels,
            &msg.trip,
            &self.rules,
            Utc::now(),
            msg.limit,
        ))
    }
}

/// How many trips and parcels are indexed.
pub struct Size;

impl Message for Size {
    type Result = (usize, usize);
}

impl Handler<Size> for Matchmaker {
    type Result = MessageResult<Size>;

    fn handle(&mut self, _: Size, _: &mut Context<Self>) -> Self::Result {
        self.probe.handled();
        MessageResult((self.trips.len(), self.parcels.len()))
    }
}
