//! [`ProductStatus`]: whether a product can still be ordered.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

/// `active` (orderable) or `discontinued` (readable, never orderable again).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProductStatus {
    Active,
    Discontinued,
}

impl ProductStatus {
    pub const ALL: [ProductStatus; 2] = [ProductStatus::Active, ProductStatus::Discontinued];

    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Discontinued => "discontinued",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == raw)
            .ok_or_else(|| format!("'{raw}' is not a status (active or discontinued)"))
    }
}

impl std::fmt::Display for ProductStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `{"type": "string", "enum": [...]}`, every value [`ProductStatus::parse`] takes.
impl PartialSchema for ProductStatus {
    fn schema() -> RefOr<Schema> {
        crate::schema::one_of(&Self::ALL.map(|v| v.as_str())).into()
    }
}

impl ToSchema for ProductStatus {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ProductStatus")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_in_lower_case() {
        for status in ProductStatus::ALL {
            assert_eq!(ProductStatus::parse(status.as_str()), Ok(status));
            let json = serde_json::to_string(&status).expect("encodes");
            assert_eq!(json, format!("\"{status}\""));
            assert_eq!(serde_json::from_str::<ProductStatus>(&json).expect("decodes"), status);
        }
        assert!(ProductStatus::parse("gone").is_err());
        assert!(serde_json::from_str::<ProductStatus>("\"Active\"").is_err());
    }
}
