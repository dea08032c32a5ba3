//! Airbar: a peer-to-peer crowdshipping service. The module list; what the binary and the
//! integration tests import. Dependency direction: `http` and `actors` call `services`;
//! `services` call `models` and `domain`; `domain` depends on nothing in the crate.

pub mod actors;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod http;
pub mod models;
pub mod redis;
pub mod schema;
pub mod services;
pub mod startup;
pub mod state;
pub mod telemetry;
