//! `spawn_app()`: a Bazaar on port 0 with its own data folder, and a client that speaks to it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use bazaar::settings::Environment;
use bazaar::{Application, Settings};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::broker::TestBroker;
use crate::engines::{Engine, TestDatabase};

pub const PUBLIC_KEY: &str = include_str!("../fixtures/ed25519-public.pem");
pub const PRIVATE_KEY: &str = include_str!("../fixtures/ed25519-private.pem");
pub const OTHER_PRIVATE_KEY: &str = include_str!("../fixtures/other-ed25519-private.pem");

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a client")
}

/// A shop under test: one process, or several behind a routing table (a split deployment).
pub struct TestApp {
    /// The process that answers paths no route names (the only one, unless split).
    pub address: String,
    /// `(path prefix, address)`: in a split, which process serves which module's paths.
    pub routes: Vec<(String, String)>,
    pub client: reqwest::Client,
    /// An in-test server; `None` when the processes are real binaries owned by `owner`.
    handle: Option<ServerHandle>,
    /// The database URL of each module whose URL is not `database`'s template.
    pub module_urls: std::collections::BTreeMap<String, String>,
    // Dropped after `handle` stops the server, in this order.
    pub database: Arc<TestDatabase>,
    _broker: Option<Arc<TestBroker>>,
    _data_dir: Arc<tempfile::TempDir>,
    _owner: Option<Box<dyn std::any::Any + Send + Sync>>,
}

/// The services a test's apps share: a database (one per module on SQLite) and, for a
/// broker-backed bus, a prefix of its own on RabbitMQ. Several apps on one stack are the
/// processes of a split deployment.
#[derive(Clone)]
pub struct Stack {
    pub database: Arc<TestDatabase>,
    pub broker: Option<Arc<TestBroker>>,
    data_dir: Arc<tempfile::TempDir>,
}

impl Stack {
    /// `None` (the test skips) when a service it needs is unavailable and services are optional.
    pub async fn new(engine: Engine, rabbitmq: bool) -> Option<Self> {
        init_logs();
        let data_dir = tempfile::tempdir().expect("a temporary folder");
        let database = TestDatabase::create(engine, data_dir.path()).await?;
        let broker = match rabbitmq {
            true => Some(Arc::new(TestBroker::create().await?)),
            false => None,
        };
        Some(Self { database: Arc::new(database), broker, data_dir: Arc::new(data_dir) })
    }

    /// The settings of a process on this stack, `overrides` on top.
    pub fn settings(&self, overrides: &[(&str, &str)]) -> Settings {
        // Mail written as files lands in the test's folder, never in the workspace's `data/`.
        let mail = self.data_dir.path().join("mail").display().to_string();
        let mut layers: Vec<(&str, &str)> = vec![("notifications.file.dir", mail.as_str())];
        if let Some(broker) = &self.broker {
            layers.extend([
                ("bus.kind", "rabbitmq"),
                ("bus.rabbitmq.url", broker.url.as_str()),
                ("bus.rabbitmq.prefix", broker.prefix.as_str()),
            ]);
        }
        layers.extend_from_slice(overrides);
        let settings = settings_for(&self.database.url, &layers);
        if let Some(broker) = &self.broker {
            let subscriptions = bazaar::modules::subscriptions();
            broker.owns(&bazaar::bus::Topology::new(&broker.prefix, subscriptions, &settings.bus.retry_policy()));
        }
        settings
    }

    /// Starts a process on this stack.
    pub async fn spawn(&self, overrides: &[(&str, &str)]) -> TestApp {
        self.spawn_with(self.settings(overrides)).await
    }

    pub async fn spawn_with(&self, settings: Settings) -> TestApp {
        let app = Application::build(settings).await.expect("the app builds");
        let address = format!("http://127.0.0.1:{}", app.port());
        let handle = app.handle();
        tokio::spawn(app.run_until_stopped());
        let app = TestApp {
            address,
            routes: Vec::new(),
            client: client(),
            handle: Some(handle),
            module_urls: Default::default(),
            database: self.database.clone(),
            _broker: self.broker.clone(),
            _data_dir: self.data_dir.clone(),
            _owner: None,
        };
        if self.broker.is_some() {
            // Connected to the broker with its topology declared (readiness alone does not wait
            // for the broker: the outbox keeps the events meanwhile).
            eventually(10, || async {
                let health: Value = app.get("/health/ready").await.json().await.ok()?;
                (health["checks"]["bus.rabbitmq"] == "ok").then_some(())
            })
            .await;
        }
        app
    }
}

