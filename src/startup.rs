//! Builds the application: pools, actors and the HTTP server; runs it until SIGTERM/SIGINT and
//! shuts down gracefully (stop accepting, let in-flight requests finish within the grace period).

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Actor;
use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};

use crate::actors::matchmaker::Apply;
use crate::actors::redis_bridge::RedisBridge;
use crate::actors::{ActorProbe, Matchmaker, Registry};
use crate::config::{Environment, Settings};
use crate::db::{self, DbSetupError};
use crate::http::{self, docs, extract, middleware, security};
use crate::redis::Redis;
use crate::services::auth::passwords::PasswordHasher;
use crate::services::auth::tokens::TokenKeys;
use crate::services::events::{Event, EventBus};
use crate::services::pagination::Cursors;
use crate::services::rate_limit::RateLimiter;
use crate::state::AppState;
use crate::telemetry::metrics::Metrics;

/// Why the application could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Database(#[from] DbSetupError),
    #[error("{0}")]
    Redis(String),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Auth(String),
    #[error("notifications: {0}")]
    Notifications(String),
    #[error("cannot listen on {addr}: {cause}")]
    Bind { addr: String, cause: std::io::Error },
}

/// Extra routes mounted next to the real ones (used by tests to reach the error stack through
/// a JSON endpoint of their own).
pub type ExtraRoutes = fn(&mut web::ServiceConfig);

/// `serve` and `migrate`: create the database when configured to, then apply pending migrations.
pub async fn prepare_database(settings: &Settings) -> Result<usize, DbSetupError> {
    if settings.database.create_if_missing {
        db::ensure_database(&settings.database).await?;
    } else {
        let retry_for = Duration::from_secs(settings.database.startup_retry_secs);
        db::connect_with_retry(
            settings.database.url.expose(),
            retry_for,
            settings.database.connect_timeout(),
        )
        .await?;
    }
    db::migrate(settings.database.url.expose()).await
}

