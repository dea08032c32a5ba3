//! Rate limiting with GCRA: one atomic Lua script in Redis (shared by every node), and an
//! in-process table for single-node mode and as the fallback while Redis fails.
//!
//! Redis down: general limits fail open (availability over strictness; the per-IP limit only
//! protects capacity), while `/api/auth/*` limits fall back to the in-process limiter, so
//! password guessing stays bounded per node. After a Redis error the limiter uses the fallback
//! for `redis_retry_after_ms` before trying Redis again, so an outage adds no latency.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deadpool_redis::redis::Script;

use crate::config::RateLimitSettings;
use crate::domain::gcra::{self, Decision, Quota};
use crate::redis::Redis;

/// The arithmetic of `domain::gcra::decide` for several keys at once, atomically, on Redis'
/// clock: `KEYS[i]` with `ARGV[2i-1]` = emission interval (ms) and `ARGV[2i]` = quota. All or
/// nothing: if any key refuses, none is consumed. Returns 4 numbers per key: allowed,
/// remaining, reset (ms), retry after (ms).
const GCRA_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out, tats, refused = {}, {}, false
for i = 1, #KEYS do
  local emission = tonumber(ARGV[2 * i - 1])
  local tolerance = emission * tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  local new_tat = tat + emission
  local allow_at = new_tat - tolerance
  local base = (i - 1) * 4
  if now < allow_at then
    refused = true
    out[base + 1], out[base + 2], out[base + 3], out[base + 4] = 0, 0, tat - now, allow_at - now
  else
    tats[i] = new_tat
    out[base + 1] = 1
    out[base + 2] = math.floor((tolerance - (new_tat - now)) / emission)
    out[base + 3], out[base + 4] = new_tat - now, 0
  end
end
if not refused then
  for i = 1, #KEYS do redis.call('SET', KEYS[i], tats[i], 'PX', tats[i] - now) end
end
return out
";

/// Which limit a request counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every request, per client IP.
    Ip,
    /// Authenticated requests, per user.
    User,
    /// `/api/auth/*`, per client IP, stricter.
    Auth,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Self::Ip => "ip",
            Self::User => "user",
            Self::Auth => "auth",
        }
    }

    /// Whether this scope is enforced in-process while Redis fails (otherwise it fails open).
    fn falls_back_locally(self) -> bool {
        matches!(self, Self::Auth)
    }
}

/// A decision with the policy it came from, for the response headers.
#[derive(Debug, Clone, Copy)]
pub struct Verdict {
    pub scope: Scope,
    pub quota: Quota,
    pub decision: Decision,
}

pub struct RateLimiter {
    redis: Redis,
    script: Script,
    settings: RateLimitSettings,
    local: Mutex<HashMap<String, u64>>,
    redis_down_until_ms: AtomicU64,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("redis", &self.redis)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl RateLimiter {
    pub fn new(redis: Redis, settings: RateLimitSettings) -> Self {
        Self {
            redis,
            script: Script::new(GCRA_LUA),
            settings,
            local: Mutex::new(HashMap::new()),
            redis_down_until_ms: AtomicU64::new(0),
        }
    }

    pub fn enabled(&self) -> bool {
        self.settings.enabled
    }

    /// Whether `presented` is the configured bypass token (never when none is configured).
    pub fn bypassed_by(&self, presented: Option<&str>) -> bool {
        let expected = self.settings.bypass_token.expose();
        match presented {
            Some(p) if !expected.is_empty() => {
                subtle::ConstantTimeEq::ct_eq(p.as_bytes(), expected.as_bytes()).into()
            }
            _ => false,
        }
    }

    pub fn quota(&self, scope: Scope) -> Quota {
        Quota::per_minute(match scope {
            Scope::Ip => self.settings.ip_per_minute,
            Scope::User => self.settings.user_per_minute,
            Scope::Auth => self.settings.auth_per_minute,
        })
    }

    /// Counts one request against every `(scope, subject)` in one round trip. Scopes that fail
    /// open (Redis down) are left out of the answer. If any verdict refuses, the request is
    /// refused and (in Redis) nothing is consumed.
    pub async fn check(&self, checks: &[(Scope, &str)]) -> Vec<Verdict> {
        let redis_usable =
            self.redis.enabled() && now_ms() >= self.redis_down_until_ms.load(Ordering::Relaxed);
        if redis_usable {
            match self.check_redis(checks).await {
                Ok(verdicts) => return verdicts,
                Err(e) => {
                    tracing::warn!(error = %e, "rate limiter: Redis failed, using the fallback");
                    self.redis_down_until_ms.store(
                        now_ms() + self.settings.redis_retry_after_ms,
                        Ordering::Relaxed,
                    );
                }
            }
        }
        checks
            .iter()
            .filter(|(scope, _)| !self.redis.enabled() || scope.falls_back_locally())
            .map(|(scope, subject)| {
                let quota = self.quota(*scope);
                Verdict {
                    scope: *scope,
                    quota,
                    decision: self.check_local(*scope, subject, quota),
                }
            })
            .collect()
    }

    async fn check_redis(&self, checks: &[(Scope, &str)]) -> Result<Vec<Verdict>, String> {
        let pool = self.redis.pool().ok_or("redis disabled")?;
        let mut invocation = self.script.prepare_invoke();
        for (scope, subject) in checks {
            let quota = self.quota(*scope);
            invocation
                .key(self.redis.keys().key("rl", &[scope.name(), subject]))
                .arg(quota.emission_ms())
                .arg(quota.quota);
        }
        let mut conn = pool.get().await.map_err(|e| e.to_string())?;
        let out: Vec<i64> =
            tokio::time::timeout(Duration::from_secs(1), invocation.invoke_async(&mut conn))
                .await
                .map_err(|_| "timed out".to_owned())?
                .map_err(|e| e.to_string())?;
        let field = |i: usize| u64::try_from(out.get(i).copied().unwrap_or(0)).unwrap_or(0);
        Ok(checks
            .iter()
            .enumerate()
            .map(|(i, (scope, _))| Verdict {
                scope: *scope,
                quota: self.quota(*scope),
                decision: Decision {
                    allowed: field(i * 4) == 1,
                    remaining: u32::try_from(field(i * 4 + 1)).unwrap_or(u32::MAX),
                    reset_ms: field(i * 4 + 2),
                    retry_after_ms: field(i * 4 + 3),
                    tat_ms: 0,
                },
            })
            .collect())
    }

    fn check_local(&self, scope: Scope, subject: &str, quota: Quota) -> Decision {
        let now = now_ms();
        let key = format!("{}:{subject}", scope.name());
        let mut table = match self.local.lock() {
            Ok(t) => t,
            Err(poisoned) => poisoned.into_inner(),
        };
        if table.len() >= self.settings.local_max_keys && !table.contains_key(&key) {
            table.retain(|_, tat| *tat > now);
            if table.len() >= self.settings.local_max_keys {
                // Still full of live entries: drop a tenth (arbitrary ones) rather than grow,
                // or reset everyone's allowance at once.
                let drop: Vec<String> = table
                    .keys()
                    .take(self.settings.local_max_keys / 10 + 1)
                    .cloned()
                    .collect();
                for k in drop {
                    table.remove(&k);
                }
            }
        }
        let decision = gcra::decide(quota, table.get(&key).copied(), now);
        if decision.allowed {
            table.insert(key, decision.tat_ms);
        }
        decision
    }
}
