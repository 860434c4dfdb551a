//! The `lgsp` command line.

use crate::catalog::manage::{DocKind, PartnerInput};
use crate::catalog::LiveCatalog;
use crate::config::{Secret, Settings};
use crate::db::Db;
use crate::domain::partner::Role;
use crate::startup::Application;
use anyhow::Context;
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
    /// Register, version, list and disable forms.
    Forms {
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

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Check the configuration (file and environment), its TLS files and
    /// Redis settings, without starting anything; exits non-zero and names
    /// every problem if it would not start.
    Check,
}

#[derive(Subcommand)]
pub enum DocCommand {
    /// Validate a JSON document and register it (version 1).
    Register { file: PathBuf },
    /// Validate a JSON document and publish it as a new version.
    Update { file: PathBuf },
    /// List with versions and state.
    List,
    /// Take one out of service.
    Disable { id: String },
    /// Put one back into service.
    Enable { id: String },
    /// Print a stored version as JSON (the current one without --version),
    /// to edit and publish with `update`, or to register elsewhere.
    Show {
        id: String,
        #[arg(long)]
        version: Option<i32>,
    },
    /// Every stored version: when, by whom, and which is current.
    Versions { id: String },
    /// Make an earlier version current again (it must still validate).
    Rollback { id: String, version: i32 },
    /// Adapters only: call every operation with a sample citizen (dry run).
    Test {
        id: String,
        #[arg(long)]
        citizen_id: String,
    },
}

