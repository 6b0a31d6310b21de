//! The users module: Bazaar's identity provider.
//!
//! Accounts with argon2id password hashes and a role (`customer`, `admin`); access tokens (EdDSA
//! JWTs, 15 minutes) and rotating refresh tokens (stored hashed; a reused one revokes its family);
//! the JWKS every other process verifies tokens with. Publishes `UserRegistered`; consumes nothing.

mod domain;
mod http;
mod keys;
mod passwords;
mod persistence;
mod service;
mod throttle;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contracts::{EventType, IntegrationEvent};
use kernel::auth::VerificationKey;
use kernel::housekeeping::Purge;
use kernel::{Hosted, Module, ModuleContext, Routes};
use migrations::MigratorTrait;
use sea_orm::{DatabaseConnection, DbErr};
use serde::Deserialize;
use users_contracts::{UserRegistered, UserSessionsRevoked};
use utoipa::OpenApi;

pub use keys::signing_key_error;
pub use service::AdminBootstrap;
use service::EnsureAdminError;

use crate::domain::{Email, Password};
use crate::keys::SigningKeys;
use crate::passwords::PasswordHasher;
use crate::service::{TokenPolicy, Users};
use crate::throttle::{Limit, Throttles};

#[derive(OpenApi)]
#[openapi(
    paths(http::register, http::token, http::refresh, http::logout, http::jwks, http::me, http::list_users, http::set_role),
    tags((name = "users", description = "Accounts, log-in and tokens"))
)]
struct UsersApi;

/// The settings the module reads: the shared `[auth]` section…
#[derive(Debug, Deserialize)]
#[serde(default)]
struct AuthSection {
    issuer: String,
    audience: String,
    signing_key: Option<String>,
    previous_public_key: Option<String>,
    signing_key_file: PathBuf,
    access_token_ttl_secs: i64,
    refresh_token_ttl_days: i64,
}

impl Default for AuthSection {
    fn default() -> Self {
        Self {
            issuer: "bazaar".into(),
            audience: "bazaar".into(),
            signing_key: None,
            previous_public_key: None,
            signing_key_file: "data/users-signing-key.pem".into(),
            access_token_ttl_secs: 900,
            refresh_token_ttl_days: 30,
        }
    }
}

/// …and its own `[users]` section (config/default.toml says what each limit is for).
#[derive(Debug, Deserialize)]
#[serde(default)]
struct UsersSection {
    bootstrap_admin: Option<BootstrapAdmin>,
    failed_logins_per_minute: u32,
    failed_logins_per_minute_per_address: u32,
    failed_logins_per_hour_per_account: u32,
    registrations_per_hour_per_address: u32,
    /// 0: one per core.
    password_hash_concurrency: usize,
    password_hash_queue: usize,
}

impl Default for UsersSection {
    fn default() -> Self {
        Self {
            bootstrap_admin: None,
            failed_logins_per_minute: 5,
            failed_logins_per_minute_per_address: 20,
            failed_logins_per_hour_per_account: 100,
            registrations_per_hour_per_address: 20,
            password_hash_concurrency: 0,
            password_hash_queue: 8,
        }
    }
}

#[derive(Debug, Deserialize)]
struct BootstrapAdmin {
    email: String,
    password: String,
}

pub struct UsersModule;

#[async_trait]
impl Module for UsersModule {
    fn name(&self) -> &'static str {
        "users"
    }

    fn openapi(&self) -> utoipa::openapi::OpenApi {
        UsersApi::openapi()
    }

    fn publishes(&self) -> Vec<EventType> {
        vec![UserRegistered::event_type(), UserSessionsRevoked::event_type()]
    }

    async fn migrate(&self, db: &DatabaseConnection) -> Result<(), DbErr> {
        migrations::Migrator::up(db, None).await
    }

    async fn start(&self, ctx: ModuleContext) -> anyhow::Result<Box<dyn Hosted>> {
        let section: UsersSection = ctx.section("users")?;
        let users = users_service(&ctx, &section)?;
        if let Some(admin) = section.bootstrap_admin {
            match bootstrap(&users, &admin.email, &admin.password).await {
                Ok(outcome) => tracing::info!(?outcome, "users.bootstrap_admin applied"),
                // Serving goes on without that admin: refusing to start would let whoever registered
                // the e-mail keep every replica down.
                Err(BootstrapError::Refused(reason)) => tracing::error!(%reason, "users.bootstrap_admin refused"),
                Err(e) => return Err(e.into()),
            }
        }
        let (minute, hour) = (Duration::from_secs(60), Duration::from_secs(3600));
        let throttle = Throttles {
            login_per_account_and_address: Limit::new(section.failed_logins_per_minute, minute),
            login_per_address: Limit::new(section.failed_logins_per_minute_per_address, minute),
            login_per_account: Limit::new(section.failed_logins_per_hour_per_account, hour),
            registrations_per_address: Limit::new(section.registrations_per_hour_per_address, hour),
        };
        Ok(Box::new(HostedUsers { users: web::Data::new(users), throttle: web::Data::new(throttle) }))
    }
}

