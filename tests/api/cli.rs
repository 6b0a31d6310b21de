//! The command line: bad settings are one line and exit code 2.

use std::process::{Command, Output};

fn bazaar(args: &[&str], env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().expect("a folder");
    let mut command = Command::new(env!("CARGO_BIN_EXE_bazaar"));
    command
        .args(args)
        .env("BAZAAR_ENV", "test")
        .env("BAZAAR__DATABASE__URL", format!("sqlite://{}/{{module}}.db?mode=rwc", dir.path().display()));
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("bazaar runs")
}

fn assert_refused(out: &Output, key: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(&format!("`{key}`")), "names {key}: {stderr}");
}

#[test]
fn bad_settings_stop_start_up_with_one_line_and_exit_code_2() {
    assert_refused(&bazaar(&["serve"], &[("BAZAAR__SERVER__PORT", "70000")]), "server.port");
    assert_refused(&bazaar(&["serve", "--modules", "catalog,nosuch"], &[]), "modules.enabled");
    assert_refused(&bazaar(&["serve"], &[("BAZAAR__MODULES__ENABLED", "catalog,catalog")]), "modules.enabled");
    assert_refused(&bazaar(&["serve"], &[("BAZAAR__DATABASE__URL", "::not a url::")]), "database.url");
    assert_refused(&bazaar(&["migrate"], &[("BAZAAR__BUS__KIND", "pigeon")]), "bus.kind");
    assert_refused(&bazaar(&["serve"], &[("BAZAAR_ENV", "production")]), "auth.signing_key");
    assert_refused(
        &bazaar(&["serve"], &[("BAZAAR__AUTH__SIGNING_KEY", "-----BEGIN PRIVATE KEY-----")]),
        "auth.signing_key",
    );
    assert_refused(&bazaar(&["serve"], &[("BAZAAR_ENV", "staging")]), "BAZAAR_ENV");
    assert_refused(&bazaar(&["--config-dir", "/no/such/folder", "config"], &[]), "--config-dir");
    // Only a broker carries events between processes: a partial set needs one, and a broker a URL.
    assert_refused(&bazaar(&["serve", "--modules", "orders"], &[]), "bus.kind");
    assert_refused(&bazaar(&["serve"], &[("BAZAAR__BUS__KIND", "rabbitmq")]), "bus.rabbitmq.url");
    assert_refused(
        &bazaar(&["serve"], &[("BAZAAR__BUS__KIND", "rabbitmq"), ("BAZAAR__BUS__RABBITMQ__URL", "http://rabbit")]),
        "bus.rabbitmq.url",
    );
    assert_refused(
        &bazaar(
            &["serve"],
            &[
                ("BAZAAR__BUS__KIND", "rabbitmq"),
                ("BAZAAR__BUS__RABBITMQ__URL", "amqp://rabbit"),
                ("BAZAAR__BUS__RABBITMQ__PREFETCH", "0"),
            ],
        ),
        "bus.rabbitmq.prefetch",
    );
}