/// `TEST_LOG=1 cargo test ...` shows the apps' logs.
pub fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "debug,sqlx=warn,sea_orm=warn".into());
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    }
}

/// Settings (`section.key`, value) as a process's environment (`BAZAAR__SECTION__KEY`).
pub fn as_env(settings: &[(&'static str, String)]) -> Vec<(String, String)> {
    settings.iter().map(|(k, v)| (format!("BAZAAR__{}", k.replace('.', "__").to_uppercase()), v.clone())).collect()
}

/// Settings for a test app with its SQLite files in `dir`, with `overrides` on top.
pub fn test_settings(dir: &Path, overrides: &[(&str, &str)]) -> Settings {
    let mail = dir.join("mail").display().to_string();
    let mut layers = vec![("notifications.file.dir", mail.as_str())];
    layers.extend_from_slice(overrides);
    settings_for(&format!("sqlite://{}/{{module}}.db?mode=rwc", dir.display()), &layers)
}

fn settings_for(url: &str, overrides: &[(&str, &str)]) -> Settings {
    let mut layers: Vec<(String, config::Value)> = vec![
        ("database.url".into(), url.into()),
        ("auth.signing_key".into(), PRIVATE_KEY.into()),
        ("outbox.poll_interval_ms".into(), 200.into()),
    ];
    layers.extend(overrides.iter().map(|(k, v)| {
        let value = match *k {
            "modules.enabled" | "server.trusted_proxies" => config::Value::from(v.split(',').collect::<Vec<_>>()),
            _ => (*v).into(),
        };
        (k.to_string(), value)
    }));
    Settings::load_with_overrides(Path::new("config"), Environment::Test, layers).expect("valid test settings")
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

pub async fn spawn_app_with(overrides: &[(&str, &str)]) -> TestApp {
    spawn_app_on_with(Engine::Sqlite, overrides).await.expect("SQLite is always there")
}

/// An app whose modules keep their data on `engine`; `None` when the engine is unavailable.
pub async fn spawn_app_on(engine: Engine) -> Option<TestApp> {
    spawn_app_on_with(engine, &[]).await
}

async fn spawn_app_on_with(engine: Engine, overrides: &[(&str, &str)]) -> Option<TestApp> {
    Some(Stack::new(engine, false).await?.spawn(overrides).await)
}

#[derive(Debug, Clone, Copy)]
pub enum As {
    Anonymous,
    Customer,
    Admin,
}

impl TestApp {
    /// A shop of processes started by the test itself (real binaries), owned by `owner`.
    pub fn external(
        address: String,
        routes: Vec<(String, String)>,
        module_urls: std::collections::BTreeMap<String, String>,
        database: TestDatabase,
        data_dir: tempfile::TempDir,
        owner: Box<dyn std::any::Any + Send + Sync>,
    ) -> Self {
        TestApp {
            address,
            routes,
            client: client(),
            handle: None,
            module_urls,
            database: Arc::new(database),
            _broker: None,
            _data_dir: Arc::new(data_dir),
            _owner: Some(owner),
        }
    }

    /// The address of the process serving `path`.
    pub fn base(&self, path: &str) -> &str {
        self.routes.iter().find(|(prefix, _)| path.starts_with(prefix.as_str())).map_or(&self.address, |(_, a)| a)
    }

    pub fn request(&self, method: Method, path: &str, who: As) -> RequestBuilder {
        let builder = self.client.request(method, format!("{}{path}", self.base(path)));
        match who {
            As::Anonymous => builder,
            As::Customer => builder.bearer_auth(token("customer", 900, PRIVATE_KEY)),
            As::Admin => builder.bearer_auth(token("admin", 900, PRIVATE_KEY)),
        }
    }

    /// `GET path` as `who`, as JSON.
    pub async fn get_json(&self, path: &str, who: As) -> Value {
        self.request(Method::GET, path, who).send().await.expect("sent").json().await.expect("JSON")
    }

    /// `GET path` with `token`, as JSON.
    pub async fn get_json_as(&self, token: &str, path: &str) -> Value {
        let response = self.request(Method::GET, path, As::Anonymous).bearer_auth(token).send().await.expect("sent");
        response.json().await.expect("JSON")
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path, As::Anonymous).send().await.expect("request sent")
    }

    pub async fn create_product(&self, body: &Value) -> Response {
        self.request(Method::POST, "/products", As::Admin).json(body).send().await.expect("request sent")
    }

    /// Creates a valid product and returns its JSON.
    pub async fn a_product(&self, sku: &str, name: &str) -> Value {
        let response = self.create_product(&product_body(sku, name)).await;
        assert_eq!(response.status(), 201, "{:?}", response.text().await);
        response.json().await.expect("JSON")
    }

    /// The database URL of `module`.
    pub fn url_of(&self, module: &str) -> String {
        self.module_urls.get(module).cloned().unwrap_or_else(|| self.database.url_for(module))
    }

    /// The database of `module`.
    pub async fn db(&self, module: &str) -> sea_orm::DatabaseConnection {
        sea_orm::Database::connect(self.url_of(module)).await.expect("the module's database")
    }

    /// Where the app writes mail with `notifications.transport = "file"`.
    pub fn mail_dir(&self) -> std::path::PathBuf {
        self._data_dir.path().join("mail")
    }

    pub async fn metrics(&self) -> String {
        self.get("/metrics").await.text().await.expect("text")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // `stop` sends the command at once; the future only waits for it to complete.
        if let Some(handle) = &self.handle {
            drop(handle.stop(false));
        }
    }
}

pub fn product_body(sku: &str, name: &str) -> Value {
    json!({"sku": sku, "name": name, "description": "A test product", "price": {"amount": 1299, "currency": "EUR"}})
}

/// An access token as the users module will issue them.
pub fn token(role: &str, expires_in: i64, private_key: &str) -> String {
    token_with(json!({"role": role}), expires_in, private_key)
}

/// A token whose claims are the defaults with `overrides` on top.
pub fn token_with(overrides: Value, expires_in: i64, private_key: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    let mut claims = json!({
        "sub": Uuid::now_v7(), "role": "customer", "iss": "bazaar", "aud": "bazaar",
        "iat": now, "exp": now + expires_in, "jti": Uuid::new_v4(),
    });
    for (k, v) in overrides.as_object().expect("an object") {
        claims[k] = v.clone();
    }
    let key = EncodingKey::from_ed_pem(private_key.as_bytes()).expect("an Ed25519 key");
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid());
    jsonwebtoken::encode(&header, &claims, &key).expect("a token")
}

/// The `kid` of the test signing key, as the users module names it.
pub fn kid() -> String {
    kernel::auth::VerificationKey::from_public_pem(PUBLIC_KEY).expect("a key").kid.expect("a kid")
}

/// Asserts a problem+json response with `status`, and returns its body.
pub async fn assert_problem(response: Response, status: u16) -> Value {
    assert_eq!(response.status(), status, "status of {}", response.url());
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap_or_default().to_owned());
    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
    let body: Value = response.json().await.expect("a JSON problem");
    assert_eq!(body["status"], status);
    assert!(body["title"].is_string(), "{body}");
    body
}

/// Polls `check` until it returns `Some`, for at most `seconds`.
pub async fn eventually<T, F, Fut>(seconds: u64, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "condition not met within {seconds} s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads with `read` until it returns `expected`, for at most 15 s; then fails naming what it saw.
pub async fn settles<T, F, Fut>(expected: T, mut read: F) -> T
where
    T: PartialEq + std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let seen = read().await;
        if seen == expected {
            return seen;
        }
        assert!(tokio::time::Instant::now() < deadline, "still {seen:?}, expected {expected:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
