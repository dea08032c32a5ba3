//! The one integration test binary: the real app on port 0, a database per test cloned from a
//! migrated template, a Redis key prefix per test, real HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

mod auth;
mod binary;
mod chat;
mod dashboard;
mod delivery;
mod docs;
mod errors;
mod faults;
mod health;
mod ledger;
mod live;
mod locations;
mod marketplace_access;
mod matching;
mod metrics;
mod notifications;
mod parcels;
mod payments;
mod realtime;
mod search;
mod security;
mod sessions;
mod stripe;
mod tokens;
mod tracking;
mod trips;
mod users;
