//! Typed settings, loaded once in `main` (or by the test harness) and passed explicitly.
//!
//! Layers, later wins: `config/default.toml`, `config/<AIRBAR_ENV>.toml`, then the environment
//! (`PORT`, `DATABASE_URL`, `REDIS_URL` directly; every other key as `AIRBAR__<SECTION>__<KEY>`).
//! An unknown key in any layer is an error naming the key. No I/O beyond reading the files.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Which environment file is layered over the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Test,
    Production,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Test => "test",
            Self::Production => "production",
        }
    }
}

impl std::str::FromStr for Environment {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "development" => Ok(Self::Development),
            "test" => Ok(Self::Test),
            "production" => Ok(Self::Production),
            other => Err(ConfigError(format!(
                "AIRBAR_ENV: unknown environment `{other}` (expected development, test or production)"
            ))),
        }
    }
}

/// A value that must never appear in logs or output; `Debug` prints a placeholder.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "Secret(empty)"
        } else {
            "Secret(***)"
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub redis: RedisSettings,
    pub telemetry: TelemetrySettings,
    pub health: HealthSettings,
    pub auth: AuthSettings,
    pub matching: MatchingSettings,
    pub payments: PaymentSettings,
    pub stripe: StripeSettings,
    pub cors: CorsSettings,
    pub rate_limit: RateLimitSettings,
    pub realtime: RealtimeSettings,
    pub notifications: NotificationSettings,
    pub email: EmailSettings,
    pub sms: SmsSettings,
    pub push: PushSettings,
    pub tracking: TrackingSettings,
}

/// Live tracking: the jitter filter, the geofence, the parcel trackers.
#[derive(Debug, Clone, Deserialize)]
pub struct TrackingSettings {
    /// A position whose accuracy radius is larger than this is dropped.
    pub max_accuracy_m: f64,
    /// A position closer than this to the latest accepted one, taken less than
    /// `min_interval_secs` after it, is dropped.
    pub min_move_m: f64,
    pub min_interval_secs: i64,
    /// A position timestamped further than this in the future is dropped (clock skew allowance).
    pub max_future_secs: i64,
    /// A position implying a faster move than this from the latest one is dropped.
    pub max_speed_mps: f64,
    /// `arriving` is raised once when the parcel comes this close to its destination.
    pub geofence_m: f64,
    /// A tracker with no watcher and no position on this node for this long stops.
    pub tracker_idle_secs: u64,
    /// Watchers (sockets and recipient streams) one parcel's tracker takes on one node; the
    /// next is refused (`unavailable` on the socket, 503 on the stream).
    pub max_watchers: usize,
    /// The trail in `GET /api/matches/{id}/tracking` is thinned to at most this many points
    /// unless the client asks for fewer (`points`, at most 1000).
    pub trail_points: i64,
    /// The trail writer's commits wait for the WAL to reach the disk. Off (the default), a
    /// batch is committed and visible at once and flushed by PostgreSQL's WAL writer within
    /// about three `wal_writer_delay`s: a crash of PostgreSQL itself (not of this node) can
    /// lose the last fraction of a second of breadcrumbs, never anything else.
    pub trail_synchronous_commit: bool,
    /// A trail batch of fewer than 64 points waits this long (from its first point) for more,
    /// so a light load shares statements; 0 = store at once.
    pub trail_linger_ms: u64,
}

