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
use contracts::users::UserRegistered;
use contracts::{EventType, IntegrationEvent};
use kernel::auth::VerificationKey;
use kernel::{Hosted, Module, ModuleContext, Routes};
use migrations::MigratorTrait;
use sea_orm::{DatabaseConnection, DbErr};
use serde::Deserialize;
use utoipa::OpenApi;

pub use keys::signing_key_error;
pub use service::AdminBootstrap;

use crate::domain::{Email, Password};
use crate::keys::SigningKeys;
use crate::service::{TokenPolicy, Users};
use crate::throttle::{LoginThrottle, Throttles};

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

/// …and its own `[users]` section.
#[derive(Debug, Deserialize)]
#[serde(default)]
struct UsersSection {
    bootstrap_admin: Option<BootstrapAdmin>,
    /// Per e-mail address.
    failed_logins_per_minute: u32,
    /// Per client address: higher, as many people may share one (an office, a carrier's NAT).
    failed_logins_per_minute_per_address: u32,
}

impl Default for UsersSection {
    fn default() -> Self {
        Self { bootstrap_admin: None, failed_logins_per_minute: 5, failed_logins_per_minute_per_address: 20 }
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
        vec![UserRegistered::event_type()]
    }

    async fn migrate(&self, db: &DatabaseConnection) -> Result<(), DbErr> {
        migrations::users::Migrator::up(db, None).await
    }

    async fn start(&self, ctx: ModuleContext) -> anyhow::Result<Box<dyn Hosted>> {
        let users = users_service(&ctx)?;
        let section: UsersSection = ctx.section("users")?;
        if let Some(admin) = section.bootstrap_admin {
            let outcome = bootstrap(&users, &admin.email, &admin.password).await?;
            tracing::info!(?outcome, "users.bootstrap_admin applied");
        }
        let minute = Duration::from_secs(60);
        let throttle = Throttles {
            email: LoginThrottle::new(section.failed_logins_per_minute, minute),
            address: LoginThrottle::new(section.failed_logins_per_minute_per_address, minute),
        };
        Ok(Box::new(HostedUsers { users: web::Data::new(users), throttle: web::Data::new(throttle) }))
    }
}

fn users_service(ctx: &ModuleContext) -> anyhow::Result<Users> {
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
    Ok(Users::new(ctx.db.clone(), ctx.outbox.clone(), Arc::new(keys), policy))
}

/// Why an admin could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The e-mail or password given is not acceptable.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

async fn bootstrap(users: &Users, email: &str, password: &str) -> Result<AdminBootstrap, BootstrapError> {
    let email = Email::parse(email).map_err(|e| BootstrapError::Invalid(format!("the admin's e-mail {e}")))?;
    let password = Password::parse(password, Some(&email))
        .map_err(|e| BootstrapError::Invalid(format!("the admin's password {e}")))?;
    Ok(users.ensure_admin(email, password).await?)
}

/// `bazaar users create-admin`: creates the admin account, or promotes an existing one.
pub async fn create_admin(ctx: &ModuleContext, email: &str, password: &str) -> Result<AdminBootstrap, BootstrapError> {
    bootstrap(&users_service(ctx)?, email, password).await
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
}
