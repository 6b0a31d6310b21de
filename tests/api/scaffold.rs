//! A module is one unit: `bazaar-dev new-module` in a throw-away copy of the workspace changes,
//! outside the module's own folders, one line of the root `Cargo.toml` and one of the registry —
//! and the result builds, hosts the module, lists it in `bazaar modules` and routes its path in
//! the chart's Ingress.
//!
//! Slow (it builds the copy's crates, about two minutes warm): `#[ignore]`d in the README's test
//! command; `.ci/run` runs it after the packaging checks have installed helm
//! (`cargo test --test api -- --ignored scaffold`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const NAME: &str = "parcels";

#[tokio::test]
#[ignore = "builds a copy of the workspace: .ci/run runs it"]
async fn a_scaffolded_module_touches_two_lines_outside_its_folders_and_is_hosted_listed_and_routed() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"));
    // A fixed place in the target folder: cargo keys a path crate's artifacts by its path, so a
    // second run recompiles only what changed.
    let target = target_dir();
    let copy = Copy(target.join("scaffold-workspace"));
    let _ = std::fs::remove_dir_all(copy.path());
    let before = copy_workspace(workspace, copy.path());

    let scaffold = run(Command::new(env!("CARGO_BIN_EXE_bazaar-dev"))
        .args(["--root"])
        .arg(copy.path())
        .args(["new-module", NAME]));
    assert!(scaffold.status.success(), "{}", String::from_utf8_lossy(&scaffold.stderr));
    let refused =
        run(Command::new(env!("CARGO_BIN_EXE_bazaar-dev")).arg("--root").arg(copy.path()).args(["new-module", NAME]));
    assert_eq!(refused.status.code(), Some(2), "a second scaffold of the same name is refused");

    // Outside modules/parcels (its crate and contracts) and migrations/parcels: two added lines.
    let after = files(copy.path());
    let own =
        |path: &str| path.starts_with(&format!("modules/{NAME}/")) || path.starts_with(&format!("migrations/{NAME}/"));
    let mut touched = Vec::new();
    for (path, text) in &after {
        match before.get(path) {
            Some(old) if old == text => {}
            Some(old) => touched.push((path.clone(), added_lines(old, text))),
            None if own(path) => {}
            None => touched.push((path.clone(), vec!["(a new file)".to_owned()])),
        }
    }
    assert!(before.keys().all(|path| after.contains_key(path)), "the scaffold removed a file");
    let expected = [
        (
            "Cargo.toml".to_owned(),
            vec![format!("{NAME} = {{ path = \"modules/{NAME}\", package = \"bazaar-{NAME}\" }}")],
        ),
        ("src/modules.rs".to_owned(), vec!["        Arc::new(parcels::ParcelsModule),".to_owned()]),
    ];
    assert_eq!(touched, expected, "what the scaffold changed outside the module's folders");

    // The copy builds with this run's target folder, so only the workspace's own crates compile.
    // The copy's binary is renamed so that it cannot replace this workspace's `target/debug/bazaar`.
    let manifest = copy.path().join("Cargo.toml");
    let renamed = std::fs::read_to_string(&manifest)
        .expect("Cargo.toml")
        .replace("[[bin]]\nname = \"bazaar\"\n", "[[bin]]\nname = \"bazaar-scaffolded\"\n")
        .replace("default-run = \"bazaar\"", "default-run = \"bazaar-scaffolded\"");
    std::fs::write(&manifest, renamed).expect("written");
    // `--workspace` as in the README's test command: the same features, so no dependency recompiles.
    let build = run(Command::new(env!("CARGO"))
        .args(["build", "--offline", "--workspace", "--bin", "bazaar-scaffolded"])
        .current_dir(copy.path())
        .env("CARGO_TARGET_DIR", &target));
    assert!(build.status.success(), "the scaffolded workspace builds:\n{}", String::from_utf8_lossy(&build.stderr));
    let binary = target.join("debug/bazaar-scaffolded");
    let unit_tests = run(Command::new(env!("CARGO"))
        .args(["test", "--offline", "--workspace", "--lib", "--", "adding_a_note"])
        .current_dir(copy.path())
        .env("CARGO_TARGET_DIR", &target));
    let report = String::from_utf8_lossy(&unit_tests.stdout);
    assert!(unit_tests.status.success(), "its tests pass:\n{report}");
    assert!(report.contains("adding_a_note_stores_it_and_publishes_note_added_in_one_transaction ... ok"), "{report}");

    // `bazaar modules` lists it, with its route, events, prefix and settings.
    let listed = run(Command::new(&binary).args(["modules", "--format", "json"]).current_dir(copy.path()));
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    let registry: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("JSON");
    let module = registry.as_array().expect("a list").iter().find(|m| m["name"] == NAME).expect("listed").clone();
    assert_eq!(module["routes"], serde_json::json!(["POST /parcels/notes"]), "{module}");
    assert_eq!(module["path_prefixes"], serde_json::json!(["/parcels"]));
    assert_eq!(module["publishes"], serde_json::json!(["parcels.NoteAdded.v1"]));
    assert_eq!(module["consumes"], serde_json::json!(["users.UserRegistered.v1"]));
    assert_eq!(module["settings"], serde_json::json!(["parcels.max_note_length"]));

    // The chart, given the registry, routes /parcels to the Deployment that hosts it.
    std::fs::write(copy.path().join("charts/bazaar/files/modules.json"), &listed.stdout).expect("written");
    let chart = copy.path().join("charts/bazaar");
    let rendered = run(Command::new(helm())
        .args(["template", "shop"])
        .arg(&chart)
        .arg("-f")
        .arg(chart.join("values-split.yaml"))
        .arg("-f")
        .arg(chart.join("tests/values/split-urls.yaml")));
    assert!(rendered.status.success(), "{}", String::from_utf8_lossy(&rendered.stderr));
    let manifests = String::from_utf8(rendered.stdout).expect("UTF-8");
    let ingress = manifests.split("\n---").find(|doc| doc.contains("kind: Ingress")).expect("an Ingress");
    let route = ingress.split("- path:").find(|rule| rule.trim_start().starts_with("/parcels")).expect("/parcels");
    assert!(route.contains("name: shop-bazaar-others"), "/parcels goes to the Deployment hosting the rest: {route}");
    let others = manifests
        .split("\n---")
        .find(|doc| doc.contains("kind: Deployment") && doc.contains("name: shop-bazaar-others"))
        .expect("the Deployment of the rest");
    let hosted = others
        .split("name: BAZAAR__MODULES__ENABLED")
        .nth(1)
        .and_then(|rest| rest.lines().find_map(|line| line.trim().strip_prefix("value: ")))
        .expect("the Deployment's module list");
    assert!(hosted.trim_matches('"').split(',').any(|m| m == NAME), "it hosts the new module: {hosted}");

    // Hosted: a registration reaches it as an event, and its route answers a signed-in user.
    let data = tempfile::tempdir().expect("a folder");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a port").local_addr().expect("an address").port();
    let mut server = Command::new(&binary)
        .arg("serve")
        .current_dir(copy.path())
        .env("BAZAAR_ENV", "test")
        .env("BAZAAR__SERVER__PORT", port.to_string())
        .env("BAZAAR__DATABASE__URL", format!("sqlite://{}/{{module}}.db?mode=rwc", data.path().display()))
        .env("BAZAAR__DATABASE__AUTO_MIGRATE", "true")
        .env("BAZAAR__AUTH__SIGNING_KEY_FILE", data.path().join("key.pem"))
        .env_remove("RUST_LOG")
        .stdout(std::fs::File::create(data.path().join("serve.log")).expect("a log"))
        .stderr(std::fs::File::create(data.path().join("serve.err")).expect("a log"))
        .stdin(Stdio::null())
        .spawn()
        .expect("the scaffolded binary starts");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let outcome = async {
        wait_ready(&client, &base).await;
        let registered = client
            .post(format!("{base}/users"))
            .json(&serde_json::json!({"email": "ada@example.com", "password": "a long passphrase", "name": "Ada"}))
            .send()
            .await
            .expect("sent");
        assert_eq!(registered.status(), 201);
        let token: serde_json::Value = client
            .post(format!("{base}/auth/token"))
            .json(&serde_json::json!({"email": "ada@example.com", "password": "a long passphrase"}))
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("JSON");
        let token = token["accessToken"].as_str().expect("a token").to_owned();
        let note = client
            .post(format!("{base}/parcels/notes"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"text": "first"}))
            .send()
            .await
            .expect("sent");
        assert_eq!(note.status(), 201);
        let anonymous = client.post(format!("{base}/parcels/notes")).json(&serde_json::json!({"text": "x"})).send();
        assert_eq!(anonymous.await.expect("sent").status(), 401);
        let doc: serde_json::Value =
            client.get(format!("{base}/api-docs/openapi.json")).send().await.expect("sent").json().await.expect("JSON");
        assert!(doc["paths"].get("/parcels/notes").is_some(), "documented");
        // The registration's event: the module's queue drains and the note it wrote is there.
        let db =
            kernel::db::connect(&format!("sqlite://{}/{NAME}.db", data.path().display()), 1).await.expect("its DB");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let published = kernel::testing::published(&db, NAME).await;
            let texts: Vec<&str> = published.iter().filter_map(|e| e.data["text"].as_str()).collect();
            if texts.len() == 2 {
                assert!(texts.contains(&"first") && texts.iter().any(|t| t.ends_with(" registered")), "{texts:?}");
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "the module never heard UserRegistered: {texts:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(outcome)).await;
    server.kill().ok();
    server.wait().ok();
    if let Err(panic) = outcome {
        let log = |name: &str| std::fs::read_to_string(data.path().join(name)).unwrap_or_default();
        eprintln!("the scaffolded process's log:\n{}{}", log("serve.log"), log("serve.err"));
        std::panic::resume_unwind(panic);
    }
}

