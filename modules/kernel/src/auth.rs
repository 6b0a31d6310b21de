//! Bearer JWT authentication: [`Principal`] for any signed-in caller, [`Admin`] for admins,
//! [`Verified`] for callers whose e-mail address is verified when the shop requires it.
//!
//! Tokens are verified, never issued, here. The key comes from, in order of preference, the users
//! module when this process hosts it, a configured public key, or the users module's JWKS URL
//! (fetched, cached, fetched again when a token names an unknown `kid`). The algorithm is the key's
//! own, `iss` and `aud` are pinned, `exp` is required; `alg: none` never verifies.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{FromRequest, HttpRequest, dev::Payload, http::header, web};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, RwLock};
use uuid::Uuid;

use crate::ApiError;

/// The role a token grants is the shared vocabulary's.
pub use contracts::Role;

/// The claims Bazaar's access tokens carry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub role: Role,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    /// The OpenID Connect standard claim: the account proved it receives mail at its address.
    /// Tokens issued before the claim existed have none: they count as unverified.
    #[serde(default)]
    pub email_verified: bool,
}

/// A public key that verifies tokens, with the `kid` tokens name it by.
#[derive(Clone)]
pub struct VerificationKey {
    /// RFC 7638 thumbprint for Ed25519 keys; `None` for a configured key that tokens need not name.
    pub kid: Option<String>,
    pub algorithm: Algorithm,
    key: DecodingKey,
    /// The key as a public JWK, for `/.well-known/jwks.json`.
    jwk: Option<serde_json::Value>,
}

#[derive(Debug, thiserror::Error)]
#[error("not an Ed25519 or RSA public key in PEM form")]
pub struct InvalidPublicKey;

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo; the raw key follows it.
const ED25519_SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

impl VerificationKey {
    /// An Ed25519 public key (its 32 raw bytes), named by its RFC 7638 thumbprint.
    pub fn ed25519(public: &[u8; 32]) -> Self {
        let x = URL_SAFE_NO_PAD.encode(public);
        // RFC 7638: the required members, in lexicographic order, without white space.
        let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
        let jwk = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"});
        Self { kid: Some(kid), algorithm: Algorithm::EdDSA, key: DecodingKey::from_ed_der(public), jwk: Some(jwk) }
    }

    /// A PEM public key: Ed25519 (named by its thumbprint) or RSA (RS256, unnamed).
    pub fn from_public_pem(pem: &str) -> Result<Self, InvalidPublicKey> {
        if let Some(raw) = ed25519_public_bytes(pem) {
            return Ok(Self::ed25519(&raw));
        }
        let key = DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(|_| InvalidPublicKey)?;
        Ok(Self { kid: None, algorithm: Algorithm::RS256, key, jwk: None })
    }

    /// A key published in a JWKS; its algorithm follows from its type (OKP: EdDSA, RSA: RS256).
    pub fn from_jwk(jwk: &Jwk) -> Option<Self> {
        use jsonwebtoken::jwk::AlgorithmParameters as P;
        let algorithm = match &jwk.algorithm {
            P::OctetKeyPair(_) => Algorithm::EdDSA,
            P::RSA(_) => Algorithm::RS256,
            _ => return None,
        };
        let key = DecodingKey::from_jwk(jwk).ok()?;
        Some(Self { kid: jwk.common.key_id.clone(), algorithm, key, jwk: serde_json::to_value(jwk).ok() })
    }

    pub fn jwk(&self) -> Option<&serde_json::Value> {
        self.jwk.as_ref()
    }
}

fn ed25519_public_bytes(pem: &str) -> Option<[u8; 32]> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).map(str::trim).collect();
    let der = STANDARD.decode(body).ok()?;
    let raw = der.strip_prefix(&ED25519_SPKI_PREFIX)?;
    raw.try_into().ok()
}

/// Checks access tokens.
#[derive(Clone)]
pub struct JwtVerifier {
    inner: Arc<Verifier>,
    /// Whether [`Verified`] refuses tokens without `email_verified` (`auth.require_verified_email`).
    verified_email_required: bool,
}

