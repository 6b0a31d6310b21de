//! Events published by the users module. None carries a secret.

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
    /// `role-changed` or `logged-out`.
    pub reason: String,
}

impl IntegrationEvent for UserSessionsRevoked {
    type Publisher = Users;
    const NAME: &'static str = "UserSessionsRevoked";
    const VERSION: u32 = 1;
}

/// The JSON of every event, byte for byte: consumers on other versions decode it.
#[cfg(test)]
mod wire {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
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
    }

    #[test]
    fn a_registration_with_an_unknown_role_does_not_decode() {
        let json =
            r#"{"userId":"00000000-0000-0000-0000-000000000001","email":"ada@example.com","name":"Ada","role":"root"}"#;
        assert!(serde_json::from_str::<UserRegistered>(json).is_err());
    }
}
