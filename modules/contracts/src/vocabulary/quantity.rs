//! [`Quantity`]: how many units of one product an order holds.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::openapi::schema::SchemaFormat;
use utoipa::openapi::{KnownFormat, ObjectBuilder, RefOr, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

/// 1 to [`Quantity::MAX`] units of one product: an order line, or an order's lines of one product
/// together (what inventory reserves for it). Never 0: a line of nothing is no line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Quantity(u32);

impl Quantity {
    /// The most units of one product an order may ever hold; the shop's settings may allow less.
    pub const MAX: u32 = 1000;

    pub fn new(units: u32) -> Result<Self, String> {
        match units {
            1..=Self::MAX => Ok(Self(units)),
            _ => Err(format!("must be between 1 and {}", Self::MAX)),
        }
    }

    /// From a wider integer (a request's number, a database column).
    pub fn parse(raw: i64) -> Result<Self, String> {
        u32::try_from(raw).map_err(|_| format!("must be between 1 and {}", Self::MAX)).and_then(Self::new)
    }

    pub fn get(&self) -> u32 {
        self.0
    }

    /// The units of both; `None` beyond [`Quantity::MAX`].
    pub fn checked_add(self, other: Quantity) -> Option<Self> {
        Self::new(self.0 + other.0).ok()
    }
}

impl std::fmt::Display for Quantity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl TryFrom<u32> for Quantity {
    type Error = String;

    fn try_from(units: u32) -> Result<Self, String> {
        Self::new(units)
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u32(self.0)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let units = u32::deserialize(deserializer)?;
        Self::new(units).map_err(|e| serde::de::Error::custom(format!("a quantity {e}, not {units}")))
    }
}

impl PartialSchema for Quantity {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int32)))
            .minimum(Some(1))
            .maximum(Some(Self::MAX))
            .into()
    }
}

impl ToSchema for Quantity {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Quantity")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_one_to_a_thousand() {
        assert!(Quantity::parse(0).is_err());
        assert!(Quantity::parse(1001).is_err());
        assert!(Quantity::parse(-1).is_err());
        assert!(Quantity::parse(i64::from(u32::MAX) + 1).is_err());
        assert_eq!(Quantity::parse(1000).map(|q| q.get()), Ok(1000));
        assert_eq!(Quantity::new(1).map(|q| q.get()), Ok(1));
    }

    #[test]
    fn a_quantity_is_a_bare_number_and_decodes_only_when_valid() {
        let two = Quantity::new(2).expect("valid");
        assert_eq!(serde_json::to_string(&two).expect("encodes"), "2");
        assert_eq!(serde_json::from_str::<Quantity>("2").expect("decodes"), two);
        for invalid in ["0", "1001", "-1", "2.5", "\"2\""] {
            assert!(serde_json::from_str::<Quantity>(invalid).is_err(), "{invalid}");
        }
    }

    #[test]
    fn sums_stay_within_the_bounds() {
        let q = |n| Quantity::new(n).expect("valid");
        assert_eq!(q(400).checked_add(q(600)), Some(q(1000)));
        assert_eq!(q(400).checked_add(q(601)), None);
    }
}