impl TrackingSettings {
    pub fn filter(&self) -> crate::domain::tracking::FilterRules {
        crate::domain::tracking::FilterRules {
            max_accuracy_m: self.max_accuracy_m,
            min_move_m: self.min_move_m,
            min_interval_secs: self.min_interval_secs,
            max_future_secs: self.max_future_secs,
            max_speed_mps: self.max_speed_mps,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let positive = [self.max_accuracy_m, self.max_speed_mps, self.geofence_m]
            .iter()
            .all(|v| v.is_finite() && *v > 0.0);
        let min_move = self.min_move_m.is_finite() && self.min_move_m >= 0.0;
        if !(positive && min_move)
            || self.min_interval_secs < 0
            || self.max_future_secs < 0
            || self.tracker_idle_secs == 0
            || self.max_watchers == 0
            || self.trail_linger_ms > 100
            || !(2..=1000).contains(&self.trail_points)
        {
            return Err(ConfigError(
                "`tracking`: max_accuracy_m, max_speed_mps and geofence_m must be > 0, min_move_m, min_interval_secs and max_future_secs >= 0, tracker_idle_secs and max_watchers >= 1, trail_points 2..=1000, trail_linger_ms <= 100"
                    .to_owned(),
            ));
        }
        Ok(())
    }
}

/// The delivery outbox of email, SMS and push notifications.
#[derive(Debug, Clone, Deserialize)]
pub struct NotificationSettings {
    /// Base of the links in messages (tracking links); empty: this node's own address.
    pub public_url: String,
    /// Template set of messages (`templates/<locale>/…`).
    pub locale: String,
    /// How often each channel's worker looks for due messages (it is also woken on commit).
    pub poll_interval_ms: u64,
    /// Messages one worker claims at once.
    pub batch_size: u32,
    /// Of those, sent at the same time (each holds an SMTP connection or an HTTP request, and
    /// briefly a database connection).
    pub concurrency: u32,
    /// A claimed message is someone else's to retry after this long (a send never takes
    /// longer: the channels' own timeouts are shorter).
    pub lease_secs: u64,
    /// Attempts before a message is marked failed.
    pub max_attempts: u32,
    /// Retry delays: `backoff_base_ms · 2^(attempt-1)`, at most `backoff_max_ms`, with jitter.
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// At most this many messages to one address per channel per hour; further ones are
    /// suppressed (a bug cannot spam anyone).
    pub max_per_recipient_per_hour: u32,
    /// Sent, failed and suppressed messages are deleted after this many days.
    pub retention_days: u32,
}

/// SMTP (`lettre`). Without `smtp_host` no email is sent (in-app notifications still are).
#[derive(Debug, Clone, Deserialize)]
pub struct EmailSettings {
    pub smtp_host: String,
    pub smtp_port: u16,
    /// `none`, `starttls` or `tls`.
    pub smtp_tls: String,
    pub smtp_username: String,
    pub smtp_password: Secret,
    /// The `From` address (`Name <address>` or an address).
    pub from: String,
    /// Timeout of one SMTP conversation.
    pub timeout_ms: u64,
}

impl EmailSettings {
    pub fn enabled(&self) -> bool {
        !self.smtp_host.is_empty()
    }
}

/// SMS through a Twilio-shaped Messages API (`POST {api_base}/2010-04-01/Accounts/{sid}/
/// Messages.json`). The defaults reach the local stand-in (`scripts/notify_sinks.py`).
#[derive(Debug, Clone, Deserialize)]
pub struct SmsSettings {
    pub enabled: bool,
    pub api_base: String,
    pub account_sid: String,
    pub auth_token: Secret,
    pub from: String,
    pub timeout_ms: u64,
}

/// Push: a channel with the same interface, unconfigured by default (no provider yet).
#[derive(Debug, Clone, Deserialize)]
pub struct PushSettings {
    /// Empty: push is off and nothing is queued for it.
    pub api_base: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RealtimeSettings {
    /// A user's hub lingers this long after their last socket closes before they go offline.
    pub presence_grace_ms: u64,
    /// A chat room actor with no subscribers on this node stops after this long.
    pub room_idle_secs: u64,
    /// A connection whose peer has not taken data for this long is cut by the kernel
    /// (TCP_USER_TIMEOUT): the end of a slow consumer that never reads again.
    pub stalled_write_timeout_ms: u64,
    /// SO_SNDBUF of accepted connections (0 = the kernel's autotuning): caps what the kernel
    /// holds for a client that does not read.
    pub socket_send_buffer_bytes: usize,
    /// An event stream gets a comment line this often (proxies close silent connections).
    pub sse_keepalive_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    pub workers: usize,
    pub shutdown_grace_secs: u64,
    pub json_limit_bytes: usize,
    pub trusted_proxies: String,
    pub hsts: bool,
}

/// An IP network (`addr/prefix`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: std::net::IpAddr,
    prefix: u8,
}

impl IpNet {
    pub fn parse(s: &str) -> Option<Self> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (
                a.parse::<std::net::IpAddr>().ok()?,
                Some(p.parse::<u8>().ok()?),
            ),
            None => (s.parse().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Self { addr, prefix })
    }

    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let (net, ip, bits) = match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => {
                (u128::from(u32::from(n)), u128::from(u32::from(i)), 32)
            }
            (IpAddr::V6(n), IpAddr::V6(i)) => (u128::from(n), u128::from(i), 128),
            (IpAddr::V4(n), IpAddr::V6(i)) => match i.to_ipv4_mapped() {
                Some(i) => (u128::from(u32::from(n)), u128::from(u32::from(i)), 32),
                None => return false,
            },
            (IpAddr::V6(_), IpAddr::V4(_)) => return false,
        };
        let shift = bits - u32::from(self.prefix);
        shift >= bits || (net >> shift) == (ip >> shift)
    }
}

