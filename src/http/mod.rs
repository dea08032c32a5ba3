//! The HTTP edge: the route table, thin handlers (extract → call a service → respond),
//! the request-context middleware, extractor configuration and the OpenAPI document.
//! No SQL and no business rules here.

pub mod auth;
pub mod chat;
pub mod dashboard;
pub mod docs;
pub mod extract;
pub mod health;
pub mod idempotent;
pub mod listing;
pub mod locations;
pub mod matches;
pub mod middleware;
pub mod notifications;
pub mod parcels;
pub mod payments;
pub mod routes;
pub mod security;
pub mod sse;
pub mod tracking;
pub mod trips;
pub mod users;
pub mod wallet;
pub mod ws;

pub use routes::{configure, ROUTES};
