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
    assert_refused(&bazaar(&["serve"], &[("BAZAAR_ENV", "production")]), "auth.public_key");
    assert_refused(&bazaar(&["serve"], &[("BAZAAR_ENV", "staging")]), "BAZAAR_ENV");
    assert_refused(&bazaar(&["--config-dir", "/no/such/folder", "config"], &[]), "--config-dir");
}

#[test]
fn unknown_commands_and_flags_exit_with_2() {
    let out = bazaar(&["frobnicate"], &[]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn config_prints_the_effective_settings_without_secrets() {
    let out = bazaar(&["config"], &[("BAZAAR__MODULES__CATALOG__DATABASE_URL", "postgres://shop:s3cret@db/catalog")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("s3cret"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&text).expect("JSON");
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
}
