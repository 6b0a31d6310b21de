//! Events published by the users module. None carries a secret.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::IntegrationEvent;

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
    const NAME: &'static str = "UserRegistered";
    const VERSION: u32 = 1;
    const SOURCE: &'static str = "users";
}
