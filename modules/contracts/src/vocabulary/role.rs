//! [`Role`]: what a user may do.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

/// A user's role: `customer` or `admin`. Access tokens carry it, `UserRegistered` announces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Customer,
    Admin,
}

impl Role {
    pub const ALL: [Role; 2] = [Role::Customer, Role::Admin];

    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Admin => "admin",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == raw)
            .ok_or_else(|| format!("'{raw}' is not a role (customer or admin)"))
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `{"type": "string", "enum": [...]}`, every value [`Role::parse`] takes.
impl PartialSchema for Role {
    fn schema() -> RefOr<Schema> {
        crate::schema::one_of(&Self::ALL.map(|v| v.as_str())).into()
    }
}

impl ToSchema for Role {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Role")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_in_lower_case() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Ok(role));
            let json = serde_json::to_string(&role).expect("encodes");
            assert_eq!(json, format!("\"{role}\""));
            assert_eq!(serde_json::from_str::<Role>(&json).expect("decodes"), role);
        }
        assert!(Role::parse("Admin").is_err());
        assert!(serde_json::from_str::<Role>("\"root\"").is_err());
    }
}
