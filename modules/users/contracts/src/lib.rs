//! Events published by the users module. None carries a secret.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use contracts::{IntegrationEvent, Publisher};

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
    /// `customer` or `admin`.
    pub role: String,
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
