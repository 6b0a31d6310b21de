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
    /// Print which module publishes and consumes which events and serves which routes.
    Modules {
        /// `text` or `json`.
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        format: String,
    },
    /// Manage accounts.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create an admin account (an existing customer account is refused, never promoted: its
    /// password is whoever registered it's). The password comes from
    /// BAZAAR_ADMIN_PASSWORD or the first line of standard input, never from an argument.
    CreateAdmin {
        #[arg(long)]
        email: String,
    },
}

/// A command line the user got wrong: exit code 2, like a bad setting.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Runs the command line; settings problems exit with 2, other failures with 1.
pub async fn run(cli: Cli) -> ExitCode {
    match execute(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(setting) = e.downcast_ref::<SettingsError>() {
                eprintln!("error: {setting}");
                return ExitCode::from(2);
            }
            if let Some(usage) = e.downcast_ref::<UsageError>() {
                eprintln!("error: {usage}");
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
            let _logs = telemetry::init(&settings.telemetry);
            Application::build(settings).await?.run_until_stopped().await
        }
        Command::Migrate { .. } => {
            let _logs = telemetry::init(&settings.telemetry);
            connect_modules(&settings, modules::select(&settings.modules.enabled), true).await?;
            println!("migrated: {}", settings.modules.enabled.join(", "));
            Ok(())
        }
        Command::Openapi => {
            let doc = crate::http::openapi(&modules::select(&settings.modules.enabled));
            emit(&doc.to_pretty_json().context("failed to render the OpenAPI document")?)
        }
        Command::Config => emit(&serde_json::to_string_pretty(&settings.redacted())?),
        Command::Modules { format } => {
            let registry = modules::describe();
            match format.as_str() {
                "json" => emit(&serde_json::to_string_pretty(&registry)?),
                _ => emit(modules::render(&registry).trim_end()),
            }
        }
        Command::Users { command: UsersCommand::CreateAdmin { email } } => {
            let _logs = telemetry::init(&settings.telemetry);
            let password = admin_password()?;
            let users: Vec<_> = modules::select(&["users".to_owned()]);
            let (_, ctx) =
                connect_modules(&settings, users, true).await?.pop().context("the users module is missing")?;
            match users::create_admin(&ctx, &email, &password).await {
                Ok(outcome) => {
                    let done = match outcome {
                        users::AdminBootstrap::Created => "created",
                        users::AdminBootstrap::AlreadyAdmin => "already an admin",
                    };
                    println!("{}: {done}", email.trim().to_lowercase());
                    Ok(())
                }
                Err(users::BootstrapError::Invalid(message) | users::BootstrapError::Refused(message)) => {
                    Err(UsageError(message).into())
                }
                Err(users::BootstrapError::Unexpected(e)) => Err(e),
            }
        }
    }
}

/// The admin's password: `BAZAAR_ADMIN_PASSWORD`, or the first line of standard input.
fn admin_password() -> anyhow::Result<String> {
    if let Ok(password) = std::env::var("BAZAAR_ADMIN_PASSWORD") {
        return Ok(password);
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).context("cannot read the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        return Err(UsageError("no password: set BAZAAR_ADMIN_PASSWORD or pipe it to standard input".into()).into());
    }
    Ok(password)
}

/// Prints a command's output; a reader that went away (`bazaar config | head`) is not an error.
fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        written => Ok(written?),
    }
}
