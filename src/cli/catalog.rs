//! Adapters, forms, elements and flows: `adapters …`, `forms …`, `elements …`, `flows …`.

use crate::catalog::manage::DocKind;
use crate::config::Settings;
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

use super::change::{api, open_catalog, read_json, record_cli_change, CliChange};
use super::runtime;

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

/// Data elements: versioned like adapters and forms, never disabled (the
/// adapters and forms that name them would break).
#[derive(Subcommand)]
pub enum ElementsCommand {
    /// Validate an element (JSON: id, label_en, label_vi, class, schema) and register it.
    Register { file: PathBuf },
    /// Publish a new version of an element; refused if a stored adapter or form would break.
    Update { file: PathBuf },
    /// List every element: version, class, labels.
    List,
    /// Print a stored version as JSON (the current one without --version).
    Show {
        id: String,
        #[arg(long)]
        version: Option<i32>,
    },
    /// Every stored version: when, by whom, and which is current.
    Versions { id: String },
    /// Make an earlier version current again (it must still validate).
    Rollback { id: String, version: i32 },
}

impl From<ElementsCommand> for DocCommand {
    fn from(c: ElementsCommand) -> DocCommand {
        match c {
            ElementsCommand::Register { file } => DocCommand::Register { file },
            ElementsCommand::Update { file } => DocCommand::Update { file },
            ElementsCommand::List => DocCommand::List,
            ElementsCommand::Show { id, version } => DocCommand::Show { id, version },
            ElementsCommand::Versions { id } => DocCommand::Versions { id },
            ElementsCommand::Rollback { id, version } => DocCommand::Rollback { id, version },
        }
    }
}

pub(super) fn documents(settings: Settings, kind: DocKind, command: DocCommand) -> anyhow::Result<ExitCode> {
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
                        DocKind::Flow => {
                            for f in c.flows.values() {
                                let steps: Vec<&str> = f.flow.steps.iter().map(|s| s.doc.id.as_str()).collect();
                                println!(
                                    "{:<28} v{:<3} {:<9} {}  ({})",
                                    f.flow.id(),
                                    f.flow.version,
                                    if f.enabled { "enabled" } else { "disabled" },
                                    steps.join(" → "),
                                    f.flow.doc.title
                                );
                            }
                        }
                        DocKind::Element => {
                            for e in c.elements.all() {
                                let d = &e.doc;
                                let note = if d.shared { "shared type" } else { d.class.as_str() };
                                println!("{:<28} v{:<3} {:<11} {} / {}", d.id, e.version, note, d.label_en, d.label_vi);
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