#[test]
fn unknown_commands_and_flags_exit_with_2() {
    let out = bazaar(&["frobnicate"], &[]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn config_prints_the_effective_settings_without_secrets() {
    let out = bazaar(
        &["config"],
        &[
            ("BAZAAR__MODULES__CATALOG__DATABASE_URL", "postgres://shop:s3cret@db/catalog"),
            ("BAZAAR__BUS__KIND", "rabbitmq"),
            ("BAZAAR__BUS__RABBITMQ__URL", "amqp://shop:rabbit-s3cret@broker:5672/shop"),
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("s3cret"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(json["bus"]["rabbitmq"]["url"], "amqp://shop:***@broker:5672/shop");
    assert_eq!(json["environment"], "test");
    assert_eq!(json["database"]["effective_urls"]["catalog"], "postgres://shop:***@db/catalog");
}

#[test]
fn migrate_creates_each_module_database_and_is_repeatable() {
    let dir = tempfile::tempdir().expect("a folder");
    let url = format!("sqlite://{}/{{module}}.db?mode=rwc", dir.path().display());
    for _ in 0..2 {
        let out = bazaar(&["migrate"], &[("BAZAAR__DATABASE__URL", &url)]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert!(dir.path().join("catalog.db").exists());
}

#[test]
fn serve_logs_json_lines_in_production_format_and_stops_cleanly_on_sigterm() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().expect("a folder");
    let mut child = Command::new(env!("CARGO_BIN_EXE_bazaar"))
        .arg("serve")
        .env("BAZAAR_ENV", "test")
        .env("BAZAAR__DATABASE__URL", format!("sqlite://{}/{{module}}.db?mode=rwc", dir.path().display()))
        .env("BAZAAR__AUTH__SIGNING_KEY_FILE", dir.path().join("signing-key.pem"))
        .env("BAZAAR__TELEMETRY__FORMAT", "json")
        .env("BAZAAR__TELEMETRY__FILTER", "info")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("bazaar starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let listening = loop {
        let line = lines.next().expect("a log line before it listens").expect("UTF-8");
        let json: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(json["level"].is_string() && json["timestamp"].is_string(), "{json}");
        if json["message"] == "Bazaar is listening" {
            break json;
        }
    };
    let port = listening["port"].as_u64().expect("a port");
    assert!(port > 0);
    let ready = std::net::TcpStream::connect(("127.0.0.1", port as u16));
    assert!(ready.is_ok(), "it serves on {port}");
    // At info, a request the client got wrong gets a line with its route, status and id; a
    // successful one none (the metrics count it).
    let get = |path: &str, id: &str| {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port as u16)).expect("connects");
        write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nx-request-id: {id}\r\nConnection: close\r\n\r\n")
            .expect("sent");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("an answer");
        answer
    };
    assert!(get("/health/live", "fine-1").starts_with("HTTP/1.1 200"));
    assert!(get("/products/not-a-uuid", "wrong-1").starts_with("HTTP/1.1 400"));

    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
    assert!(killed.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("waitable") {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "still running 20 s after SIGTERM");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success(), "exits 0 after a graceful stop: {status:?}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("HTTP drained")), "{rest:?}");
    let logged: Vec<serde_json::Value> = rest.iter().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let refused = logged.iter().find(|l| l["message"] == "request refused").unwrap_or_else(|| panic!("{rest:?}"));
    assert_eq!(refused["level"], "INFO");
    assert_eq!(refused["http.status"], 400);
    assert_eq!(refused["http.route"], "/products/{id}");
    assert_eq!(refused["span"]["request.id"], "wrong-1");
    assert!(!rest.iter().any(|l| l.contains("fine-1")), "a successful request is not logged at info: {rest:?}");
}

#[tokio::test]
async fn create_admin_makes_an_admin_who_can_create_products() {
    let dir = tempfile::tempdir().expect("a folder");
    let url = format!("sqlite://{}/{{module}}.db?mode=rwc", dir.path().display());
    let key = crate::helpers::PRIVATE_KEY;
    let run = |password_env: Option<&str>, stdin: &str, email: &str| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_bazaar"));
        command
            .args(["users", "create-admin", "--email", email])
            .env("BAZAAR_ENV", "test")
            .env("BAZAAR__DATABASE__URL", &url)
            .env("BAZAAR__AUTH__SIGNING_KEY", key)
            .env_remove("BAZAAR_ADMIN_PASSWORD")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if let Some(password) = password_env {
            command.env("BAZAAR_ADMIN_PASSWORD", password);
        }
        let mut child = command.spawn().expect("bazaar runs");
        use std::io::Write;
        child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("written");
        child.wait_with_output().expect("bazaar ends")
    };
    let created = run(Some("a long admin passphrase"), "", "Boss@Example.com");
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    assert_eq!(String::from_utf8_lossy(&created.stdout).trim(), "boss@example.com: created");
    let again = run(None, "a long admin passphrase\n", "boss@example.com");
    assert_eq!(String::from_utf8_lossy(&again.stdout).trim(), "boss@example.com: already an admin");
    let weak = run(Some("short"), "", "weak@example.com");
    assert_eq!(weak.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&weak.stderr).trim().lines().count(), 1);

    let settings = crate::helpers::test_settings(dir.path(), &[]);
    let app = bazaar::Application::build(settings).await.expect("builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::new();
    let tokens: serde_json::Value = client
        .post(format!("{address}/auth/token"))
        .json(&serde_json::json!({"email": "boss@example.com", "password": "a long admin passphrase"}))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("JSON");
    let created = client
        .post(format!("{address}/products"))
        .bearer_auth(tokens["accessToken"].as_str().expect("a token"))
        .json(&crate::helpers::product_body("BOSS-1", "The boss's"))
        .send()
        .await
        .expect("sent");
    assert_eq!(created.status(), 201);
    handle.stop(true).await;
}

#[tokio::test]
async fn no_response_or_log_line_carries_a_password_hash_refresh_token_or_private_key() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().expect("a folder");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_bazaar"))
        .arg("serve")
        .env("BAZAAR_ENV", "test")
        .env("BAZAAR__DATABASE__URL", format!("sqlite://{}/{{module}}.db?mode=rwc", dir.path().display()))
        .env("BAZAAR__AUTH__SIGNING_KEY", crate::helpers::PRIVATE_KEY)
        .env("BAZAAR__TELEMETRY__FORMAT", "json")
        .env("RUST_LOG", "trace,sqlx=warn,sea_orm=warn,hyper=warn,h2=warn,reqwest=warn,actix_server=warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("bazaar starts");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let port = loop {
        let line = lines.next_line().await.expect("readable").expect("a line before it listens");
        let json: serde_json::Value = serde_json::from_str(&line).expect("JSON");
        if json["message"] == "Bazaar is listening" {
            break json["port"].as_u64().expect("a port");
        }
    };
    let address = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let password = "a secret nobody logs 42";
    let mut seen = String::new();
    let register = serde_json::json!({"email": "quiet@example.com", "password": password, "name": "Quiet"});
    let post = |path: &str, body: serde_json::Value| {
        let request = client.post(format!("{address}{path}")).json(&body);
        async move { request.send().await.expect("sent").text().await.expect("text") }
    };
    seen += &post("/users", register).await;
    let login = serde_json::json!({"email": "quiet@example.com", "password": password});
    let tokens: serde_json::Value = serde_json::from_str(&post("/auth/token", login).await).expect("JSON");
    let refresh_token = tokens["refreshToken"].as_str().expect("a refresh token").to_owned();
    let refresh = serde_json::json!({"refreshToken": refresh_token});
    seen += &post("/auth/refresh", refresh).await;
    let wrong = serde_json::json!({"email": "quiet@example.com", "password": "wrong, but also secret"});
    seen += &post("/auth/token", wrong).await;
    let me = client.get(format!("{address}/users/me")).bearer_auth(tokens["accessToken"].as_str().expect("a token"));
    seen += &me.send().await.expect("sent").text().await.expect("text");

    let _ = std::process::Command::new("kill").args(["-TERM", &child.id().expect("a pid").to_string()]).status();
    while let Ok(Some(line)) = lines.next_line().await {
        seen += &line;
        seen.push('\n');
    }
    let private_key_body: String = crate::helpers::PRIVATE_KEY.lines().filter(|l| !l.starts_with("-----")).collect();
    for secret in [password, "wrong, but also secret", "$argon2", refresh_token.as_str(), private_key_body.as_str()] {
        assert!(!seen.contains(secret), "{secret} leaked:\n{seen}");
    }
    assert!(seen.contains("user logged in"), "the logs were captured:\n{seen}");
}

#[test]
fn modules_lists_what_each_module_publishes_consumes_and_serves() {
    let out = bazaar(&["modules", "--format", "json"], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let modules: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let find =
        |name: &str| modules.as_array().expect("a list").iter().find(|m| m["name"] == name).cloned().expect(name);
    let inventory = find("inventory");
    assert!(inventory["consumes"].as_array().expect("a list").contains(&serde_json::json!("orders.OrderCreated.v1")));
    assert!(
        inventory["publishes"].as_array().expect("a list").contains(&serde_json::json!("inventory.StockReserved.v1"))
    );
    assert!(find("catalog")["routes"].as_array().expect("a list").contains(&serde_json::json!("POST /products")));
    let shipping = find("shipping");
    assert!(shipping["consumes"].as_array().expect("a list").contains(&serde_json::json!("orders.OrderConfirmed.v1")));
    assert!(
        shipping["routes"].as_array().expect("a list").contains(&serde_json::json!("POST /shipments/{id}/dispatch"))
    );
    let text = bazaar(&["modules"], &[]);
    let text = String::from_utf8_lossy(&text.stdout);
    // A block per module: its name, then its paths, then what it publishes.
    let publishes = text.lines().skip_while(|line| *line != "orders").nth(2);
    assert!(publishes.is_some_and(|line| line.starts_with("  publishes: orders.OrderCreated.v1")), "{text}");
    assert_eq!(bazaar(&["modules", "--format", "yaml"], &[]).status.code(), Some(2));
}

#[tokio::test]
async fn create_admin_never_promotes_an_account_someone_else_registered() {
    let stack = crate::helpers::Stack::new(crate::engines::Engine::Sqlite, false).await.expect("SQLite");
    let app = stack.spawn(&[]).await;
    let attacker = app.register("admin@example.com", "the attacker's passphrase", "Mallory").await;
    assert_eq!(attacker.status(), 201);

    let out = Command::new(env!("CARGO_BIN_EXE_bazaar"))
        .args(["users", "create-admin", "--email", "Admin@Example.com"])
        .env("BAZAAR_ENV", "test")
        .env("BAZAAR__DATABASE__URL", &stack.database.url)
        .env("BAZAAR__AUTH__SIGNING_KEY", crate::helpers::PRIVATE_KEY)
        .env("BAZAAR_ADMIN_PASSWORD", "the operator's passphrase")
        .output()
        .expect("bazaar runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "refused: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("not promoted"), "{stderr}");

    let tokens: serde_json::Value =
        app.login("admin@example.com", "the attacker's passphrase").await.json().await.expect("JSON");
    let me: serde_json::Value = app.me(&tokens["accessToken"]).await.json().await.expect("JSON");
    assert_eq!(me["role"], "customer", "the attacker is not an admin");
    assert_eq!(app.login("admin@example.com", "the operator's passphrase").await.status(), 401);
}

#[tokio::test]
async fn the_start_up_bootstrap_never_promotes_an_account_someone_else_registered() {
    let stack = crate::helpers::Stack::new(crate::engines::Engine::Sqlite, false).await.expect("SQLite");
    let app = stack.spawn(&[]).await;
    assert_eq!(app.register("admin@example.com", "the attacker's passphrase", "Mallory").await.status(), 201);
    drop(app);
    let restarted = stack
        .spawn(&[
            ("users.bootstrap_admin.email", "admin@example.com"),
            ("users.bootstrap_admin.password", "the operator's passphrase"),
        ])
        .await;
    let tokens: serde_json::Value =
        restarted.login("admin@example.com", "the attacker's passphrase").await.json().await.expect("JSON");
    let me: serde_json::Value = restarted.me(&tokens["accessToken"]).await.json().await.expect("JSON");
    assert_eq!(me["role"], "customer", "serving goes on, and the attacker is not an admin");
}

#[test]
fn config_and_start_up_errors_hide_passwords_in_query_strings_and_the_jwks_url() {
    let out = bazaar(
        &["config"],
        &[
            ("BAZAAR__MODULES__ORDERS__DATABASE_URL", "postgres://db/orders?user=shop&password=query-s3cret"),
            (
                "BAZAAR__AUTH__JWKS_URL",
                "https://keys:jwks-s3cret@users.example/.well-known/jwks.json?token=t0ken-s3cret",
            ),
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("s3cret"), "{text}");
    assert!(text.contains("user=shop"), "the rest of the URL stays readable: {text}");

    let out =
        bazaar(&["migrate"], &[("BAZAAR__DATABASE__URL", "postgres://127.0.0.1:1/{module}?password=query-s3cret")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("127.0.0.1:1") && !stderr.contains("s3cret"), "{stderr}");
}
