//! Events published by the users module. None carries a password or a long-lived secret; the two
//! that ask for a mail ([`PasswordResetRequested`], [`EmailVerificationRequested`]) carry a
//! single-use, short-lived token, since the mail must hold it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use contracts::{IntegrationEvent, Publisher, Role};

/// The users module, as the publisher of these events.
pub enum Users {}

impl Publisher for Users {
    const NAME: &'static str = "users";
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserRegistered {
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
    pub role: Role,
}

impl IntegrationEvent for UserRegistered {
    type Publisher = Users;
    const NAME: &'static str = "UserRegistered";
    const VERSION: u32 = 1;
}

/// The user's access tokens issued before `notBefore` must be refused: their role changed, or
/// they logged out. Every process hears it (not only a consuming module): each refuses the tokens
/// it would otherwise accept until they expire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserSessionsRevoked {
    pub user_id: Uuid,
    /// Unix seconds: tokens whose `iat` is earlier are revoked.
    pub not_before: i64,
    /// `role-changed`, `logged-out` or `password-reset`.
    pub reason: String,
}

impl IntegrationEvent for UserSessionsRevoked {
    type Publisher = Users;
    const NAME: &'static str = "UserSessionsRevoked";
    const VERSION: u32 = 1;
}

/// Someone asked to reset the password of this account (`POST /auth/password-reset`): mail it
/// `token`, which `POST /auth/password-reset/confirm` takes with the new password until
/// `expiresAt`.
///
/// The token travels on the bus because the module that writes the mail (notifications) must put
/// it into the mail; users has no mail server. It is single use and short-lived
/// (`users.password_reset_ttl_mins`, 30 by default), users stores only its SHA-256, and a newer
/// request invalidates it; the outbox row that carries it is purged by housekeeping once published
/// (`housekeeping.retention_hours`). Consumers must not log it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PasswordResetRequested {
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
    /// 32 random bytes, base64url without padding.
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

impl IntegrationEvent for PasswordResetRequested {
    type Publisher = Users;
    const NAME: &'static str = "PasswordResetRequested";
    const VERSION: u32 = 1;
}

/// This account's e-mail address is to be verified (it registered, or asked again with
/// `POST /users/me/verification`): mail it `token`, which `POST /users/verify` takes until
/// `expiresAt`.
///
/// As with [`PasswordResetRequested`], the token travels on the bus so that notifications can put
/// it into the mail: single use, valid `users.email_verification_ttl_hours` (72 by default),
/// stored by users only as its SHA-256, invalidated by a newer request; the outbox row is purged by
/// housekeeping once published. Consumers must not log it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmailVerificationRequested {
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
    /// 32 random bytes, base64url without padding.
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

impl IntegrationEvent for EmailVerificationRequested {
    type Publisher = Users;
    const NAME: &'static str = "EmailVerificationRequested";
    const VERSION: u32 = 1;
}

/// The JSON of every event, byte for byte: consumers on other versions decode it.
#[cfg(test)]
mod wire {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-28T12:30:00Z").expect("valid").to_utc()
    }

    /// `event` encodes to exactly `json`, and `json` decodes to `event`.
    fn pinned<E: IntegrationEvent + PartialEq + std::fmt::Debug>(event: E, json: &str) {
        assert_eq!(serde_json::to_string(&event).expect("encodes"), json);
        assert_eq!(serde_json::from_str::<E>(json).expect("decodes"), event);
    }

    #[test]
    fn every_event_keeps_its_wire_format() {
        pinned(
            UserRegistered {
                user_id: id(1),
                email: "ada@example.com".into(),
                name: "Ada".into(),
                role: Role::Customer,
            },
            r#"{"userId":"00000000-0000-0000-0000-000000000001","email":"ada@example.com","name":"Ada","role":"customer"}"#,
        );
        pinned(
            UserSessionsRevoked { user_id: id(1), not_before: 1_700_000_000, reason: "role-changed".into() },
            r#"{"userId":"00000000-0000-0000-0000-000000000001","notBefore":1700000000,"reason":"role-changed"}"#,
        );
        pinned(
            PasswordResetRequested {
                user_id: id(1),
                email: "ada@example.com".into(),
                name: "Ada".into(),
                token: "q6nrQ3jU4GfVhV0wV2mXoQ".into(),
                expires_at: at(),
            },
            r#"{"userId":"00000000-0000-0000-0000-000000000001","email":"ada@example.com","name":"Ada","token":"q6nrQ3jU4GfVhV0wV2mXoQ","expiresAt":"2026-11-28T12:30:00Z"}"#,
        );
        pinned(
            EmailVerificationRequested {
                user_id: id(1),
                email: "ada@example.com".into(),
                name: "Ada".into(),
                token: "q6nrQ3jU4GfVhV0wV2mXoQ".into(),
                expires_at: at(),
            },
            r#"{"userId":"00000000-0000-0000-0000-000000000001","email":"ada@example.com","name":"Ada","token":"q6nrQ3jU4GfVhV0wV2mXoQ","expiresAt":"2026-11-28T12:30:00Z"}"#,
        );
    }

    #[test]
    fn a_registration_with_an_unknown_role_does_not_decode() {
        let json =
            r#"{"userId":"00000000-0000-0000-0000-000000000001","email":"ada@example.com","name":"Ada","role":"root"}"#;
        assert!(serde_json::from_str::<UserRegistered>(json).is_err());
    }
}
