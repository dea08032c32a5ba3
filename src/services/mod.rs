//! Use cases: the only place that opens transactions, checks authorization and business rules,
//! and publishes events after commit. Services never format HTTP.

pub mod auth;
pub mod health;
pub mod rate_limit;
pub mod users;