impl ServerSettings {
    pub fn trusted_proxies(&self) -> Result<Vec<IpNet>, ConfigError> {
        self.trusted_proxies
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                IpNet::parse(s).ok_or_else(|| {
                    ConfigError(format!(
                        "`server.trusted_proxies`: `{s}` is not an address or CIDR range"
                    ))
                })
            })
            .collect()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    pub url: Secret,
    pub pool_max_size: usize,
    pub acquire_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    pub startup_retry_secs: u64,
    pub create_if_missing: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RedisSettings {
    pub url: Secret,
    pub key_prefix: String,
    pub pool_max_size: usize,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TelemetrySettings {
    pub log_format: LogFormat,
    pub log_filter: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HealthSettings {
    pub check_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    pub issuer: String,
    pub audience: String,
    pub access_ttl_secs: u64,
    pub leeway_secs: u64,
    pub jwt_keys: Secret,
    pub jwt_signing_kid: String,
    pub refresh_ttl_secs: u64,
    pub session_max_age_secs: u64,
    pub refresh_grace_secs: u64,
    pub refresh_token_secret: Secret,
    pub session_cache_secs: u64,
    pub max_sessions_per_user: u32,
    pub max_failed_logins: u32,
    pub lockout_secs: u64,
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    pub password_hash_concurrency: usize,
    pub password_queue_timeout_ms: u64,
}

/// One JWT verification key.
#[derive(Debug, Clone)]
pub struct JwtKey {
    pub kid: String,
    pub secret: Secret,
}

const MIN_SECRET_LEN: usize = 32;

impl AuthSettings {
    /// The verification keys from `"kid:secret,kid:secret"`.
    pub fn jwt_keys(&self) -> Result<Vec<JwtKey>, ConfigError> {
        let mut keys: Vec<JwtKey> = Vec::new();
        for pair in self
            .jwt_keys
            .expose()
            .split(',')
            .filter(|p| !p.trim().is_empty())
        {
            let (kid, secret) = pair.trim().split_once(':').ok_or_else(|| {
                ConfigError("`auth.jwt_keys` entries must be \"kid:secret\"".to_owned())
            })?;
            if kid.is_empty() || secret.len() < MIN_SECRET_LEN {
                return Err(ConfigError(format!(
                    "`auth.jwt_keys`: every key needs a kid and a secret of {MIN_SECRET_LEN}+ characters"
                )));
            }
            if keys.iter().any(|k| k.kid == kid) {
                return Err(ConfigError(format!(
                    "`auth.jwt_keys`: kid `{kid}` appears twice"
                )));
            }
            keys.push(JwtKey {
                kid: kid.to_owned(),
                secret: Secret::new(secret),
            });
        }
        if keys.is_empty() {
            return Err(ConfigError(
                "`auth.jwt_keys` must name at least one key".to_owned(),
            ));
        }
        if !keys.iter().any(|k| k.kid == self.jwt_signing_kid) {
            return Err(ConfigError(
                "`auth.jwt_signing_kid` must name one of `auth.jwt_keys`".to_owned(),
            ));
        }
        Ok(keys)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.jwt_keys()?;
        let checks: [(bool, &str, &str); 11] = [
            (
                self.access_ttl_secs <= 3600,
                "auth.access_ttl_secs",
                "must be at most 3600 (access tokens are short-lived)",
            ),
            (
                self.session_max_age_secs <= 365 * 86_400,
                "auth.session_max_age_secs",
                "must be at most a year",
            ),
            (
                self.refresh_token_secret.expose().len() >= MIN_SECRET_LEN,
                "auth.refresh_token_secret",
                "must be at least 32 characters",
            ),
            (
                self.leeway_secs <= 30,
                "auth.leeway_secs",
                "must be at most 30",
            ),
            (
                self.refresh_grace_secs <= 5,
                "auth.refresh_grace_secs",
                "must be at most 5",
            ),
            (
                self.access_ttl_secs > 0,
                "auth.access_ttl_secs",
                "must be > 0",
            ),
            (
                self.refresh_ttl_secs > 0 && self.refresh_ttl_secs <= self.session_max_age_secs,
                "auth.refresh_ttl_secs",
                "must be > 0 and at most auth.session_max_age_secs",
            ),
            (
                self.argon2_memory_kib >= 19_456
                    && self.argon2_iterations >= 2
                    && self.argon2_parallelism >= 1,
                "auth.argon2_memory_kib",
                "argon2 parameters must be at least OWASP's (19456 KiB, 2 iterations, 1 lane)",
            ),
            (
                self.password_hash_concurrency > 0,
                "auth.password_hash_concurrency",
                "must be > 0",
            ),
            (
                self.max_failed_logins > 0,
                "auth.max_failed_logins",
                "must be > 0",
            ),
            (
                self.max_sessions_per_user > 0,
                "auth.max_sessions_per_user",
                "must be > 0",
            ),
        ];
        for (ok, key, message) in checks {
            if !ok {
                return Err(ConfigError(format!("`{key}` {message}")));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct MatchingSettings {
    pub max_origin_km: f64,
    pub max_destination_km: f64,
    pub weight_route: f64,
    pub weight_trust: f64,
    pub weight_price: f64,
    pub weight_timeline: f64,
    pub weight_history: f64,
    pub kyc_required_above: i64,
    pub request_ttl_secs: u64,
    pub payment_window_secs: u64,
    pub max_open_requests_per_parcel: u32,
    pub max_open_requests_per_trip: u32,
    pub suggestions_limit: usize,
    pub notify_travelers: usize,
    pub sweep_interval_ms: u64,
    pub reindex_interval_secs: u64,
}

impl MatchingSettings {
    pub fn rules(&self) -> crate::domain::matching::Rules {
        crate::domain::matching::Rules {
            max_origin_m: self.max_origin_km * 1000.0,
            max_destination_m: self.max_destination_km * 1000.0,
            weights: crate::domain::matching::Weights {
                route: self.weight_route,
                trust: self.weight_trust,
                price: self.weight_price,
                timeline: self.weight_timeline,
                history: self.weight_history,
            },
            kyc_above_major: self.kyc_required_above,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let rules = self.rules();
        let checks: [(bool, &str, &str); 6] = [
            (
                rules.weights.is_valid(),
                "matching.weight_route",
                "the five weights must be >= 0 and sum to 1",
            ),
            (
                self.max_origin_km > 0.0
                    && self.max_origin_km <= 500.0
                    && self.max_destination_km > 0.0
                    && self.max_destination_km <= 500.0,
                "matching.max_origin_km",
                "distances must be above 0 and at most 500 km",
            ),
            (
                self.suggestions_limit > 0 && self.suggestions_limit <= 100,
                "matching.suggestions_limit",
                "must be 1 to 100",
            ),
            (
                self.sweep_interval_ms > 0,
                "matching.sweep_interval_ms",
                "must be > 0",
            ),
            (
                self.reindex_interval_secs > 0,
                "matching.reindex_interval_secs",
                "must be > 0",
            ),
            (
                self.max_open_requests_per_parcel > 0 && self.max_open_requests_per_trip > 0,
                "matching.max_open_requests_per_parcel",
                "limits must be > 0",
            ),
        ];
        for (ok, key, message) in checks {
            if !ok {
                return Err(ConfigError(format!("`{key}` {message}")));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct PaymentSettings {
    pub fee_bps: u32,
    /// Held funds go to the traveler this long after delivery (0: at once).
    pub release_delay_secs: u64,
    /// How often the release sweeper and the provider-call worker run.
    pub sweep_interval_ms: u64,
    /// Attempts of one provider call (refund, payout) before it is marked failed.
    pub max_attempts: u32,
}

/// Stripe. Without `secret_key` the built-in test provider is used, whatever else is set.
#[derive(Debug, Clone, Deserialize)]
pub struct StripeSettings {
    pub secret_key: Secret,
    /// Verifies `Stripe-Signature` on webhooks (`whsec_…`).
    pub webhook_secret: Secret,
    /// The API's base URL (a local emulator in tests); empty: Stripe's own.
    pub api_base: String,
    /// Timeout of one call to the API.
    pub timeout_ms: u64,
}

impl NotificationSettings {
    fn validate(&self, email: &EmailSettings, sms: &SmsSettings) -> Result<(), ConfigError> {
        let fail = |m: &str| Err(ConfigError(m.to_owned()));
        if self.poll_interval_ms == 0 || self.batch_size == 0 || self.max_attempts == 0 {
            return fail("`notifications.poll_interval_ms`, `batch_size` and `max_attempts` must be at least 1");
        }
        if self.backoff_base_ms == 0 || self.backoff_max_ms < self.backoff_base_ms {
            return fail(
                "`notifications.backoff_base_ms` must be at least 1 and at most `backoff_max_ms`",
            );
        }
        if self.locale != "en" {
            return fail("`notifications.locale` must be `en` (the only template set so far)");
        }
        if self.lease_secs < 10 {
            return fail("`notifications.lease_secs` must be at least 10");
        }
        if self.concurrency == 0 {
            return fail("`notifications.concurrency` must be at least 1");
        }
        // A send is cut at half the lease; the providers' own timeouts must be shorter.
        if email.timeout_ms >= self.lease_secs * 500 || sms.timeout_ms >= self.lease_secs * 500 {
            return fail("`email.timeout_ms` and `sms.timeout_ms` must be shorter than half `notifications.lease_secs`");
        }
        if email.enabled() && !matches!(email.smtp_tls.as_str(), "none" | "starttls" | "tls") {
            return fail("`email.smtp_tls` must be none, starttls or tls");
        }
        if email.enabled() && email.from.is_empty() {
            return fail("`email.from` is required with `email.smtp_host`");
        }
        Ok(())
    }
}

impl StripeSettings {
    pub fn enabled(&self) -> bool {
        !self.secret_key.is_empty()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct CorsSettings {
    pub allowed_origins: String,
}

impl CorsSettings {
    /// The configured origins (never a wildcard).
    pub fn origins(&self) -> Result<Vec<String>, ConfigError> {
        let origins: Vec<String> = self
            .allowed_origins
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .map(str::to_owned)
            .collect();
        for o in &origins {
            let ok = (o.starts_with("https://") || o.starts_with("http://"))
                && !o.contains('*')
                && !o.ends_with('/');
            if !ok {
                return Err(ConfigError(format!(
                    "`cors.allowed_origins`: `{o}` must be scheme://host[:port], no wildcard, no trailing slash"
                )));
            }
        }
        Ok(origins)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct RateLimitSettings {
    pub bypass_token: Secret,
    pub enabled: bool,
    pub ip_per_minute: u32,
    pub user_per_minute: u32,
    pub auth_per_minute: u32,
    pub redis_retry_after_ms: u64,
    pub local_max_keys: usize,
}

impl DatabaseSettings {
    pub fn acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.acquire_timeout_ms)
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}

impl HealthSettings {
    pub fn check_timeout(&self) -> Duration {
        Duration::from_millis(self.check_timeout_ms)
    }
}

/// A configuration problem, rendered as one line that names the offending key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Where the configuration files are and which environment applies.
#[derive(Debug, Clone)]
pub struct Source {
    pub dir: PathBuf,
    pub environment: Environment,
}

impl Source {
    /// `AIRBAR_CONFIG_DIR` (default `config`) and `AIRBAR_ENV` (default `development`).
    pub fn from_vars(vars: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let dir = vars
            .get("AIRBAR_CONFIG_DIR")
            .map_or_else(|| PathBuf::from("config"), PathBuf::from);
        let environment = match vars.get("AIRBAR_ENV") {
            Some(name) => name.parse()?,
            None => Environment::Development,
        };
        Ok(Self { dir, environment })
    }
}

impl Settings {
    /// Loads the layered settings; `vars` stands for the process environment.
    pub fn load(source: &Source, vars: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let defaults = source.dir.join("default.toml");
        if !defaults.is_file() {
            return Err(ConfigError(format!(
                "{} not found (set AIRBAR_CONFIG_DIR to the config directory)",
                defaults.display()
            )));
        }
        let env_file = source
            .dir
            .join(format!("{}.toml", source.environment.as_str()));
        let prefixed: config::Map<String, String> = vars
            .iter()
            .filter(|(k, _)| k.starts_with("AIRBAR__"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();

        let mut builder = config::Config::builder()
            .add_source(toml_file(&defaults, true))
            .add_source(toml_file(&env_file, false))
            .add_source(
                config::Environment::with_prefix("AIRBAR")
                    .prefix_separator("__")
                    .separator("__")
                    .source(Some(prefixed)),
            );
        for (var, key) in [
            ("PORT", "server.port"),
            ("DATABASE_URL", "database.url"),
            ("REDIS_URL", "redis.url"),
        ] {
            builder = builder
                .set_override_option(key, vars.get(var).cloned())
                .map_err(|e| ConfigError(format!("{var}: {e}")))?;
        }
        let layered = builder.build().map_err(|e| ConfigError(e.to_string()))?;

        let mut unknown = Vec::new();
        let settings: Settings = serde_ignored::deserialize(layered, |path| {
            unknown.push(path.to_string());
        })
        .map_err(|e| ConfigError(e.to_string()))?;
        if let Some(key) = unknown.first() {
            return Err(ConfigError(format!("unknown key `{key}`")));
        }
        settings.validate()?;
        settings.auth.validate()?;
        settings.matching.validate()?;
        if settings.payments.fee_bps > 10_000 {
            return Err(ConfigError(
                "`payments.fee_bps` must be at most 10000".to_owned(),
            ));
        }
        if settings.payments.sweep_interval_ms == 0 || settings.payments.max_attempts == 0 {
            return Err(ConfigError(
                "`payments.sweep_interval_ms` and `payments.max_attempts` must be at least 1"
                    .to_owned(),
            ));
        }
        if settings.stripe.enabled() && settings.stripe.webhook_secret.is_empty() {
            return Err(ConfigError(
                "`stripe.webhook_secret` is required with `stripe.secret_key`".to_owned(),
            ));
        }
        if settings.realtime.stalled_write_timeout_ms < 1000
            || settings.realtime.room_idle_secs == 0
        {
            return Err(ConfigError(
                "`realtime.stalled_write_timeout_ms` must be at least 1000, `realtime.room_idle_secs` and `realtime.sse_keepalive_secs` at least 1"
                    .to_owned(),
            ));
        }
        settings
            .notifications
            .validate(&settings.email, &settings.sms)?;
        settings.tracking.validate()?;
        if source.environment == Environment::Production
            && (settings.email.enabled() || settings.sms.enabled)
            && settings.notifications.public_url.is_empty()
        {
            return Err(ConfigError(
                "`notifications.public_url` is required in production when email or SMS is on (links in messages)"
                    .to_owned(),
            ));
        }
        settings.cors.origins()?;
        settings.server.trusted_proxies()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let checks: [(bool, &str, &str); 11] = [
            (
                self.rate_limit.ip_per_minute > 0,
                "rate_limit.ip_per_minute",
                "must be > 0",
            ),
            (
                self.rate_limit.user_per_minute > 0,
                "rate_limit.user_per_minute",
                "must be > 0",
            ),
            (
                self.rate_limit.auth_per_minute > 0,
                "rate_limit.auth_per_minute",
                "must be > 0",
            ),
            (
                self.server.json_limit_bytes > 0,
                "server.json_limit_bytes",
                "must be > 0",
            ),
            (
                self.database.pool_max_size > 0,
                "database.pool_max_size",
                "must be > 0",
            ),
            (
                self.redis.pool_max_size > 0,
                "redis.pool_max_size",
                "must be > 0",
            ),
            (
                self.database.acquire_timeout_ms > 0,
                "database.acquire_timeout_ms",
                "must be > 0",
            ),
            (
                self.database.connect_timeout_ms > 0,
                "database.connect_timeout_ms",
                "must be > 0",
            ),
            (
                self.health.check_timeout_ms > 0,
                "health.check_timeout_ms",
                "must be > 0",
            ),
            (
                !self.redis.key_prefix.is_empty()
                    && !self.redis.key_prefix.chars().any(char::is_whitespace),
                "redis.key_prefix",
                "must be non-empty and contain no whitespace",
            ),
            (
                self.database.url.expose().starts_with("postgres://")
                    || self.database.url.expose().starts_with("postgresql://"),
                "database.url",
                "must be a postgres:// URL",
            ),
        ];
        for (ok, key, message) in checks {
            if !ok {
                return Err(ConfigError(format!("`{key}` {message}")));
            }
        }
        let redis = self.redis.url.expose();
        if !(redis.is_empty() || redis.starts_with("redis://") || redis.starts_with("rediss://")) {
            return Err(ConfigError(
                "`redis.url` must be empty or a redis:// URL".to_owned(),
            ));
        }
        Ok(())
    }

    /// The address to bind.
    pub fn listen_addr(&self) -> (String, u16) {
        (self.server.host.clone(), self.server.port)
    }

    /// Whether Redis is configured; without it the node runs single-node.
    pub fn redis_enabled(&self) -> bool {
        !self.redis.url.is_empty()
    }
}

fn toml_file(
    path: &Path,
    required: bool,
) -> config::File<config::FileSourceFile, config::FileFormat> {
    config::File::from(path)
        .format(config::FileFormat::Toml)
        .required(required)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config")
    }

    fn load(env: Environment, vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let vars: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::load(
            &Source {
                dir: dir(),
                environment: env,
            },
            &vars,
        )
    }

    #[test]
    fn defaults_point_at_the_local_services() {
        let s = load(Environment::Development, &[]).unwrap();
        assert_eq!(s.server.port, 3001);
        assert_eq!(
            s.database.url.expose(),
            "postgres://postgres@127.0.0.1:5432/airbar"
        );
        assert_eq!(s.redis.url.expose(), "redis://127.0.0.1:6379");
        assert_eq!(s.telemetry.log_format, LogFormat::Pretty);
    }

    #[test]
    fn the_environment_file_overrides_defaults() {
        let s = load(
            Environment::Production,
            &[
                (
                    "AIRBAR__AUTH__JWT_KEYS",
                    "k9:0123456789abcdef0123456789abcdef",
                ),
                ("AIRBAR__AUTH__JWT_SIGNING_KID", "k9"),
                (
                    "AIRBAR__AUTH__REFRESH_TOKEN_SECRET",
                    "fedcba9876543210fedcba9876543210",
                ),
            ],
        )
        .unwrap();
        assert_eq!(s.telemetry.log_format, LogFormat::Json);
        assert!(s.rate_limit.bypass_token.is_empty());
    }

    #[test]
    fn direct_and_prefixed_variables_override_files() {
        let s = load(
            Environment::Development,
            &[
                ("PORT", "8080"),
                ("DATABASE_URL", "postgres://u:p@db:5432/x"),
                ("REDIS_URL", ""),
                ("AIRBAR__RATE_LIMIT__BYPASS_TOKEN", "tok"),
                ("AIRBAR__DATABASE__POOL_MAX_SIZE", "3"),
            ],
        )
        .unwrap();
        assert_eq!(s.server.port, 8080);
        assert_eq!(s.database.url.expose(), "postgres://u:p@db:5432/x");
        assert!(!s.redis_enabled());
        assert_eq!(s.rate_limit.bypass_token.expose(), "tok");
        assert_eq!(s.database.pool_max_size, 3);
    }

    #[test]
    fn an_unknown_key_is_named_in_the_error() {
        let err = load(Environment::Development, &[("AIRBAR__SERVER__PROT", "1")]).unwrap_err();
        assert!(err.to_string().contains("server.prot"), "{err}");
        let err = load(Environment::Development, &[("AIRBAR__NOPE__X", "1")]).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn a_badly_typed_value_is_named_in_the_error() {
        let err = load(Environment::Development, &[("PORT", "eighty")]).unwrap_err();
        assert!(err.to_string().contains("server.port"), "{err}");
    }

    #[test]
    fn an_invalid_value_is_named_in_the_error() {
        let err = load(
            Environment::Development,
            &[("AIRBAR__REDIS__KEY_PREFIX", "")],
        )
        .unwrap_err();
        assert!(err.to_string().contains("redis.key_prefix"), "{err}");
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let s = load(
            Environment::Development,
            &[
                ("DATABASE_URL", "postgres://u:hunter2@db/x"),
                ("AIRBAR__RATE_LIMIT__BYPASS_TOKEN", "sesame"),
            ],
        )
        .unwrap();
        let printed = format!("{s:?}");
        assert!(
            !printed.contains("hunter2") && !printed.contains("sesame"),
            "{printed}"
        );
    }

    #[test]
    fn production_refuses_to_start_without_its_own_signing_keys() {
        let err = load(Environment::Production, &[]).unwrap_err();
        assert!(err.to_string().contains("auth.jwt_keys"), "{err}");
        let s = load(
            Environment::Production,
            &[
                (
                    "AIRBAR__AUTH__JWT_KEYS",
                    "k9:0123456789abcdef0123456789abcdef",
                ),
                ("AIRBAR__AUTH__JWT_SIGNING_KID", "k9"),
                (
                    "AIRBAR__AUTH__REFRESH_TOKEN_SECRET",
                    "fedcba9876543210fedcba9876543210",
                ),
            ],
        )
        .unwrap();
        assert_eq!(s.auth.jwt_keys().unwrap()[0].kid, "k9");
    }

    #[test]
    fn notification_settings_are_checked() {
        let keys = [
            (
                "AIRBAR__AUTH__JWT_KEYS",
                "k9:0123456789abcdef0123456789abcdef",
            ),
            ("AIRBAR__AUTH__JWT_SIGNING_KID", "k9"),
            (
                "AIRBAR__AUTH__REFRESH_TOKEN_SECRET",
                "fedcba9876543210fedcba9876543210",
            ),
            ("AIRBAR__EMAIL__SMTP_HOST", "smtp.example"),
        ];
        let err = load(Environment::Production, &keys).unwrap_err();
        assert!(
            err.to_string().contains("notifications.public_url"),
            "{err}"
        );
        let mut with_url = keys.to_vec();
        with_url.push((
            "AIRBAR__NOTIFICATIONS__PUBLIC_URL",
            "https://airbar.example",
        ));
        assert!(load(Environment::Production, &with_url).is_ok());
        for (key, value, named) in [
            ("AIRBAR__EMAIL__SMTP_TLS", "ssl", "email.smtp_tls"),
            (
                "AIRBAR__NOTIFICATIONS__LOCALE",
                "fr",
                "notifications.locale",
            ),
            (
                "AIRBAR__NOTIFICATIONS__BACKOFF_BASE_MS",
                "0",
                "notifications.backoff_base_ms",
            ),
            (
                "AIRBAR__NOTIFICATIONS__LEASE_SECS",
                "5",
                "notifications.lease_secs",
            ),
        ] {
            let err = load(
                Environment::Development,
                &[("AIRBAR__EMAIL__SMTP_HOST", "smtp.example"), (key, value)],
            )
            .unwrap_err();
            assert!(err.to_string().contains(named), "{key}: {err}");
        }
    }

    #[test]
    fn weak_keys_wildcard_origins_and_weak_argon2_are_rejected() {
        let err = load(
            Environment::Development,
            &[("AIRBAR__AUTH__JWT_KEYS", "dev-1:short")],
        )
        .unwrap_err();
        assert!(err.to_string().contains("auth.jwt_keys"), "{err}");
        let err = load(
            Environment::Development,
            &[("AIRBAR__CORS__ALLOWED_ORIGINS", "*")],
        )
        .unwrap_err();
        assert!(err.to_string().contains("cors.allowed_origins"), "{err}");
        let err = load(
            Environment::Development,
            &[("AIRBAR__AUTH__ARGON2_MEMORY_KIB", "1024")],
        )
        .unwrap_err();
        assert!(err.to_string().contains("argon2"), "{err}");
    }

    #[test]
    fn trusted_proxies_are_addresses_or_ranges() {
        let s = load(
            Environment::Development,
            &[(
                "AIRBAR__SERVER__TRUSTED_PROXIES",
                "10.0.0.0/8, 127.0.0.1 ,fd00::/8",
            )],
        )
        .unwrap();
        let nets = s.server.trusted_proxies().unwrap();
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        assert!(nets[0].contains(ip("10.20.30.40")));
        assert!(!nets[0].contains(ip("11.0.0.1")));
        assert!(nets[1].contains(ip("127.0.0.1")) && !nets[1].contains(ip("127.0.0.2")));
        assert!(nets[2].contains(ip("fd12::1")) && !nets[2].contains(ip("fe80::1")));
        assert!(nets[1].contains(ip("::ffff:127.0.0.1")));
        let err = load(
            Environment::Development,
            &[("AIRBAR__SERVER__TRUSTED_PROXIES", "10.0.0.0/99")],
        )
        .unwrap_err();
        assert!(err.to_string().contains("server.trusted_proxies"), "{err}");
    }

    #[test]
    fn an_unknown_environment_is_rejected() {
        let vars = BTreeMap::from([("AIRBAR_ENV".to_owned(), "staging".to_owned())]);
        assert!(Source::from_vars(&vars)
            .unwrap_err()
            .to_string()
            .contains("AIRBAR_ENV"));
    }
}
