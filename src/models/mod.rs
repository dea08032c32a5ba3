//! Diesel rows and queries, one file per aggregate. Functions take `&mut AsyncPgConnection` so
//! they compose inside a service's transaction. No business rules, no HTTP.

pub mod sessions;
pub mod users;
