//! Admin tokens for stewards and auditors: `tokens …`.

use crate::config::Settings;
use crate::domain::partner::Role;
use clap::Subcommand;
use std::process::ExitCode;

use super::change::{api, open_catalog, record_cli_change, CliChange};
use super::runtime;

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

pub(super) fn run(settings: Settings, command: TokensCommand) -> anyhow::Result<ExitCode> {
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
