//! The users module's use cases: registration, log-in, token rotation, roles, password resets and
//! e-mail verification.

use std::sync::Arc;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Duration;
use kernel::Outbox;
use kernel::auth::Claims;
use sea_orm::{DatabaseConnection, DatabaseTransaction};
use sha2::{Digest, Sha256};
use users_contracts::{EmailVerificationRequested, PasswordResetRequested, UserRegistered, UserSessionsRevoked};
use uuid::Uuid;

use crate::domain::{Email, Password, Role, TokenPurpose, TokenState, User, UserId, UserName};
use crate::keys::SigningKeys;
use crate::passwords::{HashError, PasswordHasher};
use crate::persistence::{self, NewOneTimeToken, NewRefreshToken};

/// How tokens are issued.
#[derive(Debug, Clone)]
pub struct TokenPolicy {
    pub issuer: String,
    pub audience: String,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    /// How long a mailed password-reset token works (`users.password_reset_ttl_mins`).
    pub password_reset_ttl: Duration,
    /// How long a mailed e-mail verification token works (`users.email_verification_ttl_hours`).
    pub email_verification_ttl: Duration,
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

#[derive(Debug, thiserror::Error)]
pub enum ResetPasswordError {
    /// Unknown, expired or used: one answer for all three.
    #[error("the password reset token is unknown, expired or used")]
    InvalidToken,
    /// The new password breaks the policy registration applies.
    #[error("the password {0}")]
    Password(String),
    #[error("too many password checks at once; retry shortly")]
    Busy,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyEmailError {
    #[error("the verification token is unknown or expired")]
    InvalidToken,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum RequestVerificationError {
    #[error("the e-mail address is verified already")]
    AlreadyVerified,
    #[error("no user {0}")]
    NotFound(UserId),
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

    /// Creates an account; the password is hashed before any transaction opens. A customer is
    /// mailed a verification token (`EmailVerificationRequested`) in the registration's transaction.
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
        // An admin is made by the operator (the CLI, `users.bootstrap_admin`), who vouches for its
        // address; a customer proves theirs with the mailed token.
        let email_verified_at = (role == Role::Admin).then_some(now);
        let user =
            User { id: UserId::generate(), email, name, role, email_verified_at, created_at: now, updated_at: now };
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
        if !user.email_verified() {
            self.mail_token(&txn, &user, TokenPurpose::EmailVerification, now).await?;
        }
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

    /// Mails a password-reset token to `email`'s account, if there is one; the caller cannot tell.
    /// Both branches do the same lookup and open the same write transaction, and neither hashes a
    /// password, so the answer takes about as long either way.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn request_password_reset(&self, email: &Email) -> anyhow::Result<()> {
        let account = persistence::find_by_email(&self.db, email).await.context("failed to load an account")?;
        let now = kernel::db::now();
        let txn = kernel::db::begin_write(&self.db).await.context("failed to begin a transaction")?;
        match &account {
            Some((user, _)) => self.mail_token(&txn, user, TokenPurpose::PasswordReset, now).await?,
            // Nobody's tokens: the statement the other branch starts with, finding nothing.
            None => {
                persistence::retire_one_time_tokens(&txn, Uuid::nil().into(), TokenPurpose::PasswordReset)
                    .await
                    .context("failed to retire reset tokens")?;
            }
        }
        self.outbox.commit(txn).await.context("failed to commit a password reset request")?;
        if let Some((user, _)) = account {
            tracing::info!(user.id = %user.id, "password reset requested");
        }
        Ok(())
    }

    /// Sets a new password with a mailed reset token, which is used up; every refresh token of the
    /// account is revoked and its access tokens refused (`UserSessionsRevoked`): whoever knew the
    /// old password is out.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn reset_password(&self, token: &str, password: &str) -> Result<(), ResetPasswordError> {
        let hash = token_hash(token);
        let found = persistence::find_one_time_token(&self.db, TokenPurpose::PasswordReset, &hash)
            .await
            .context("failed to load a reset token")?
            .filter(|t| t.state(kernel::db::now()) == TokenState::Usable)
            .ok_or(ResetPasswordError::InvalidToken)?;
        let user = persistence::find(&self.db, found.user_id)
            .await
            .context("failed to load an account")?
            .ok_or(ResetPasswordError::InvalidToken)?;
        // The policy needs the account's e-mail: it is checked once the token named the account.
        let password = Password::parse(password, Some(&user.email)).map_err(ResetPasswordError::Password)?;
        let password_hash = self.hasher.hash(password).await.map_err(|e| match e {
            HashError::Busy => ResetPasswordError::Busy,
            HashError::Unexpected(e) => e.into(),
        })?;
        let now = kernel::db::now();
        let txn = kernel::db::begin_write(&self.db).await.context("failed to begin a transaction")?;
        // Used (or expired) while the password was hashed: the first use wins.
        if !persistence::use_one_time_token(&txn, found.id, now).await.context("failed to use a reset token")? {
            return Err(ResetPasswordError::InvalidToken);
        }
        persistence::set_password(&txn, user.id, &password_hash, now).await.context("failed to set a password")?;
        persistence::retire_one_time_tokens(&txn, user.id, TokenPurpose::PasswordReset)
            .await
            .context("failed to retire reset tokens")?;
        persistence::revoke_user_refresh_tokens(&txn, user.id, now).await.context("failed to revoke refresh tokens")?;
        self.revoke_sessions(&txn, user.id, "password-reset").await?;
        self.outbox.commit(txn).await.context("failed to commit a password reset")?;
        tracing::info!(user.id = %user.id, "password reset");
        Ok(())
    }