fn users_service(ctx: &ModuleContext, section: &UsersSection) -> anyhow::Result<Users> {
    let auth: AuthSection = ctx.section("auth")?;
    let keys = match &auth.signing_key {
        Some(pem) => SigningKeys::from_pem(pem, auth.previous_public_key.as_deref())?,
        None => SigningKeys::load_or_generate(&auth.signing_key_file)?,
    };
    let policy = TokenPolicy {
        issuer: auth.issuer,
        audience: auth.audience,
        access_ttl: chrono::Duration::seconds(auth.access_token_ttl_secs),
        refresh_ttl: chrono::Duration::days(auth.refresh_token_ttl_days),
    };
    let concurrency = match section.password_hash_concurrency {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    };
    let hasher = PasswordHasher::new(concurrency, section.password_hash_queue);
    Ok(Users::new(ctx.db.clone(), ctx.outbox.clone(), Arc::new(keys), policy, Arc::new(hasher)))
}

/// Why an admin could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The e-mail or password given is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// The e-mail belongs to an account that is not an admin: it is not promoted.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

async fn bootstrap(users: &Users, email: &str, password: &str) -> Result<AdminBootstrap, BootstrapError> {
    let email = Email::parse(email).map_err(|e| BootstrapError::Invalid(format!("the admin's e-mail {e}")))?;
    let password = Password::parse(password, Some(&email))
        .map_err(|e| BootstrapError::Invalid(format!("the admin's password {e}")))?;
    users.ensure_admin(email, password).await.map_err(|e| match e {
        refused @ EnsureAdminError::NotAnAdmin(_) => BootstrapError::Refused(refused.to_string()),
        EnsureAdminError::Unexpected(e) => BootstrapError::Unexpected(e),
    })
}

/// `bazaar users create-admin`: creates the admin account; refuses an e-mail that belongs to a
/// customer: whoever registered it chose its password (README "Security").
pub async fn create_admin(ctx: &ModuleContext, email: &str, password: &str) -> Result<AdminBootstrap, BootstrapError> {
    bootstrap(&users_service(ctx, &ctx.section("users")?)?, email, password).await
}

struct HostedUsers {
    users: web::Data<Users>,
    throttle: web::Data<Throttles>,
}

impl Hosted for HostedUsers {
    fn routes(&self) -> Routes {
        let (users, throttle) = (self.users.clone(), self.throttle.clone());
        Arc::new(move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(users.clone())
                .app_data(throttle.clone())
                .service(http::register)
                .service(http::token)
                .service(http::refresh)
                .service(http::logout)
                .service(http::jwks)
                .service(http::me)
                .service(http::list_users)
                .service(http::set_role);
        })
    }

    fn verification_keys(&self) -> Vec<VerificationKey> {
        self.users.keys().verification_keys()
    }

    fn purges(&self) -> Vec<Arc<dyn Purge>> {
        vec![Arc::new(ExpiredRefreshTokens(self.users.clone()))]
    }
}

struct ExpiredRefreshTokens(web::Data<Users>);

#[async_trait]
impl Purge for ExpiredRefreshTokens {
    fn what(&self) -> &'static str {
        "expired refresh tokens"
    }

    async fn purge(&self, now: DateTime<Utc>, _cutoff: DateTime<Utc>) -> anyhow::Result<u64> {
        self.0.purge_expired_refresh_tokens(now).await
    }
}
