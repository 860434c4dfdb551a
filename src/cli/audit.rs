//! The audit trail from the command line: `audit verify` and `audit export`.

use crate::config::Settings;
use crate::db::Db;
use anyhow::Context;
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

use super::{broken, runtime};

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

pub(super) fn run(settings: Settings, command: AuditCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Export { from, to, out } => export(settings, from, to, out),
        AuditCommand::Verify { anchors, file: Some(file) } => verify_file(&anchors, file),
        AuditCommand::Verify { anchors, file: None } => verify_database(settings, &anchors),
    }
}

fn export(settings: Settings, from: i64, to: Option<i64>, out: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(from >= 1 && to.is_none_or(|to| to >= from), "--from is 1 or more, and --to is not below it");
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

/// Checks an export on its own, without the database.
fn verify_file(anchors: &[String], file: PathBuf) -> anyhow::Result<ExitCode> {
    let anchors = crate::audit::parse_anchors(&anchors.join(",")).map_err(anyhow::Error::msg)?;
    let reader =
        std::io::BufReader::new(std::fs::File::open(&file).with_context(|| format!("cannot open {}", file.display()))?);
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

fn verify_database(settings: Settings, anchors: &[String]) -> anyhow::Result<ExitCode> {
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
