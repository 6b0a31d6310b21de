//! Topology (c): five real `bazaar` processes — `users,catalog`; `orders`; `payments`; `basket`;
//! every other module (`inventory,shipping,notifications,webhooks` today) — over RabbitMQ, each module on its own database: users on MariaDB, the rest on PostgreSQL. The
//! shop they make is a [`TestApp`] whose routes send each module's paths to the process hosting
//! it, so the scenarios written for one process run unchanged.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::broker::TestBroker;
use crate::engines::{Engine, TestDatabase};
use crate::helpers::{PRIVATE_KEY, TestApp};

/// The processes of the split by the modules they name; the last hosts every module the others
/// do not (`modules.disabled`), as compose's does, so a new module joins it by itself.
const NAMED: [&str; 4] = ["users,catalog", "orders", "payments", "basket"];

/// The split's processes from the registry: the modules each hosts, and the path prefixes it serves.
pub fn groups() -> Vec<(String, Vec<&'static str>)> {
    let registry = bazaar::modules::describe();
    let named: Vec<&str> = NAMED.iter().flat_map(|group| group.split(',')).collect();
    let rest: Vec<&str> = registry.iter().map(|m| m.name).filter(|name| !named.contains(name)).collect();
    NAMED
        .iter()
        .map(|group| group.to_string())
        .chain([rest.join(",")])
        .map(|group| {
            let hosted: Vec<&str> = group.split(',').collect();
            let prefixes =
                registry.iter().filter(|m| hosted.contains(&m.name)).flat_map(|m| m.path_prefixes.iter().copied());
            (group.clone(), prefixes.collect())
        })
        .collect()
}

/// The running processes; killed when dropped (each [`Process`] is).
pub struct Split {
    processes: Mutex<Vec<Process>>,
    log_dir: tempfile::TempDir,
    _users_database: TestDatabase,
    _broker: Arc<TestBroker>,
}

struct Process {
    modules: String,
    port: u16,
    env: Vec<(String, String)>,
    child: Child,
}

impl Split {
    /// Starts the processes and waits until each is ready; `None` (the test skips) when
    /// PostgreSQL, MariaDB or RabbitMQ is unavailable and services are optional.
    pub async fn start() -> Option<(TestApp, Arc<Split>)> {
        Self::start_with(&[]).await
    }

    /// [`Split::start`], every process also given the settings `extra` (`BAZAAR__…` variables).
    pub async fn start_with(extra: &[(&str, &str)]) -> Option<(TestApp, Arc<Split>)> {
        crate::helpers::init_logs();
        let data_dir = tempfile::tempdir().expect("a folder");
        let postgres = TestDatabase::create(Engine::Postgres, data_dir.path()).await?;
        let mysql = TestDatabase::create(Engine::Mysql, data_dir.path()).await?;
        let broker = Arc::new(TestBroker::create().await?);
        let policy = kernel::bus::RetryPolicy::default();
        broker.owns(&bazaar::bus::Topology::new(&broker.prefix, bazaar::modules::subscriptions(), &policy));

        let groups = groups();
        let ports: Vec<u16> = groups.iter().map(|_| free_port()).collect();
        let users_url = mysql.url_for("users");
        let jwks = format!("http://127.0.0.1:{}/.well-known/jwks.json", ports[0]);
        let mut processes = Vec::new();
        let log_dir = tempfile::tempdir().expect("a folder");
        for (i, ((modules, _), port)) in groups.iter().zip(&ports).enumerate() {
            let mut env = vec![
                ("BAZAAR_ENV", "test".to_owned()),
                ("BAZAAR__SERVER__PORT", port.to_string()),
                ("BAZAAR__DATABASE__URL", postgres.url.clone()),
                ("BAZAAR__MODULES__USERS__DATABASE_URL", users_url.clone()),
                ("BAZAAR__BUS__KIND", "rabbitmq".to_owned()),
                ("BAZAAR__BUS__RABBITMQ__URL", broker.url.clone()),
                ("BAZAAR__BUS__RABBITMQ__PREFIX", broker.prefix.clone()),
                ("BAZAAR__OUTBOX__POLL_INTERVAL_MS", "200".to_owned()),
                ("BAZAAR__NOTIFICATIONS__FILE__DIR", data_dir.path().join("mail").display().to_string()),
                ("BAZAAR__TELEMETRY__FILTER", "info,sqlx=warn,sea_orm=warn".to_owned()),
            ];
            env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
            // Only the users process signs; the others verify through its JWKS.
            match i {
                0 => env.push(("BAZAAR__AUTH__SIGNING_KEY", PRIVATE_KEY.to_owned())),
                _ => env.push(("BAZAAR__AUTH__JWKS_URL", jwks.clone())),
            }
            // The last names no module: it hosts what the others do not.
            if i == NAMED.len() {
                env.push(("BAZAAR__MODULES__DISABLED", NAMED.join(",")));
            }
            let env = env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            let process = Process::spawn(modules.clone(), *port, env, log_dir.path());
            // The others fetch the users process's keys at start-up: it goes first.
            ready(*port, log_dir.path(), modules).await;
            processes.push(process);
        }
        let split = Arc::new(Split {
            processes: Mutex::new(processes),
            log_dir,
            _users_database: mysql,
            _broker: broker.clone(),
        });
        let mut routes = Vec::new();
        for ((_, prefixes), port) in groups.iter().zip(&ports) {
            routes.extend(prefixes.iter().map(|p| (p.to_string(), format!("http://127.0.0.1:{port}"))));
        }
        let app = TestApp::external(
            format!("http://127.0.0.1:{}", ports[0]),
            routes,
            [("users".to_owned(), users_url)].into(),
            postgres,
            data_dir,
            Box::new(split.clone()),
        );
        Some((app, split))
    }

