//! The users module's use cases: registration, log-in, token rotation, roles.

use std::sync::Arc;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Duration;
use kernel::Outbox;
use kernel::auth::Claims;
use sea_orm::{DatabaseConnection, DatabaseTransaction};
use sha2::{Digest, Sha256};
use users_contracts::{UserRegistered, UserSessionsRevoked};
use uuid::Uuid;

use crate::domain::{Email, Password, Role, User, UserId, UserName};
use crate::keys::SigningKeys;
use crate::passwords::{HashError, PasswordHasher};
use crate::persistence::{self, NewRefreshToken};

/// How tokens are issued.
#[derive(Debug, Clone)]
pub struct TokenPolicy {
    pub issuer: String,
    pub audience: String,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
}

#[derive(Clone)]
pub struct Users {
    db: DatabaseConnection,
    outbox: Outbox<users_contracts::Users>,
    keys: Arc<SigningKeys>,
    policy: TokenPolicy,
    hasher: Arc<PasswordHasher>,
}

/// What a successful log-in or refresh returns.
pub struct TokenPair {
    pub access_token: String,
    pub expires_in: i64,
    pub refresh_token: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("too many password checks at once; retry shortly")]
    Busy,
    #[error("an account with this e-mail exists already")]
    EmailTaken,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("too many password checks at once; retry shortly")]
    Busy,
    #[error("wrong e-mail or password")]
    InvalidCredentials,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("the refresh token is invalid, expired or revoked")]
    Invalid,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum SetRoleError {
    #[error("no user {0}")]
    NotFound(UserId),
    #[error("{0} is the last admin: make another admin first")]
    LastAdmin(UserId),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// What `create_admin` (and the start-up bootstrap) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminBootstrap {
    Created,
    AlreadyAdmin,
}

