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
