//! Live state only: the registry (address book of per-entity actors) and the metrics hook every
//! actor kind uses. Sessions, user hubs, chat rooms, trackers, the matchmaker and the Redis
//! bridge plug in here as their issues land. No SQL in an actor: persistence goes through a
//! service.

pub mod chat_room;
pub mod matchmaker;
pub mod outlet;
pub mod probe;
pub mod redis_bridge;
pub mod registry;
pub mod session;
pub mod sse;
pub mod track_stream;
pub mod tracker;
pub mod tracking;
pub mod user_hub;

pub use matchmaker::Matchmaker;
pub use probe::{ActorProbe, InFlight};
pub use registry::{GetOrStart, Registry};
