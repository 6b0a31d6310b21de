//! The Ed25519 keys access tokens are signed with, and the JWKS that publishes their public half.

use std::path::Path;

use anyhow::Context;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, spki::der::pem::LineEnding};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use kernel::auth::{Claims, VerificationKey};

/// The current signing key and every key that still verifies (the current one, and the previous
/// one during a rotation).
pub struct SigningKeys {
    encoding: EncodingKey,
    kid: String,
    verification: Vec<VerificationKey>,
}

impl SigningKeys {
    /// From a PKCS#8 PEM Ed25519 private key, and the public PEM of the key it replaces.
    pub fn from_pem(private_pem: &str, previous_public_pem: Option<&str>) -> anyhow::Result<Self> {
        let signing = SigningKey::from_pkcs8_pem(private_pem.trim())
            .map_err(|_| anyhow::anyhow!("auth.signing_key is not an Ed25519 private key in PKCS#8 PEM form"))?;
        let current = VerificationKey::ed25519(&signing.verifying_key().to_bytes());
        let kid = current.kid.clone().context("an Ed25519 key has a kid")?;
        let encoding =
            EncodingKey::from_ed_pem(private_pem.trim().as_bytes()).context("jsonwebtoken refused the key")?;
        let mut verification = vec![current];
        if let Some(previous) = previous_public_pem {
            let previous = VerificationKey::from_public_pem(previous)
                .map_err(|_| anyhow::anyhow!("auth.previous_public_key is not a public key in PEM form"))?;
            verification.push(previous);
        }
        Ok(Self { encoding, kid, verification })
    }

    /// The key in `path`, made there first if there is none (development only).
    pub fn load_or_generate(path: &Path) -> anyhow::Result<Self> {
        if !path.exists() {
            let mut seed = [0u8; 32];
            rand::fill(&mut seed);
            let pem = SigningKey::from_bytes(&seed)
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| anyhow::anyhow!("cannot encode a new key: {e}"))?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            }
            write_private(path, pem.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
            tracing::warn!(
                path = %path.display(),
                "auth.signing_key is not set: generated a development signing key; set auth.signing_key in production"
            );
        }
        let pem = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        Self::from_pem(&pem, None)
    }

    pub fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).context("failed to sign a token")
    }

    pub fn verification_keys(&self) -> Vec<VerificationKey> {
        self.verification.clone()
    }

    /// `{"keys": [...]}` with every key that still verifies.
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<&serde_json::Value> = self.verification.iter().filter_map(VerificationKey::jwk).collect();
        serde_json::json!({ "keys": keys })
    }
}

/// Why `pem` cannot be the signing key, if it cannot.
pub fn signing_key_error(pem: &str) -> Option<String> {
    SigningKey::from_pkcs8_pem(pem.trim()).err().map(|_| "is not an Ed25519 private key in PKCS#8 PEM form".into())
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_is_kept_and_signs_tokens_named_by_its_kid() {
        let dir = std::env::temp_dir().join(format!("bazaar-keys-{}", uuid::Uuid::new_v4()));
        let path = dir.join("signing.pem");
        let first = SigningKeys::load_or_generate(&path).expect("generated");
        let again = SigningKeys::load_or_generate(&path).expect("loaded");
        assert_eq!(first.kid, again.kid, "generated once, then reused");
        let jwks = first.jwks();
        assert_eq!(jwks["keys"][0]["kid"], first.kid.as_str());
        assert_eq!(jwks["keys"][0]["kty"], "OKP");
        assert!(jwks["keys"][0].get("d").is_none(), "no private part");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).expect("a file").permissions().mode() & 0o777, 0o600);
        }
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn garbage_is_not_a_signing_key() {
        assert!(signing_key_error("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----").is_some());
        assert!(SigningKeys::from_pem("nope", None).is_err());
    }
}
