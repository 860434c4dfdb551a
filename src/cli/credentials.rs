//! Upstream credentials: `credentials set|list|key`. A secret is read from
//! standard input or a file, never from the command line, where the shell's
//! history and the process list would keep it.

use crate::config::Settings;
use crate::domain::credential::Credential;
use anyhow::Context;
use clap::Subcommand;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use super::change::{api, open_catalog, record_cli_change, CliChange};
use super::runtime;

#[derive(Subcommand)]
pub enum CredentialsCommand {
    /// Set or rotate a credential from JSON on standard input (or --file):
    /// {"kind": "static", "token": …} or {"kind": "basic", "username": …, "password": …}.
    Set {
        name: String,
        /// Read the JSON from this file instead of standard input.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// List the stored credentials (never their secrets).
    List,
    /// Print a new random credentials key, for credentials_key on every node.
    Key,
}

pub(super) fn run(settings: Settings, command: CredentialsCommand) -> anyhow::Result<ExitCode> {
    if let CredentialsCommand::Key = command {
        println!("{}", crate::sealing::SealingKey::generate().map_err(anyhow::Error::msg)?);
        return Ok(ExitCode::SUCCESS);
    }
    runtime()?.block_on(async move {
        let catalog = open_catalog(settings).await?;
        // The record names the credential; what was read stays out of it.
        let change = matches!(command, CredentialsCommand::Set { .. }).then(CliChange::plain).flatten();
        let result: anyhow::Result<ExitCode> = async {
            match command {
                CredentialsCommand::Set { name, file } => {
                    let mut text = String::new();
                    match &file {
                        Some(path) => {
                            text = std::fs::read_to_string(path)
                                .with_context(|| format!("cannot read {}", path.display()))?
                        }
                        None => {
                            std::io::stdin().read_to_string(&mut text).context("cannot read standard input")?;
                        }
                    }
                    let credential: Credential = serde_json::from_str(&text).map_err(|_| {
                        anyhow::anyhow!(
                            "not a credential: send {{\"kind\": \"static\", \"token\": …}} or \
                             {{\"kind\": \"basic\", \"username\": …, \"password\": …}}"
                        )
                    })?;
                    let kind = credential.kind();
                    catalog.set_credential(&name, credential, "cli").await.map_err(api)?;
                    println!("set credential {name} ({kind}); every node uses it from its next catalogue refresh");
                }
                CredentialsCommand::List => {
                    println!("{:<24} {:<7} {:<7} {:<28} {:<24} used by", "name", "kind", "in use", "updated at", "by");
                    for c in catalog.credentials() {
                        println!(
                            "{:<24} {:<7} {:<7} {:<28} {:<24} {}",
                            c.name,
                            c.kind,
                            if c.in_use { "yes" } else { "no" },
                            c.updated_at,
                            c.updated_by,
                            c.used_by.join(",")
                        );
                    }
                }
                CredentialsCommand::Key => {}
            }
            Ok(ExitCode::SUCCESS)
        }
        .await;
        if let Some(change) = change {
            record_cli_change(&catalog, "credentials", change, &result).await;
        }
        result
    })
}
