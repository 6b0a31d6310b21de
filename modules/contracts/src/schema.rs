//! JSON Schemas of what the parsers accept, for the vocabulary's types and for request fields
//! (`#[schema(schema_with = contracts::schema::text::<200>)]`, or through `kernel::openapi`): the
//! OpenAPI document then states exactly what the server takes, which schemathesis checks both ways
//! in CI.
//!
//! Parsers trim text first, so the patterns allow the whitespace `str::trim` removes around the
//! value and count the characters inside it.

use utoipa::openapi::schema::SchemaType;
use utoipa::openapi::{Object, ObjectBuilder, Type};

/// Unicode `White_Space`: what `str::trim` removes.
const WS: &str = r"\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
/// Unicode `Cc`: what `char::is_control` refuses.
const CC: &str = r"\u0000-\u001f\u007f-\u009f";

/// `core`, with the whitespace a parser trims allowed around it.
fn around(core: &str) -> String {
    format!("^[{WS}]*(?:{core})[{WS}]*$")
}

/// A string that matches the regular expression `core` once trimmed.
pub fn trimmed(core: &str, description: &str) -> Object {
    ObjectBuilder::new().schema_type(Type::String).pattern(Some(around(core))).description(Some(description)).build()
}

/// Text of 1 to `MAX` characters once trimmed, without control characters.
pub fn text<const MAX: usize>() -> Object {
    let core = format!("[^{WS}{CC}](?:[^{CC}]{{0,{}}}[^{WS}{CC}])?", MAX - 2);
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(around(&core)))
        .description(Some(format!("1 to {MAX} characters once trimmed, no control characters")))
        .build()
}

/// Like [`text`], but absent, `null` or blank is allowed too.
pub fn optional_text<const MAX: usize>() -> Object {
    let core = format!("(?:[^{WS}{CC}](?:[^{CC}]{{0,{}}}[^{WS}{CC}])?)?", MAX - 2);
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .pattern(Some(around(&core)))
        .description(Some(format!("At most {MAX} characters once trimmed, no control characters")))
        .build()
}

/// A search: at most `MAX` characters once trimmed, any characters; blank searches nothing.
pub fn search<const MAX: usize>() -> Object {
    let core = format!(r"(?:[^{WS}](?:[\s\S]{{0,{}}}[^{WS}])?)?", MAX - 2);
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(around(&core)))
        .description(Some(format!("At most {MAX} characters once trimmed")))
        .build()
}

/// One of `values`, exactly.
pub fn one_of(values: &[&str]) -> Object {
    ObjectBuilder::new().schema_type(Type::String).enum_values(Some(values.iter().copied())).build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_counts_the_characters_between_the_trimmed_whitespace() {
        let pattern = text::<200>().pattern.expect("a pattern");
        assert!(pattern.contains("{0,198}"), "{pattern}");
        assert!(pattern.starts_with('^') && pattern.ends_with('$'));
    }
}