struct Verifier {
    source: Source,
    issuer: String,
    audience: String,
    /// Tokens verified already, by SHA-256, until they expire: a client sends the same token with
    /// every request for its whole life, and checking an Ed25519 signature costs more than the
    /// rest of a small request (perf: 5% of the server's CPU in the order saga, mostly on polls).
    verified: moka::sync::Cache<[u8; 32], Claims>,
    /// Per user, the earliest `iat` still accepted: a role change or a log-out revokes the
    /// tokens issued before it. Kept a day, far longer than any access token lives.
    revoked: moka::sync::Cache<Uuid, i64>,
}

/// Users whose older tokens are revoked, remembered at most.
const REVOKED_CAPACITY: u64 = 100_000;

/// Seconds a token is still accepted after its `exp` (clock skew between processes).
const LEEWAY_SECS: u64 = 30;
/// Verified tokens remembered at most; a miss only costs a signature check.
const VERIFIED_CAPACITY: u64 = 4096;

/// A verified token is remembered until it expires (with the leeway), never longer.
struct UntilExpiry;

impl moka::Expiry<[u8; 32], Claims> for UntilExpiry {
    fn expire_after_create(&self, _: &[u8; 32], claims: &Claims, _: Instant) -> Option<Duration> {
        let now = chrono::Utc::now().timestamp();
        let left = claims.exp.saturating_add(LEEWAY_SECS as i64).saturating_sub(now);
        Some(Duration::from_secs(u64::try_from(left).unwrap_or(0)))
    }
}

enum Source {
    Disabled,
    Keys(Vec<VerificationKey>),
    Jwks(Jwks),
}

impl JwtVerifier {
    /// Verifies with these keys; a token must name its key by `kid` unless there is just one.
    pub fn with_keys(keys: Vec<VerificationKey>, issuer: &str, audience: &str) -> Self {
        Self::new(Source::Keys(keys), issuer, audience)
    }

    /// Verifies with one configured PEM public key (Ed25519 or RSA).
    pub fn from_public_key_pem(pem: &str, issuer: &str, audience: &str) -> Result<Self, InvalidPublicKey> {
        Ok(Self::with_keys(vec![VerificationKey::from_public_pem(pem)?], issuer, audience))
    }

    /// Verifies with the keys published at `url`, fetched when a token names an unknown one.
    pub fn from_jwks_url(url: &str, issuer: &str, audience: &str) -> Self {
        let jwks = Jwks {
            url: url.to_owned(),
            shown: crate::redact::url(url),
            client: reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap_or_default(),
            keys: RwLock::new(Vec::new()),
            freshness: Default::default(),
            fetching: Mutex::new(()),
            changed: Default::default(),
        };
        Self::new(Source::Jwks(jwks), issuer, audience)
    }

    /// A verifier that accepts no token: every protected route answers 401.
    pub fn disabled() -> Self {
        Self::new(Source::Disabled, "", "")
    }

    fn new(source: Source, issuer: &str, audience: &str) -> Self {
        let verified = moka::sync::Cache::builder().max_capacity(VERIFIED_CAPACITY).expire_after(UntilExpiry).build();
        let revoked = moka::sync::Cache::builder()
            .max_capacity(REVOKED_CAPACITY)
            .time_to_live(Duration::from_secs(86_400))
            .build();
        let (issuer, audience) = (issuer.to_owned(), audience.to_owned());
        Self {
            inner: Arc::new(Verifier { source, issuer, audience, verified, revoked }),
            verified_email_required: false,
        }
    }

    /// This verifier, with [`Verified`] refusing callers whose token does not say their e-mail
    /// address is verified (`auth.require_verified_email`).
    pub fn requiring_verified_email(self) -> Self {
        Self { verified_email_required: true, ..self }
    }

    /// Whether [`Verified`] requires the `email_verified` claim.
    pub fn requires_verified_email(&self) -> bool {
        self.verified_email_required
    }

    /// Fetches the JWKS now, if that is the source, so the first request does not wait for it.
    pub async fn prefetch(&self) {
        if let Source::Jwks(jwks) = &self.inner.source {
            jwks.ensure_fresh().await;
        }
    }

