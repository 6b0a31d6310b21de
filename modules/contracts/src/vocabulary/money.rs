//! [`Currency`] and [`Money`]: integer minor units of an ISO 4217 currency, never a float.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

/// An active ISO 4217 currency code, upper case (`EUR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency(&'static str);

impl Currency {
    /// Active ISO 4217 codes (2026), funds and precious metals excluded.
    pub const CODES: &'static [&'static str] = &[
        "AED", "AFN", "ALL", "AMD", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BGN", "BHD", "BIF", "BMD",
        "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF", "CHF", "CLP", "CNY", "COP", "CRC", "CUP",
        "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP",
        "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD",
        "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "LYD",
        "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MYR", "MZN", "NAD", "NGN",
        "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB",
        "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL",
        "THB", "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS", "VES", "VND",
        "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG",
    ];

    pub fn parse(raw: &str) -> Result<Self, String> {
        Self::CODES
            .iter()
            .find(|code| **code == raw)
            .map(|code| Self(code))
            .ok_or_else(|| format!("'{raw}' is not an ISO 4217 currency code (upper case, like EUR)"))
    }

    pub fn code(&self) -> &'static str {
        self.0
    }

    /// How many digits its minor unit has (ISO 4217's exponent): 2 for EUR, 0 for JPY, 3 for KWD.
    pub fn minor_digits(&self) -> u32 {
        const NONE: &[&str] = &[
            "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF",
            "XPF",
        ];
        const THREE: &[&str] = &["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"];
        if NONE.contains(&self.0) {
            0
        } else if THREE.contains(&self.0) {
            3
        } else {
            2
        }
    }
}

impl std::fmt::Display for Currency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0)
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Cow::<'de, str>::deserialize(deserializer)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl PartialSchema for Currency {
    fn schema() -> RefOr<Schema> {
        crate::schema::one_of(Self::CODES).into()
    }
}

impl ToSchema for Currency {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Currency")
    }
}

/// An amount in integer minor units (cents for EUR) of one currency, never negative:
/// `{"amount": 1299, "currency": "EUR"}` is 12.99 €.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Unchecked")]
pub struct Money {
    #[serde(rename = "amount")]
    amount_minor: i64,
    currency: Currency,
}

impl Money {
    pub fn new(amount_minor: i64, currency: Currency) -> Result<Self, String> {
        if amount_minor < 0 {
            return Err("must not be negative".into());
        }
        Ok(Self { amount_minor, currency })
    }

    /// The amount in major units as people write it, without the currency: `12.99` for 1299 EUR
    /// cents, `1299` for 1299 JPY.
    pub fn to_decimal(&self) -> String {
        let digits = self.currency.minor_digits();
        if digits == 0 {
            return self.amount_minor.to_string();
        }
        let unit = 10i64.pow(digits);
        let (major, minor) = (self.amount_minor / unit, self.amount_minor % unit);
        format!("{major}.{minor:0width$}", width = digits as usize)
    }

    /// The amount and its currency as people read them: `12.99 EUR`.
    pub fn to_words(&self) -> String {
        format!("{} {}", self.to_decimal(), self.currency)
    }

    /// Nothing, in `currency`: where a sum starts.
    pub fn zero(currency: Currency) -> Self {
        Self { amount_minor: 0, currency }
    }

    pub fn amount_minor(&self) -> i64 {
        self.amount_minor
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// `units` times this amount, at most `i64::MAX` minor units.
    pub fn saturating_times(self, units: u32) -> Self {
        Self { amount_minor: self.amount_minor.saturating_mul(i64::from(units)), ..self }
    }

    /// The sum; `None` if it overflows or the currencies differ.
    pub fn checked_add(self, other: Money) -> Option<Self> {
        if self.currency != other.currency {
            return None;
        }
        Some(Self { amount_minor: self.amount_minor.checked_add(other.amount_minor)?, ..self })
    }
}

impl std::fmt::Display for Money {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} (minor units)", self.amount_minor, self.currency)
    }
}

/// A price in integer minor units of an ISO 4217 currency.
#[derive(Deserialize, ToSchema)]
#[schema(as = Money)]
struct Unchecked {
    /// Minor units (cents for EUR): `1299` is 12.99.
    #[schema(example = 1299, minimum = 0)]
    amount: i64,
    #[schema(schema_with = Currency::schema)]
    currency: String,
}

impl TryFrom<Unchecked> for Money {
    type Error = String;

    fn try_from(raw: Unchecked) -> Result<Self, String> {
        let currency = Currency::parse(&raw.currency).map_err(|e| format!("currency: {e}"))?;
        Money::new(raw.amount, currency).map_err(|e| format!("amount: {e}"))
    }
}

impl PartialSchema for Money {
    fn schema() -> RefOr<Schema> {
        Unchecked::schema()
    }
}

impl ToSchema for Money {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Money")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eur() -> Currency {
        Currency::parse("EUR").expect("valid")
    }

    #[test]
    fn currencies_are_active_iso_codes_in_upper_case() {
        assert_eq!(eur().code(), "EUR");
        assert!(Currency::parse("eur").is_err());
        assert!(Currency::parse("XAU").is_err(), "no precious metals");
        assert!(Currency::parse("").is_err());
    }

    #[test]
    fn money_is_written_in_major_units_with_its_currencys_digits() {
        let of = |amount, code| Money::new(amount, Currency::parse(code).expect("a code")).expect("money").to_decimal();
        assert_eq!(of(1299, "EUR"), "12.99");
        assert_eq!(of(5, "EUR"), "0.05");
        assert_eq!(of(100, "USD"), "1.00");
        assert_eq!(of(1299, "JPY"), "1299");
        assert_eq!(of(1234, "KWD"), "1.234");
        assert_eq!(of(0, "GBP"), "0.00");
        assert_eq!(Money::new(1250, eur()).expect("money").to_words(), "12.50 EUR");
    }

    #[test]
    fn money_is_never_negative() {
        assert!(Money::new(-1, eur()).is_err());
        assert_eq!(Money::new(0, eur()).map(|m| m.amount_minor()), Ok(0));
    }

    #[test]
    fn money_encodes_as_amount_and_currency_and_decodes_only_when_valid() {
        let price = Money::new(1299, eur()).expect("valid");
        let json = r#"{"amount":1299,"currency":"EUR"}"#;
        assert_eq!(serde_json::to_string(&price).expect("encodes"), json);
        assert_eq!(serde_json::from_str::<Money>(json).expect("decodes"), price);
        let negative = serde_json::from_str::<Money>(r#"{"amount":-1,"currency":"EUR"}"#).expect_err("invalid");
        assert!(negative.to_string().contains("amount: must not be negative"), "{negative}");
        let unknown = serde_json::from_str::<Money>(r#"{"amount":1,"currency":"EUROS"}"#).expect_err("invalid");
        assert!(unknown.to_string().contains("not an ISO 4217 currency code"), "{unknown}");
        assert!(serde_json::from_str::<Money>(r#"{"amount":1}"#).is_err());
    }

    #[test]
    fn sums_keep_one_currency_and_never_overflow() {
        let one = Money::new(1, eur()).expect("valid");
        let max = Money::new(i64::MAX, eur()).expect("valid");
        let usd = Money::new(1, Currency::parse("USD").expect("valid")).expect("valid");
        assert_eq!(one.checked_add(one).map(|m| m.amount_minor()), Some(2));
        assert_eq!(one.checked_add(usd), None);
        assert_eq!(max.checked_add(one), None);
        assert_eq!(max.saturating_times(2), max);
        assert_eq!(one.saturating_times(3).amount_minor(), 3);
    }
}
