//! Third-party test peers from PyPI (localstripe, aiosmtpd), each installed on first use into a
//! venv of its own under `$HOME/.cache/bazaar-peers/<package>-<version>`, pinned. Without python3
//! or PyPI the tests that need one skip, unless `BAZAAR_REQUIRE_SERVICES=1`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A package from PyPI, pinned, and a module that must import once it is installed.
pub struct PyPeer {
    pub package: &'static str,
    pub version: &'static str,
    pub import: &'static str,
}

impl PyPeer {
    fn name(&self) -> String {
        format!("{}-{}", self.package, self.version)
    }

    /// `None` (the test skips) when services are optional; a panic when `BAZAAR_REQUIRE_SERVICES=1`.
    pub fn unavailable<T>(&self, why: String) -> Option<T> {
        if std::env::var("BAZAAR_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
            panic!("{} is required (BAZAAR_REQUIRE_SERVICES=1) but unavailable: {why}", self.name());
        }
        eprintln!("skipped: {} is unavailable: {why}", self.name());
        None
    }

    /// [`python`](Self::python) off the runtime's threads, or `None` (the test skips) as
    /// [`unavailable`](Self::unavailable) says.
    pub async fn installed(&'static self) -> Option<PathBuf> {
        match tokio::task::spawn_blocking(|| self.python()).await.expect("the install ran") {
            Ok(python) => Some(python),
            Err(why) => self.unavailable(why),
        }
    }

    /// The venv's python with the package importable, installed on first use. Parallel tests wait
    /// on a lock file; the venv is built beside its final place and renamed into it, so the final
    /// folder is either absent or complete.
    pub fn python(&self) -> Result<PathBuf, String> {
        let home = std::env::var_os("HOME").ok_or("HOME is not set")?;
        let peers = PathBuf::from(home).join(".cache/bazaar-peers");
        let target = peers.join(self.name());
        let python = target.join("bin/python");
        if python.exists() {
            return Ok(python);
        }
        std::fs::create_dir_all(&peers).map_err(|e| format!("{}: {e}", peers.display()))?;
        let lock_path = peers.join(format!("{}.lock", self.name()));
        let lock = std::fs::File::create(&lock_path).map_err(|e| format!("{}: {e}", lock_path.display()))?;
        lock.lock().map_err(|e| format!("locking {}: {e}", lock_path.display()))?;
        if python.exists() {
            return Ok(python); // another test installed it while this one waited
        }
        let staging = peers.join(format!(".{}-{}", self.name(), uuid::Uuid::new_v4().simple()));
        let built = self.build_venv(&staging).and_then(|()| {
            std::fs::rename(&staging, &target).map_err(|e| format!("renaming {}: {e}", staging.display()))
        });
        if let Err(why) = built {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(why);
        }
        Ok(python)
    }

    fn build_venv(&self, dir: &Path) -> Result<(), String> {
        run(Command::new("python3").args(["-m", "venv"]).arg(dir))?;
        run(Command::new(dir.join("bin/python")).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--retries",
            "2",
            &format!("{}=={}", self.package, self.version),
        ]))?;
        // A venv finds its packages from where its python is, so it survives the rename.
        run(Command::new(dir.join("bin/python")).args(["-c", &format!("import {}", self.import)]))
    }
}

/// Starts `python launcher.py <args>` in `dir`, its output appended to `dir/<log>`.
pub fn launch(python: &Path, dir: &Path, log: &str, args: &[String]) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join(log)).expect("a log file");
    Command::new(python)
        .arg("launcher.py")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("a log file"))
        .stderr(log)
        .spawn()
        .expect("python starts")
}

/// Waits until the launcher `child` wrote `dir/ready-<pid>`, its sign that it listens; panics with
/// its log (`dir/<log>`) when it exits first or takes 30 s.
pub async fn until_ready(child: &mut Child, dir: &Path, log: &str) {
    let ready = dir.join(format!("ready-{}", child.id()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let log = || std::fs::read_to_string(dir.join(log)).unwrap_or_default();
    while !ready.exists() {
        if let Some(status) = child.try_wait().expect("a status") {
            panic!("the peer exited ({status}):\n{}", log());
        }
        assert!(tokio::time::Instant::now() < deadline, "the peer is not ready after 30 s:\n{}", log());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn run(command: &mut Command) -> Result<(), String> {
    let shown = format!("{command:?}");
    let output = command.stdin(Stdio::null()).output().map_err(|e| format!("{shown}: {e}"))?;
    match output.status.success() {
        true => Ok(()),
        false => Err(format!("{shown}: {}\n{}", output.status, String::from_utf8_lossy(&output.stderr))),
    }
}
