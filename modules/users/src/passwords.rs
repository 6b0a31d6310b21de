//! Password hashing with argon2id at OWASP's parameters, off the async workers, in bounded memory.
//!
//! Each hash needs 19 MiB of working memory. Unbounded, a burst of log-ins multiplies that by the
//! number of requests (40 at once took a process to 800 MB) and glibc keeps the freed blocks
//! resident in its per-thread arenas. So: at most `concurrency` hashes run at once, each in one of
//! `concurrency` memory blocks allocated once and reused; a few more requests may wait their turn
//! (`queue`), and beyond that the caller is told to come back ([`HashError::Busy`], a 503).

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context;
use argon2::password_hash::phc::{Output, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::Semaphore;

use crate::domain::Password;

/// OWASP (2024): argon2id, m = 19 MiB, t = 2, p = 1.
const M_COST_KIB: u32 = 19 * 1024;
const T_COST: u32 = 2;
const OUTPUT_LEN: usize = 32;

/// Verified against when the account does not exist, so that an unknown e-mail costs as much as a
/// wrong password and timing tells nothing. Its output matches no password anyone knows.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$bm8gYWNjb3VudCBoYXMgaXQ$K1Nc8BQB9Jm6uUvQfKz2gTQdXyn5Yx0fcmpqg1vU6hE";

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Every hashing slot and queue place is taken: retry shortly.
    #[error("too many password checks at once")]
    Busy,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Hashes and verifies passwords with a bounded number of runs and memory blocks.
pub struct PasswordHasher {
    argon2: Argon2<'static>,
    slots: Semaphore,
    /// Running and waiting calls; more than `admit` are turned away.
    admitted: AtomicUsize,
    admit: usize,
    /// Working memory of finished runs, reused by the next ones (at most one per slot).
    blocks: Mutex<Vec<Vec<Block>>>,
}

impl PasswordHasher {
    /// `concurrency` hashes at once (at least 1), `queue` more waiting.
    pub fn new(concurrency: usize, queue: usize) -> Self {
        let params = Params::new(M_COST_KIB, T_COST, 1, Some(OUTPUT_LEN)).expect("constant, valid parameters");
        let concurrency = concurrency.max(1);
        Self {
            argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
            slots: Semaphore::new(concurrency),
            admitted: AtomicUsize::new(0),
            admit: concurrency + queue,
            blocks: Mutex::new(Vec::with_capacity(concurrency)),
        }
    }

    /// The PHC string of `password`, with a random salt.
    pub async fn hash(&self, password: Password) -> Result<String, HashError> {
        let salt = Salt::generate();
        let argon2 = self.argon2.clone();
        let output = self.run(move |memory| compute(&argon2, password.expose().as_bytes(), &salt, memory)).await??;
        let hash = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: self.argon2.params().try_into().map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?,
            salt: Some(salt),
            hash: Some(output),
        };
        Ok(hash.to_string())
    }

    /// Whether `password` matches `hash`; with no hash, spends the same time and says no.
    pub async fn verify(&self, password: String, hash: Option<String>) -> Result<bool, HashError> {
        let known = hash.is_some();
        let stored = PasswordHash::new(hash.as_deref().unwrap_or(DUMMY_HASH))
            .map_err(|e| anyhow::anyhow!("a stored password hash does not parse: {e}"))?;
        let (Some(salt), Some(expected)) = (stored.salt, stored.hash) else {
            return Err(anyhow::anyhow!("a stored password hash has no salt or output").into());
        };
        let params = Params::try_from(&stored.params).map_err(|e| anyhow::anyhow!("stored argon2 parameters: {e}"))?;
        if params.block_count() != self.argon2.params().block_count() {
            // Every hash Bazaar writes has today's memory cost; another would need other blocks.
            return Err(anyhow::anyhow!("a stored password hash has a memory cost this version does not use").into());
        }
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let output = self.run(move |memory| compute(&argon2, password.as_bytes(), &salt, memory)).await??;
        // `Output`'s equality is constant-time.
        Ok(known && output == expected)
    }

    /// Runs `work` on a blocking thread with a memory block, once admitted and given a slot.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut [Block]) -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let _admission = Admission::enter(&self.admitted, self.admit).ok_or(HashError::Busy)?;
        let _slot = self.slots.acquire().await.context("the hashing slots closed")?;
        let memory = self.blocks.lock().map_err(|_| anyhow::anyhow!("the block pool is poisoned"))?.pop();
        let block_count = self.argon2.params().block_count();
        let (result, memory) = tokio::task::spawn_blocking(move || {
            let mut memory = memory.unwrap_or_else(|| vec![Block::default(); block_count]);
            (work(&mut memory), memory)
        })
        .await
        .context("the hashing task panicked")?;
        if let Ok(mut blocks) = self.blocks.lock() {
            blocks.push(memory);
        }
        Ok(result)
    }
}

