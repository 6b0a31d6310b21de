use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    bazaar::cli::run(bazaar::cli::Cli::parse()).await
}
