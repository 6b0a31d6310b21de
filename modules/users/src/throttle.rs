//! Failed-login throttling: at most N failures a minute per e-mail and per client address.

use std::time::{Duration, Instant};

use moka::sync::Cache;

/// The two limits a log-in passes: per e-mail address and per client address.
pub struct Throttles {
    pub email: LoginThrottle,
    pub address: LoginThrottle,
}

pub struct LoginThrottle {
    failures: Cache<String, (u32, Instant)>,
    limit: u32,
    window: Duration,
}

impl LoginThrottle {
    pub fn new(limit: u32, window: Duration) -> Self {
        // Entries outlive their window a little, then go: memory stays bounded by active attackers.
        let failures = Cache::builder().max_capacity(100_000).time_to_live(window * 2).build();
        Self { failures, limit: limit.max(1), window }
    }

    /// `Err(retry_after)` when any of `keys` has used up its failures in the current window.
    pub fn check(&self, keys: &[String]) -> Result<(), Duration> {
        let now = Instant::now();
        let wait = keys
            .iter()
            .filter_map(|key| self.failures.get(key))
            .filter(|(count, since)| *count >= self.limit && now.duration_since(*since) < self.window)
            .map(|(_, since)| self.window.saturating_sub(now.duration_since(since)))
            .max();
        match wait {
            Some(wait) => Err(wait.max(Duration::from_secs(1))),
            None => Ok(()),
        }
    }

    pub fn record_failure(&self, keys: &[String]) {
        let now = Instant::now();
        for key in keys {
            self.failures.entry(key.clone()).and_upsert_with(|entry| match entry.map(|e| e.into_value()) {
                Some((count, since)) if now.duration_since(since) < self.window => (count + 1, since),
                _ => (1, now),
            });
        }
    }

    pub fn reset(&self, key: &str) {
        self.failures.invalidate(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_applies_per_key_until_reset_or_the_window_ends() {
        let throttle = LoginThrottle::new(2, Duration::from_millis(200));
        let keys = ["email:a@b.c".to_owned(), "ip:1.2.3.4".to_owned()];
        throttle.record_failure(&keys);
        assert!(throttle.check(&keys).is_ok());
        throttle.record_failure(&keys);
        let wait = throttle.check(&keys).expect_err("throttled");
        assert!(wait >= Duration::from_secs(1));
        assert!(throttle.check(&["ip:5.6.7.8".to_owned()]).is_ok(), "other addresses are not affected");
        throttle.reset("email:a@b.c");
        assert!(throttle.check(&keys[..1]).is_ok());
        assert!(throttle.check(&keys[1..]).is_err(), "the address still is");
        std::thread::sleep(Duration::from_millis(250));
        assert!(throttle.check(&keys).is_ok(), "the window ended");
    }
}
