//! Health use cases: liveness, readiness probes of PostgreSQL and Redis, the summary, and the
//! metrics text (pool gauges are sampled at scrape time).

use std::time::{Duration, Instant};

use serde::Serialize;
use utoipa::ToSchema;

use crate::services::payments::provider::PaymentProvider as _;
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct Liveness {
    /// Always `ok`.
    pub status: &'static str,
}

/// The result of probing one dependency.
#[derive(Debug, Serialize, ToSchema)]
pub struct Check {
    pub ok: bool,
    pub latency_ms: u64,
    /// A short category (`timeout`, `unreachable`); the full cause is logged, not returned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `single_node` when Redis is not configured (its in-process equivalents are used).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<&'static str>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Checks {
    pub postgres: Check,
    pub redis: Check,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ok` or `unavailable`.
    pub status: &'static str,
    pub checks: Checks,
}

impl Readiness {
    pub fn is_ok(&self) -> bool {
        self.checks.postgres.ok && self.checks.redis.ok
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HealthReport {
    /// `ok` or `degraded`.
    pub status: &'static str,
    pub version: &'static str,
    pub environment: &'static str,
    pub uptime_secs: u64,
    pub checks: Checks,
    pub payments: PaymentsReport,
}

/// Which payment provider this node uses.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentsReport {
    /// `test` or `stripe`.
    pub provider: &'static str,
    /// True with the built-in test provider: no real money moves.
    pub test_mode: bool,
}

pub fn liveness() -> Liveness {
    Liveness { status: "ok" }
}

async fn probe<F>(name: &'static str, timeout: Duration, fut: F) -> Check
where
    F: std::future::Future<Output = Result<(), String>>,
{
    let start = Instant::now();
    let outcome = tokio::time::timeout(timeout, fut).await;
    let latency_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    let error = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(cause)) => {
            tracing::warn!(dependency = name, %cause, "readiness probe failed");
            Some("unreachable".to_owned())
        }
        Err(_) => {
            tracing::warn!(
                dependency = name,
                timeout_ms = timeout.as_millis() as u64,
                "readiness probe timed out"
            );
            Some("timeout".to_owned())
        }
    };
    Check {
        ok: error.is_none(),
        latency_ms,
        error,
        mode: None,
    }
}

async fn checks(state: &AppState) -> Checks {
    let timeout = state.settings.health.check_timeout();
    let (postgres, mut redis) = tokio::join!(
        probe("postgres", timeout, crate::db::ping(&state.db)),
        probe("redis", timeout, state.redis.ping()),
    );
    if !state.redis.enabled() {
        redis.mode = Some("single_node");
    }
    Checks { postgres, redis }
}

pub async fn readiness(state: &AppState) -> Readiness {
    let checks = checks(state).await;
    let ok = checks.postgres.ok && checks.redis.ok;
    Readiness {
        status: if ok { "ok" } else { "unavailable" },
        checks,
    }
}

pub async fn report(state: &AppState) -> HealthReport {
    let checks = checks(state).await;
    let ok = checks.postgres.ok && checks.redis.ok;
    HealthReport {
        status: if ok { "ok" } else { "degraded" },
        version: env!("CARGO_PKG_VERSION"),
        environment: state.environment.as_str(),
        uptime_secs: state.started_at.elapsed().as_secs(),
        checks,
        payments: PaymentsReport {
            provider: state.payments.provider.name(),
            test_mode: state.payments.provider.is_test(),
        },
    }
}

/// The Prometheus exposition, with the gauges sampled at scrape time (pools, and the
/// notification outbox's backlog, bounded by `health.check_timeout_ms`).
pub async fn metrics_text(state: &AppState) -> String {
    let within = std::time::Duration::from_millis(state.settings.health.check_timeout_ms);
    match tokio::time::timeout(within, crate::services::delivery::observe_backlog(state)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "outbox backlog not sampled"),
        Err(_) => tracing::debug!("outbox backlog not sampled in time"),
    }
    state
        .metrics
        .observe_pool("postgres", crate::db::pool_sample(&state.db));
    if let Some(sample) = state.redis.pool_sample() {
        state.metrics.observe_pool("redis", sample);
    }
    state.metrics.render()
}
