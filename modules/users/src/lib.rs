//! The users module: Bazaar's identity provider.
//!
//! Accounts with argon2id password hashes and a role (`customer`, `admin`); access tokens (EdDSA
//! JWTs, 15 minutes) and rotating refresh tokens (stored hashed; a reused one revokes its family);
//! the JWKS every other process verifies tokens with; password resets and e-mail verification with
//! mailed single-use tokens (stored hashed), asked of whoever sends mail through events. Publishes
//! `UserRegistered`, `UserSessionsRevoked`, `PasswordResetRequested` and
//! `EmailVerificationRequested`; consumes nothing.

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
use kernel::settings::{Checks, Section, SectionSpec, SettingsError};
use kernel::{Hosted, Module, ModuleContext, Routes};
use migrations::MigratorTrait;
use sea_orm::{DatabaseConnection, DbErr};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use users_contracts::{EmailVerificationRequested, PasswordResetRequested, UserRegistered, UserSessionsRevoked};
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
    paths(
        http::register,
        http::token,
        http::refresh,
        http::logout,
        http::request_password_reset,
        http::reset_password,
        http::jwks,
        http::me,
        http::request_verification,
        http::verify_email,
        http::list_users,
        http::set_role
    ),
    tags((name = "users", description = "Accounts, log-in and tokens"))
)]
struct UsersApi;

/// The settings the module reads: the shared `[auth]` section (the root verifies tokens with its
/// `issuer` and `audience`; the signing key is the users module's alone)…
#[derive(Debug, Serialize, Deserialize)]
#[serde(default)]
struct AuthSection {
    issuer: String,
    audience: String,
    /// The Ed25519 private key access tokens are signed with (PKCS#8 PEM). Unset outside
    /// production, a key is generated once into `signing_key_file`.
    #[serde(serialize_with = "kernel::settings::redacted_optional")]
    signing_key: Option<SecretString>,
    /// During a key rotation: the public key of the previous signing key, still accepted.
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

impl Section for AuthSection {
    const KEY: &'static str = "auth";

    fn check(&self, checks: Checks) -> Result<(), SettingsError> {
        match &self.signing_key {
            Some(pem) => {
                if let Some(message) = signing_key_error(pem.expose_secret()) {
                    return Err(SettingsError::new("auth.signing_key", message));
                }
            }
            None if checks.production => {
                return Err(SettingsError::new("auth.signing_key", "is required in production where users is hosted"));
            }
            None => {}
        }
        if let Some(pem) = &self.previous_public_key {
            VerificationKey::from_public_pem(pem)
                .map_err(|e| SettingsError::new("auth.previous_public_key", e.to_string()))?;
        }
        if self.access_token_ttl_secs <= 0 {
            return Err(SettingsError::new("auth.access_token_ttl_secs", "must be positive"));
        }
        if self.refresh_token_ttl_days <= 0 {
            return Err(SettingsError::new("auth.refresh_token_ttl_days", "must be positive"));
        }
        Ok(())
    }
}

/// …and its own `[users]` section. Log-in attempts are counted before the password is checked (a
/// success gives its place back); past a limit the answer is 429 with `Retry-After`, for log-ins,
/// registrations and mailed tokens alike.
#[derive(Debug, Serialize, Deserialize)]
#[serde(default)]
struct UsersSection {
    /// Creates this admin at start-up unless the account exists (for installs without a shell).
    bootstrap_admin: Option<BootstrapAdmin>,
    /// Per account from one client address.
    failed_logins_per_minute: u32,
    /// Per client address, whatever the account (many people may share one address).
    failed_logins_per_minute_per_address: u32,
    /// Per account from all addresses together, against guessing spread over many addresses.
    failed_logins_per_hour_per_account: u32,
    /// Registrations per client address (`server.trusted_proxies` says where it comes from).
    registrations_per_hour_per_address: u32,
    /// Password hashes (argon2id, 19 MiB each) running at once; 0: one per core.
    password_hash_concurrency: usize,
    /// Requests that may wait for a hash; beyond that the answer is 503 + `Retry-After`.
    password_hash_queue: usize,
    /// How long a mailed password-reset token works.
    password_reset_ttl_mins: i64,
    /// How long a mailed e-mail verification token works.
    email_verification_ttl_hours: i64,
    /// Password-reset requests per e-mail address, from all client addresses together.
    password_resets_per_hour_per_email: u32,
    /// Password-reset requests per client address, whatever the e-mail.
    password_resets_per_hour_per_address: u32,
    /// Verification mails an account may ask for again (`POST /users/me/verification`).
    verification_mails_per_hour_per_account: u32,
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
            password_reset_ttl_mins: 30,
            email_verification_ttl_hours: 72,
            password_resets_per_hour_per_email: 5,
            password_resets_per_hour_per_address: 20,
            verification_mails_per_hour_per_account: 5,
        }
    }
}

