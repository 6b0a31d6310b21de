//! Bearer JWT authentication: [`Principal`] for any signed-in caller, [`Admin`] for admins.
//!
//! Tokens are verified, never issued, here: the algorithm, issuer and audience are pinned, the
//! expiry is required, and `alg: none` or a key of another type never verifies.

use std::future::{Ready, ready};
use std::sync::Arc;

use actix_web::{FromRequest, HttpRequest, dev::Payload, http::header, web};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Customer,
    Admin,
}

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
}

/// Checks access tokens against a configured public key.
#[derive(Clone)]
pub struct JwtVerifier {
    key: Option<Arc<(DecodingKey, Validation)>>,
}

#[derive(Debug, thiserror::Error)]
#[error("not an Ed25519 or RSA public key in PEM form")]
pub struct InvalidPublicKey;

impl JwtVerifier {
    /// Verifies EdDSA (Ed25519) or RS256 tokens, whichever `pem` is a key for.
    pub fn from_public_key_pem(pem: &str, issuer: &str, audience: &str) -> Result<Self, InvalidPublicKey> {
        let (key, algorithm) = match DecodingKey::from_ed_pem(pem.as_bytes()) {
            Ok(key) => (key, Algorithm::EdDSA),
            Err(_) => (DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(|_| InvalidPublicKey)?, Algorithm::RS256),
        };
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 30;
        Ok(Self { key: Some(Arc::new((key, validation))) })
    }

    /// A verifier that accepts no token: every protected route answers 401.
    pub fn disabled() -> Self {
        Self { key: None }
    }

    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        let Some(key) = &self.key else {
            return Err(ApiError::Unauthorized("token verification is not configured on this server".into()));
        };
        decode::<Claims>(token, &key.0, &key.1).map(|data| data.claims).map_err(|e| {
            tracing::debug!(error = %e, "rejected a bearer token");
            ApiError::Unauthorized("the bearer token is invalid or expired".into())
        })
    }
}

/// The authenticated caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    pub user_id: Uuid,
    pub role: Role,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req))
    }
}

fn authenticate(req: &HttpRequest) -> Result<Principal, ApiError> {
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
    let claims = verifier.verify(token)?;
    Ok(Principal { user_id: claims.sub, role: claims.role })
}

/// An authenticated admin; anyone else gets 401 (no or bad token) or 403.
#[derive(Debug, Clone, Copy)]
pub struct Admin(pub Principal);

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req).and_then(|p| {
            if p.is_admin() {
                Ok(Admin(p))
            } else {
                Err(ApiError::Forbidden("this action needs the admin role".into()))
            }
        }))
    }
}