/// The copy, removed when the test ends.
struct Copy(PathBuf);

impl Copy {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Copy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Copies the workspace's files (tracked and new, not ignored) into `to`; returns them by path.
fn copy_workspace(from: &Path, to: &Path) -> BTreeMap<String, String> {
    let listed = run(Command::new("git")
        .args(["ls-files", "-z", "--cached", "--others", "--exclude-standard"])
        .current_dir(from));
    assert!(listed.status.success(), "git ls-files: {}", String::from_utf8_lossy(&listed.stderr));
    for path in listed.stdout.split(|b| *b == 0).filter(|p| !p.is_empty()) {
        let path = std::str::from_utf8(path).expect("UTF-8 paths");
        if !from.join(path).is_file() {
            continue; // listed but deleted in the work tree
        }
        let target = to.join(path);
        std::fs::create_dir_all(target.parent().expect("a folder")).expect("a folder");
        std::fs::copy(from.join(path), &target).expect("copied");
        // With its modification time: cargo then sees the copy's unchanged crates as built.
        let modified = std::fs::metadata(from.join(path)).and_then(|m| m.modified()).expect("a time");
        std::fs::File::options().write(true).open(&target).and_then(|f| f.set_modified(modified)).expect("set");
    }
    files(to)
}

/// Every text file under `root`, by its path relative to it.
fn files(root: &Path) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("a folder").flatten() {
            let path = entry.path();
            if path.is_dir() {
                folders.push(path);
            } else if let Ok(text) = std::fs::read_to_string(&path) {
                let relative = path.strip_prefix(root).expect("under root").to_string_lossy().into_owned();
                found.insert(relative, text);
            }
        }
    }
    found
}