    /// Marks the account of a mailed verification token verified. A token used already answers
    /// as the first time did (a link opened twice); only unknown or expired ones are refused.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn verify_email(&self, token: &str) -> Result<(), VerifyEmailError> {
        let now = kernel::db::now();
        let txn = kernel::db::begin_write(&self.db).await.context("failed to begin a transaction")?;
        let found = persistence::find_one_time_token(&txn, TokenPurpose::EmailVerification, &token_hash(token))
            .await
            .context("failed to load a verification token")?
            .ok_or(VerifyEmailError::InvalidToken)?;
        match found.state(now) {
            TokenState::Used => return Ok(()),
            TokenState::Expired => return Err(VerifyEmailError::InvalidToken),
            TokenState::Usable => {}
        }
        if !persistence::use_one_time_token(&txn, found.id, now).await.context("failed to use a token")? {
            return Err(VerifyEmailError::InvalidToken);
        }
        persistence::mark_email_verified(&txn, found.user_id, now).await.context("failed to verify an e-mail")?;
        txn.commit().await.context("failed to commit a verification")?;
        tracing::info!(user.id = %found.user_id, "e-mail address verified");
        Ok(())
    }

    /// Mails the account a new verification token (the earlier unused ones stop working).
    #[tracing::instrument(level = "debug", skip_all, fields(user.id = %id))]
    pub async fn request_verification(&self, id: UserId) -> Result<(), RequestVerificationError> {
        let txn = kernel::db::begin_write(&self.db).await.context("failed to begin a transaction")?;
        let user = persistence::find(&txn, id)
            .await
            .context("failed to load an account")?
            .ok_or(RequestVerificationError::NotFound(id))?;
        if user.email_verified() {
            return Err(RequestVerificationError::AlreadyVerified);
        }
        self.mail_token(&txn, &user, TokenPurpose::EmailVerification, kernel::db::now()).await?;
        self.outbox.commit(txn).await.context("failed to commit a verification request")?;
        Ok(())
    }

    /// Replaces `user`'s unused tokens of `purpose` with a new one, stored hashed, and publishes
    /// it for the mail (the event is the only place the token itself goes).
    async fn mail_token(
        &self,
        txn: &DatabaseTransaction,
        user: &User,
        purpose: TokenPurpose,
        now: chrono::DateTime<chrono::Utc>,
    ) -> anyhow::Result<()> {
        persistence::retire_one_time_tokens(txn, user.id, purpose).await.context("failed to retire tokens")?;
        let token = new_secret();
        let hash = token_hash(&token);
        let expires_at = now
            + match purpose {
                TokenPurpose::PasswordReset => self.policy.password_reset_ttl,
                TokenPurpose::EmailVerification => self.policy.email_verification_ttl,
            };
        let row = NewOneTimeToken { user_id: user.id, purpose, token_hash: &hash, created_at: now, expires_at };
        persistence::insert_one_time_token(txn, row).await.context("failed to store a one-time token")?;
        let (user_id, email, name) = (user.id.as_uuid(), user.email.as_str().to_owned(), user.name.as_str().to_owned());
        match purpose {
            TokenPurpose::PasswordReset => {
                let event = PasswordResetRequested { user_id, email, name, token, expires_at };
                self.outbox.publish(txn, &event, None).await
            }
            TokenPurpose::EmailVerification => {
                let event = EmailVerificationRequested { user_id, email, name, token, expires_at };
                self.outbox.publish(txn, &event, None).await
            }
        }
        .context("failed to publish a mailed token")
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

    pub async fn purge_expired_one_time_tokens(&self, now: chrono::DateTime<chrono::Utc>) -> anyhow::Result<u64> {
        persistence::purge_expired_one_time_tokens(&self.db, now).await.context("failed to purge one-time tokens")
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
            email_verified: user.email_verified(),
        };
        let access_token = self.keys.sign(&claims)?;
        let refresh_token = new_secret();
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

/// 32 random bytes, base64url without padding: a refresh token, or a mailed one.
fn new_secret() -> String {
    let mut secret = [0u8; 32];
    rand::fill(&mut secret);
    URL_SAFE_NO_PAD.encode(secret)
}

/// Refresh and mailed tokens are stored as their SHA-256: a leaked table holds no usable token.
/// Their 256 random bits need no salt nor slow hash.
fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_32_random_bytes_in_base64url() {
        let (first, second) = (new_secret(), new_secret());
        assert_ne!(first, second);
        assert_eq!(URL_SAFE_NO_PAD.decode(&first).expect("base64url").len(), 32);
        assert!(first.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'), "{first}");
    }

    #[test]
    fn a_token_is_stored_as_its_sha_256_in_hex() {
        // FIPS 180-2's "abc".
        assert_eq!(token_hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
