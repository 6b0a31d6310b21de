//! [`Address`]: where a parcel goes; [`AddressForm`]: one as a request carries it.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

use super::Invalid;
use crate::schema::{optional_text, text, trimmed};

/// A postal address: name, one or two street lines, city, postal code, and an ISO 3166-1 alpha-2
/// country, kept upper case. Every text is trimmed, non-blank (`line2` is absent instead), short
/// enough, and free of control characters.
///
/// JSON: `{"name", "line1", "line2" (or null), "city", "postalCode", "country"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", try_from = "Unchecked")]
pub struct Address {
    name: String,
    line1: String,
    line2: Option<String>,
    city: String,
    postal_code: String,
    country: String,
}

/// An address as a request carries it: every field optional and unchecked, so that
/// [`Address::parse`] can name each problem. A request's field of this type shows the [`Address`]
/// schema (`#[schema(value_type = Address)]`): what parses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"name": "Ada Lovelace", "line1": "12 St James's Square", "city": "London",
    "postalCode": "SW1Y 4JH", "country": "GB"}))]
pub struct AddressForm {
    #[schema(required = true, schema_with = text::<200>)]
    pub name: Option<String>,
    #[schema(required = true, schema_with = text::<200>)]
    pub line1: Option<String>,
    #[schema(schema_with = optional_text::<200>)]
    pub line2: Option<String>,
    #[schema(required = true, schema_with = text::<100>)]
    pub city: Option<String>,
    #[schema(required = true, schema_with = text::<20>)]
    pub postal_code: Option<String>,
    #[schema(required = true, schema_with = country)]
    pub country: Option<String>,
}

fn country() -> utoipa::openapi::Object {
    trimmed("[A-Za-z]{2}", "ISO 3166-1 alpha-2, like GB (kept upper case)")
}

impl Address {
    /// The address `form` describes, or every problem with it, field by field (`name`, `line1`,
    /// `city`, `postalCode`, `line2`, `country`, in that order).
    pub fn parse(form: &AddressForm) -> Result<Self, Vec<Invalid>> {
        fn text(errors: &mut Vec<Invalid>, field: &'static str, value: Option<&str>, max: usize) -> Option<String> {
            let value = value.map(str::trim).unwrap_or_default();
            if value.is_empty() || value.chars().count() > max || value.chars().any(char::is_control) {
                errors.push(Invalid::new(field, format!("must be 1 to {max} characters")));
                return None;
            }
            Some(value.to_owned())
        }
        let mut errors = Vec::new();
        let name = text(&mut errors, "name", form.name.as_deref(), 200);
        let line1 = text(&mut errors, "line1", form.line1.as_deref(), 200);
        let city = text(&mut errors, "city", form.city.as_deref(), 100);
        let postal_code = text(&mut errors, "postalCode", form.postal_code.as_deref(), 20);
        let line2 = match form.line2.as_deref().map(str::trim).filter(|l| !l.is_empty()) {
            Some(l) if l.chars().count() > 200 || l.chars().any(char::is_control) => {
                errors.push(Invalid::new("line2", "must be at most 200 characters"));
                None
            }
            other => other.map(str::to_owned),
        };
        let country = match form.country.as_deref().map(str::trim) {
            Some(c) if c.len() == 2 && c.chars().all(|ch| ch.is_ascii_alphabetic()) => Some(c.to_ascii_uppercase()),
            _ => {
                errors.push(Invalid::new("country", "must be an ISO 3166-1 alpha-2 code, like DE"));
                None
            }
        };
        match (name, line1, city, postal_code, country) {
            (Some(name), Some(line1), Some(city), Some(postal_code), Some(country)) if errors.is_empty() => {
                Ok(Self { name, line1, line2, city, postal_code, country })
            }
            _ => Err(errors),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn line1(&self) -> &str {
        &self.line1
    }

    pub fn line2(&self) -> Option<&str> {
        self.line2.as_deref()
    }

    pub fn city(&self) -> &str {
        &self.city
    }

    pub fn postal_code(&self) -> &str {
        &self.postal_code
    }

    /// ISO 3166-1 alpha-2, upper case.
    pub fn country(&self) -> &str {
        &self.country
    }
}

/// An address as an event carries it, before it is checked. Unlike a request's [`AddressForm`],
/// it ignores fields it does not know: a newer publisher may add one.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Unchecked {
    name: Option<String>,
    line1: Option<String>,
    line2: Option<String>,
    city: Option<String>,
    postal_code: Option<String>,
    country: Option<String>,
}

impl TryFrom<Unchecked> for Address {
    type Error = String;