    pub async fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        // Tokens verified with a key the JWKS no longer has must not stay accepted from memory.
        if let Source::Jwks(jwks) = &self.inner.source
            && jwks.ensure_fresh().await == Fetched::Changed
        {
            self.inner.verified.invalidate_all();
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let claims = match self.inner.verified.get(&digest) {
            Some(claims) => claims,
            None => {
                let claims = self.verify_signature(token).await?;
                self.inner.verified.insert(digest, claims.clone());
                claims
            }
        };
        if self.inner.revoked.get(&claims.sub).is_some_and(|not_before| claims.iat < not_before) {
            return Err(ApiError::Unauthorized("the session was revoked: log in again".into()));
        }
        Ok(claims)
    }

    /// Refuses `user`'s tokens issued before `not_before` (Unix seconds) from now on.
    pub fn revoke(&self, user: Uuid, not_before: i64) {
        self.inner.revoked.entry(user).and_upsert_with(|held| match held {
            Some(held) if *held.value() >= not_before => *held.value(),
            _ => not_before,
        });
    }

    async fn verify_signature(&self, token: &str) -> Result<Claims, ApiError> {
        let invalid = || ApiError::Unauthorized("the bearer token is invalid or expired".into());
        let header = decode_header(token).map_err(|e| {
            tracing::debug!(error = %e, "rejected a bearer token header");
            invalid()
        })?;
        let key = match &self.inner.source {
            Source::Disabled => {
                return Err(ApiError::Unauthorized("token verification is not configured on this server".into()));
            }
            Source::Keys(keys) => pick(keys, header.kid.as_deref()),
            Source::Jwks(jwks) => match header.kid.as_deref() {
                Some(kid) => jwks.key(kid).await,
                None => None,
            },
        }
        .ok_or_else(invalid)?;
        let mut validation = Validation::new(key.algorithm);
        validation.set_issuer(&[&self.inner.issuer]);
        validation.set_audience(&[&self.inner.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECS;
        decode::<Claims>(token, &key.key, &validation).map(|data| data.claims).map_err(|e| {
            tracing::debug!(error = %e, "rejected a bearer token");
            invalid()
        })
    }
}

fn pick(keys: &[VerificationKey], kid: Option<&str>) -> Option<VerificationKey> {
    match kid {
        Some(kid) => keys.iter().find(|k| k.kid.as_deref() == Some(kid) || k.kid.is_none() && keys.len() == 1),
        None if keys.len() == 1 => keys.first(),
        None => None,
    }
    .cloned()
}

/// A cached JWKS, kept as long as its `Cache-Control: max-age` says: a key removed from it stops
/// verifying once the cached copy expires.
struct Jwks {
    url: String,
    /// The URL as logs show it: credentials in it hidden.
    shown: String,
    client: reqwest::Client,
    keys: RwLock<Vec<VerificationKey>>,
    freshness: std::sync::Mutex<Freshness>,
    /// One fetch at a time; the others wait for its result.
    fetching: Mutex<()>,
    /// Set by a fetch that changed the key set (whichever path fetched), taken by the next
    /// [`Jwks::ensure_fresh`]: the tokens verified so far are forgotten then.
    changed: std::sync::atomic::AtomicBool,
}

#[derive(Default, Clone, Copy)]
struct Freshness {
    /// Until when the keys may be used without asking again.
    until: Option<Instant>,
    /// The last fetch, successful or not: an unknown `kid` does not fetch more often than
    /// [`JWKS_MIN_REFRESH`].
    tried_at: Option<Instant>,
}

/// An unknown `kid` fetches the JWKS again, but not more often than this; a failed fetch is
/// retried after it too, the keys held meanwhile still in use.
const JWKS_MIN_REFRESH: Duration = Duration::from_secs(10);
/// How long keys are kept when the JWKS names no `max-age`, and the bounds put on one it names.
const JWKS_DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);
const JWKS_MAX_AGE_BOUNDS: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(3600));

/// Whether the key set changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fetched {
    Same,
    Changed,
}

impl Jwks {
    fn freshness(&self) -> Freshness {
        self.freshness.lock().map(|f| *f).unwrap_or_default()
    }

