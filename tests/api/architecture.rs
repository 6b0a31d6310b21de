//! Modules talk only through the bus: no module crate may depend on another.

use std::collections::BTreeSet;

#[test]
fn no_module_crate_depends_on_another_module() {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let packages = metadata["packages"].as_array().expect("packages");
    let shared: BTreeSet<&str> = ["bazaar-kernel", "bazaar-contracts"].into();
    let modules: BTreeSet<&str> = packages
        .iter()
        .filter(|p| p["manifest_path"].as_str().is_some_and(|m| m.contains("/modules/")))
        .filter_map(|p| p["name"].as_str())
        .filter(|name| !shared.contains(name))
        .collect();
    assert!(modules.contains("bazaar-catalog"), "found modules: {modules:?}");
    for package in packages {
        let name = package["name"].as_str().expect("a name");
        if !modules.contains(name) && !shared.contains(name) {
            continue;
        }
        for dependency in package["dependencies"].as_array().expect("dependencies") {
            let dep = dependency["name"].as_str().expect("a name");
            assert!(!modules.contains(dep), "{name} depends on the module {dep}: modules talk only through the bus");
        }
    }
}
