//! The generic cell rate algorithm: a limit of `quota` requests per `window`, a whole quota in
//! one burst at most. Pure arithmetic on milliseconds; the Redis script (`services::rate_limit`)
//! performs the same steps atomically, and the in-process limiter calls this.

/// A limit: `quota` requests per `window_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub quota: u32,
    pub window_ms: u64,
}

impl Quota {
    pub fn per_minute(quota: u32) -> Self {
        Self {
            quota: quota.max(1),
            window_ms: 60_000,
        }
    }

    /// Milliseconds between requests at the sustained rate.
    pub fn emission_ms(&self) -> u64 {
        (self.window_ms / u64::from(self.quota)).max(1)
    }
}

/// The outcome of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Requests still allowed right now.
    pub remaining: u32,
    /// Milliseconds until the allowance is full again.
    pub reset_ms: u64,
    /// When refused: milliseconds until one request would be allowed.
    pub retry_after_ms: u64,
    /// The new theoretical arrival time to store (unchanged when refused).
    pub tat_ms: u64,
}

/// Decides one request at `now_ms` given the stored theoretical arrival time `tat_ms`.
pub fn decide(quota: Quota, tat_ms: Option<u64>, now_ms: u64) -> Decision {
    let emission = quota.emission_ms();
    let tolerance = emission * u64::from(quota.quota);
    let tat = tat_ms.unwrap_or(now_ms).max(now_ms);
    let new_tat = tat + emission;
    let allow_at = new_tat.saturating_sub(tolerance);
    if now_ms < allow_at {
        return Decision {
            allowed: false,
            remaining: 0,
            reset_ms: tat - now_ms,
            retry_after_ms: allow_at - now_ms,
            tat_ms: tat,
        };
    }
    let used = new_tat - now_ms;
    let remaining = u32::try_from(tolerance.saturating_sub(used) / emission).unwrap_or(u32::MAX);
    Decision {
        allowed: true,
        remaining,
        reset_ms: used,
        retry_after_ms: 0,
        tat_ms: new_tat,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_quota_passes_in_a_burst_then_the_next_is_refused() {
        let q = Quota::per_minute(5);
        let mut tat = None;
        for i in 0..5 {
            let d = decide(q, tat, 1_000);
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 4 - i);
            tat = Some(d.tat_ms);
        }
        let d = decide(q, tat, 1_000);
        assert!(!d.allowed);
        assert_eq!(d.retry_after_ms, 12_000);
    }

    #[test]
    fn the_allowance_refills_at_the_sustained_rate() {
        let q = Quota::per_minute(60);
        let mut tat = None;
        for _ in 0..60 {
            tat = Some(decide(q, tat, 0).tat_ms);
        }
        assert!(!decide(q, tat, 0).allowed);
        assert!(!decide(q, tat, 999).allowed);
        assert!(decide(q, tat, 1_000).allowed);
    }

    #[test]
    fn a_refused_request_does_not_consume_allowance() {
        let q = Quota::per_minute(1);
        let first = decide(q, None, 0);
        let refused = decide(q, Some(first.tat_ms), 10);
        assert!(!refused.allowed);
        assert_eq!(refused.tat_ms, first.tat_ms);
    }
}
