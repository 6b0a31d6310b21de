//! The crate boundaries, read from `cargo metadata` and the module registry: modules talk only
//! through the bus, each names only the events it publishes or consumes, and each owns its schema.
//!
//! The layout says what a crate is: `modules/<module>` a module, `modules/<module>/contracts` the
//! events it publishes, `migrations/<module>` its schema; `modules/kernel`, `modules/contracts`
//! (the core of the published language) and `migrations/kernel` are shared.

use std::collections::{BTreeMap, BTreeSet};

/// What a workspace crate is, from where its manifest lives.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    Kernel,
    ContractsCore,
    MigrationsKernel,
    Module(String),
    Contracts(String),
    Migrations(String),
    /// The composition root, the benchmarks: free to depend on anything.
    Other,
}

struct Crate {
    name: String,
    role: Role,
    /// Package names of its dependencies of every kind (normal, dev, build).
    dependencies: BTreeSet<String>,
}

fn role(relative_manifest: &str) -> Role {
    let parts: Vec<&str> = relative_manifest.trim_end_matches("/Cargo.toml").split('/').collect();
    match parts.as_slice() {
        ["modules", "kernel"] => Role::Kernel,
        ["modules", "contracts"] => Role::ContractsCore,
        ["modules", module] => Role::Module((*module).to_owned()),
        ["modules", module, "contracts"] => Role::Contracts((*module).to_owned()),
        ["migrations", "kernel"] => Role::MigrationsKernel,
        ["migrations", module] => Role::Migrations((*module).to_owned()),
        _ => Role::Other,
    }
}

fn workspace() -> Vec<Crate> {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(root)
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|package| {
            let manifest = package["manifest_path"].as_str().expect("a manifest path");
            let relative = manifest.strip_prefix(root).expect("inside the workspace").trim_start_matches('/');
            Crate {
                name: package["name"].as_str().expect("a name").to_owned(),
                role: role(relative),
                dependencies: package["dependencies"]
                    .as_array()
                    .expect("dependencies")
                    .iter()
                    .map(|d| d["name"].as_str().expect("a name").to_owned())
                    .collect(),
            }
        })
        .collect()
}

/// Each module of the registry and the publishers whose events it consumes (`bazaar modules`).
fn registry() -> BTreeMap<String, BTreeSet<String>> {
    let described = serde_json::to_value(bazaar::modules::describe()).expect("JSON");
    described
        .as_array()
        .expect("a list of modules")
        .iter()
        .map(|m| {
            let name = m["name"].as_str().expect("a name").to_owned();
            let publishers = m["consumes"]
                .as_array()
                .expect("consumes")
                .iter()
                .map(|event| {
                    // `<source>.<event>.v<version>`
                    let event = event.as_str().expect("an event type");
                    event.split('.').next().expect("a source").to_owned()
                })
                .collect();
            (name, publishers)
        })
        .collect()
}

#[test]
fn every_module_of_the_registry_is_a_crate_of_its_own_and_every_module_crate_is_registered() {
    let crates = workspace();
    let module_crates: BTreeSet<String> = crates
        .iter()
        .filter_map(|c| match &c.role {
            Role::Module(m) => Some(m.clone()),
            _ => None,
        })
        .collect();
    let registered: BTreeSet<String> = registry().into_keys().collect();
    assert!(registered.contains("catalog"), "registered: {registered:?}");
    assert_eq!(module_crates, registered, "modules/<name> crates against the registry");
}

#[test]
fn a_module_depends_on_no_other_module_nor_its_schema_nor_events_it_does_not_consume() {
    let crates = workspace();
    let registry = registry();
    let role_of: BTreeMap<&str, &Role> = crates.iter().map(|c| (c.name.as_str(), &c.role)).collect();
    let mut checked = 0;
    for c in &crates {
        let Role::Module(module) = &c.role else { continue };
        let consumed = registry.get(module).unwrap_or_else(|| panic!("{module} is not in the registry"));
        for dependency in &c.dependencies {
            match role_of.get(dependency.as_str()) {
                Some(Role::Module(other)) => {
                    panic!("{} depends on the module {other}: modules talk only through the bus", c.name)
                }
                Some(Role::Migrations(other)) => {
                    assert_eq!(other, module, "{} depends on {dependency}: a module's schema is its own", c.name)
                }
                Some(Role::Contracts(publisher)) => assert!(
                    publisher == module || consumed.contains(publisher),
                    "{} depends on {dependency}, but consumes no event of {publisher} (it consumes from {consumed:?})",
                    c.name
                ),
                _ => {}
            }
        }
        checked += 1;
    }
    assert!(checked >= 5, "checked {checked} modules");
}

#[test]
fn the_kernel_knows_no_module_nor_its_events_nor_its_schema() {
    let crates = workspace();
    let role_of: BTreeMap<&str, &Role> = crates.iter().map(|c| (c.name.as_str(), &c.role)).collect();
    let shared =
        crates.iter().filter(|c| matches!(c.role, Role::Kernel | Role::ContractsCore | Role::MigrationsKernel));
    let mut checked = 0;
    for c in shared {
        for dependency in &c.dependencies {
            assert!(
                !matches!(
                    role_of.get(dependency.as_str()),
                    Some(Role::Module(_) | Role::Contracts(_) | Role::Migrations(_))
                ),
                "{} depends on {dependency}: the shared crates know no module",
                c.name
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 3, "the kernel, the contracts' core and the kernel's migrations");
    let core = crates.iter().find(|c| c.role == Role::ContractsCore).expect("the contracts' core");
    // serde for the wire, utoipa for the vocabulary's schemas (serde_json only in its tests).
    let small = BTreeSet::from(["serde", "serde_json", "utoipa"].map(str::to_owned));
    assert_eq!(core.dependencies, small, "the contracts' core stays small");
}

#[test]
fn a_modules_events_build_only_on_the_events_of_publishers_it_consumes() {
    // Orders' `OrderConfirmed` carries catalog's `Price`; it may, as orders consumes catalog.
    let crates = workspace();
    let registry = registry();
    let role_of: BTreeMap<&str, &Role> = crates.iter().map(|c| (c.name.as_str(), &c.role)).collect();
    for c in &crates {
        let Role::Contracts(module) = &c.role else { continue };
        let consumed = registry.get(module).unwrap_or_else(|| panic!("{module} is not in the registry"));
        for dependency in &c.dependencies {
            match role_of.get(dependency.as_str()) {
                Some(Role::Contracts(publisher)) => assert!(
                    consumed.contains(publisher),
                    "{} depends on {dependency}, but {module} consumes no event of {publisher}",
                    c.name
                ),
                Some(Role::ContractsCore) | None => {}
                Some(other) => panic!("{} depends on {dependency} ({other:?}): events depend on events only", c.name),
            }
        }
    }
}

#[test]
fn a_modules_schema_is_depended_on_by_that_module_only() {
    let crates = workspace();
    let mut checked = 0;
    for schema in &crates {
        let Role::Migrations(module) = &schema.role else { continue };
        let dependants: Vec<(&str, &Role)> = crates
            .iter()
            .filter(|c| c.dependencies.contains(&schema.name))
            .map(|c| (c.name.as_str(), &c.role))
            .collect();
        assert!(
            matches!(dependants.as_slice(), [(_, Role::Module(m))] if m == module),
            "{} is depended on by {dependants:?}: only the {module} module may",
            schema.name
        );
        checked += 1;
    }
    assert!(checked >= 5, "checked {checked} schemas");
}
