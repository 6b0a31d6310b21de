//! `bazaar serve` as a real process: for what only a process shows (memory, signals, exit codes).

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// A `bazaar serve` on port 0 with SQLite files in a folder of its own, killed when dropped.
pub struct ServeProcess {
    pub child: Child,
    pub address: String,
    /// The JSON log lines after "Bazaar is listening".
    pub logs: Lines<BufReader<ChildStdout>>,
    /// Its data folder: SQLite files, mail written as files.
    pub dir: std::sync::Arc<tempfile::TempDir>,
}

impl ServeProcess {
    /// Starts it with `env` on top of the test settings, and waits until it listens.
    pub async fn start(env: &[(&str, &str)]) -> Self {
        Self::start_in(std::sync::Arc::new(tempfile::tempdir().expect("a folder")), env).await
    }

    /// [`start`](Self::start) on the data of `dir`: a restart after a kill.
    pub async fn start_in(dir: std::sync::Arc<tempfile::TempDir>, env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_bazaar"));
        command
            .arg("serve")
            .env("BAZAAR_ENV", "test")
            .env("BAZAAR__DATABASE__URL", format!("sqlite://{}/{{module}}.db?mode=rwc", dir.path().display()))
            .env("BAZAAR__AUTH__SIGNING_KEY", crate::helpers::PRIVATE_KEY)
            .env("BAZAAR__NOTIFICATIONS__FILE__DIR", dir.path().join("mail"))
            .env("BAZAAR__TELEMETRY__FORMAT", "json")
            .env("BAZAAR__TELEMETRY__FILTER", "info")
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("bazaar starts");
        let mut logs = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let port = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let line = logs.next_line().await.expect("readable").expect("a log line before it listens");
                let json: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                if json["message"] == "Bazaar is listening" {
                    break json["port"].as_u64().expect("a port");
                }
            }
        })
        .await
        .expect("listening within 30 s");
        Self { child, address: format!("http://127.0.0.1:{port}"), logs, dir }
    }

    /// A field of `/proc/<pid>/status` in bytes (`VmRSS`, `VmHWM`).
    pub fn memory(&self, field: &str) -> u64 {
        let pid = self.child.id().expect("running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("its status");
        let line = status.lines().find(|l| l.starts_with(&format!("{field}:"))).expect("the field");
        let kib: u64 = line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("a number of kB");
        kib * 1024
    }

    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("running").to_string();
        let sent = std::process::Command::new("kill").args([&format!("-{signal}"), &pid]).status().expect("kill runs");
        assert!(sent.success());
    }
}
