//! Partner agencies and their keys: `partners …`.

use crate::catalog::manage::PartnerInput;
use crate::config::Settings;
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

use super::change::{api, open_catalog, read_json, record_cli_change, CliChange};
use super::runtime;

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

pub(super) fn run(settings: Settings, command: PartnersCommand) -> anyhow::Result<ExitCode> {
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
