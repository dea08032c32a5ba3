//! Diesel rows and queries, one file per aggregate. Functions take `&mut AsyncPgConnection` so
//! they compose inside a service's transaction. No business rules, no HTTP.

pub mod activities;
pub mod chat;
pub mod custody;
pub mod deliveries;
pub mod geo_filter;
pub mod ledger;
pub mod matches;
pub mod notifications;
pub mod parcels;
pub mod payments;
pub mod positions;
pub mod reconcile;
pub mod sessions;
pub mod trips;
pub mod users;
pub mod wallet;
