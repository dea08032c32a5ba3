//! Redis plumbing: the deadpool-redis pool (optional: an empty `redis.url` means single-node
//! mode) and the key naming module every key and channel goes through. What is stored under
//! those keys belongs to the services that use them.

pub mod keys;

use std::time::Duration;

use deadpool_redis::redis;

use crate::config::RedisSettings;
use crate::telemetry::metrics::PoolSample;

pub use keys::Keys;

/// Redis access for one node: `pool` is `None` in single-node mode.
#[derive(Clone)]
pub struct Redis {
    pool: Option<deadpool_redis::Pool>,
    keys: Keys,
    /// For the dedicated pub/sub connection (pools cannot lend one).
    url: crate::config::Secret,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("enabled", &self.pool.is_some())
            .field("keys", &self.keys)
            .finish()
    }
}

impl Redis {
    /// Builds the pool without connecting: a node starts while Redis is down, and deadpool opens
    /// fresh connections once it is back.
    pub fn new(settings: &RedisSettings) -> Result<Self, String> {
        let keys = Keys::new(&settings.key_prefix);
        if settings.url.is_empty() {
            return Ok(Self {
                pool: None,
                keys,
                url: settings.url.clone(),
            });
        }
        let timeout = Some(Duration::from_millis(settings.timeout_ms));
        let mut cfg = deadpool_redis::Config::from_url(settings.url.expose());
        cfg.pool = Some(deadpool_redis::PoolConfig {
            max_size: settings.pool_max_size,
            timeouts: deadpool_redis::Timeouts {
                wait: timeout,
                create: timeout,
                recycle: timeout,
            },
            ..deadpool_redis::PoolConfig::default()
        });
        let pool = cfg
            .create_pool(Some(deadpool_redis::Runtime::Tokio1))
            .map_err(|e| format!("redis.url: {e}"))?;
        Ok(Self {
            pool: Some(pool),
            keys,
            url: settings.url.clone(),
        })
    }

    pub fn enabled(&self) -> bool {
        self.pool.is_some()
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// A client for a dedicated connection (pub/sub), when Redis is configured.
    pub fn client(&self) -> Option<Result<redis::Client, String>> {
        self.pool
            .as_ref()
            .map(|_| redis::Client::open(self.url.expose()).map_err(|e| e.to_string()))
    }

    pub fn pool(&self) -> Option<&deadpool_redis::Pool> {
        self.pool.as_ref()
    }

    /// `PING`; `Ok` without a round trip in single-node mode.
    pub async fn ping(&self) -> Result<(), String> {
        let Some(pool) = &self.pool else {
            return Ok(());
        };
        let mut conn = pool.get().await.map_err(|e| e.to_string())?;
        let pong: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(format!("unexpected PING reply `{pong}`"))
        }
    }

    pub fn pool_sample(&self) -> Option<PoolSample> {
        self.pool.as_ref().map(|p| {
            let s = p.status();
            PoolSample {
                size: s.size,
                available: s.available,
                waiting: s.waiting,
                max_size: s.max_size,
            }
        })
    }
}