/// `airbar reconcile`: the ledger's invariants, the payment records against the ledger and,
/// with Stripe configured, the ledger against Stripe's objects created in `[from, to)`.
pub async fn reconcile(
    settings: &Settings,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
) -> Result<crate::services::payments::reconcile::Report, String> {
    let mut conn = db::connect_with_retry(
        settings.database.url.expose(),
        Duration::from_secs(settings.database.startup_retry_secs),
        settings.database.connect_timeout(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let provider = crate::services::payments::provider::Provider::from_settings(&settings.stripe)
        .map_err(|e| e.to_string())?;
    crate::services::payments::reconcile::run(&mut conn, &provider, from, to)
        .await
        .map_err(|e| e.to_string())
}

pub struct Application {
    port: u16,
    server: Server,
    /// The matchmaker's thread, stopped with the server.
    matchmaker_arbiter: actix::ArbiterHandle,
    state: web::Data<AppState>,
}

impl Application {
    /// Builds pools (lazily connecting), actors and the server, bound but not yet running.
    /// Must be called inside an actix system.
    pub fn build(
        settings: Settings,
        environment: Environment,
        extra: Option<ExtraRoutes>,
    ) -> Result<Self, StartupError> {
        let settings = Arc::new(settings);
        let metrics = Arc::new(Metrics::new());
        let db = db::pool(&settings.database)?;
        let redis = Redis::new(&settings.redis).map_err(StartupError::Redis)?;
        let registry = Registry::new(ActorProbe::new(&metrics.actors, "registry")).start();
        // Its own thread: scoring is CPU work that must not queue behind the system arbiter's
        // timers and I/O tasks, nor delay them.
        let rules = settings.matching.rules();
        let matchmaker_probe = ActorProbe::new(&metrics.actors, "matchmaker");
        let matchmaker_arbiter = actix::Arbiter::new().handle();
        let matchmaker = Matchmaker::start_in_arbiter(&matchmaker_arbiter, move |_| {
            Matchmaker::new(rules, matchmaker_probe)
        });
        let events = Arc::new(EventBus::new(redis.clone()));
        let tokens = Arc::new(TokenKeys::from_settings(&settings.auth)?);
        let passwords = PasswordHasher::new(&settings.auth).map_err(StartupError::Auth)?;
        let limiter = Arc::new(RateLimiter::new(redis.clone(), settings.rate_limit.clone()));
        let origins = settings.cors.origins()?;
        let presence = Arc::new(crate::services::presence::Presence::new(
            redis.clone(),
            events.node(),
        ));
        let chat_writer = Arc::new(crate::services::chat_writer::ChatWriter::start(
            db.clone(),
            crate::services::chat::room_rules(),
        ));
        let trail_db = crate::services::tracking::writer::trail_pool(
            &settings.database,
            settings.tracking.trail_synchronous_commit,
        )?;
        let tracking = Arc::new(crate::services::tracking::writer::TrackWriter::start(
            trail_db,
            redis.clone(),
            events.clone(),
            Duration::from_millis(settings.tracking.trail_linger_ms),
        ));
        let payments = Arc::new(crate::services::payments::Payments::new(&settings)?);
        if payments.provider.is_test() && environment == Environment::Production {
            tracing::warn!(
                "no stripe.secret_key: payments run on the built-in test provider (test mode)"
            );
        }
        let (host, port) = settings.listen_addr();
        let listener =
            TcpListener::bind((host.as_str(), port)).map_err(|cause| StartupError::Bind {
                addr: format!("{host}:{port}"),
                cause,
            })?;
        let port = listener
            .local_addr()
            .map_err(|cause| StartupError::Bind {
                addr: host.clone(),
                cause,
            })?
            .port();

        let delivery = Arc::new(
            crate::services::delivery::Delivery::new(&settings, port)
                .map_err(StartupError::Notifications)?,
        );
        let state = web::Data::new(AppState {
            payments,
            delivery,
            presence,
            chat_writer,
            tracking,
            settings: settings.clone(),
            environment,
            db,
            redis,
            metrics,
            registry,
            matchmaker,
            events,
            tokens,
            passwords,
            limiter,
            trusted_proxies: settings.server.trusted_proxies()?,
            gazetteer: Arc::new(crate::services::locations::load().map_err(StartupError::Auth)?),
            cors_origins: origins.clone(),
            shutdown: tokio::sync::watch::channel(false).0,
            cursors: Arc::new(Cursors::new(
                settings.auth.refresh_token_secret.expose().as_bytes(),
            )),
            started_at: Instant::now(),
        });
        spawn_housekeeping(state.clone());
        spawn_matching(state.clone());
        spawn_payments(state.clone());
        crate::services::delivery::spawn_workers(state.clone())
            .map_err(StartupError::Notifications)?;

        let json_limit = settings.server.json_limit_bytes;
        let stalled = Duration::from_millis(settings.realtime.stalled_write_timeout_ms);
        let send_buffer = settings.realtime.socket_send_buffer_bytes;
        let app_state = state.clone();
        let mut server = HttpServer::new(move || {
            App::new()
                .wrap(from_fn(security::rate_limit))
                .wrap(from_fn(security::security_headers))
                .wrap(security::cors(&origins))
                .wrap(from_fn(middleware::request_context))
                .app_data(app_state.clone())
                .app_data(extract::json_config(json_limit))
                .app_data(web::PayloadConfig::new(json_limit))
                .app_data(extract::query_config())
                .app_data(extract::path_config())
                .configure(http::configure)
                .configure(|cfg| {
                    if let Some(extra) = extra {
                        extra(cfg);
                    }
                })
                .service(docs::swagger_ui())
                .default_service(web::to(middleware::route_not_found))
        })
        .on_connect(move |conn, _| {
            // Slow consumers that stop reading altogether are cut by the kernel (see
            // `actors::outlet`), and the send buffer may be capped.
            if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
                let socket = socket2::SockRef::from(tcp);
                // Small frames go out at once (Nagle would hold an ack behind the message
                // frame before it until the client's delayed ACK, ~40 ms).
                let _ = socket.set_tcp_nodelay(true);
                let _ = socket.set_tcp_user_timeout(Some(stalled));
                if send_buffer > 0 {
                    let _ = socket.set_send_buffer_size(send_buffer);
                }
            }
        })
        .disable_signals()
        .shutdown_timeout(settings.server.shutdown_grace_secs);
        if settings.server.workers > 0 {
            server = server.workers(settings.server.workers);
        }
        let server = server
            .listen(listener)
            .map_err(|cause| StartupError::Bind {
                addr: format!("{host}:{port}"),
                cause,
            })?
            .run();
        tracing::info!(%host, port, environment = environment.as_str(), redis = state.redis.enabled(), "listening");
        Ok(Self {
            matchmaker_arbiter,
            port,
            server,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until the handle stops the server.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let res = self.server.await;
        self.matchmaker_arbiter.stop();
        res
    }

    /// Serves until SIGTERM or SIGINT, then stops gracefully.
    pub async fn run_until_signalled(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        actix_web::rt::spawn(async move {
            let signal = wait_for_signal().await;
            tracing::info!(
                signal,
                "shutting down: no new connections, draining in-flight requests"
            );
            handle.stop(true).await;
        });
        let res = self.server.await;
        self.matchmaker_arbiter.stop();
        tracing::info!("stopped");
        res
    }
}

/// The matchmaker's feed and timers: bus events into its index, a rebuild from PostgreSQL at
/// start and periodically (repairing anything a lost event left out), and the expiry sweeper.
fn spawn_matching(state: web::Data<AppState>) {
    RedisBridge::new(state.clone()).start();
    let mut feed = state.events.subscribe();
    let probe = ActorProbe::new(&state.metrics.actors, "matchmaker");
    let matchmaker = state.matchmaker.clone();
    actix_web::rt::spawn(async move {
        loop {
            match feed.recv().await {
                Ok(event) => {
                    let for_index = matches!(
                        event.event,
                        Event::TripUpserted { .. }
                            | Event::TripRemoved { .. }
                            | Event::ParcelUpserted { .. }
                            | Event::ParcelRemoved { .. }
                    );
                    if for_index && matchmaker.try_send(Apply(event)).is_err() {
                        probe.dropped();
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(
                        missed = n,
                        "matchmaker fell behind the bus; the next rebuild repairs it"
                    );
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    let reindex_state = state.clone();
    actix_web::rt::spawn(async move {
        let period = Duration::from_secs(reindex_state.settings.matching.reindex_interval_secs);
        let mut every = tokio::time::interval(period);
        loop {
            every.tick().await;
            let started = Instant::now();
            match crate::services::matching::facts::rebuild_index(&reindex_state).await {
                Ok((trips, parcels)) => tracing::info!(
                    trips,
                    parcels,
                    ms = started.elapsed().as_millis() as u64,
                    "matchmaker index rebuilt"
                ),
                Err(e) => tracing::warn!(error = %e, "matchmaker index rebuild failed"),
            }
        }
    });
    actix_web::rt::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(
            state.settings.matching.sweep_interval_ms,
        ));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            match crate::services::matching::sweep_expired(&state).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(expired = n, "expired lapsed matches"),
                Err(e) => tracing::warn!(error = %e, "expiry sweep failed"),
            }
        }
    });
}

/// The money timers: the release sweeper and the worker making queued provider calls
/// (refunds, payouts), every `payments.sweep_interval_ms` or when nudged.
fn spawn_payments(state: web::Data<AppState>) {
    actix_web::rt::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(
            state.settings.payments.sweep_interval_ms,
        ));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                () = state.payments.kick.notified() => {}
            }
            match crate::services::payments::settle::sweep_releases(&state).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(released = n, "released held funds"),
                Err(e) => tracing::warn!(error = %e, "release sweep failed"),
            }
            if let Err(e) = crate::services::payments::settle::run_ops(&state).await {
                tracing::warn!(error = %e, "provider call worker failed");
            }
        }
    });
}

/// How often ended sessions (and their refresh tokens) are deleted.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(3600);

/// Periodic clean-up on this node; several nodes doing it at once is harmless.
fn spawn_housekeeping(state: web::Data<AppState>) {
    actix_web::rt::spawn(async move {
        let mut every = tokio::time::interval(HOUSEKEEPING_EVERY);
        loop {
            every.tick().await;
            match crate::services::auth::purge_ended_sessions(&state).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(sessions = n, "purged ended sessions"),
                Err(e) => tracing::warn!(error = %e, "session purge failed"),
            }
            match crate::services::delivery::purge(&state).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(messages = n, "purged old notification deliveries"),
                Err(e) => tracing::warn!(error = %e, "notification delivery purge failed"),
            }
            if let Err(e) = crate::services::payments::idempotency::purge(&state).await {
                tracing::warn!(error = %e, "idempotency key purge failed");
            }
            match crate::services::activities::purge_old(&state).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(activities = n, "purged old activities"),
                Err(e) => tracing::warn!(error = %e, "activity purge failed"),
            }
        }
    });
}

async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        },
        _ => {
            // Without signal handlers only Ctrl-C through tokio remains.
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}
