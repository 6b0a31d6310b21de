//! Third-party test peers from PyPI (localstripe, aiosmtpd), each installed on first use into a
//! venv of its own under `$HOME/.cache/bazaar-peers/<package>-<version>`, pinned. Without python3
//! or PyPI the tests that need one skip, unless `BAZAAR_REQUIRE_SERVICES=1`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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

fn run(command: &mut Command) -> Result<(), String> {
    let shown = format!("{command:?}");
    let output = command.stdin(Stdio::null()).output().map_err(|e| format!("{shown}: {e}"))?;
    match output.status.success() {
        true => Ok(()),
        false => Err(format!("{shown}: {}\n{}", output.status, String::from_utf8_lossy(&output.stderr))),
    }
}
