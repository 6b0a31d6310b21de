//! JSON Schemas of what the domain's parsers accept, for request fields
//! (`#[schema(schema_with = kernel::openapi::text::<200>)]`): the OpenAPI document then states
//! exactly what the server takes, which schemathesis checks both ways in CI. The schemas are
//! `contracts::schema`'s, re-exported; [`whole_number`] reads a request's integers.

use serde::{Deserialize, Deserializer};

/// The schemas of what the parsers accept live in the contracts' core, for its shared types to use.
pub use contracts::schema::{one_of, optional_text, search, text, trimmed};

/// Reads an optional integer field as JSON Schema's `integer` admits it: `2` and `2.0` alike (JSON
/// has one number type), so a value the document allows is never refused for its spelling.
/// `#[serde(default, deserialize_with = "kernel::openapi::whole_number")]`.
pub fn whole_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    // Beyond 2^53 a float no longer spells one integer.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    let whole = number.as_f64().filter(|f| f.fract() == 0.0 && f.abs() <= EXACT).map(|f| f as i64);
    number.as_i64().or(whole).map(Some).ok_or_else(|| serde::de::Error::custom(format!("{number} is not an integer")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Field {
        #[serde(default, deserialize_with = "whole_number")]
        n: Option<i64>,
    }

    #[test]
    fn a_whole_number_is_read_however_it_is_spelled() {
        let read = |json: &str| serde_json::from_str::<Field>(json).map(|f| f.n);
        assert_eq!(read(r#"{"n": 7}"#).ok(), Some(Some(7)));
        assert_eq!(read(r#"{"n": 7.0}"#).ok(), Some(Some(7)));
        assert_eq!(read(r#"{"n": -3e2}"#).ok(), Some(Some(-300)));
        assert_eq!(read(r#"{}"#).ok(), Some(None));
        assert_eq!(read(r#"{"n": null}"#).ok(), Some(None));
        assert!(read(r#"{"n": 7.5}"#).is_err());
        assert!(read(r#"{"n": 1e300}"#).is_err());
        assert!(read(r#"{"n": "7"}"#).is_err());
    }
}
