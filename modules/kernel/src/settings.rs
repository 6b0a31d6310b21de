//! A module's settings: one typed section with its defaults, declared by the module that reads it.
//!
//! The composition root loads the layered settings (files, then environment variables) and asks
//! every hosted module's [`SectionSpec`] to parse and check its own section; the module then gets
//! its sections — and only its own — through [`ModuleContext::section`](crate::ModuleContext::section).
//! A secret is a `SecretString` field, serialised as `***` ([`redacted`]), so `bazaar config`
//! and the registry's list of keys never show one.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;

use secrecy::SecretString;
use serde::de::DeserializeOwned;
use serde::{Serialize, Serializer};

/// A setting that stops start-up: `invalid setting `key`: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting `{key}`: {message}")]
pub struct SettingsError {
    pub key: String,
    pub message: String,
}

impl SettingsError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self { key: key.into(), message: message.into() }
    }
}

/// A [`config::ConfigError`] as a [`SettingsError`] naming the key the config crate names
/// (`... for key `server.port``).
pub fn config_error(e: config::ConfigError) -> SettingsError {
    section_error("", e)
}

/// [`config_error`] for an error inside the section `section` (whose keys are relative to it).
fn section_error(section: &str, e: config::ConfigError) -> SettingsError {
    let message = e.to_string().replace('\n', " ");
    let named = message.split("for key `").nth(1).and_then(|rest| rest.split('`').next());
    let full = |key: &str| match section {
        "" => key.to_owned(),
        section => format!("{section}.{key}"),
    };
    match named {
        Some(key) => SettingsError {
            key: full(key),
            message: message.replace(&format!("for key `{key}`"), &format!("for key `{}`", full(key))),
        },
        None if section.is_empty() => SettingsError { key: "settings".to_owned(), message },
        None => SettingsError { key: section.to_owned(), message },
    }
}

/// What a section's checks may depend on besides its own values.
#[derive(Debug, Clone, Copy)]
pub struct Checks {
    /// `BAZAAR_ENV=production`: development conveniences (a generated key) are refused.
    pub production: bool,
}

/// A module's settings section: `[KEY]` in the files, `BAZAAR__KEY__FIELD` in the environment.
///
/// `Default` is the section's defaults (a missing field takes the default's value: put
/// `#[serde(default)]` on the struct); `Serialize` shows it, secrets as `***`.
pub trait Section: Serialize + DeserializeOwned + Default + Send + Sync + 'static {
    /// The section's key: the module's name for its own section.
    const KEY: &'static str;

    /// Checks what the types alone cannot (ranges, combinations); the error names the key.
    fn check(&self, _checks: Checks) -> Result<(), SettingsError> {
        Ok(())
    }
}

type Parser = fn(&config::Config, Checks) -> Result<Parsed, SettingsError>;

/// A section as the registry knows it: its key, its settings' keys, and how to parse it.
#[derive(Clone, Copy)]
pub struct SectionSpec {
    key: &'static str,
    keys: fn() -> Vec<String>,
    parse: Parser,
}

impl std::fmt::Debug for SectionSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SectionSpec").field("key", &self.key).finish_non_exhaustive()
    }
}

/// A parsed section: the typed value its module reads, and what `bazaar config` shows of it.
#[derive(Clone)]
pub struct Parsed {
    value: Arc<dyn Any + Send + Sync>,
    pub shown: serde_json::Value,
}

impl SectionSpec {
    pub fn of<T: Section>() -> Self {
        Self { key: T::KEY, keys: keys_of::<T>, parse: parse::<T> }
    }

    pub fn key(&self) -> &'static str {
        self.key
    }

    /// `section.field` for every field of the section (nested tables by their field's name).
    pub fn keys(&self) -> Vec<String> {
        (self.keys)()
    }

    /// Reads the section from the layered settings (absent: the defaults) and checks it.
    pub fn parse(&self, layered: &config::Config, checks: Checks) -> Result<Parsed, SettingsError> {
        (self.parse)(layered, checks)
    }
}

fn keys_of<T: Section>() -> Vec<String> {
    match serde_json::to_value(T::default()) {
        Ok(serde_json::Value::Object(fields)) => fields.keys().map(|field| format!("{}.{field}", T::KEY)).collect(),
        _ => Vec::new(),
    }
}

