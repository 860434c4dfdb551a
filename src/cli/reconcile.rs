//! `lgsp report reconcile`: the province's dossiers of a period against what
//! the national portal holds, the differences dossier by dossier, Decision
//! 766's counters, and with `--resend` what the portal lacks sent again.

use super::change::{api, open_catalog, record_cli_change, CliChange};
use super::runtime;
use crate::config::Settings;
use crate::sync::{PortalSync, Reconciliation};
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn print(r: &Reconciliation) {
    println!("Dossiers received {} to {}: {}, {} alike on the national portal", r.from, r.to, r.dossiers, r.matching);
    println!("\n{:<14} {:<10} {:>6} {:>6} {:>9}", "procedure", "channel", "status", "held", "matching");
    for row in r.rows() {
        let channel = crate::sync::national_codes().channel_name(row.channel);
        println!(
            "{:<14} {channel:<10} {:>6} {:>6} {:>9}",
            row.procedure, row.status, row.tally.held, row.tally.matching
        );
    }
    if r.differences.is_empty() {
        println!("\nNo differences.");
    } else {
        println!("\n{} differ:", r.differences.len());
        println!("{:<28} {:<14} {:<14} detail", "dossier", "procedure", "why");
        for d in &r.differences {
            println!("{:<28} {:<14} {:<14} {}", d.code, d.procedure, d.why, d.detail);
        }
    }
    let c = &r.counters;
    println!("\nDecision 766 counters, as of {}:", c.as_of);
    let rc = &c.received;
    println!("  received          online {}, in person {}, by post {}", rc.online, rc.in_person, rc.post);
    let p = &c.processed;
    println!("  processed         early {}, on time {}, late {}", p.early, p.on_time, p.late);
    let i = &c.in_progress;
    println!("  in progress       within the deadline {}, past it {}", i.within_deadline, i.past_deadline);
    println!("  returned for supplement {}", c.supplement_requested);
    println!("  digitised         {} ({}%)", c.digitised, c.digitised_percent);
    println!("  reused documents  {} ({}%)", c.reused, c.reused_percent);
}

/// Reconciles; with `resend`, sends the differing dossiers again and waits
/// (up to `wait`) until they are delivered, then reconciles again. Exits 1
/// while any difference is left.
pub(super) fn run(
    settings: Settings,
    from: String,
    to: String,
    resend: bool,
    json: bool,
    wait: Duration,
) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async move {
        let portal = settings.portal.clone();
        crate::domain::national_codes::install(portal.statuses_file.as_deref()).map_err(anyhow::Error::msg)?;
        let catalog = open_catalog(settings).await?;
        let (from, to) = crate::sync::period(&from, &to).map_err(api)?;
        let http = reqwest::Client::builder().connect_timeout(Duration::from_secs(2)).build()?;
        let sync = PortalSync::new(catalog.db.clone(), portal, http);
        let mut found = sync.reconcile(from, to).await.map_err(api)?;
        if resend && !found.differences.is_empty() {
            if !json {
                print(&found);
            }
            let result: anyhow::Result<ExitCode> = async {
                let queued = sync.resend(&found.differences).await?;
                let started = Instant::now();
                // Delivered here, beside any gateway's worker: the outbox's
                // leases keep each change to one sender.
                loop {
                    sync.deliver().await?;
                    let mut pending = false;
                    for code in &queued {
                        pending |= sync.outbox(code).await?.iter().any(|r| r.state == "pending");
                    }
                    if !pending || started.elapsed() > wait {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                if !json {
                    println!("\nSent again: {}", if queued.is_empty() { "none".into() } else { queued.join(", ") });
                }
                Ok(ExitCode::SUCCESS)
            }
            .await;
            if let Some(change) = CliChange::plain() {
                record_cli_change(&catalog, "report", change, &result).await;
            }
            result?;
            found = sync.reconcile(from, to).await.map_err(api)?;
            if !json {
                println!("\nAfterwards:");
            }
        }
        if json {
            println!("{}", serde_json::to_string_pretty(&found)?);
        } else {
            print(&found);
        }
        Ok(if found.differences.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
    })
}