#[derive(Subcommand)]
pub enum PartnersCommand {
    /// Register a partner from a JSON file (id, name, kind, policy, rate_per_minute, burst).
    Create { file: PathBuf },
    /// List partners: kind, rate limit, state and name.
    List,
    /// Print a partner as JSON, its policy included.
    Show { partner: String },
    /// Change a partner from a JSON file of the fields to change (name, kind,
    /// policy, rate_per_minute, burst, enabled); the others stay.
    Update { partner: String, file: PathBuf },
    /// Make a new API key (printed once).
    Key {
        partner: String,
        #[arg(long, default_value = "")]
        label: String,
        /// RFC 3339 time after which the key is refused, such as
        /// 2027-06-30T00:00:00+07:00; without it the key does not expire.
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// A partner's API keys: state, expiry and last use (never the secrets).
    Keys { partner: String },
    /// Revoke an API key.
    Revoke { partner: String, key_id: String },
    /// Replace an API key with a new one (printed once).
    Rotate {
        partner: String,
        key_id: String,
        /// Seconds the old key stays valid beside the new one (at most 30
        /// days); 0 revokes it at once.
        #[arg(long, default_value_t = 0)]
        grace_seconds: u64,
        /// RFC 3339 time after which the new key is refused.
        #[arg(long)]
        expires_at: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum TokensCommand {
    /// Make an admin token (printed once).
    Create {
        /// steward or auditor.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        #[arg(long, default_value = "")]
        label: String,
        /// When the token stops working (RFC 3339, e.g. 2027-06-30T00:00:00+07:00).
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// List admin tokens (never their secrets).
    List,
    /// Revoke an admin token on every node.
    Revoke { id: String },
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| format!("`{s}` is not a role; use steward or auditor"))
}

#[derive(Subcommand)]
pub enum ReportCommand {
    /// Every form's ceiling and measured cut of declared data over a sample of
    /// the mock population; exits non-zero if any form is below 20%.
    Forms {
        #[command(flatten)]
        population: PopulationArgs,
        /// Citizens of each kind to prefill for.
        #[arg(long, default_value_t = 5)]
        per_kind: usize,
    },
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain (in the database, or in an export with --file);
    /// names the first broken record.
    Verify {
        /// A head printed by an earlier run, SEQ:HASH, kept outside the database;
        /// repeatable. Catches a rewrite that recomputed every hash.
        #[arg(long = "anchor")]
        anchors: Vec<String>,
        /// Check this export (from `lgsp audit export`) instead of the
        /// database, which is not needed.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Write records with their hashes as JSON lines, from one snapshot, for
    /// an archive or an outside auditor; `lgsp audit verify --file` checks
    /// the file without the database.
    Export {
        /// First record (seq); default 1.
        #[arg(long, default_value_t = 1)]
        from: i64,
        /// Last record (seq); default the last stored.
        #[arg(long)]
        to: Option<i64>,
        /// File to write; default standard output.
        #[arg(long)]
        out: Option<PathBuf>,
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
        Command::Serve => {
            actix_rt::System::new().block_on(async move {
                let app = Application::build(settings).await?;
                tracing::info!(port = app.port(), "lgsp gateway listening");
                app.run_until_stopped().await?;
                anyhow::Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Backup { out } => {
            let url = crate::db::DatabaseUrl::parse(settings.database_url.expose()).map_err(anyhow::Error::msg)?;
            if let Some(file) = url.sqlite_file() {
                // Opening a missing file would create an empty database.
                anyhow::ensure!(std::path::Path::new(file).is_file(), "there is no SQLite database at {file}");
            }
            let db = Db::new(&settings.database_url, &settings.database)?;
            crate::db::backup_sqlite(&mut *db.conn()?, &out)?;
            let copy = Db::new(&Secret::new(format!("sqlite://{}", out.display())), &settings.database)?;
            let v = crate::audit::verify(&mut *copy.conn()?)?;
            println!("backup written to {}", out.display());
            if v.is_intact() {
                println!("its audit chain is intact: {} records, head {}:{}", v.records, v.head_seq, v.head_hash);
                Ok(ExitCode::SUCCESS)
            } else {
                Ok(broken("its audit chain", v.broken_at, v.reason))
            }
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
        Command::Demo { population } => demo(settings, population),
        Command::Adapters { command } => documents(settings, DocKind::Adapter, command),
        Command::Forms { command } => documents(settings, DocKind::Form, command),
        Command::Partners { command } => partners(settings, command),
        Command::Tokens { command } => tokens(settings, command),
        Command::Report { command: ReportCommand::Forms { population, per_kind } } => {
            report_forms(settings, population, per_kind)
        }
        Command::Config { command: ConfigCommand::Check } => {
            crate::tls::from_settings(&settings.tls)?;
            crate::ratelimit::check_settings(&settings.rate_limits).map_err(anyhow::Error::msg)?;
            let db = crate::db::DatabaseUrl::parse(settings.database_url.expose()).map_err(anyhow::Error::msg)?;
            let scheme = if settings.tls.cert_path.is_some() { "https" } else { "http" };
            println!("configuration is valid");
            println!("  listens on  {scheme}://{}:{}", settings.host, settings.port);
            println!("  database    {}", db.backend.name());
            let upstreams: Vec<&str> = settings.upstreams.keys().map(String::as_str).collect();
            let upstreams = if upstreams.is_empty() {
                "none: adapters call their manifests' base_url without a token".to_string()
            } else {
                upstreams.join(", ")
            };
            println!("  upstreams   {upstreams}");
            println!("  rate limits {}", format!("{:?}", settings.rate_limits.backend).to_lowercase());
            let nets = |n: &[ipnet::IpNet]| match n {
                [] => "any address".to_string(),
                n => n.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
            };
            println!("  admin API   {}", nets(&settings.admin_networks));
            if !settings.trusted_proxies.is_empty() {
                println!("  proxies     {} (their X-Forwarded-For is believed)", nets(&settings.trusted_proxies));
            }
            for warning in &unknown_env {
                println!("warning: {warning}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit { command: AuditCommand::Export { from, to, out } } => {
            anyhow::ensure!(
                from >= 1 && to.is_none_or(|to| to >= from),
                "--from is 1 or more, and --to is not below it"
            );
            let db = Db::new(&settings.database_url, &settings.database)?;
            let mut sink: Box<dyn std::io::Write> = match &out {
                Some(path) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout())),
            };
            db.migrate()?;
            let n = crate::audit::export(&mut *db.conn()?, from, to, &mut sink)?;
            eprintln!("exported {n} audit records");
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit { command: AuditCommand::Verify { anchors, file: Some(file) } } => {
            let anchors = crate::audit::parse_anchors(&anchors.join(",")).map_err(anyhow::Error::msg)?;
            let reader = std::io::BufReader::new(
                std::fs::File::open(&file).with_context(|| format!("cannot open {}", file.display()))?,
            );
            let v = crate::audit::verify_export(reader, &anchors).map_err(anyhow::Error::msg)?;
            if !v.is_intact() {
                return Ok(broken("export", v.broken_at, v.reason));
            }
            if v.records == 0 {
                println!("export holds no records");
                return Ok(ExitCode::SUCCESS);
            }
            println!("export intact: records {} to {} ({} records)", v.first_seq, v.last_seq, v.records);
            if v.first_seq == 1 {
                println!("it starts at the beginning of the trail");
            } else if anchors.contains_key(&(v.first_seq - 1)) {
                println!("its first record links to the anchored record {}", v.first_seq - 1);
            } else {
                println!(
                    "its first record links to {}:{} (pass that record's anchor with --anchor to confirm it)",
                    v.first_seq - 1,
                    v.links_to
                );
            }
            println!("anchor of its last record: {}:{}", v.last_seq, v.last_hash);
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit { command: AuditCommand::Verify { anchors, file: None } } => {
            let anchors = crate::audit::parse_anchors(&anchors.join(",")).map_err(anyhow::Error::msg)?;
            let db = Db::new(&settings.database_url, &settings.database)?;
            let v = runtime()?.block_on(async move {
                let d = db.clone();
                tokio::task::spawn_blocking(move || d.migrate()).await??;
                anyhow::Ok(db.run(move |c| crate::audit::verify_anchored(c, &anchors)).await?)
            })?;
            if v.is_intact() {
                println!("audit chain intact: {} records", v.records);
                if v.head_seq > 0 {
                    println!("anchor to keep outside the database: {}:{}", v.head_seq, v.head_hash);
                }
                Ok(ExitCode::SUCCESS)
            } else {
                Ok(broken("audit chain", v.broken_at, v.reason))
            }
        }
    }
}

/// Says where `what` (a chain, an export) breaks and why; exit code 2.
fn broken(what: &str, at: Option<i64>, reason: Option<String>) -> ExitCode {
    println!("{what} BROKEN at record {}: {}", at.unwrap_or_default(), reason.unwrap_or_default());
    ExitCode::from(2)
}

/// A catalogue on the configured database, migrated and loaded.
async fn open_catalog(settings: Settings) -> anyhow::Result<std::sync::Arc<LiveCatalog>> {
    let settings = std::sync::Arc::new(settings);
    let db = Db::new(&settings.database_url, &settings.database)?;
    let catalog = std::sync::Arc::new(LiveCatalog::new(settings.clone(), db.clone()));
    crate::startup::prepare(&db, &settings, &catalog).await?;
    Ok(catalog)
}

/// A command that changes what lgsp serves or who may call it, with what it
/// read: such commands are recorded in the audit trail as the admin API's are.
struct CliChange {
    /// The file the command reads and its bytes, read once: what is recorded
    /// is what the command acted on, even if the file changes meanwhile.
    file: Option<(PathBuf, Vec<u8>)>,
    subject: Option<String>,
}

impl CliChange {
    fn file(file: &std::path::Path) -> Option<CliChange> {
        // A file that cannot be read is reported by `read_json`, which reads
        // it again for its error.
        let read = std::fs::read(file).ok().map(|bytes| (file.to_path_buf(), bytes));
        Some(CliChange { file: read, subject: None })
    }
    fn plain() -> Option<CliChange> {
        Some(CliChange { file: None, subject: None })
    }
    fn of_document(c: &DocCommand) -> Option<CliChange> {
        match c {
            DocCommand::Register { file } | DocCommand::Update { file } => CliChange::file(file),
            DocCommand::Disable { .. } | DocCommand::Enable { .. } | DocCommand::Rollback { .. } => CliChange::plain(),
            // A dry run reads a citizen's record.
            DocCommand::Test { citizen_id, .. } => Some(CliChange { file: None, subject: Some(citizen_id.clone()) }),
            DocCommand::List | DocCommand::Show { .. } | DocCommand::Versions { .. } => None,
        }
    }
    fn of_partner(c: &PartnersCommand) -> Option<CliChange> {
        match c {
            PartnersCommand::Create { file } | PartnersCommand::Update { file, .. } => CliChange::file(file),
            PartnersCommand::Key { .. } | PartnersCommand::Revoke { .. } | PartnersCommand::Rotate { .. } => {
                CliChange::plain()
            }
            PartnersCommand::List | PartnersCommand::Show { .. } | PartnersCommand::Keys { .. } => None,
        }
    }
    fn of_token(c: &TokensCommand) -> Option<CliChange> {
        match c {
            TokensCommand::Create { .. } | TokensCommand::Revoke { .. } => CliChange::plain(),
            TokensCommand::List => None,
        }
    }
}

/// Appends the record of a command-line change to the audit trail (action
/// `admin`, key `cli`): the command as typed from its noun on, the operating
/// system's user, the JSON file it read when at most 16 KB, and the outcome.
async fn record_cli_change(catalog: &LiveCatalog, noun: &str, change: CliChange, result: &anyhow::Result<ExitCode>) {
    let args: Vec<String> = std::env::args().skip_while(|a| a != noun).collect();
    let user = ["SUDO_USER", "USER", "LOGNAME"].iter().find_map(|v| std::env::var(v).ok()).unwrap_or_default();
    let mut record = crate::audit::AuditRecord::change(
        "cli",
        args.iter().take(3).cloned().collect::<Vec<_>>().join(" "),
        serde_json::json!({"command": format!("lgsp {}", args.join(" ")), "user": user}),
    );
    if let Some((_, bytes)) = &change.file {
        record.note_sent(bytes);
    }
    if change.subject.is_some() {
        record.subject = change.subject;
    }
    if let Err(e) = result {
        record.outcome = "refused".into();
        record.detail["reason"] = serde_json::json!(e.to_string());
    }
    if let Err(e) = catalog.db.run(move |c| crate::audit::append(c, vec![record])).await {
        eprintln!("warning: this change is not in the audit trail: {e}");
    }
}

fn api(e: crate::error::ApiError) -> anyhow::Error {
    let mut msg = e.detail.clone();
    for f in &e.errors {
        msg.push_str(&format!("\n  {}: {}", if f.pointer.is_empty() { "/" } else { &f.pointer }, f.message));
    }
    anyhow::anyhow!(msg)
}

/// The JSON document a command reads: the bytes its change record holds when
/// it has them, so that the command acts on what is recorded.
fn read_json(path: &std::path::Path, change: Option<&CliChange>) -> anyhow::Result<serde_json::Value> {
    let held = change.and_then(|c| c.file.as_ref()).filter(|(f, _)| f == path).map(|(_, b)| b.as_slice());
    let read;
    let bytes = match held {
        Some(b) => b,
        None => {
            read = std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            &read
        }
    };
    serde_json::from_slice(bytes).map_err(|e| anyhow::anyhow!("{}: not JSON: {e}", path.display()))
}

fn documents(settings: Settings, kind: DocKind, command: DocCommand) -> anyhow::Result<ExitCode> {
    use crate::catalog::store::Publish;
    runtime()?.block_on(async move {
        let catalog = open_catalog(settings).await?;
        let change = CliChange::of_document(&command);
        let result: anyhow::Result<ExitCode> = async {
            match command {
                DocCommand::Register { file } => {
                    let (id, v) = catalog
                        .publish(kind, read_json(&file, change.as_ref())?, None, "cli", Publish::Create)
                        .await
                        .map_err(api)?;
                    println!("registered {} {id} version {v}", kind.noun());
                }
                DocCommand::Update { file } => {
                    let (id, v) = catalog
                        .publish(kind, read_json(&file, change.as_ref())?, None, "cli", Publish::NewVersion)
                        .await
                        .map_err(api)?;
                    println!("published {} {id} version {v}", kind.noun());
                }
                DocCommand::List => {
                    let c = catalog.get();
                    match kind {
                        DocKind::Adapter => {
                            for a in c.adapters.values() {
                                let ops: Vec<&str> = a.adapter.operations.keys().map(String::as_str).collect();
                                println!(
                                    "{:<16} v{:<3} {:<9} {:<40} {}",
                                    a.adapter.id,
                                    a.adapter.version,
                                    if a.enabled { "enabled" } else { "disabled" },
                                    a.adapter.upstream.base_url,
                                    ops.join(",")
                                );
                            }
                        }
                        DocKind::Form => {
                            for f in c.forms.values() {
                                let (b, t) = f.form.ceiling();
                                println!(
                                    "{:<28} v{:<3} {:<9} {:>2}/{:<2} fields bound  {}",
                                    f.form.id(),
                                    f.form.version,
                                    if f.enabled { "enabled" } else { "disabled" },
                                    b,
                                    t,
                                    f.form.doc.title
                                );
                            }
                        }
                    }
                    for (id, why) in &c.broken {
                        println!("{id}: stored but does not compile: {why}");
                    }
                }
                DocCommand::Show { id, version } => {
                    let (_, doc) = catalog.document(kind, &id, version).await.map_err(api)?;
                    println!("{}", serde_json::to_string_pretty(&doc)?);
                }
                DocCommand::Versions { id } => {
                    println!("{:<8} {:<28} {:<24} current", "version", "published at", "by");
                    for v in catalog.versions(kind, &id).await.map_err(api)? {
                        let current = if v.current { "yes" } else { "" };
                        println!("{:<8} {:<28} {:<24} {current}", v.version, v.created_at, v.created_by);
                    }
                }
                DocCommand::Rollback { id, version } => {
                    catalog.rollback(kind, &id, version).await.map_err(api)?;
                    println!("{} {id} is at version {version} again", kind.noun());
                }
                DocCommand::Disable { id } => {
                    catalog.set_enabled(kind, &id, false).await.map_err(api)?;
                    println!("disabled {} {id}", kind.noun());
                }
                DocCommand::Enable { id } => {
                    catalog.set_enabled(kind, &id, true).await.map_err(api)?;
                    println!("enabled {} {id}", kind.noun());
                }
                DocCommand::Test { id, citizen_id } => {
                    anyhow::ensure!(kind == DocKind::Adapter, "only adapters can be tested against a registry");
                    let c = catalog.get();
                    let a = c.adapters.get(&id).ok_or_else(|| anyhow::anyhow!("no adapter {id}"))?;
                    let http = reqwest::Client::new();
                    let metrics = crate::telemetry::Metrics::new();
                    let results =
                        a.adapter.dry_run(&serde_json::json!({"citizen_id": citizen_id}), &[], &http, &metrics).await;
                    println!("{}", serde_json::to_string_pretty(&results)?);
                    if !results.iter().all(|r| r.ok) {
                        return Ok(ExitCode::from(1));
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        .await;
        if let Some(change) = change {
            record_cli_change(&catalog, kind.noun_plural(), change, &result).await;
        }
        result
    })
}

fn partners(settings: Settings, command: PartnersCommand) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async move {
        let catalog = open_catalog(settings).await?;
        let change = CliChange::of_partner(&command);
        let result: anyhow::Result<ExitCode> = async {
            match command {
                PartnersCommand::Create { file } => {
                    let input: PartnerInput = serde_json::from_value(read_json(&file, change.as_ref())?)?;
                    let id = input.id.clone();
                    catalog.create_partner(input).await.map_err(api)?;
                    println!("registered partner {id}; make it a key with: lgsp partners key {id}");
                }
                PartnersCommand::Show { partner } => {
                    let c = catalog.get();
                    let p = c.partners.get(&partner).ok_or_else(|| anyhow::anyhow!("No partner {partner}."))?;
                    println!("{}", serde_json::to_string_pretty(&**p)?);
                }
                PartnersCommand::Update { partner, file } => {
                    let patch: crate::catalog::manage::PartnerPatch =
                        serde_json::from_value(read_json(&file, change.as_ref())?)
                            .map_err(|e| anyhow::anyhow!("{}: not a change to a partner: {e}", file.display()))?;
                    catalog.update_partner(&partner, patch).await.map_err(api)?;
                    println!("updated partner {partner}");
                }
                PartnersCommand::List => {
                    let c = catalog.get();
                    let mut list: Vec<_> = c.partners.values().collect();
                    list.sort_by(|a, b| a.id.cmp(&b.id));
                    for p in list {
                        println!(
                            "{:<15} {:<17} {:>7}/min burst {:<6} {:<9} {}",
                            p.id,
                            p.kind.as_str(),
                            p.rate_per_minute,
                            p.burst,
                            if p.enabled { "enabled" } else { "disabled" },
                            p.name
                        );
                    }
                }
                PartnersCommand::Key { partner, label, expires_at } => {
                    let expires_at =
                        expires_at.as_deref().map(crate::catalog::manage::parse_expiry).transpose().map_err(api)?;
                    let k = catalog.create_key(&partner, &label, expires_at).await.map_err(api)?;
                    println!("key id {}\napi key {}\n(shown once: lgsp keeps only its hash)", k.id, k.key);
                    if let Some(at) = k.expires_at {
                        println!("expires at {at}");
                    }
                }
                PartnersCommand::Keys { partner } => {
                    let keys = catalog.keys(&partner).await.map_err(api)?;
                    println!("{:<22} {:<8} {:<28} {:<28} label", "key id", "state", "expires at", "last used at");
                    for k in keys {
                        let (expires, used) =
                            (k.expires_at.unwrap_or("-".into()), k.last_used_at.unwrap_or("-".into()));
                        println!("{:<22} {:<8} {expires:<28} {used:<28} {}", k.id, k.state, k.label);
                    }
                }
                PartnersCommand::Revoke { partner, key_id } => {
                    catalog.revoke_key(&partner, &key_id).await.map_err(api)?;
                    println!("revoked {key_id}");
                }
                PartnersCommand::Rotate { partner, key_id, grace_seconds, expires_at } => {
                    let expires_at =
                        expires_at.as_deref().map(crate::catalog::manage::parse_expiry).transpose().map_err(api)?;
                    let grace = std::time::Duration::from_secs(grace_seconds);
                    let k = catalog.rotate_key(&partner, &key_id, grace, expires_at).await.map_err(api)?;
                    println!("key id {}\napi key {}\n(shown once: lgsp keeps only its hash)", k.id, k.key);
                    match grace_seconds {
                        0 => println!("revoked {key_id}"),
                        s => println!("{key_id} stays valid for {s} more seconds"),
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        .await;
        if let Some(change) = change {
            record_cli_change(&catalog, "partners", change, &result).await;
        }
        result
    })
}

fn tokens(settings: Settings, command: TokensCommand) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async move {
        let catalog = open_catalog(settings).await?;
        let change = CliChange::of_token(&command);
        let result: anyhow::Result<ExitCode> = async {
            match command {
                TokensCommand::Create { role, label, expires_at } => {
                    let expires_at =
                        expires_at.as_deref().map(crate::catalog::manage::parse_expiry).transpose().map_err(api)?;
                    let t = catalog.create_admin_token(role, &label, expires_at).await.map_err(api)?;
                    println!("token id {}\nadmin token {}\n(shown once: lgsp keeps only its hash)", t.id, t.token);
                    if let Some(at) = t.expires_at {
                        println!("expires at {at}");
                    }
                }
                TokensCommand::List => {
                    println!(
                        "{:<18} {:<8} {:<8} {:<28} {:<28} {:<28} label",
                        "token id", "role", "state", "expires at", "revoked at", "last used at"
                    );
                    for t in catalog.admin_tokens().await.map_err(api)? {
                        let time = |at: Option<String>| at.unwrap_or("-".into());
                        let (expires, revoked, used) = (time(t.expires_at), time(t.revoked_at), time(t.last_used_at));
                        println!(
                            "{:<18} {:<8} {:<8} {expires:<28} {revoked:<28} {used:<28} {}",
                            t.id, t.role, t.state, t.label
                        );
                    }
                }
                TokensCommand::Revoke { id } => {
                    catalog.revoke_admin_token(&id).await.map_err(api)?;
                    println!("revoked {id}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        .await;
        if let Some(change) = change {
            record_cli_change(&catalog, "tokens", change, &result).await;
        }
        result
    })
}

/// Mock registries on free ports and a gateway on a throw-away database.
async fn gateway_with_mocks(
    mut settings: Settings,
    population: &PopulationArgs,
    mock_ports: [u16; 3],
) -> anyhow::Result<(crate::registries::MockRegistries, Application)> {
    use crate::registries::{MockConfig, MockRegistries};
    let config =
        MockConfig { seed: population.seed, citizens: population.citizens, ports: mock_ports, ..Default::default() };
    let mocks = MockRegistries::start(&config)?;
    crate::demo::use_mocks(&mut settings, &mocks, &config.tokens);
    let app = Application::build(settings).await?;
    Ok((mocks, app))
}

fn report_forms(mut settings: Settings, population: PopulationArgs, per_kind: usize) -> anyhow::Result<ExitCode> {
    let path = std::env::temp_dir().join(format!("lgsp-report-{}.db", crate::telemetry::new_uuid().simple()));
    settings.database_url = crate::config::Secret::new(format!("sqlite://{}", path.display()));
    settings.port = 0;
    let code = actix_rt::System::new().block_on(async move {
        let (mocks, app) = gateway_with_mocks(settings, &population, [0, 0, 0]).await?;
        let state = app.state();
        let base = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until_stopped());
        let key = crate::demo::demo_partner(&state).await?;
        let samples = mocks.population.samples(per_kind);
        let rows = crate::demo::report(&state, &base, &key.key, &samples).await?;
        crate::demo::print_report(&rows);
        mocks.stop().await;
        anyhow::Ok(if rows.iter().all(|r| r.meets_target()) { ExitCode::SUCCESS } else { ExitCode::from(1) })
    });
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    code
}

fn demo(settings: Settings, population: PopulationArgs) -> anyhow::Result<ExitCode> {
    actix_rt::System::new().block_on(async move {
        let steward = crate::domain::partner::new_secret(crate::domain::partner::ADMIN_TOKEN_PREFIX);
        let auditor = crate::domain::partner::new_secret(crate::domain::partner::ADMIN_TOKEN_PREFIX);
        let mut settings = settings;
        settings.bootstrap_admin_tokens.push(crate::config::Secret::new(format!("steward:{steward}")));
        settings.bootstrap_admin_tokens.push(crate::config::Secret::new(format!("auditor:{auditor}")));
        let started = std::time::Instant::now();
        let (mocks, app) = gateway_with_mocks(settings, &population, [7101, 7102, 7103]).await?;
        let state = app.state();
        let base = format!("http://127.0.0.1:{}", app.port());
        let key = crate::demo::demo_partner(&state).await?;
        let s = mocks.population.samples(1);
        let first = |v: &[String]| v.first().cloned().unwrap_or_default();
        println!("lgsp demo is up in {:.1} s\n", started.elapsed().as_secs_f64());
        println!("  gateway          {base}   (API docs: {base}/docs)");
        for kind in crate::registries::RegistryKind::ALL {
            println!("  mock {:<12} {}", kind.name(), mocks.url(kind));
        }
        println!("  partner          {} (the provincial portal), key id {}", crate::demo::DEMO_PARTNER, key.id);
        println!("\nexport LGSP_KEY={}", key.key);
        println!("export LGSP_STEWARD={steward}\nexport LGSP_AUDITOR={auditor}\n");
        let prefill = |form: &str, purpose: &str, id: &str, who: &str| {
            println!("# {who}");
            println!(
                "curl -s {base}/v1/prefill -H \"Authorization: Bearer $LGSP_KEY\" -H 'Content-Type: application/json' \\\n  -d '{{\"form\":\"{form}\",\"citizen_id\":\"{id}\",\"purpose\":\"{purpose}\"}}'\n"
            );
        };
        prefill("ct01", "residence_change", &first(&s.adult_with_household), "CT01 for an adult with a household");
        prefill("ct01", "residence_change", &first(&s.legacy_address), "CT01 for a citizen whose address is on a merged ward");
        prefill("birth_registration", "birth_registration", &first(&s.parent_of_newborn), "Birth registration by a parent of a newborn");
        prefill("tk1_ts", "health_insurance_enrolment", &first(&s.child_under_6), "TK1-TS for a child under 6");
        prefill("marital_status_certificate", "marital_status_certificate", &first(&s.married), "Marital status of a married citizen");
        prefill("death_registration", "death_registration", &first(&s.deceased), "Death registration");
        let adult = first(&s.adult_with_household);
        println!("# One registry operation, with its purpose");
        println!("curl -s {base}/v1/exchange/population/citizen -H \"Authorization: Bearer $LGSP_KEY\" -H 'X-Purpose: residence_change' \\\n  -H 'Content-Type: application/json' -d '{{\"citizen_id\":\"{adult}\"}}'\n");
        println!("# Forms and their cut of declared data\ncurl -s {base}/v1/forms -H \"Authorization: Bearer $LGSP_KEY\"\ncurl -s {base}/v1/forms/ct01/coverage -H \"Authorization: Bearer $LGSP_KEY\"\n");
        println!("# Who accessed this citizen's data\ncurl -s {base}/v1/subjects/{adult}/access-log -H \"Authorization: Bearer $LGSP_KEY\"\n");
        println!("# The audit trail and its chain (auditor)\ncurl -s '{base}/admin/v1/audit?limit=5' -H \"Authorization: Bearer $LGSP_AUDITOR\"\ncurl -s {base}/admin/v1/audit/verify -H \"Authorization: Bearer $LGSP_AUDITOR\"\n");
        println!("# Take a registry down and prefill again (the others still answer)\ncurl -s -X PUT {}/__faults -H 'X-BHXH-Token: {}' -H 'Content-Type: application/json' -d '{{\"error_rate\":1.0}}'\n", mocks.url(crate::registries::RegistryKind::Insurance), crate::registries::default_tokens()[2]);
        println!("Ctrl-C stops everything.");
        app.run_until_stopped().await?;
        mocks.stop().await;
        anyhow::Ok(ExitCode::SUCCESS)
    })
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