fn parse<T: Section>(layered: &config::Config, checks: Checks) -> Result<Parsed, SettingsError> {
    // Deserialised from the section's own value, so that an error names the key within it.
    let section: T = match layered.get::<config::Value>(T::KEY) {
        Ok(value) => T::deserialize(value).map_err(|e| section_error(T::KEY, e))?,
        Err(config::ConfigError::NotFound(_)) => T::default(),
        Err(e) => return Err(config_error(e)),
    };
    section.check(checks)?;
    let shown = serde_json::to_value(&section).map_err(|e| SettingsError::new(T::KEY, e.to_string()))?;
    Ok(Parsed { value: Arc::new(section), shown })
}

/// The sections a hosted module declared, parsed: what its [`ModuleContext`](crate::ModuleContext)
/// hands out.
#[derive(Clone, Default)]
pub struct Sections(BTreeMap<&'static str, Parsed>);

impl std::fmt::Debug for Sections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.shown()).finish()
    }
}

impl Sections {
    pub fn insert(&mut self, key: &'static str, parsed: Parsed) {
        self.0.insert(key, parsed);
    }

    /// The section `T`: as parsed, or its defaults where it was not declared or not parsed (a
    /// test's context).
    pub fn get<T: Section>(&self) -> Arc<T> {
        self.0
            .get(T::KEY)
            .and_then(|parsed| parsed.value.clone().downcast::<T>().ok())
            .unwrap_or_else(|| Arc::new(T::default()))
    }

    /// What `bazaar config` shows of each: key → the section, secrets hidden.
    pub fn shown(&self) -> impl Iterator<Item = (&'static str, &serde_json::Value)> {
        self.0.iter().map(|(key, parsed)| (*key, &parsed.shown))
    }
}

/// Serialises a secret as `***`: use with `#[serde(serialize_with = "kernel::settings::redacted")]`.
pub fn redacted<S: Serializer>(_secret: &SecretString, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str("***")
}

/// [`redacted`] for an optional secret: `null` when unset.
pub fn redacted_optional<S: Serializer>(secret: &Option<SecretString>, serializer: S) -> Result<S::Ok, S::Error> {
    match secret {
        Some(secret) => redacted(secret, serializer),
        None => serializer.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize)]
    #[serde(default)]
    struct Example {
        limit: u32,
        #[serde(serialize_with = "redacted_optional")]
        token: Option<SecretString>,
    }

    impl Default for Example {
        fn default() -> Self {
            Self { limit: 5, token: None }
        }
    }

    impl Section for Example {
        const KEY: &'static str = "example";

        fn check(&self, _checks: Checks) -> Result<(), SettingsError> {
            match self.limit {
                0 => Err(SettingsError::new("example.limit", "must be at least 1")),
                _ => Ok(()),
            }
        }
    }

    fn layered(toml: &str) -> config::Config {
        config::Config::builder()
            .add_source(config::File::from_str(toml, config::FileFormat::Toml))
            .build()
            .expect("valid TOML")
    }

    const CHECKS: Checks = Checks { production: false };

    #[test]
    fn a_section_is_parsed_defaulted_and_checked_with_its_secrets_hidden() {
        let spec = SectionSpec::of::<Example>();
        assert_eq!(spec.keys(), ["example.limit", "example.token"]);

        let parsed = spec.parse(&layered("[example]\ntoken = \"hunter2\""), CHECKS).expect("valid");
        assert_eq!(parsed.shown, serde_json::json!({"limit": 5, "token": "***"}));
        let mut sections = Sections::default();
        sections.insert(spec.key(), parsed);
        let example = sections.get::<Example>();
        assert_eq!(example.token.as_ref().map(|t| t.expose_secret().to_owned()).as_deref(), Some("hunter2"));

        let missing = spec.parse(&layered(""), CHECKS).expect("the defaults");
        assert_eq!(missing.shown["limit"], 5);
        assert_eq!(Sections::default().get::<Example>().limit, 5, "an undeclared section is its defaults");
    }

    #[test]
    fn a_bad_section_names_its_key() {
        let spec = SectionSpec::of::<Example>();
        let error = spec.parse(&layered("[example]\nlimit = 0"), CHECKS).err().expect("refused");
        assert_eq!(error.key, "example.limit");
        let error = spec.parse(&layered("[example]\nlimit = \"many\""), CHECKS).err().expect("refused");
        assert_eq!(error.key, "example.limit", "{error}");
    }
}
