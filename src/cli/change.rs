//! What a command that changes lgsp leaves in the audit trail, and the
//! helpers such commands share.

use crate::catalog::LiveCatalog;
use crate::config::Settings;
use crate::db::Db;
use std::path::PathBuf;
use std::process::ExitCode;

use super::catalog::DocCommand;
use super::partners::PartnersCommand;
use super::tokens::TokensCommand;

/// A catalogue on the configured database, migrated and loaded.
pub(super) async fn open_catalog(settings: Settings) -> anyhow::Result<std::sync::Arc<LiveCatalog>> {
    let settings = std::sync::Arc::new(settings);
    let db = Db::new(&settings.database_url, &settings.database)?;
    let catalog = std::sync::Arc::new(LiveCatalog::new(settings.clone(), db.clone()).map_err(anyhow::Error::msg)?);
    crate::startup::prepare(&db, &settings, &catalog).await?;
    Ok(catalog)
}

/// A command that changes what lgsp serves or who may call it, with what it
/// read: such commands are recorded in the audit trail as the admin API's are.
pub(super) struct CliChange {
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
    pub(super) fn plain() -> Option<CliChange> {
        Some(CliChange { file: None, subject: None })
    }
    pub(super) fn of_document(c: &DocCommand) -> Option<CliChange> {
        match c {
            DocCommand::Register { file } | DocCommand::Update { file } => CliChange::file(file),
            DocCommand::Disable { .. } | DocCommand::Enable { .. } | DocCommand::Rollback { .. } => CliChange::plain(),
            // A dry run reads a citizen's record.
            DocCommand::Test { citizen_id, .. } => Some(CliChange { file: None, subject: Some(citizen_id.clone()) }),
            DocCommand::List | DocCommand::Show { .. } | DocCommand::Versions { .. } => None,
        }
    }
    pub(super) fn of_partner(c: &PartnersCommand) -> Option<CliChange> {
        match c {
            PartnersCommand::Create { file } | PartnersCommand::Update { file, .. } => CliChange::file(file),
            PartnersCommand::Key { .. } | PartnersCommand::Revoke { .. } | PartnersCommand::Rotate { .. } => {
                CliChange::plain()
            }
            PartnersCommand::List | PartnersCommand::Show { .. } | PartnersCommand::Keys { .. } => None,
        }
    }
    pub(super) fn of_token(c: &TokensCommand) -> Option<CliChange> {
        match c {
            TokensCommand::Create { .. } | TokensCommand::Revoke { .. } => CliChange::plain(),
            TokensCommand::List => None,
        }
    }
}

/// Appends the record of a command-line change to the audit trail (action
/// `admin`, key `cli`): the command as typed from its noun on, the operating
/// system's user, the JSON file it read when at most 16 KB, and the outcome.
pub(super) async fn record_cli_change(
    catalog: &LiveCatalog,
    noun: &str,
    change: CliChange,
    result: &anyhow::Result<ExitCode>,
) {
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
        record.outcome = crate::audit::Outcome::Refused;
        record.detail["reason"] = serde_json::json!(e.to_string());
    }
    if let Err(e) = catalog.db.run(move |c| crate::audit::append(c, vec![record])).await {
        eprintln!("warning: this change is not in the audit trail: {e}");
    }
}

pub(super) fn api(e: crate::error::ApiError) -> anyhow::Error {
    let mut msg = e.detail.clone();
    for f in &e.errors {
        msg.push_str(&format!("\n  {}: {}", if f.pointer.is_empty() { "/" } else { &f.pointer }, f.message));
    }
    anyhow::anyhow!(msg)
}

/// The JSON document a command reads: the bytes its change record holds when
/// it has them, so that the command acts on what is recorded.
pub(super) fn read_json(path: &std::path::Path, change: Option<&CliChange>) -> anyhow::Result<serde_json::Value> {
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
