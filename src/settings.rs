//! Bazaar's settings: `config/default.toml`, then `config/<BAZAAR_ENV>.toml`, then
//! `BAZAAR__SECTION__KEY` environment variables. Loading validates everything a process needs
//! before it starts, and reports the first problem as one line naming the key.

use std::collections::BTreeMap;
use std::path::Path;

use kernel::settings::{Checks, Sections, config_error};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

pub use kernel::settings::SettingsError;

use crate::modules;

/// The sections the composition root reads itself; every other section belongs to a module
/// ([`kernel::Module::settings`]).
const ROOT_SECTIONS: [&str; 9] =
    ["server", "database", "modules", "bus", "outbox", "housekeeping", "auth", "telemetry", "environment"];

/// The settings shipped in the binary: a process runs even without a `config/` folder.
const DEFAULTS: &str = include_str!("../config/default.toml");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Development,
    Test,
    Production,
}

impl Environment {
    fn parse(raw: &str) -> Result<Self, SettingsError> {
        match raw {
            "development" => Ok(Self::Development),
            "test" => Ok(Self::Test),
            "production" => Ok(Self::Production),
            other => Err(SettingsError::new("BAZAAR_ENV", format!("'{other}' is not development, test or production"))),
        }
    }

    fn as_str(&self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Test => "test",
            Self::Production => "production",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    #[serde(skip_deserializing, default = "development")]
    pub environment: Environment,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub modules: ModulesSettings,
    pub bus: BusSettings,
    pub outbox: OutboxSettings,
    pub housekeeping: HousekeepingSettings,
    pub auth: AuthSettings,
    pub telemetry: TelemetrySettings,
    /// The layers as loaded, where the modules' sections are read from ([`Self::sections_of`]).
    #[serde(skip)]
    layered: Option<config::Config>,
}

fn development() -> Environment {
    Environment::Development
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerSettings {
    pub host: String,
    /// Wider than `u16` so that an out-of-range port gets a clear message, not a type error.
    pub port: u32,
    pub workers: usize,
    pub shutdown_timeout_secs: u64,
    /// After SIGTERM, how long to keep serving while `/health/ready` says not ready, so that load
    /// balancers stop sending requests before the listener closes.
    pub shutdown_delay_secs: u64,
    /// Proxies (CIDRs) whose `Forwarded` / `X-Forwarded-For` headers name the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatabaseSettings {
    /// A URL template: `{module}` becomes each module's name.
    pub url: String,
    pub max_connections: u32,
    pub auto_migrate: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModulesSettings {
    /// The modules this process hosts (unset: every registered module), less `disabled`.
    #[serde(default = "every_module")]
    pub enabled: Vec<String>,
    /// Modules this process does not host although `enabled` names them: a process that hosts
    /// "everything else" names the others here, so a new module joins it by itself.
    #[serde(default)]
    pub disabled: Vec<String>,
    /// `[modules.<name>]` tables.
    #[serde(flatten)]
    pub overrides: BTreeMap<String, ModuleOverrides>,
}

fn every_module() -> Vec<String> {
    modules::names().map(str::to_owned).collect()
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ModuleOverrides {
    pub database_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BusKind {
    InProcess,
    Rabbitmq,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BusSettings {
    pub kind: BusKind,
    pub max_attempts: u32,
    pub retry_base_delay_ms: u64,
    pub retry_max_delay_ms: u64,
    pub rabbitmq: RabbitMqSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RabbitMqSettings {
    /// `amqp://user:password@host:5672/vhost`; a secret, shown with its password redacted.
    #[serde(serialize_with = "serialize_url")]
    pub url: Option<SecretString>,
    /// Names the exchange `<prefix>.events` and the queues `<prefix>.<module>[.retry.<delay>|.dead]`.
    pub prefix: String,
    /// Unacknowledged deliveries a consumer holds at once; also its largest batch.
    pub prefetch: u16,
    /// Overrides `bus.max_attempts` for this bus.
    pub max_attempts: Option<u32>,
    /// How long a publish waits for the broker's confirm before the outbox row is retried.
    pub confirm_timeout_ms: u64,
    /// The longest wait between two reconnection attempts.
    pub reconnect_max_delay_ms: u64,
}

impl BusSettings {
    pub fn retry_policy(&self) -> kernel::bus::RetryPolicy {
        let max_attempts = match self.kind {
            BusKind::Rabbitmq => self.rabbitmq.max_attempts.unwrap_or(self.max_attempts),
            BusKind::InProcess => self.max_attempts,
        };
        kernel::bus::RetryPolicy {
            max_attempts,
            base_delay: std::time::Duration::from_millis(self.retry_base_delay_ms),
            max_delay: std::time::Duration::from_millis(self.retry_max_delay_ms),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboxSettings {
    pub batch_size: u64,
    pub poll_interval_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HousekeepingSettings {
    pub retention_hours: u64,
    pub interval_secs: u64,
}

/// How every process verifies access tokens. The `[auth]` keys that sign them (the signing key,
/// the token lifetimes) are the users module's, declared by it and given to it alone.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthSettings {
    pub issuer: String,
    pub audience: String,
    /// Verification where `users` is not hosted: a PEM public key…
    pub public_key: Option<String>,
    /// …or the users module's JWKS.
    pub jwks_url: Option<String>,
    /// Checking out needs a token whose `email_verified` claim is true (`kernel::auth::Verified`).
    /// Off by default: a shop without a mail server cannot verify anyone.
    #[serde(default)]
    pub require_verified_email: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TelemetrySettings {
    pub format: LogFormat,
    pub filter: String,
}

/// A URL with its password shown as `***`: what `Debug`-like output may show of a broker URL.
fn serialize_url<S: serde::Serializer>(url: &Option<SecretString>, serializer: S) -> Result<S::Ok, S::Error> {
    match url {
        Some(url) => serializer.serialize_str(&redact_url(url.expose_secret())),
        None => serializer.serialize_none(),
    }
}

impl Settings {
    /// Loads the layers for the environment named by `BAZAAR_ENV` and validates the result;
    /// `modules` (the `--modules` flag) overrides every layer.
    pub fn load(config_dir: &Path, modules: Option<Vec<String>>) -> Result<Self, SettingsError> {
        let environment = Environment::parse(&std::env::var("BAZAAR_ENV").unwrap_or_else(|_| "development".into()))?;
        let overrides = modules.map(|m| ("modules.enabled".to_owned(), config::Value::from(m)));
        Self::load_for(config_dir, environment, Some(config::Environment::with_prefix("BAZAAR")), overrides)
    }

    /// The files' layers for `environment` plus `overrides`, ignoring the process's environment
    /// variables: what tests and embedding programs use.
    pub fn load_with_overrides(
        config_dir: &Path,
        environment: Environment,
        overrides: impl IntoIterator<Item = (String, config::Value)>,
    ) -> Result<Self, SettingsError> {
        Self::load_for(config_dir, environment, None, overrides)
    }

    fn load_for(
        config_dir: &Path,
        environment: Environment,
        env_source: Option<config::Environment>,
        overrides: impl IntoIterator<Item = (String, config::Value)>,
    ) -> Result<Self, SettingsError> {
        use config::{Config, File, FileFormat};
        let mut builder = Config::builder()
            .add_source(File::from_str(DEFAULTS, FileFormat::Toml))
            .add_source(File::from(config_dir.join("default.toml")).required(false))
            .add_source(File::from(config_dir.join(format!("{}.toml", environment.as_str()))).required(false));
        if let Some(env_source) = env_source {
            builder = builder.add_source(
                env_source
                    .prefix_separator("__")
                    .separator("__")
                    .list_separator(",")
                    .with_list_parse_key("modules.enabled")
                    .with_list_parse_key("modules.disabled")
                    .with_list_parse_key("server.trusted_proxies")
                    .try_parsing(true),
            );
        }
        for (key, value) in overrides {
            builder = builder.set_override(key, value).map_err(config_error)?;
        }
        let layered = builder.build().map_err(config_error)?;
        let mut settings: Settings = layered.clone().try_deserialize().map_err(config_error)?;
        settings.environment = environment;
        settings.validate()?;
        let present: BTreeMap<String, serde::de::IgnoredAny> =
            layered.clone().try_deserialize().map_err(config_error)?;
        let registry = modules::all();
        let declared: Vec<&str> =
            registry.iter().flat_map(|m| m.settings()).map(|spec| spec.key()).chain(ROOT_SECTIONS).collect();
        // A section nobody declares would be dropped silently: a typo, or a module not built in.
        if let Some(unknown) = present.keys().find(|key| !declared.contains(&key.as_str())) {
            return Err(SettingsError::new(
                unknown.as_str(),
                "is no section of Bazaar's nor of a registered module's (`bazaar modules` lists them)",
            ));
        }
        settings.layered = Some(layered);
        for module in modules::select(&settings.modules.enabled) {
            settings.sections_of(module.as_ref())?;
        }
        Ok(settings)
    }

    /// The sections `module` declares, parsed and checked by its own types (each one's defaults
    /// where the settings were not loaded from layers).
    pub fn sections_of(&self, module: &dyn kernel::Module) -> Result<Sections, SettingsError> {
        let mut sections = Sections::default();
        let Some(layered) = &self.layered else { return Ok(sections) };
        let checks = Checks { production: self.environment == Environment::Production };
        for spec in module.settings() {
            sections.insert(spec.key(), spec.parse(layered, checks)?);
        }
        Ok(sections)
    }

    fn validate(&mut self) -> Result<(), SettingsError> {
        if self.server.port > u32::from(u16::MAX) {
            return Err(SettingsError::new(
                "server.port",
                format!("{} is out of range (0 to 65535)", self.server.port),
            ));
        }
        if self.database.max_connections == 0 {
            return Err(SettingsError::new("database.max_connections", "must be at least 1"));
        }
        self.validate_modules()?;
        for module in &self.modules.enabled {
            let key = match self.modules.overrides.get(module).and_then(|o| o.database_url.as_ref()) {
                Some(_) => format!("modules.{module}.database_url"),
                None => "database.url".to_owned(),
            };
            validate_database_url(&self.database_url(module)).map_err(|m| SettingsError::new(key, m))?;
        }
        match self.bus.kind {
            BusKind::InProcess => {
                let all: Vec<&str> = modules::names().collect();
                if all.iter().any(|m| !self.modules.enabled.iter().any(|e| e == m)) {
                    return Err(SettingsError::new(
                        "bus.kind",
                        format!(
                            "the in-process bus needs every module in this process ({}); a partial set needs a broker",
                            all.join(", ")
                        ),
                    ));
                }
            }
            BusKind::Rabbitmq => {
                let rabbitmq = &self.bus.rabbitmq;
                let Some(url) = &rabbitmq.url else {
                    return Err(SettingsError::new("bus.rabbitmq.url", "is required when bus.kind is rabbitmq"));
                };
                match url::Url::parse(url.expose_secret()) {
                    Ok(u) if matches!(u.scheme(), "amqp" | "amqps") => {}
                    _ => {
                        return Err(SettingsError::new(
                            "bus.rabbitmq.url",
                            format!("'{}' is not an amqp(s) URL", redact_url(url.expose_secret())),
                        ));
                    }
                }
                if rabbitmq.prefetch == 0 {
                    return Err(SettingsError::new("bus.rabbitmq.prefetch", "must be at least 1"));
                }
                if rabbitmq.max_attempts == Some(0) {
                    return Err(SettingsError::new("bus.rabbitmq.max_attempts", "must be at least 1"));
                }
                if rabbitmq.prefix.is_empty() || rabbitmq.prefix.len() > 100 {
                    return Err(SettingsError::new("bus.rabbitmq.prefix", "must be 1 to 100 characters"));
                }
            }
        }
        if self.bus.max_attempts == 0 {
            return Err(SettingsError::new("bus.max_attempts", "must be at least 1"));
        }
        if self.housekeeping.retention_hours == 0 {
            return Err(SettingsError::new("housekeeping.retention_hours", "must be at least 1"));
        }
        if self.housekeeping.interval_secs == 0 {
            return Err(SettingsError::new("housekeeping.interval_secs", "must be at least 1"));
        }
        if self.outbox.batch_size == 0 {
            return Err(SettingsError::new("outbox.batch_size", "must be at least 1"));
        }
        self.validate_auth()?;
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.telemetry.filter) {
            return Err(SettingsError::new("telemetry.filter", e.to_string()));
        }
        Ok(())
    }

    fn validate_auth(&self) -> Result<(), SettingsError> {
        let auth = &self.auth;
        if let Some(pem) = &auth.public_key {
            kernel::auth::VerificationKey::from_public_pem(pem)
                .map_err(|e| SettingsError::new("auth.public_key", e.to_string()))?;
        }
        if let Some(url) = &auth.jwks_url {
            match url::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => return Err(SettingsError::new("auth.jwks_url", format!("'{url}' is not an http(s) URL"))),
            }
        }
        let hosts_users = self.modules.enabled.iter().any(|m| m == users::NAME);
        if self.environment == Environment::Production
            && !hosts_users
            && auth.public_key.is_none()
            && auth.jwks_url.is_none()
        {
            return Err(SettingsError::new(
                "auth.jwks_url",
                "(or auth.public_key) is required in production where users is hosted elsewhere",
            ));
        }
        Ok(())
    }

    fn validate_modules(&mut self) -> Result<(), SettingsError> {
        let known: Vec<&str> = modules::names().collect();
        let unknown = |name: &str| format!("unknown module '{name}' (known: {})", known.join(", "));
        if self.modules.enabled.is_empty() {
            return Err(SettingsError::new("modules.enabled", "names no module"));
        }
        for (i, name) in self.modules.enabled.iter().enumerate() {
            if !known.contains(&name.as_str()) {
                return Err(SettingsError::new("modules.enabled", unknown(name)));
            }
            if self.modules.enabled[..i].contains(name) {
                return Err(SettingsError::new("modules.enabled", format!("'{name}' is named twice")));
            }
        }
        for name in self.modules.overrides.keys() {
            if !known.contains(&name.as_str()) {
                return Err(SettingsError::new(format!("modules.{name}"), unknown(name)));
            }
        }
        if let Some(name) = self.modules.disabled.iter().find(|name| !known.contains(&name.as_str())) {
            return Err(SettingsError::new("modules.disabled", unknown(name)));
        }
        let disabled = std::mem::take(&mut self.modules.disabled);
        self.modules.enabled.retain(|name| !disabled.contains(name));
        self.modules.disabled = disabled;
        if self.modules.enabled.is_empty() {
            return Err(SettingsError::new("modules.disabled", "leaves no module to host"));
        }
        Ok(())
    }

    /// The database URL of `module`: its own override, or the template filled in.
    pub fn database_url(&self, module: &str) -> String {
        self.modules
            .overrides
            .get(module)
            .and_then(|o| o.database_url.clone())
            .unwrap_or_else(|| self.database.url.replace("{module}", module))
    }

    /// The address to bind.
    pub fn address(&self) -> (String, u16) {
        (self.server.host.clone(), u16::try_from(self.server.port).unwrap_or_default())
    }

    /// The effective settings with every secret hidden, for `bazaar config`.
    pub fn redacted(&self) -> serde_json::Value {
        let mut copy = self.clone();
        copy.database.url = redact_url(&copy.database.url);
        copy.auth.jwks_url = copy.auth.jwks_url.as_deref().map(redact_url);
        for overrides in copy.modules.overrides.values_mut() {
            overrides.database_url = overrides.database_url.as_deref().map(redact_url);
        }
        let mut value = serde_json::to_value(&copy).unwrap_or_default();
        let urls: BTreeMap<String, String> =
            self.modules.enabled.iter().map(|m| (m.clone(), redact_url(&self.database_url(m)))).collect();
        value["database"]["effective_urls"] = serde_json::json!(urls);
        // Each hosted module's sections as the module shows them (its secrets as `***`); a shared
        // section adds the module's keys to the root's.
        for module in modules::select(&self.modules.enabled) {
            let sections = self.sections_of(module.as_ref()).unwrap_or_default();
            for (key, shown) in sections.shown() {
                match (value.get_mut(key), shown) {
                    (Some(serde_json::Value::Object(root)), serde_json::Value::Object(fields)) => {
                        root.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
                    }
                    _ => value[key] = shown.clone(),
                }
            }
        }
        value
    }
}

fn validate_database_url(raw: &str) -> Result<(), String> {
    let url = url::Url::parse(raw).map_err(|e| format!("'{}' is not a URL: {e}", redact_url(raw)))?;
    match url.scheme() {
        "sqlite" | "postgres" | "postgresql" | "mysql" => Ok(()),
        other => Err(format!("'{other}' is not a supported database (sqlite, postgres, mysql)")),
    }
}

/// A URL with its secrets hidden (see [`kernel::redact::url`]).
pub fn redact_url(raw: &str) -> String {
    kernel::redact::url(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(vars: &[(&str, &str)], environment: Environment) -> Result<Settings, SettingsError> {
        let source: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let env = config::Environment::with_prefix("BAZAAR").source(Some(source));
        Settings::load_for(Path::new("config"), environment, Some(env), None)
    }

    #[test]
    fn the_defaults_give_every_module_its_own_sqlite_file() {
        let settings = load(&[], Environment::Development).expect("defaults are valid");
        assert_eq!(settings.database_url("catalog"), "sqlite://data/catalog.db?mode=rwc");
        assert!(settings.database.auto_migrate, "development migrates on start");
        assert_eq!(settings.address().1, 8080);
    }

    #[test]
    fn environment_variables_override_files() {
        let settings = load(
            &[("BAZAAR__SERVER__PORT", "9000"), ("BAZAAR__MODULES__CATALOG__DATABASE_URL", "postgres://u:pw@db/cat")],
            Environment::Test,
        )
        .expect("valid");
        assert_eq!(settings.address().1, 9000);
        assert_eq!(settings.database_url("catalog"), "postgres://u:pw@db/cat");
    }

    #[test]
    fn bad_settings_name_their_key() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("BAZAAR__SERVER__PORT", "70000")], "server.port"),
            (&[("BAZAAR__MODULES__ENABLED", "catalog,nope")], "modules.enabled"),
            (&[("BAZAAR__MODULES__ENABLED", "catalog,catalog")], "modules.enabled"),
            (&[("BAZAAR__DATABASE__URL", "not a url")], "database.url"),
            (&[("BAZAAR__DATABASE__URL", "redis://x/{module}")], "database.url"),
            (&[("BAZAAR__BUS__KIND", "carrier-pigeon")], "bus.kind"),
            (&[("BAZAAR__AUTH__PUBLIC_KEY", "not a key")], "auth.public_key"),
            (&[("BAZAAR__MODULES__CATALGO__DATABASE_URL", "sqlite::memory:")], "modules.catalgo"),
            (&[("BAZAAR__AUTH__SIGNING_KEY", "not a key")], "auth.signing_key"),
            (&[("BAZAAR__AUTH__JWKS_URL", "ftp://keys")], "auth.jwks_url"),
            (&[("BAZAAR__ORDERS__MAX_QUANTITY_PER_LINE", "1001")], "orders.max_quantity_per_line"),
            (&[("BAZAAR__ORDERS__MAX_QUANTITY_PER_ORDER", "0")], "orders.max_quantity_per_order"),
            (&[("BAZAAR__ORDERS__PAYMENT_TIMEOUT_SECS", "0")], "orders.payment_timeout_secs"),
        ];
        for (vars, key) in cases {
            let error = load(vars, Environment::Development).expect_err("invalid");
            assert_eq!(&error.key, key, "{vars:?}: {error}");
            assert!(!error.to_string().contains('\n'));
        }
    }

    #[test]
    fn a_process_hosts_every_registered_module_less_the_disabled_ones() {
        let all = load(&[], Environment::Development).expect("defaults are valid");
        assert_eq!(all.modules.enabled, every_module(), "unset: every registered module");
        let rest = load(&[("BAZAAR__MODULES__DISABLED", "users,catalog,orders")], Environment::Development)
            .expect_err("the in-process bus needs them all");
        assert_eq!(rest.key, "bus.kind");
        let rest = load(
            &[
                ("BAZAAR__MODULES__DISABLED", "users,catalog,orders"),
                ("BAZAAR__BUS__KIND", "rabbitmq"),
                ("BAZAAR__BUS__RABBITMQ__URL", "amqp://localhost"),
            ],
            Environment::Development,
        )
        .expect("valid");
        let others: Vec<String> =
            every_module().into_iter().filter(|m| !["users", "catalog", "orders"].contains(&m.as_str())).collect();
        assert_eq!(rest.modules.enabled, others);
        assert!(rest.modules.enabled.iter().any(|m| m == "inventory"));
        let error = load(&[("BAZAAR__MODULES__DISABLED", "nope")], Environment::Development).expect_err("unknown");
        assert_eq!(error.key, "modules.disabled");
    }

    #[test]
    fn a_section_no_module_declares_is_refused_and_a_module_gets_only_its_own() {
        let error = load(&[("BAZAAR__ORDRES__MAX_QUANTITY_PER_LINE", "5")], Environment::Development)
            .expect_err("a typo is not dropped silently");
        assert_eq!(error.key, "ordres", "{error}");

        let settings = load(
            &[
                ("BAZAAR__USERS__BOOTSTRAP_ADMIN__EMAIL", "root@example.com"),
                ("BAZAAR__USERS__BOOTSTRAP_ADMIN__PASSWORD", "sw0rdfish-sw0rdfish"),
            ],
            Environment::Development,
        )
        .expect("valid");
        let registry = modules::all();
        let shown = |name: &str| {
            let module = registry.iter().find(|m| m.name() == name).expect("registered");
            let sections = settings.sections_of(module.as_ref()).expect("valid");
            sections.shown().map(|(key, _)| key).collect::<Vec<_>>()
        };
        assert_eq!(shown("users"), ["auth", "users"], "users reads its own section and the signing half of [auth]");
        assert_eq!(
            shown("orders"),
            ["jobs", "orders"],
            "orders reads its own section and the shared [jobs] (its report worker)"
        );
        assert_eq!(shown("catalog"), ["catalog"], "catalog reads its own section (HTTP caching)");
        assert!(shown("inventory").is_empty(), "inventory declares nothing and gets nothing");
    }

    #[test]
    fn production_requires_a_signing_key_where_users_is_hosted() {
        let error = load(&[], Environment::Production).expect_err("no key");
        assert_eq!(error.key, "auth.signing_key");
    }

    #[test]
    fn secrets_are_redacted() {
        let settings = load(
            &[
                ("BAZAAR__DATABASE__URL", "postgres://bazaar:hunter2@db/{module}"),
                ("BAZAAR__USERS__BOOTSTRAP_ADMIN__EMAIL", "root@example.com"),
                ("BAZAAR__USERS__BOOTSTRAP_ADMIN__PASSWORD", "sw0rdfish-sw0rdfish"),
                ("BAZAAR__AUTH__SIGNING_KEY", include_str!("../tests/fixtures/ed25519-private.pem")),
            ],
            Environment::Test,
        )
        .expect("valid");
        let shown = settings.redacted().to_string();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("sw0rdfish"), "{shown}");
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
        assert_eq!(settings.redacted()["auth"]["signing_key"], "***");
        assert!(shown.contains("postgres://bazaar:***@db/catalog"), "{shown}");
    }
}
