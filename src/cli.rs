//! The `lgsp` command line.

use crate::config::Settings;
use crate::db::Db;
use crate::startup::Application;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "lgsp", version, about = "Provincial data-integration and sharing platform")]
pub struct Cli {
    /// Configuration file (TOML); default: ./lgsp.toml if present.
    #[arg(long, global = true, env = "LGSP_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(cli.config.as_deref())?;
    crate::telemetry::init(&settings.log);
    match cli.command {
        Command::Serve => {
            actix_rt::System::new().block_on(async move {
                let app = Application::build(settings).await?;
                tracing::info!(port = app.port(), "lgsp gateway listening");
                app.run_until_stopped().await?;
                anyhow::Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            let db = Db::new(&settings.database_url, &settings.database)?;
            let applied =
                runtime()?.block_on(async move { tokio::task::spawn_blocking(move || db.migrate()).await? })?;
            if applied.is_empty() {
                println!(
                    "database is up to date ({})",
                    Db::new(&settings.database_url, &settings.database)?.backend.name()
                );
            } else {
                for m in applied {
                    println!("applied {m}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
