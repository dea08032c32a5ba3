//! Use cases: the only place that opens transactions, checks authorization and business rules,
//! and publishes events after commit. Services never format HTTP.

pub mod activities;
pub mod auth;
pub mod chat;
pub mod chat_writer;
pub mod custody_log;
pub mod dashboard;
pub mod delivery;
pub mod events;
pub mod health;
pub mod ledger;
pub mod locations;
pub mod matching;
pub mod notifications;
pub mod pagination;
pub mod parcels;
pub mod payments;
pub mod presence;
pub mod rate_limit;
pub mod retry;
pub mod tracking;
pub mod trips;
pub mod user_log;
pub mod users;
