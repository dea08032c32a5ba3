//! Test support: spawning the app, per-test databases, a TCP proxy for fault injection.

pub mod app;
pub mod database;
pub mod market;
pub mod proxy;
pub mod python;
pub mod sinks;
pub mod sse;
pub mod stripe;
pub mod ws;

pub use app::{spawn_app, spawn_app_on, spawn_app_with, PASSWORD};
