//! Retry delays shared by the outboxes (provider calls, notification deliveries).

use rand::RngExt as _;

/// `base_ms · 2^attempts`, at most `cap_ms`, with jitter (a random 50–100 % of it), so
/// retries after a common outage spread out instead of arriving together.
pub fn backoff(base_ms: u64, cap_ms: u64, attempts: i32) -> chrono::Duration {
    let exp = u32::try_from(attempts.clamp(0, 20)).unwrap_or(20);
    let full = base_ms.saturating_mul(1 << exp).min(cap_ms);
    let jittered = full / 2 + rand::rng().random_range(0..=full / 2);
    chrono::Duration::milliseconds(i64::try_from(jittered).unwrap_or(i64::MAX / 2))
}

#[cfg(test)]
mod tests {
    use super::backoff;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        for _ in 0..100 {
            let first = backoff(100, 10_000, 0).num_milliseconds();
            assert!((50..=100).contains(&first), "{first}");
            let third = backoff(100, 10_000, 2).num_milliseconds();
            assert!((200..=400).contains(&third), "{third}");
            let capped = backoff(100, 10_000, 30).num_milliseconds();
            assert!((5_000..=10_000).contains(&capped), "{capped}");
        }
    }
}
