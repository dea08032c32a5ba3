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
    pub rate_limit: RateLimitSettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    pub workers: usize,
    pub shutdown_grace_secs: u64,
    pub json_limit_bytes: usize,
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
pub struct RateLimitSettings {
    pub bypass_token: Secret,
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
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let checks: [(bool, &str, &str); 8] = [
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
        let s = load(Environment::Production, &[]).unwrap();
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
    fn an_unknown_environment_is_rejected() {
        let vars = BTreeMap::from([("AIRBAR_ENV".to_owned(), "staging".to_owned())]);
        assert!(Source::from_vars(&vars)
            .unwrap_err()
            .to_string()
            .contains("AIRBAR_ENV"));
    }
}