    /// `kill -9` of the process hosting `module`.
    pub fn kill(&self, module: &str) {
        let mut processes = self.processes.lock().expect("not poisoned");
        let process = processes.iter_mut().find(|p| p.hosts(module)).expect("a process");
        process.child.kill().expect("killed");
        process.child.wait().expect("reaped");
    }

    /// Starts the process hosting `module` again, on its port, and waits until it is ready.
    pub async fn restart(&self, module: &str) {
        let (port, modules) = {
            let mut processes = self.processes.lock().expect("not poisoned");
            let process = processes.iter_mut().find(|p| p.hosts(module)).expect("a process");
            let modules = process.modules.clone();
            *process = Process::spawn(modules.clone(), process.port, process.env.clone(), self.log_dir.path());
            (process.port, modules)
        };
        ready(port, self.log_dir.path(), &modules).await;
    }
}

/// A process dies with its handle: with the split, or when a test panics while starting it (one
/// that is never ready would otherwise outlive the test).
impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    fn hosts(&self, module: &str) -> bool {
        self.modules.split(',').any(|m| m == module)
    }

    fn spawn(modules: String, port: u16, env: Vec<(String, String)>, log_dir: &std::path::Path) -> Self {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_dir.join(format!("{modules}.log")))
            .expect("a log file");
        // The process named by `modules.disabled` is told only what it does not host.
        let mut command = Command::new(env!("CARGO_BIN_EXE_bazaar"));
        match env.iter().any(|(k, _)| k == "BAZAAR__MODULES__DISABLED") {
            true => command.arg("serve"),
            false => command.args(["serve", "--modules", &modules]),
        };
        let child = command
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env_remove("RUST_LOG")
            .stdout(log.try_clone().expect("a log file"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("bazaar starts");
        Self { modules, port, env, child }
    }
}