fn compute(argon2: &Argon2<'_>, password: &[u8], salt: &Salt, memory: &mut [Block]) -> anyhow::Result<Output> {
    let mut out = [0u8; OUTPUT_LEN];
    argon2
        .hash_password_into_with_memory(password, salt.as_ref(), &mut out, memory)
        .map_err(|e| anyhow::anyhow!("argon2 failed: {e}"))?;
    Output::new(&out).map_err(|e| anyhow::anyhow!("argon2 output: {e}"))
}

/// A place among the admitted calls, given back on drop.
struct Admission<'a>(&'a AtomicUsize);

impl<'a> Admission<'a> {
    fn enter(admitted: &'a AtomicUsize, limit: usize) -> Option<Self> {
        admitted.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < limit).then_some(n + 1)).ok()?;
        Some(Self(admitted))
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn password(raw: &str) -> Password {
        Password::parse(raw, None).expect("valid")
    }

    #[tokio::test]
    async fn a_hash_is_argon2id_salted_and_verifies_only_its_password() {
        let hasher = PasswordHasher::new(2, 0);
        let first = hasher.hash(password("correct horse battery")).await.expect("hashed");
        let second = hasher.hash(password("correct horse battery")).await.expect("hashed");
        assert!(first.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{first}");
        assert_ne!(first, second, "salted");
        assert!(hasher.verify("correct horse battery".into(), Some(first.clone())).await.expect("verified"));
        assert!(!hasher.verify("wrong horse battery".into(), Some(first)).await.expect("verified"));
        assert!(!hasher.verify("correct horse battery".into(), None).await.expect("verified"));
    }

    #[tokio::test]
    async fn hashes_written_by_the_argon2_crate_itself_verify() {
        use argon2::PasswordHasher as _;
        let params = Params::new(M_COST_KIB, T_COST, 1, None).expect("valid");
        let theirs = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(b"correct horse battery")
            .expect("hashed")
            .to_string();
        let hasher = PasswordHasher::new(1, 0);
        assert!(hasher.verify("correct horse battery".into(), Some(theirs.clone())).await.expect("verified"));
        assert!(!hasher.verify("correct horse batterz".into(), Some(theirs)).await.expect("verified"));
    }

    #[test]
    fn the_dummy_hash_costs_what_a_real_one_does() {
        let dummy = PasswordHash::new(DUMMY_HASH).expect("parses");
        let params = Params::try_from(&dummy.params).expect("argon2 parameters");
        assert_eq!((params.m_cost(), params.t_cost(), params.p_cost()), (M_COST_KIB, T_COST, 1));
        assert_eq!(dummy.hash.expect("an output").len(), OUTPUT_LEN);
    }

    #[tokio::test]
    async fn beyond_the_slots_and_the_queue_a_call_is_turned_away_and_memory_stays_bounded() {
        let hasher = Arc::new(PasswordHasher::new(2, 2));
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..12 {
            let hasher = hasher.clone();
            calls.spawn(async move { hasher.verify("correct horse battery".into(), None).await });
        }
        let outcomes = calls.join_all().await;
        let busy = outcomes.iter().filter(|o| matches!(o, Err(HashError::Busy))).count();
        let done = outcomes.iter().filter(|o| matches!(o, Ok(false))).count();
        assert_eq!(busy + done, 12, "every call either ran or was turned away");
        assert!(done >= 4 && busy >= 1, "{done} ran, {busy} turned away");
        assert!(hasher.blocks.lock().expect("pool").len() <= 2, "at most one memory block per slot");
        assert_eq!(hasher.admitted.load(Ordering::Acquire), 0, "every place was given back");
    }
}