    fn is_fresh(&self) -> bool {
        self.freshness().until.is_some_and(|until| Instant::now() < until)
    }

    /// Fetches the keys again if the cached copy expired; says whether the set changed since the
    /// last call, by this fetch or by one an unknown `kid` made.
    async fn ensure_fresh(&self) -> Fetched {
        use std::sync::atomic::Ordering;
        if !self.is_fresh() {
            let _fetching = self.fetching.lock().await;
            // Someone else may have fetched while this one waited.
            if !self.is_fresh() {
                self.fetch_logged().await;
            }
        }
        match self.changed.load(Ordering::Acquire) && self.changed.swap(false, Ordering::AcqRel) {
            true => Fetched::Changed,
            false => Fetched::Same,
        }
    }

    async fn key(&self, kid: &str) -> Option<VerificationKey> {
        if let Some(key) = self.find(kid).await {
            return Some(key);
        }
        {
            let _fetching = self.fetching.lock().await;
            if self.freshness().tried_at.is_some_and(|at| at.elapsed() < JWKS_MIN_REFRESH) {
                return self.find(kid).await;
            }
            self.fetch_logged().await;
        }
        self.find(kid).await
    }

    async fn find(&self, kid: &str) -> Option<VerificationKey> {
        self.keys.read().await.iter().find(|k| k.kid.as_deref() == Some(kid)).cloned()
    }

    async fn fetch_logged(&self) {
        if let Err(e) = self.fetch().await {
            tracing::warn!(url = %self.shown, error = %e, "cannot fetch the JWKS; keeping the keys held");
        }
    }

    /// Fetches the keys; the caller holds `fetching`.
    async fn fetch(&self) -> Result<(), reqwest::Error> {
        let now = Instant::now();
        if let Ok(mut freshness) = self.freshness.lock() {
            // Until this fetch succeeds, ask again only after the minimum interval.
            *freshness = Freshness { until: Some(now + JWKS_MIN_REFRESH), tried_at: Some(now) };
        }
        // reqwest's errors name the URL, credentials included: the logs name `shown` instead.
        let fetched = async {
            let response = self.client.get(&self.url).send().await?.error_for_status()?;
            let max_age = max_age(response.headers());
            Ok::<_, reqwest::Error>((response.json::<JwkSet>().await?, max_age))
        };
        let (set, max_age) = fetched.await.map_err(reqwest::Error::without_url)?;
        let keys: Vec<VerificationKey> = set.keys.iter().filter_map(VerificationKey::from_jwk).collect();
        let max_age = max_age.unwrap_or(JWKS_DEFAULT_MAX_AGE).clamp(JWKS_MAX_AGE_BOUNDS.0, JWKS_MAX_AGE_BOUNDS.1);
        if let Ok(mut freshness) = self.freshness.lock() {
            freshness.until = Some(now + max_age);
        }
        let mut held = self.keys.write().await;
        let kids = |keys: &[VerificationKey]| keys.iter().map(|k| k.kid.clone()).collect::<Vec<_>>();
        let changed = kids(&held) != kids(&keys);
        tracing::info!(url = %self.shown, keys = keys.len(), max_age_secs = max_age.as_secs(), changed, "fetched the JWKS");
        *held = keys;
        if changed {
            self.changed.store(true, std::sync::atomic::Ordering::Release);
        }
        Ok(())
    }
}

/// `Cache-Control: max-age=N` (`no-cache` / `no-store`: 0).
fn max_age(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::CACHE_CONTROL)?.to_str().ok()?;
    value.split(',').map(str::trim).find_map(|directive| {
        let directive = directive.to_ascii_lowercase();
        if directive == "no-cache" || directive == "no-store" {
            return Some(Duration::ZERO);
        }
        directive.strip_prefix("max-age=").and_then(|n| n.trim_matches('"').parse().ok()).map(Duration::from_secs)
    })
}

/// The authenticated caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    pub user_id: Uuid,
    pub role: Role,
    /// The token's `email_verified` claim (false when it has none).
    pub email_verified: bool,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

