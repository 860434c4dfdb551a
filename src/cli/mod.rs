//! The `lgsp` command line: the commands and what they parse, one file per
//! command group; this file dispatches.

mod audit;
mod catalog;
mod change;
mod credentials;
mod demo;
mod partners;
mod reconcile;
mod registries;
mod server;
mod tokens;

use crate::catalog::manage::DocKind;
use crate::config::Settings;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

pub use audit::AuditCommand;
pub use catalog::{DocCommand, ElementsCommand};
pub use credentials::CredentialsCommand;
pub use demo::ReportCommand;
pub use partners::PartnersCommand;
pub use registries::{PopulationArgs, RegistriesCommand};
pub use server::ConfigCommand;
pub use tokens::TokensCommand;

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
    /// Copy the embedded SQLite database while lgsp runs on it, and verify
    /// the copy's audit chain (PostgreSQL: use pg_dump).
    Backup {
        /// The copy to write; it must not exist.
        #[arg(long)]
        out: PathBuf,
    },
    /// The mock national registries (population, civil status, insurance).
    Registries {
        #[command(subcommand)]
        command: RegistriesCommand,
    },
    /// Mock registries, the gateway on the configured database, a sample
    /// partner, and requests to paste.
    Demo {
        #[command(flatten)]
        population: PopulationArgs,
    },
    /// Register, version, list, disable and test adapters.
    Adapters {
        #[command(subcommand)]
        command: DocCommand,
    },
    /// Upstream credentials: set or rotate (sealed at rest), list, make a key.
    Credentials {
        #[command(subcommand)]
        command: CredentialsCommand,
    },
    /// Register, version, list and show canonical data elements.
    Elements {
        #[command(subcommand)]
        command: ElementsCommand,
    },
    /// Register, version, list and disable forms.
    Forms {
        #[command(subcommand)]
        command: DocCommand,
    },
    /// Register, version, list and disable flows (linked procedures).
    Flows {
        #[command(subcommand)]
        command: DocCommand,
    },
    /// Partner agencies and their API keys.
    Partners {
        #[command(subcommand)]
        command: PartnersCommand,
    },
    /// Admin tokens for stewards and auditors.
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// Reports.
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
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
    if let Command::Registries { command } = cli.command {
        crate::telemetry::init(&Default::default());
        return registries::run(command);
    }
    let mut settings = Settings::load(cli.config.as_deref())?;
    if matches!(cli.command, Command::Report { .. }) {
        // The report's own table is the output; the gateway inside it stays quiet.
        settings.log.level = "warn".into();
    }
    crate::telemetry::init(&settings.log);
    let unknown_env = Settings::unknown_env();
    if !matches!(cli.command, Command::Config { .. }) {
        for warning in &unknown_env {
            tracing::warn!("{warning}");
        }
    }
    match cli.command {
        Command::Serve => server::serve(settings),
        Command::Backup { out } => server::backup(settings, out),
        Command::Migrate => server::migrate(settings),
        Command::Config { command: ConfigCommand::Check } => server::check(settings, &unknown_env),
        Command::Registries { .. } => unreachable!("handled above"),
        Command::Demo { population } => demo::demo(settings, population),
        Command::Report { command: ReportCommand::Forms { population, per_kind } } => {
            demo::report_forms(settings, population, per_kind)
        }
        Command::Report { command: ReportCommand::Reconcile { from, to, resend, json, wait_secs } } => {
            reconcile::run(settings, from, to, resend, json, std::time::Duration::from_secs(wait_secs))
        }
        Command::Adapters { command } => catalog::documents(settings, DocKind::Adapter, command),
        Command::Forms { command } => catalog::documents(settings, DocKind::Form, command),
        Command::Flows { command } => catalog::documents(settings, DocKind::Flow, command),
        Command::Elements { command } => catalog::documents(settings, DocKind::Element, command.into()),
        Command::Partners { command } => partners::run(settings, command),
        Command::Credentials { command } => credentials::run(settings, command),
        Command::Tokens { command } => tokens::run(settings, command),
        Command::Audit { command } => audit::run(settings, command),
    }
}

/// Says where `what` (a chain, an export) breaks and why; exit code 2.
fn broken(what: &str, at: Option<i64>, reason: Option<String>) -> ExitCode {
    println!("{what} BROKEN at record {}: {}", at.unwrap_or_default(), reason.unwrap_or_default());
    ExitCode::from(2)
}
