//! The catalog's domain: products and their prices, parsed once at the edge.

use chrono::{DateTime, Utc};

/// Prices and statuses are the shared vocabulary's, as the catalog's events carry them.
pub use contracts::{Currency, Invalid, Money, ProductStatus};

kernel::uuid_id!(ProductId);

/// A stock-keeping unit: 1 to 64 letters, digits, `-`, `_` or `.`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sku(String);

impl Sku {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let sku = raw.trim();
        if sku.is_empty() || sku.chars().count() > 64 {
            return Err("must be 1 to 64 characters".into());
        }
        if !sku.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
            return Err("may contain only letters, digits, '-', '_' and '.'".into());
        }
        Ok(Self(sku.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A product's name: 1 to 200 characters once trimmed, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductName(String);

impl ProductName {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let name = raw.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err("must be 1 to 200 characters".into());
        }
        if name.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Free text of at most 5000 characters; may be empty.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Description(String);

impl Description {
    pub const MAX_CHARS: usize = 5000;

    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.chars().count() > Self::MAX_CHARS {
            return Err(format!("must be at most {} characters", Self::MAX_CHARS));
        }
        Ok(Self(raw.trim().to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Everything about a product that an admin sets: validated as a whole, every field reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductDetails {
    pub sku: Sku,
    pub name: ProductName,
    pub description: Description,
    pub price: Money,
}

/// The unvalidated fields of a product, as a request carries them.
#[derive(Debug, Default)]
pub struct RawProductDetails<'a> {
    pub sku: Option<&'a str>,
    pub name: Option<&'a str>,
    pub description: Option<&'a str>,
    pub price_amount: Option<i64>,
    pub price_currency: Option<&'a str>,
}

impl ProductDetails {
    pub fn parse(raw: RawProductDetails<'_>) -> Result<Self, Vec<Invalid>> {
        let mut errors = Vec::new();
        let e = &mut errors;
        let sku = check(e, "sku", required(raw.sku).and_then(Sku::parse));
        let name = check(e, "name", required(raw.name).and_then(ProductName::parse));
        let description = check(e, "description", Description::parse(raw.description.unwrap_or_default()));
        let currency = check(e, "price.currency", required(raw.price_currency).and_then(Currency::parse));
        let amount = check(e, "price.amount", required(raw.price_amount));
        let price = match (amount, currency) {
            (Some(amount), Some(currency)) => check(e, "price.amount", Money::new(amount, currency)),
            _ => None,
        };
        match (sku, name, description, price) {
            (Some(sku), Some(name), Some(description), Some(price)) if errors.is_empty() => {
                Ok(Self { sku, name, description, price })
            }
            _ => Err(errors),
        }
    }
}

fn check<T>(errors: &mut Vec<Invalid>, field: &'static str, result: Result<T, String>) -> Option<T> {
    result.map_err(|message| errors.push(Invalid::new(field, message))).ok()
}

fn required<T>(value: Option<T>) -> Result<T, String> {
    value.ok_or_else(|| "is required".to_owned())
}

/// How many changes a product has been through: 1 when created, one more on every change. Its
/// events carry it, so that consumers of a late event can tell it is older than their copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(u64);

impl Version {
    pub const FIRST: Version = Version(1);

    /// A stored version; products from before versions existed have 0.
    pub fn new(version: u64) -> Self {
        Self(version)
    }

    pub fn next(self) -> Self {
        Self(self.0.saturating_add(1))
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub id: ProductId,
    pub details: ProductDetails,
    pub status: ProductStatus,
    pub version: Version,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Product {
    pub fn new(details: ProductDetails, now: DateTime<Utc>) -> Self {
        Self {
            id: ProductId::generate(),
            details,
            status: ProductStatus::Active,
            version: Version::FIRST,
            created_at: now,
            updated_at: now,
        }
    }

    /// Replaces what an admin sets; the status is left alone.
    pub fn revise(&mut self, details: ProductDetails, now: DateTime<Utc>) {
        self.details = details;
        self.version = self.version.next();
        self.updated_at = now;
    }

    /// `true` if this changed the product, `false` if it was discontinued already.
    pub fn discontinue(&mut self, now: DateTime<Utc>) -> bool {
        if self.status == ProductStatus::Discontinued {
            return false;
        }
        self.status = ProductStatus::Discontinued;
        self.version = self.version.next();
        self.updated_at = now;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw() -> RawProductDetails<'static> {
        RawProductDetails {
            sku: Some("MUG-001"),
            name: Some("  Mug  "),
            description: None,
            price_amount: Some(1299),
            price_currency: Some("EUR"),
        }
    }

    #[test]
    fn valid_details_parse_and_are_trimmed() {
        let details = ProductDetails::parse(raw()).expect("valid");
        assert_eq!(details.name.as_str(), "Mug");
        assert_eq!(details.description.as_str(), "");
        assert_eq!(details.price.amount_minor(), 1299);
        assert_eq!(details.price.currency().code(), "EUR");
    }

    #[test]
    fn every_invalid_field_is_reported() {
        let errors = ProductDetails::parse(RawProductDetails {
            sku: Some("has space"),
            name: None,
            description: Some(&"x".repeat(5001)),
            price_amount: Some(-1),
            price_currency: Some("eur"),
        })
        .expect_err("invalid");
        let fields: Vec<_> = errors.iter().map(|e| e.field).collect();
        assert_eq!(fields, ["sku", "name", "description", "price.currency"]);
        let negative =
            ProductDetails::parse(RawProductDetails { price_amount: Some(-1), ..raw() }).expect_err("invalid");
        assert_eq!(negative[0].field, "price.amount");
    }

    #[test]
    fn skus_and_names_have_bounds() {
        assert!(Sku::parse("").is_err());
        assert!(Sku::parse(&"A".repeat(65)).is_err());
        assert!(Sku::parse("A.b_c-1").is_ok());
        assert!(ProductName::parse(&"n".repeat(201)).is_err());
        assert!(ProductName::parse("bell\u{7}").is_err());
    }

    #[test]
    fn discontinuing_twice_changes_nothing_the_second_time() {
        let now = Utc::now();
        let mut product = Product::new(ProductDetails::parse(raw()).expect("valid"), now);
        assert!(product.discontinue(now));
        assert!(!product.discontinue(now));
        assert_eq!(product.status, ProductStatus::Discontinued);
        assert_eq!(product.version, Version::new(2), "one change");
    }

    #[test]
    fn every_change_raises_the_version_by_one() {
        let now = Utc::now();
        let mut product = Product::new(ProductDetails::parse(raw()).expect("valid"), now);
        assert_eq!(product.version, Version::FIRST);
        product.revise(ProductDetails::parse(raw()).expect("valid"), now);
        assert_eq!(product.version, Version::new(2));
        product.discontinue(now);
        product.revise(ProductDetails::parse(raw()).expect("valid"), now);
        assert_eq!(product.version, Version::new(4));
    }
}