#[derive(Debug, thiserror::Error)]
pub enum EnsureAdminError {
    #[error(
        "an account with this e-mail exists and is not an admin ({0}); it is not promoted, since its password \
         was chosen by whoever registered it: an admin can promote it with PUT /users/{0}/role, or choose another e-mail"
    )]
    NotAnAdmin(UserId),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl Users {
    pub fn new(
        db: DatabaseConnection,
        outbox: Outbox,
        keys: Arc<SigningKeys>,
        policy: TokenPolicy,
        hasher: Arc<PasswordHasher>,
    ) -> Self {
        Self { db, outbox: outbox.bind(), keys, policy, hasher }
    }

    pub fn keys(&self) -> &SigningKeys {
        &self.keys
    }

    /// Creates an account; the password is hashed before any transaction opens.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn register(
        &self,
        email: Email,
        password: Password,
        name: UserName,
        role: Role,
    ) -> Result<User, RegisterError> {
        let hash = self.hasher.hash(password).await.map_err(|e| match e {
            HashError::Busy => RegisterError::Busy,
            HashError::Unexpected(e) => e.into(),
        })?;
        let now = kernel::db::now();
        let user = User { id: UserId::generate(), email, name, role, created_at: now, updated_at: now };
        let txn = kernel::db::begin_write(&self.db).await.context("failed to begin a transaction")?;
        if let Err(e) = persistence::insert(&txn, &user, &hash).await {
            return Err(match kernel::db::is_unique_violation(&e) {
                true => RegisterError::EmailTaken,
                false => anyhow::Error::new(e).context("failed to insert an account").into(),
            });
        }
        let event = UserRegistered {
            user_id: user.id.as_uuid(),
            email: user.email.as_str().to_owned(),
            name: user.name.as_str().to_owned(),
            role: user.role,
        };
        self.outbox.publish(&txn, &event, None).await?;
        self.outbox.commit(txn).await.context("failed to commit a registration")?;
        tracing::info!(user.id = %user.id, "user registered");
        Ok(user)
    }

    /// Checks the credentials and opens a new token family. An unknown e-mail costs one hash too.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn login(&self, email: &str, password: String) -> Result<(User, TokenPair), LoginError> {
        let account = match Email::parse(email) {
            Ok(email) => persistence::find_by_email(&self.db, &email).await.context("failed to load an account")?,
            Err(_) => None,
        };
        let (user, hash) = match account {
            Some((user, hash)) => (Some(user), Some(hash)),
            None => (None, None),
        };
        let verified = self.hasher.verify(password, hash).await.map_err(|e| match e {
            HashError::Busy => LoginError::Busy,
            HashError::Unexpected(e) => e.into(),
        })?;
        if !verified {
            return Err(LoginError::InvalidCredentials);
        }
        let user = user.ok_or(LoginError::InvalidCredentials)?;
        let txn = kernel::db::begin_write(&self.db).await.context("failed to begin a transaction")?;
        let pair = self.issue(&txn, &user, Uuid::now_v7()).await?;
        txn.commit().await.context("failed to commit a log-in")?;
        tracing::info!(user.id = %user.id, "user logged in");
        Ok((user, pair))
    }

    /// Rotates a refresh token. Presenting one that was rotated already revokes its whole family:
    /// either its owner or a thief holds a copy, and neither can tell which (OAuth 2.0 Security BCP).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenPair, RefreshError> {
        let now = kernel::db::now();
        let txn = kernel::db::begin_write(&self.db).await.context("failed to begin a transaction")?;
        let token = persistence::find_refresh_token(&txn, &token_hash(refresh_token))
            .await
            .context("failed to load a refresh token")?
            .ok_or(RefreshError::Invalid)?;
        if token.revoked_at.is_some() || token.expires_at <= now {
            return Err(RefreshError::Invalid);
        }
        let first_use = token.used_at.is_none()
            && persistence::use_refresh_token(&txn, token.id, now).await.context("failed to rotate a token")?;
        if !first_use {
            persistence::revoke_family(&txn, token.family_id, now).await.context("failed to revoke a family")?;
            txn.commit().await.context("failed to commit a revocation")?;
            tracing::warn!(user.id = %token.user_id, family = %token.family_id, "refresh token reused; family revoked");
            return Err(RefreshError::Invalid);
        }
        let user = persistence::find(&txn, token.user_id.into())
            .await
            .context("failed to load an account")?
            .ok_or(RefreshError::Invalid)?;
        let pair = self.issue(&txn, &user, token.family_id).await?;
        txn.commit().await.context("failed to commit a rotation")?;
        Ok(pair)
    }

    /// Revokes the family of `refresh_token`; an unknown token changes nothing.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn logout(&self, refresh_token: &str) -> anyhow::Result<()> {
        let txn = kernel::db::begin_write(&self.db).await.context("failed to begin a transaction")?;
        if let Some(token) = persistence::find_refresh_token(&txn, &token_hash(refresh_token)).await? {
            persistence::revoke_family(&txn, token.family_id, kernel::db::now()).await?;
            self.revoke_sessions(&txn, token.user_id.into(), "logged-out").await?;
        }
        self.outbox.commit(txn).await.context("failed to commit a log-out")
    }

    /// Tells every process to refuse `user`'s access tokens issued so far (they would otherwise
    /// keep their old role, or outlive the log-out, until they expire).
    async fn revoke_sessions(&self, txn: &DatabaseTransaction, user: UserId, reason: &str) -> anyhow::Result<()> {
        let event = UserSessionsRevoked {
            user_id: user.as_uuid(),
            not_before: kernel::db::now().timestamp(),
            reason: reason.to_owned(),
        };
        self.outbox.publish(txn, &event, None).await.context("failed to publish a revocation")?;
        Ok(())
    }

    pub async fn purge_expired_refresh_tokens(&self, now: chrono::DateTime<chrono::Utc>) -> anyhow::Result<u64> {
        persistence::purge_expired_refresh_tokens(&self.db, now).await.context("failed to purge refresh tokens")
    }

    pub async fn get(&self, id: UserId) -> anyhow::Result<Option<User>> {
        persistence::find(&self.db, id).await.context("failed to load an account")
    }

    pub async fn list(&self, after: Option<UserId>, limit: u64) -> anyhow::Result<Vec<User>> {
        persistence::list(&self.db, after, limit).await.context("failed to list accounts")
    }

    #[tracing::instrument(level = "debug", skip_all, fields(user.id = %id, role = role.as_str()))]
    pub async fn set_role(&self, id: UserId, role: Role) -> Result<User, SetRoleError> {
        let txn = kernel::db::begin_write(&self.db).await.context("failed to begin a transaction")?;
        // The admins stay locked until commit: two admins demoting each other at once cannot
        // both see the other one left.
        let admins = persistence::lock_admins(&txn).await.context("failed to lock the admins")?;
        if role != Role::Admin && admins == [id] {
            return Err(SetRoleError::LastAdmin(id));
        }
        if !persistence::set_role(&txn, id, role, kernel::db::now()).await.context("failed to set a role")? {
            return Err(SetRoleError::NotFound(id));
        }
        if admins.contains(&id) != (role == Role::Admin) {
            self.revoke_sessions(&txn, id, "role-changed").await?;
        }
        let user = persistence::find(&txn, id).await.context("failed to load an account")?;
        self.outbox.commit(txn).await.context("failed to commit a role change")?;
        tracing::info!("role changed");
        user.ok_or(SetRoleError::NotFound(id))
    }

    /// Makes sure `email` is an admin with `password`: creates the account, or finds it an admin
    /// already (its password is then left as it is). An existing account that is not an admin is
    /// never promoted: whoever registered it chose its password, and promoting it would hand them
    /// the shop (anyone can register any e-mail before the operator runs this).
    pub async fn ensure_admin(&self, email: Email, password: Password) -> Result<AdminBootstrap, EnsureAdminError> {
        if let Some((user, _)) =
            persistence::find_by_email(&self.db, &email).await.context("failed to load an account")?
        {
            return match user.role {
                Role::Admin => Ok(AdminBootstrap::AlreadyAdmin),
                Role::Customer => Err(EnsureAdminError::NotAnAdmin(user.id)),
            };
        }
        let name = UserName::parse("Administrator").map_err(anyhow::Error::msg)?;
        match self.register(email.clone(), password, name, Role::Admin).await {
            Ok(_) => Ok(AdminBootstrap::Created),
            // Registered in the meantime, by another replica's bootstrap or by someone else.
            Err(RegisterError::EmailTaken) => Box::pin(self.ensure_admin_existing(email)).await,
            Err(RegisterError::Busy) => Err(anyhow::anyhow!("the password hashing slots are busy").into()),
            Err(RegisterError::Unexpected(e)) => Err(e.into()),
        }
    }

    async fn ensure_admin_existing(&self, email: Email) -> Result<AdminBootstrap, EnsureAdminError> {
        match persistence::find_by_email(&self.db, &email).await.context("failed to load an account")? {
            Some((user, _)) if user.role == Role::Admin => Ok(AdminBootstrap::AlreadyAdmin),
            Some((user, _)) => Err(EnsureAdminError::NotAnAdmin(user.id)),
            None => Err(anyhow::anyhow!("the account was taken, then deleted").into()),
        }
    }

    /// A new access token, and a new refresh token in `family`.
    async fn issue(&self, txn: &DatabaseTransaction, user: &User, family_id: Uuid) -> anyhow::Result<TokenPair> {
        let now = kernel::db::now();
        let claims = Claims {
            sub: user.id.as_uuid(),
            role: user.role,
            iss: self.policy.issuer.clone(),
            aud: self.policy.audience.clone(),
            iat: now.timestamp(),
            exp: (now + self.policy.access_ttl).timestamp(),
            jti: Uuid::new_v4().to_string(),
            // Nothing verifies an address yet.
            email_verified: false,
        };
        let access_token = self.keys.sign(&claims)?;
        let mut secret = [0u8; 32];
        rand::fill(&mut secret);
        let refresh_token = URL_SAFE_NO_PAD.encode(secret);
        let hash = token_hash(&refresh_token);
        let token = NewRefreshToken {
            user_id: user.id,
            family_id,
            token_hash: &hash,
            issued_at: now,
            expires_at: now + self.policy.refresh_ttl,
        };
        persistence::insert_refresh_token(txn, token).await.context("failed to store a refresh token")?;
        Ok(TokenPair { access_token, expires_in: self.policy.access_ttl.num_seconds(), refresh_token })
    }
}

/// Refresh tokens are stored as their SHA-256: a leaked table holds no usable token.
fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}
