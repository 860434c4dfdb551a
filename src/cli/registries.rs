//! The mock national registries: `registries serve` and `registries sample`.

use clap::Subcommand;
use std::process::ExitCode;

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
    /// Serve the three registries, each on its own port, and the business
    /// registry (SOAP) beside them.
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
        #[arg(long, default_value_t = 7104)]
        business_port: u16,
        /// The national public-service portal's sync interface.
        #[arg(long, default_value_t = 7105)]
        portal_port: u16,
        /// The business registry's login (DangNhap): user name.
        #[arg(long, env = "LGSP_MOCK_BUSINESS_USER", default_value = "lgsp")]
        business_user: String,
        #[arg(
            long,
            env = "LGSP_MOCK_BUSINESS_PASSWORD",
            default_value = "business-dev-password",
            hide_default_value = true
        )]
        business_password: String,
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

pub(super) fn run(command: RegistriesCommand) -> anyhow::Result<ExitCode> {
    use crate::registries::{population::Population, MockConfig, MockRegistries, RegistryKind};
    match command {
        RegistriesCommand::Serve {
            population,
            host,
            population_port,
            civil_status_port,
            insurance_port,
            business_port,
            portal_port,
            business_user,
            business_password,
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
                business_port: Some(business_port),
                business: crate::registries::business::BusinessConfig {
                    username: business_user,
                    password: business_password,
                    ..Default::default()
                },
                portal_port: Some(portal_port),
                portal: Default::default(),
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
                println!("{:<13} {}/dkkd/ws (SOAP)", "business", mocks.business.url());
                println!("{:<13} {}/dvcqg/api (the national portal's sync)", "portal", mocks.portal.url());
                tokio::signal::ctrl_c().await?;
                mocks.stop().await;
                anyhow::Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        RegistriesCommand::Sample { population, per_kind, json } => {
            let pop = Population::generate(population.seed, population.citizens);
            let samples = pop.samples(per_kind);
            // Owners of an operating household business, for the business registry.
            let owners: Vec<String> = crate::registries::business::businesses(&pop)
                .iter()
                .filter(|b| !b.enterprise && b.status == 1 && pop.people[b.holder].is_alive())
                .take(per_kind)
                .map(|b| pop.people[b.holder].id.to_string())
                .collect();
            let mut value = serde_json::to_value(&samples)?;
            value["household_business_owner"] = serde_json::json!(owners);
            if json {
                // Linked dossiers to file, for the load-test scenario: a birth in each of per_kind families.
                let filings: Vec<serde_json::Value> =
                    (0..per_kind).filter_map(|i| crate::demo::birth_filing(&pop, i, "An")).collect();
                value["birth_filings"] = serde_json::json!(filings);
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                for (kind, ids) in value.as_object().into_iter().flatten() {
                    let ids: Vec<&str> = ids.as_array().into_iter().flatten().filter_map(|v| v.as_str()).collect();
                    println!("{:<25} {}", kind, ids.join(" "));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