impl Section for UsersSection {
    const KEY: &'static str = NAME;

    fn check(&self, _checks: Checks) -> Result<(), SettingsError> {
        if self.password_reset_ttl_mins <= 0 {
            return Err(SettingsError::new("users.password_reset_ttl_mins", "must be positive"));
        }
        if self.email_verification_ttl_hours <= 0 {
            return Err(SettingsError::new("users.email_verification_ttl_hours", "must be positive"));
        }
        match &self.bootstrap_admin {
            Some(admin) if admin.email.trim().is_empty() || admin.password.expose_secret().is_empty() => {
                Err(SettingsError::new("users.bootstrap_admin", "needs an email and a password"))
            }
            _ => Ok(()),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct BootstrapAdmin {
    email: String,
    #[serde(serialize_with = "kernel::settings::redacted")]
    password: SecretString,
}

/// The module's name: its settings section, its tables' prefix, its queue.
pub const NAME: &str = "users";

pub struct UsersModule;

#[async_trait]
impl Module for UsersModule {
    fn name(&self) -> &'static str {
        NAME
    }

    fn path_prefixes(&self) -> &'static [&'static str] {
        &["/users", "/auth", "/.well-known"]
    }

    fn openapi(&self) -> utoipa::openapi::OpenApi {
        UsersApi::openapi()
    }

    fn publishes(&self) -> Vec<EventType> {
        vec![
            UserRegistered::event_type(),
            UserSessionsRevoked::event_type(),
            PasswordResetRequested::event_type(),
            EmailVerificationRequested::event_type(),
        ]
    }

    fn settings(&self) -> Vec<SectionSpec> {
        vec![SectionSpec::of::<UsersSection>(), SectionSpec::of::<AuthSection>()]
    }

    async fn migrate(&self, db: &DatabaseConnection) -> Result<(), DbErr> {
        migrations::Migrator::up(db, None).await
    }

    async fn start(&self, ctx: ModuleContext) -> anyhow::Result<Box<dyn Hosted>> {
        let section = ctx.section::<UsersSection>();
        let users = users_service(&ctx, &section)?;
        if let Some(admin) = &section.bootstrap_admin {
            match bootstrap(&users, &admin.email, admin.password.expose_secret()).await {
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
            password_resets_per_email: Limit::new(section.password_resets_per_hour_per_email, hour),
            password_resets_per_address: Limit::new(section.password_resets_per_hour_per_address, hour),
            verification_mails_per_account: Limit::new(section.verification_mails_per_hour_per_account, hour),
        };
        Ok(Box::new(HostedUsers { users: web::Data::new(users), throttle: web::Data::new(throttle) }))
    }
}

fn users_service(ctx: &ModuleContext, section: &UsersSection) -> anyhow::Result<Users> {
    let auth = ctx.section::<AuthSection>();
    let keys = match &auth.signing_key {
        Some(pem) => SigningKeys::from_pem(pem.expose_secret(), auth.previous_public_key.as_deref())?,
        None => SigningKeys::load_or_generate(&auth.signing_key_file)?,
    };
    let policy = TokenPolicy {
        issuer: auth.issuer.clone(),
        audience: auth.audience.clone(),
        access_ttl: chrono::Duration::seconds(auth.access_token_ttl_secs),
        refresh_ttl: chrono::Duration::days(auth.refresh_token_ttl_days),
        password_reset_ttl: chrono::Duration::minutes(section.password_reset_ttl_mins),
        email_verification_ttl: chrono::Duration::hours(section.email_verification_ttl_hours),
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
    bootstrap(&users_service(ctx, &ctx.section::<UsersSection>())?, email, password).await
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
                .service(http::request_password_reset)
                .service(http::reset_password)
                .service(http::jwks)
                .service(http::me)
                .service(http::request_verification)
                .service(http::verify_email)
                .service(http::list_users)
                .service(http::set_role);
        })
    }

    fn verification_keys(&self) -> Vec<VerificationKey> {
        self.users.keys().verification_keys()
    }

    fn purges(&self) -> Vec<Arc<dyn Purge>> {
        vec![Arc::new(ExpiredRefreshTokens(self.users.clone())), Arc::new(ExpiredOneTimeTokens(self.users.clone()))]
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

struct ExpiredOneTimeTokens(web::Data<Users>);

#[async_trait]
impl Purge for ExpiredOneTimeTokens {
    fn what(&self) -> &'static str {
        "expired password-reset and verification tokens"
    }

    async fn purge(&self, now: DateTime<Utc>, _cutoff: DateTime<Utc>) -> anyhow::Result<u64> {
        self.0.purge_expired_one_time_tokens(now).await
    }
}
