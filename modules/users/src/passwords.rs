//! Password hashing with argon2id at OWASP's parameters, off the async workers.

use std::sync::LazyLock;

use anyhow::Context;
use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};

use crate::domain::Password;

/// OWASP (2024): argon2id, m = 19 MiB, t = 2, p = 1.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("constant, valid parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// A hash to verify against when the account does not exist, so that an unknown e-mail costs
/// as much as a wrong password and timing tells nothing.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    argon2().hash_password(b"no account has this password").map(|h| h.to_string()).unwrap_or_default()
});

/// The PHC string of `password` (salt chosen at random).
pub async fn hash(password: Password) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        argon2()
            .hash_password(password.expose().as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("argon2 failed: {e}"))
    })
    .await
    .context("the hashing task panicked")?
}

/// Whether `password` matches `hash`; with no hash, spends the same time and says no.
pub async fn verify(password: String, hash: Option<String>) -> anyhow::Result<bool> {
    tokio::task::spawn_blocking(move || {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| DUMMY_HASH.clone());
        let matches = argon2().verify_password(password.as_bytes(), hash.as_str()).is_ok();
        known && matches
    })
    .await
    .context("the verifying task panicked")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_is_argon2id_salted_and_verifies_only_its_password() {
        let first = hash(Password::parse("correct horse battery", None).expect("valid")).await.expect("hashed");
        let second = hash(Password::parse("correct horse battery", None).expect("valid")).await.expect("hashed");
        assert!(first.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{first}");
        assert_ne!(first, second, "salted");
        assert!(verify("correct horse battery".into(), Some(first.clone())).await.expect("verified"));
        assert!(!verify("wrong horse battery".into(), Some(first)).await.expect("verified"));
        assert!(!verify("correct horse battery".into(), None).await.expect("verified"));
    }
}
