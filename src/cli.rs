//! The command line: `serve` (the default), `migrate`, `openapi`, `config`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::settings::{Settings, SettingsError};
use crate::startup::{Application, connect_modules};
use crate::{modules, telemetry};

#[derive(Debug, Parser)]
#[command(name = "bazaar", version, about = "An e-commerce backend: a modular monolith that splits into services.")]
pub struct Cli {
    /// The folder with default.toml and <BAZAAR_ENV>.toml [default: config, optional there].
    #[arg(long, global = true, env = "BAZAAR_CONFIG_DIR")]
    pub config_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (what a bare `bazaar` does).
    Serve {
        /// The modules to host, comma-separated (overrides modules.enabled).
        #[arg(long, value_delimiter = ',')]
        modules: Option<Vec<String>>,
    },
    /// Apply pending migrations to every enabled module's database, then exit.
    Migrate {
        #[arg(long, value_delimiter = ',')]
        modules: Option<Vec<String>>,
    },
    /// Print the OpenAPI document of the enabled modules.
    Openapi,
    /// Print the effective settings, secrets redacted.
    Config,
}

/// Runs the command line; settings problems exit with 2, other failures with 1.
pub async fn run(cli: Cli) -> ExitCode {
    match execute(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(setting) = e.downcast_ref::<SettingsError>() {
                eprintln!("error: {setting}");
                return ExitCode::from(2);
            }
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(cli: Cli) -> anyhow::Result<()> {
    let config_dir = match cli.config_dir {
        Some(dir) if !dir.is_dir() => {
            let message = format!("{} is not a folder", dir.display());
            return Err(SettingsError { key: "--config-dir".into(), message }.into());
        }
        Some(dir) => dir,
        // The defaults are built in, so a process started elsewhere runs without the folder.
        None => PathBuf::from("config"),
    };
    let modules_flag = match &cli.command {
        Some(Command::Serve { modules } | Command::Migrate { modules }) => modules.clone(),
        _ => None,
    };
    let settings = Settings::load(&config_dir, modules_flag)?;
    match cli.command.unwrap_or(Command::Serve { modules: None }) {
        Command::Serve { .. } => {
            telemetry::init(&settings.telemetry);
            Application::build(settings).await?.run_until_stopped().await
        }
        Command::Migrate { .. } => {
            telemetry::init(&settings.telemetry);
            connect_modules(&settings, modules::select(&settings.modules.enabled), true).await?;
            println!("migrated: {}", settings.modules.enabled.join(", "));
            Ok(())
        }
        Command::Openapi => {
            let doc = crate::http::openapi(&modules::select(&settings.modules.enabled));
            println!("{}", doc.to_pretty_json().context("failed to render the OpenAPI document")?);
            Ok(())
        }
        Command::Config => {
            println!("{}", serde_json::to_string_pretty(&settings.redacted())?);
            Ok(())
        }
    }
}
