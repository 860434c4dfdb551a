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
    /// The mock national registries (population, civil status, insurance).
    Registries {
        #[command(subcommand)]
        command: RegistriesCommand,
    },
}

#[derive(clap::Args, Clone)]
pub struct PopulationArgs {
    /// Number of synthetic citizens.
    #[arg(long, default_value_t = 10_000, env = "LGSP_MOCK_CITIZENS")]
    pub citizens: usize,
    /// Seed: the same seed always yields the same population.
    #[arg(long, default_value_t = 2025, env = "LGSP_MOCK_SEED")]
    pub seed: u64,
}

#[derive(Subcommand)]
pub enum RegistriesCommand {
    /// Serve the three registries, each on its own port.
    Serve {
        #[command(flatten)]
        population: PopulationArgs,
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        #[arg(long, default_value_t = 7101)]
        population_port: u16,
        #[arg(long, default_value_t = 7102)]
        civil_status_port: u16,
        #[arg(long, default_value_t = 7103)]
        insurance_port: u16,
        /// Worker threads per registry.
        #[arg(long, default_value_t = 1)]
        workers: usize,
        #[arg(
            long,
            env = "LGSP_MOCK_POPULATION_TOKEN",
            default_value = "population-dev-token",
            hide_default_value = true
        )]
        population_token: String,
        #[arg(
            long,
            env = "LGSP_MOCK_CIVIL_STATUS_TOKEN",
            default_value = "civil-status-dev-token",
            hide_default_value = true
        )]
        civil_status_token: String,
        #[arg(
            long,
            env = "LGSP_MOCK_INSURANCE_TOKEN",
            default_value = "insurance-dev-token",
            hide_default_value = true
        )]
        insurance_token: String,
    },
    /// Print citizen IDs of each kind to try (adult with household, child under 6, ...).
    Sample {
        #[command(flatten)]
        population: PopulationArgs,
        /// IDs per kind.
        #[arg(long, default_value_t = 3)]
        per_kind: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
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
        return registries(command);
    }
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
            let backend = db.backend.name();
            let applied =
                runtime()?.block_on(async move { tokio::task::spawn_blocking(move || db.migrate()).await? })?;
            if applied.is_empty() {
                println!("database is up to date ({backend})");
            } else {
                for m in applied {
                    println!("applied {m}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Registries { .. } => unreachable!("handled above"),
    }
}

fn registries(command: RegistriesCommand) -> anyhow::Result<ExitCode> {
    use crate::registries::{population::Population, MockConfig, MockRegistries, RegistryKind};
    match command {
        RegistriesCommand::Serve {
            population,
            host,
            population_port,
            civil_status_port,
            insurance_port,
            workers,
            population_token,
            civil_status_token,
            insurance_token,
        } => {
            let config = MockConfig {
                host,
                seed: population.seed,
                citizens: population.citizens,
                ports: [population_port, civil_status_port, insurance_port],
                tokens: [population_token, civil_status_token, insurance_token],
                workers,
            };
            actix_rt::System::new().block_on(async move {
                let started = std::time::Instant::now();
                let mocks = MockRegistries::start(&config)?;
                tracing::info!(
                    citizens = mocks.population.people.len(),
                    households = mocks.population.households.len(),
                    seconds = started.elapsed().as_secs_f64(),
                    "population generated"
                );
                for kind in RegistryKind::ALL {
                    println!("{:<13} {}", kind.name(), mocks.url(kind));
                }
                tokio::signal::ctrl_c().await?;
                mocks.stop().await;
                anyhow::Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        RegistriesCommand::Sample { population, per_kind, json } => {
            let pop = Population::generate(population.seed, population.citizens);
            let samples = pop.samples(per_kind);
            if json {
                println!("{}", serde_json::to_string_pretty(&samples)?);
            } else {
                let value = serde_json::to_value(&samples)?;
                for (kind, ids) in value.as_object().into_iter().flatten() {
                    let ids: Vec<&str> = ids.as_array().into_iter().flatten().filter_map(|v| v.as_str()).collect();
                    println!("{:<22} {}", kind, ids.join(" "));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