type Authenticating<T> = Pin<Box<dyn Future<Output = Result<T, ApiError>>>>;

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = Authenticating<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let request = bearer(req);
        Box::pin(async move {
            let (verifier, token) = request?;
            let claims = verifier.verify(&token).await?;
            Ok(Principal { user_id: claims.sub, role: claims.role, email_verified: claims.email_verified })
        })
    }
}

fn bearer(req: &HttpRequest) -> Result<(JwtVerifier, String), ApiError> {
    let verifier = req
        .app_data::<web::Data<JwtVerifier>>()
        .ok_or_else(|| ApiError::Unexpected(anyhow::anyhow!("no JwtVerifier in the app data")))?;
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::Unauthorized("an Authorization: Bearer token is required".into()))?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::Unauthorized("the Authorization header is not a Bearer token".into()))?;
    Ok((verifier.get_ref().clone(), token.to_owned()))
}

/// An authenticated admin; anyone else gets 401 (no or bad token) or 403.
#[derive(Debug, Clone, Copy)]
pub struct Admin(pub Principal);

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Authenticating<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let principal = Principal::from_request(req, payload);
        Box::pin(async move {
            let principal = principal.await?;
            if principal.is_admin() {
                Ok(Admin(principal))
            } else {
                Err(ApiError::Forbidden("this action needs the admin role".into()))
            }
        })
    }
}

/// An authenticated caller who may do what needs a verified e-mail address (checking out): with
/// `auth.require_verified_email` set, a token without the `email_verified` claim gets 403; unset
/// (the default, so that a shop without a mail server works), any signed-in caller passes.
/// Dereferences to its [`Principal`].
#[derive(Debug, Clone, Copy)]
pub struct Verified(pub Principal);

impl std::ops::Deref for Verified {
    type Target = Principal;

    fn deref(&self) -> &Principal {
        &self.0
    }
}