/// The lines of `new` that `old` lacks; panics if a line of `old` is gone (the scaffold only adds).
fn added_lines(old: &str, new: &str) -> Vec<String> {
    let (mut old_lines, mut added) = (old.lines().peekable(), Vec::new());
    for line in new.lines() {
        match old_lines.peek() {
            Some(next) if *next == line => {
                old_lines.next();
            }
            _ => added.push(line.to_owned()),
        }
    }
    assert!(old_lines.next().is_none(), "lines were removed or changed");
    added
}

fn run(command: &mut Command) -> Output {
    command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"))
}

/// This run's target folder (the copy reuses its compiled dependencies).
fn target_dir() -> PathBuf {
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_bazaar"));
    binary.parent().and_then(Path::parent).expect("target/debug/bazaar").to_path_buf()
}

/// `BAZAAR_HELM`, or the helm `.ci/check-packaging` installs.
fn helm() -> PathBuf {
    if let Ok(helm) = std::env::var("BAZAAR_HELM") {
        return helm.into();
    }
    let cache = std::env::var("BAZAAR_TOOLS_CACHE").map(PathBuf::from).unwrap_or_else(|_| {
        let base = std::env::var("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/tmp".into())).join(".cache"));
        base.join("bazaar-packaging")
    });
    let helm = cache.join("bin/helm");
    assert!(helm.is_file(), "no helm at {} (run .ci/check-packaging once, or set BAZAAR_HELM)", helm.display());
    helm
}

async fn wait_ready(client: &reqwest::Client, base: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(response) = client.get(format!("{base}/health/ready")).send().await
            && response.status() == 200
        {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "the scaffolded process is not ready after 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
