//! Reconnect timing, kept here so it is tested on the host.

/// Delay before reconnect attempt `n` (from 1): 1 s, 2 s, 4 s ... capped at
/// 30 s, plus up to half again of random jitter so that many clients do not
/// come back in step. Never under 1 s, as the service asks.
pub fn backoff_ms(attempt: u32, random: f64) -> u32 {
    let base = 1000u32.saturating_mul(1 << attempt.saturating_sub(1).min(5)).min(30_000);
    base + (f64::from(base) * 0.5 * random.clamp(0.0, 1.0)) as u32
}

#[cfg(test)]
mod tests {
    use super::backoff_ms;

    #[test]
    fn backoff_grows_caps_and_jitters() {
        assert_eq!(backoff_ms(1, 0.0), 1000);
        assert_eq!(backoff_ms(1, 1.0), 1500);
        assert_eq!(backoff_ms(2, 0.0), 2000);
        assert_eq!(backoff_ms(3, 0.0), 4000);
        assert_eq!(backoff_ms(40, 0.0), 30_000);
        assert_eq!(backoff_ms(40, 1.0), 45_000);
        assert_eq!(backoff_ms(0, 0.0), 1000, "never under a second");
    }
}
