//! `bazaar-dev`: tools for Bazaar's developers, not shipped in the image.
//!
//! `bazaar-dev new-module NAME` scaffolds a bounded context that compiles, is hosted and is tested:
//! its crate (`modules/NAME`, the rooms of `modules/README.md`), its contracts crate
//! (`modules/NAME/contracts`) and its migrations crate (`migrations/NAME`), with one route, one
//! published event, one consumed event, a settings section, one migration and unit tests — and
//! the two lines outside them: the root's dependency and the registry (`src/modules.rs`). The
//! workspace finds the crates by its member globs; everything else derives from the registry
//! (regenerate the chart's `files/modules.json` and compose's files as the command says).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "bazaar-dev", about = "Tools for Bazaar's developers")]
struct Cli {
    /// The workspace to change.
    #[arg(long, default_value = ".")]
    root: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Scaffold a module: its crate, contracts and migrations, registered in the one place.
    NewModule {
        /// Lower-case letters and digits, starting with a letter: `payments`.
        name: String,
    },
}

/// Template file → where it goes, relative to the workspace; `{{name}}` is the module's name.
const TEMPLATES: &[(&str, &str)] = &[
    ("modules/{{name}}/Cargo.toml", include_str!("template/module.Cargo.toml.tmpl")),
    ("modules/{{name}}/src/lib.rs", include_str!("template/lib.rs.tmpl")),
    ("modules/{{name}}/src/domain.rs", include_str!("template/domain.rs.tmpl")),
    ("modules/{{name}}/src/service.rs", include_str!("template/service.rs.tmpl")),
    ("modules/{{name}}/src/http.rs", include_str!("template/http.rs.tmpl")),
    ("modules/{{name}}/src/persistence.rs", include_str!("template/persistence.rs.tmpl")),
    ("modules/{{name}}/src/events.rs", include_str!("template/events.rs.tmpl")),
    ("modules/{{name}}/contracts/Cargo.toml", include_str!("template/contracts.Cargo.toml.tmpl")),
    ("modules/{{name}}/contracts/src/lib.rs", include_str!("template/contracts.lib.rs.tmpl")),
    ("migrations/{{name}}/Cargo.toml", include_str!("template/migrations.Cargo.toml.tmpl")),
    ("migrations/{{name}}/src/lib.rs", include_str!("template/migrations.lib.rs.tmpl")),
    ("migrations/{{name}}/src/{{migration}}.rs", include_str!("template/migration.rs.tmpl")),
];

/// Names a module cannot take: the kernel's crates and folders that are not modules.
const RESERVED: &[&str] = &["kernel", "contracts", "bazaar", "migrations", "src", "bench", "tests"];

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::NewModule { name } => new_module(&cli.root, name),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bazaar-dev: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn new_module(root: &Path, name: &str) -> anyhow::Result<()> {
    check_name(name)?;
    let registry_path = root.join("src/modules.rs");
    let manifest_path = root.join("Cargo.toml");
    if !registry_path.is_file() || !manifest_path.is_file() {
        bail!("{} is not Bazaar's workspace (no src/modules.rs)", root.display());
    }
    for folder in [format!("modules/{name}"), format!("migrations/{name}")] {
        if root.join(&folder).exists() {
            bail!("{folder} exists already");
        }
    }
    let vars = Vars::new(name);
    // Both edits are computed before anything is written: a refusal leaves the workspace as it was.
    let registry = register(&read(&registry_path)?, &vars)?;
    let manifest = add_dependency(&read(&manifest_path)?, &vars)?;
    for (path, template) in TEMPLATES {
        let path = root.join(vars.fill(path));
        std::fs::create_dir_all(path.parent().context("a file in a folder")?)
            .with_context(|| format!("cannot create the folder of {}", path.display()))?;
        std::fs::write(&path, vars.fill(template)).with_context(|| format!("cannot write {}", path.display()))?;
    }
    std::fs::write(&registry_path, registry).context("cannot write src/modules.rs")?;
    std::fs::write(&manifest_path, manifest).context("cannot write Cargo.toml")?;
    println!(
        "module {name}: modules/{name}, modules/{name}/contracts, migrations/{name}; registered in src/modules.rs\n\
         next: cargo build, then regenerate what derives from the registry:\n  \
         cargo run --bin bazaar -- modules --format json > charts/bazaar/files/modules.json\n  \
         .ci/generate-packaging"
    );
    Ok(())
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn check_name(name: &str) -> anyhow::Result<()> {
    let mut chars = name.chars();
    let well_formed = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && (2..=30).contains(&name.len());
    if !well_formed {
        bail!("'{name}' is not a module name: 2 to 30 lower-case letters and digits, starting with a letter");
    }
    if RESERVED.contains(&name) {
        bail!("'{name}' is reserved");
    }
    Ok(())
}

struct Vars {
    name: String,
    camel: String,
    migration: String,
}

impl Vars {
    fn new(name: &str) -> Self {
        let camel = name[..1].to_ascii_uppercase() + &name[1..];
        let migration = format!("m{}_000002_create_notes", chrono::Utc::now().format("%Y%m%d"));
        Self { name: name.to_owned(), camel, migration }
    }

    fn fill(&self, template: &str) -> String {
        template
            .replace("{{name}}", &self.name)
            .replace("{{Name}}", &self.camel)
            .replace("{{migration}}", &self.migration)
    }
}

/// `src/modules.rs` with the module appended to `all()`.
fn register(registry: &str, vars: &Vars) -> anyhow::Result<String> {
    let start = registry.find("pub fn all()").context("src/modules.rs has no `pub fn all()`")?;
    let end = start + registry[start..].find("\n    ]").context("`all()` has no `vec![...]` to append to")?;
    let line = format!("\n        Arc::new({}::{}Module),", vars.name, vars.camel);
    Ok(format!("{}{line}{}", &registry[..end], &registry[end..]))
}

/// The root `Cargo.toml` with the module's dependency after the other modules'.
fn add_dependency(manifest: &str, vars: &Vars) -> anyhow::Result<String> {
    let marker = "\", package = \"bazaar-";
    let last = manifest
        .lines()
        .rfind(|line| line.contains("{ path = \"modules/") && line.contains(marker) && !line.contains("/contracts\""))
        .context("Cargo.toml lists no module dependency to add one after")?;
    let at = manifest.find(last).context("the line is in the file")? + last.len();
    let line = format!("\n{} = {{ path = \"modules/{}\", package = \"bazaar-{}\" }}", vars.name, vars.name, vars.name);
    Ok(format!("{}{line}{}", &manifest[..at], &manifest[at..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_lower_case_letters_and_digits_and_not_reserved() {
        assert!(check_name("payments").is_ok());
        assert!(check_name("v2shop").is_ok());
        for bad in ["", "p", "Payments", "gift_cards", "2fa", "kernel", "gift-cards"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_module_is_registered_and_depended_on_in_one_line_each() {
        let vars = Vars::new("parcels");
        let registry = register(include_str!("../modules.rs"), &vars).expect("registered");
        assert_eq!(registry.lines().count(), include_str!("../modules.rs").lines().count() + 1);
        assert!(registry.contains("        Arc::new(parcels::ParcelsModule),\n    ]"), "{registry}");
        let manifest = add_dependency(include_str!("../../Cargo.toml"), &vars).expect("added");
        assert_eq!(manifest.lines().count(), include_str!("../../Cargo.toml").lines().count() + 1);
        assert!(manifest.contains("\nparcels = { path = \"modules/parcels\", package = \"bazaar-parcels\" }\n"));
    }
}