impl FromRequest for Verified {
    type Error = ApiError;
    type Future = Authenticating<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let required = req.app_data::<web::Data<JwtVerifier>>().is_some_and(|v| v.requires_verified_email());
        let principal = Principal::from_request(req, payload);
        Box::pin(async move {
            let principal = principal.await?;
            match required && !principal.email_verified {
                true => Err(ApiError::Forbidden("verify your e-mail address first (POST /users/verify)".into())),
                false => Ok(Verified(principal)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n-----END PUBLIC KEY-----\n";

    #[test]
    fn an_ed25519_key_is_named_by_its_rfc_7638_thumbprint() {
        // RFC 8037, appendix A.3: the thumbprint of this key.
        let key = VerificationKey::from_public_pem(PUBLIC).expect("an Ed25519 key");
        assert_eq!(key.kid.as_deref(), Some("kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"));
        assert_eq!(key.algorithm, Algorithm::EdDSA);
        assert_eq!(key.jwk().expect("a JWK")["x"], "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo");
    }

    fn claims() -> Claims {
        let now = chrono::Utc::now().timestamp();
        Claims {
            sub: Uuid::now_v7(),
            role: Role::Admin,
            iss: "bazaar".into(),
            aud: "bazaar".into(),
            iat: now,
            exp: now + 60,
            jti: "j".into(),
            email_verified: false,
        }
    }

    #[tokio::test]
    async fn a_configured_rsa_key_verifies_rs256_tokens_and_nothing_else() {
        let public = include_str!("../../../tests/fixtures/rsa-public.pem");
        let private = include_bytes!("../../../tests/fixtures/rsa-private.pem");
        let verifier = JwtVerifier::from_public_key_pem(public, "bazaar", "bazaar").expect("an RSA key");
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(private).expect("an RSA key");
        let rs256 =
            jsonwebtoken::encode(&jsonwebtoken::Header::new(Algorithm::RS256), &claims(), &key).expect("signed");
        assert_eq!(verifier.verify(&rs256).await.expect("verified").role, Role::Admin);
        // Algorithm confusion: an HMAC token keyed with the public key must not pass.
        let hs256 = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &claims(),
            &jsonwebtoken::EncodingKey::from_secret(public.as_bytes()),
        )
        .expect("signed");
        assert!(verifier.verify(&hs256).await.is_err());
        let expired = Claims { exp: chrono::Utc::now().timestamp() - 120, ..claims() };
        let expired =
            jsonwebtoken::encode(&jsonwebtoken::Header::new(Algorithm::RS256), &expired, &key).expect("signed");
        assert!(verifier.verify(&expired).await.is_err());
    }

    #[tokio::test]
    async fn a_remembered_token_is_accepted_until_it_expires_and_only_with_its_own_signature() {
        let public = include_str!("../../../tests/fixtures/rsa-public.pem");
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(include_bytes!("../../../tests/fixtures/rsa-private.pem"))
            .expect("an RSA key");
        let verifier = JwtVerifier::from_public_key_pem(public, "bazaar", "bazaar").expect("an RSA key");
        // Within the leeway for one more second at most.
        let ending = Claims { exp: chrono::Utc::now().timestamp() - LEEWAY_SECS as i64 + 1, ..claims() };
        let token = jsonwebtoken::encode(&jsonwebtoken::Header::new(Algorithm::RS256), &ending, &key).expect("signed");
        assert_eq!(verifier.verify(&token).await.expect("verified").sub, ending.sub);
        assert_eq!(verifier.verify(&token).await.expect("remembered").sub, ending.sub);
        // The same claims under a broken signature are another token: checked, and refused.
        let (unsigned, signature) = token.rsplit_once('.').expect("three parts");
        let forged = format!("{unsigned}.{}", signature.chars().rev().collect::<String>());
        assert!(verifier.verify(&forged).await.is_err());
        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert!(verifier.verify(&token).await.is_err(), "an expired token must not be served from memory");
    }

    #[test]
    fn a_token_without_the_email_verified_claim_counts_as_unverified() {
        let mut json = serde_json::to_value(claims()).expect("JSON");
        json.as_object_mut().expect("an object").remove("email_verified");
        assert!(!serde_json::from_value::<Claims>(json).expect("decodes").email_verified);
        let verified = Claims { email_verified: true, ..claims() };
        assert_eq!(serde_json::to_value(&verified).expect("JSON")["email_verified"], true, "the OIDC claim's name");
    }

    #[tokio::test]
    async fn verified_refuses_an_unverified_token_only_when_the_setting_requires_it() {
        use actix_web::ResponseError;
        let public = include_str!("../../../tests/fixtures/rsa-public.pem");
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(include_bytes!("../../../tests/fixtures/rsa-private.pem"))
            .expect("an RSA key");
        let sign = |email_verified: bool| {
            let claims = Claims { email_verified, ..claims() };
            jsonwebtoken::encode(&jsonwebtoken::Header::new(Algorithm::RS256), &claims, &key).expect("signed")
        };
        let lenient = JwtVerifier::from_public_key_pem(public, "bazaar", "bazaar").expect("an RSA key");
        let strict = lenient.clone().requiring_verified_email();
        assert!(strict.requires_verified_email() && !lenient.requires_verified_email());
        let extract = |verifier: &JwtVerifier, token: &str| {
            let req = actix_web::test::TestRequest::default()
                .app_data(web::Data::new(verifier.clone()))
                .insert_header((header::AUTHORIZATION, format!("Bearer {token}")))
                .to_http_request();
            Verified::from_request(&req, &mut Payload::None)
        };
        let (verified, unverified) = (sign(true), sign(false));
        assert!(extract(&lenient, &unverified).await.expect("let through").0.user_id != Uuid::nil());
        assert!(extract(&strict, &verified).await.expect("let through").email_verified);
        let refused = extract(&strict, &unverified).await.expect_err("refused");
        assert_eq!(refused.status_code(), actix_web::http::StatusCode::FORBIDDEN);
        assert!(refused.to_string().contains("POST /users/verify"), "{refused}");
        let unauthenticated = extract(&strict, "not.a.token").await.expect_err("refused");
        assert_eq!(unauthenticated.status_code(), actix_web::http::StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn a_disabled_verifier_accepts_nothing() {
        assert!(JwtVerifier::disabled().verify("a.b.c").await.is_err());
    }

    #[test]
    fn garbage_is_not_a_key() {
        assert!(
            VerificationKey::from_public_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----").is_err()
        );
    }
}