    fn try_from(u: Unchecked) -> Result<Self, String> {
        let form = AddressForm {
            name: u.name,
            line1: u.line1,
            line2: u.line2,
            city: u.city,
            postal_code: u.postal_code,
            country: u.country,
        };
        Address::parse(&form).map_err(|problems| {
            let problems: Vec<String> = problems.iter().map(Invalid::to_string).collect();
            format!("an invalid address: {}", problems.join("; "))
        })
    }
}

/// What [`AddressForm`] admits is what parses: one schema for requests and responses alike.
impl PartialSchema for Address {
    fn schema() -> RefOr<Schema> {
        let mut schema = AddressForm::schema();
        // The form's documentation is about requests; the address is more than that.
        if let RefOr::T(Schema::Object(object)) = &mut schema {
            object.description = None;
        }
        schema
    }
}

impl ToSchema for Address {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Address")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form() -> AddressForm {
        AddressForm {
            name: Some(" Ada ".into()),
            line1: Some("1 Main St".into()),
            line2: Some("".into()),
            city: Some("London".into()),
            postal_code: Some("N1 9GU".into()),
            country: Some("gb".into()),
        }
    }

    #[test]
    fn an_address_is_trimmed_and_its_country_upper_case() {
        let address = Address::parse(&form()).expect("valid");
        assert_eq!((address.name(), address.country(), address.line2()), ("Ada", "GB", None));
    }

    #[test]
    fn an_address_reports_every_bad_field() {
        let errors = Address::parse(&AddressForm {
            name: Some(" ".into()),
            line2: Some("x".repeat(201)),
            country: Some("Germany".into()),
            ..Default::default()
        })
        .expect_err("invalid");
        let fields: Vec<&str> = errors.iter().map(|e| e.field).collect();
        assert_eq!(fields, ["name", "line1", "city", "postalCode", "line2", "country"]);
        assert!(Address::parse(&AddressForm { city: Some("Lon\ndon".into()), ..form() }).is_err());
        assert!(Address::parse(&AddressForm { postal_code: Some("1".repeat(21)), ..form() }).is_err());
    }

    #[test]
    fn an_address_encodes_as_it_always_has_and_decodes_only_when_valid() {
        let address = Address::parse(&form()).expect("valid");
        let json =
            r#"{"name":"Ada","line1":"1 Main St","line2":null,"city":"London","postalCode":"N1 9GU","country":"GB"}"#;
        assert_eq!(serde_json::to_string(&address).expect("encodes"), json);
        assert_eq!(serde_json::from_str::<Address>(json).expect("decodes"), address);
        let newer =
            r#"{"name":"Ada","line1":"1 Main St","city":"London","postalCode":"N1 9GU","country":"GB","floor":3}"#;
        assert_eq!(serde_json::from_str::<Address>(newer).expect("an unknown field is ignored"), address);
        let invalid = r#"{"name":"Ada","line1":"1 Main St","city":" ","postalCode":"N1 9GU","country":"GBR"}"#;
        let error = serde_json::from_str::<Address>(invalid).expect_err("invalid");
        assert!(error.to_string().contains("city must be 1 to 100 characters; country must be"), "{error}");
    }

    #[test]
    fn a_request_form_refuses_fields_it_does_not_know() {
        assert!(serde_json::from_str::<AddressForm>(r#"{"name": "Ada", "floor": 3}"#).is_err());
        let form: AddressForm = serde_json::from_str(r#"{"name": "Ada"}"#).expect("parses");
        assert_eq!((form.name.as_deref(), form.city), (Some("Ada"), None));
    }
}