/// Waits for `/health/ready` of the process on `port` with its bus connected too (readiness
/// alone does not wait for the broker); shows its log if it never comes.
async fn ready(port: u16, log_dir: &std::path::Path, modules: &str) {
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/health/ready");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let health = match client.get(&url).send().await {
            Ok(response) if response.status() == 200 => response.json::<serde_json::Value>().await.ok(),
            _ => None,
        };
        if health.is_some_and(|h| h["status"] == "ok") {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            let log = std::fs::read_to_string(log_dir.join(format!("{modules}.log"))).unwrap_or_default();
            panic!("the {modules} process is not ready after 60 s:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A port nothing listens on now (the process binds it a moment later).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("a port").local_addr().expect("an address").port()
}

/// Every shop reaches the same outcome through whatever routes it has: a sanity check of the
/// split itself (each process serves its modules and only those).
#[tokio::test]
async fn each_process_serves_its_modules_health_metrics_and_docs_and_nothing_else() {
    let Some((shop, _split)) = Split::start().await else { return };
    let groups = groups();
    for ((modules, prefixes), other) in groups.iter().zip(groups.iter().cycle().skip(1)) {
        let base = shop.base(prefixes[0]).to_owned();
        for path in ["/health/live", "/health/ready", "/metrics", "/swagger-ui/", "/api-docs/openapi.json"] {
            let response = shop.client.get(format!("{base}{path}")).send().await.expect("sent");
            assert_eq!(response.status(), 200, "{modules} {path}");
        }
        let doc: serde_json::Value = shop
            .client
            .get(format!("{base}/api-docs/openapi.json"))
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("JSON");
        let paths = doc["paths"].as_object().expect("paths");
        assert!(paths.keys().any(|p| p.starts_with(prefixes[0])), "{modules} documents {}", prefixes[0]);
        assert!(!paths.keys().any(|p| p.starts_with(other.1[0])), "{modules} does not document {}", other.1[0]);
        // Another process's paths are not served here.
        let foreign = shop.client.get(format!("{base}{}", other.1[0])).send().await.expect("sent");
        assert_eq!(foreign.status(), 404, "{modules} serves {}", other.1[0]);
    }
    let ready: serde_json::Value = shop
        .client
        .get(format!("{}/health/ready", shop.base("/orders")))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("JSON");
    assert_eq!(ready["checks"]["orders.database"], "ok", "{ready}");
    assert_eq!(ready["checks"]["bus.rabbitmq"], "ok", "{ready}");
    assert!(ready["checks"].get("catalog.database").is_none(), "{ready}");
}

/// A stream of orders while the process hosting inventory is killed with SIGKILL and
/// restarted: every accepted order still ends confirmed or rejected, and no unit is reserved twice.
#[tokio::test]
async fn killing_the_inventory_process_mid_stream_loses_nothing_and_reserves_no_unit_twice() {
    use crate::orders::{customer, eur, order_body};
    let Some((shop, split)) = Split::start().await else { return };
    let product = shop.stocked_product("CRASH-1", 30, eur(500)).await;
    let token = customer(&uuid::Uuid::now_v7());
    let body = order_body(&[(&product["id"], 1)]);
    let placed_so_far = std::sync::atomic::AtomicUsize::new(0);
    // Orders keep coming while inventory dies mid-stream (SIGKILL, nothing flushed) and returns.
    let placing = async {
        let mut placed = Vec::new();
        for _ in 0..40 {
            let response = shop.place(&token, &body).await;
            assert_eq!(response.status(), 201, "orders takes orders whatever inventory's state");
            placed.push(response.json::<serde_json::Value>().await.expect("JSON"));
            placed_so_far.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        placed
    };
    let crashing = async {
        while placed_so_far.load(std::sync::atomic::Ordering::SeqCst) < 8 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        split.kill("inventory");
        tokio::time::sleep(Duration::from_millis(300)).await;
        split.restart("inventory").await;
    };
    let (placed, ()) = tokio::join!(placing, crashing);
    let mut confirmed = 0;
    for order in &placed {
        let settled = shop.settled(&token, order).await;
        match settled["status"].as_str() {
            Some("confirmed") => confirmed += 1,
            Some("rejected") => {}
            other => panic!("order {} ended {other:?}", order["id"]),
        }
    }
    assert_eq!(confirmed, 30, "exactly the stock was sold");
    let stock = shop.stock(&product).await;
    assert_eq!(stock["onHand"], 30);
    assert_eq!(stock["reserved"], 30, "no unit reserved twice: {stock}");
    assert_eq!(stock["available"], 0);
}
