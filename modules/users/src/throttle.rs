//! Limits on log-ins, registrations and mailed tokens, counted before the work is done.
//!
//! An attempt takes a place in every limit it falls under *before* its password is checked, so
//! a burst of concurrent guesses cannot all get through while the first ones are still being
//! verified; a successful log-in gives its places back. The log-in policy (README "Security"):
//! - per account and client address: a few failures a minute — the guesser is stopped, the
//!   account's owner elsewhere is not;
//! - per client address: more, since many people share one (an office, a carrier's NAT) — one
//!   address cannot try many accounts;
//! - per account from every address: a slower hourly budget, against a distributed guesser. It
//!   is the only limit one attacker can use to lock an account out, and only with many addresses
//!   and for an hour at most.
//!
//! Password-reset requests are limited per e-mail address (whether or not an account has it, so
//! the limit tells nothing) and per client address, and verification mails per account: neither
//! can be used to flood a mailbox.

use std::time::{Duration, Instant};

use moka::sync::Cache;

/// At most `limit` attempts per key in a window that starts with the key's first attempt.
pub struct Limit {
    attempts: Cache<String, (u32, Instant)>,
    limit: u32,
    window: Duration,
}

impl Limit {
    pub fn new(limit: u32, window: Duration) -> Self {
        // Entries outlive their window a little, then go: memory stays bounded by active clients.
        let attempts = Cache::builder().max_capacity(100_000).time_to_live(window * 2).build();
        Self { attempts, limit: limit.max(1), window }
    }

    /// Takes a place for `key`, or says how long until one frees up.
    fn take(&self, key: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut refused = None;
        self.attempts.entry_by_ref(key).and_upsert_with(|entry| match entry.map(|e| e.into_value()) {
            Some((count, since)) if now.duration_since(since) < self.window => {
                if count >= self.limit {
                    refused = Some(self.window.saturating_sub(now.duration_since(since)));
                    (count, since)
                } else {
                    (count + 1, since)
                }
            }
            _ => (1, now),
        });
        match refused {
            Some(wait) => Err(wait.max(Duration::from_secs(1))),
            None => Ok(()),
        }
    }

    /// Forgets `key`'s attempts.
    pub fn reset(&self, key: &str) {
        self.attempts.invalidate(key);
    }

    /// Gives back a place taken for `key`.
    fn give_back(&self, key: &str) {
        self.attempts.entry_by_ref(key).and_compute_with(|entry| {
            use moka::ops::compute::Op;
            match entry.map(|e| e.into_value()) {
                Some((count, since)) if count > 1 => Op::Put((count - 1, since)),
                Some(_) => Op::Remove,
                None => Op::Nop,
            }
        });
    }
}

/// Places taken in several limits at once; all or none.
#[must_use = "an attempt that does not count gives its places back with `give_back`"]
pub struct Attempt<'a> {
    taken: Vec<(&'a Limit, String)>,
}

impl Attempt<'_> {
    /// The attempt does not count (it succeeded, or never got to check a password).
    pub fn give_back(self) {
        for (limit, key) in &self.taken {
            limit.give_back(key);
        }
    }
}

/// Takes a place in each `(limit, key)`, or none if any refuses; then `Err` is the longest wait.
pub fn attempt<'a>(places: impl IntoIterator<Item = (&'a Limit, String)>) -> Result<Attempt<'a>, Duration> {
    let mut taken: Vec<(&'a Limit, String)> = Vec::new();
    for (limit, key) in places {
        if let Err(wait) = limit.take(&key) {
            for (limit, key) in &taken {
                limit.give_back(key);
            }
            return Err(wait);
        }
        taken.push((limit, key));
    }
    Ok(Attempt { taken })
}

/// The users module's limits.
pub struct Throttles {
    pub login_per_account_and_address: Limit,
    pub login_per_address: Limit,
    pub login_per_account: Limit,
    pub registrations_per_address: Limit,
    pub password_resets_per_email: Limit,
    pub password_resets_per_address: Limit,
    pub verification_mails_per_account: Limit,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_taken_before_the_check_and_given_back_on_success() {
        let limit = Limit::new(2, Duration::from_secs(60));
        let first = attempt([(&limit, "a".to_owned())]).expect("a place");
        let _second = attempt([(&limit, "a".to_owned())]).expect("a place");
        let wait = attempt([(&limit, "a".to_owned())]).err().expect("no third place while two are out");
        assert!(wait >= Duration::from_secs(1));
        first.give_back();
        assert!(attempt([(&limit, "a".to_owned())]).is_ok(), "a success gave its place back");
        assert!(attempt([(&limit, "b".to_owned())]).is_ok(), "other keys are not affected");
    }

    #[test]
    fn a_refusal_by_one_limit_takes_no_place_in_the_others() {
        let wide = Limit::new(10, Duration::from_secs(60));
        let narrow = Limit::new(1, Duration::from_secs(60));
        let _held = attempt([(&narrow, "k".to_owned())]).expect("a place");
        assert!(attempt([(&wide, "k".to_owned()), (&narrow, "k".to_owned())]).is_err());
        for _ in 0..10 {
            let _ = attempt([(&wide, "k".to_owned())]).expect("the refused attempt took nothing from the wide limit");
        }
    }

    #[test]
    fn the_window_ends() {
        let limit = Limit::new(1, Duration::from_millis(100));
        let _held = attempt([(&limit, "a".to_owned())]).expect("a place");
        assert!(attempt([(&limit, "a".to_owned())]).is_err());
        std::thread::sleep(Duration::from_millis(150));
        assert!(attempt([(&limit, "a".to_owned())]).is_ok());
    }
}
