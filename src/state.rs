//! What every handler and service can reach: settings, pools, metrics, actor addresses.
//! Built once in `startup`, shared through `web::Data` (an `Arc`).

use std::sync::Arc;
use std::time::Instant;

use actix::Addr;

use crate::actors::{Matchmaker, Registry};
use crate::config::{Environment, IpNet, Settings};
use crate::db::PgPool;
use crate::domain::gazetteer::Gazetteer;
use crate::redis::Redis;
use crate::services::auth::passwords::PasswordHasher;
use crate::services::auth::tokens::TokenKeys;
use crate::services::pagination::Cursors;
use crate::services::rate_limit::RateLimiter;
use crate::telemetry::metrics::Metrics;

pub struct AppState {
    pub settings: Arc<Settings>,
    pub environment: Environment,
    pub db: PgPool,
    pub redis: Redis,
    pub metrics: Arc<Metrics>,
    pub registry: Addr<Registry>,
    pub matchmaker: Addr<Matchmaker>,
    pub events: Arc<crate::services::events::EventBus>,
    pub presence: Arc<crate::services::presence::Presence>,
    pub chat_writer: Arc<crate::services::chat_writer::ChatWriter>,
    /// Group commit of the parcels' trails.
    pub tracking: Arc<crate::services::tracking::writer::TrackWriter>,
    /// The payment provider (Stripe or the test provider) and the custody-code key.
    pub payments: Arc<crate::services::payments::Payments>,
    /// Templates and channels of the notification outbox.
    pub delivery: Arc<crate::services::delivery::Delivery>,
    pub tokens: Arc<TokenKeys>,
    pub passwords: PasswordHasher,
    pub limiter: Arc<RateLimiter>,
    /// Parsed `server.trusted_proxies`.
    pub trusted_proxies: Vec<IpNet>,
    pub gazetteer: Arc<Gazetteer>,
    pub cursors: Arc<Cursors>,
    /// The browser origins allowed (CORS and WebSocket upgrades).
    pub cors_origins: Vec<String>,
    /// Set to `true` when the node shuts down: every socket closes with 1001.
    pub shutdown: tokio::sync::watch::Sender<bool>,
    pub started_at: Instant,
}

impl AppState {
    /// Resolves when the node starts shutting down (at once if it already has).
    pub fn shutting_down(&self) -> impl std::future::Future<Output = ()> + 'static {
        let mut rx = self.shutdown.subscribe();
        async move {
            while !*rx.borrow_and_update() {
                if rx.changed().await.is_err() {
                    return;
                }
            }
        }
    }
}
