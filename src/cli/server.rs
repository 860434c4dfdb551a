//! Running the gateway and looking after its database and configuration:
//! `serve`, `migrate`, `backup`, `config check`.

use crate::config::{Secret, Settings};
use crate::db::Db;
use crate::startup::Application;
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

use super::{broken, runtime};

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Check the configuration (file and environment), its TLS files and
    /// Redis settings, without starting anything; exits non-zero and names
    /// every problem if it would not start.
    Check,
}

pub(super) fn serve(settings: Settings) -> anyhow::Result<ExitCode> {
    actix_rt::System::new().block_on(async move {
        let app = Application::build(settings).await?;
        tracing::info!(port = app.port(), "lgsp gateway listening");
        app.run_until_stopped().await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

pub(super) fn backup(settings: Settings, out: PathBuf) -> anyhow::Result<ExitCode> {
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

pub(super) fn migrate(settings: Settings) -> anyhow::Result<ExitCode> {
    let db = Db::new(&settings.database_url, &settings.database)?;
    let backend = db.backend.name();
    let applied = runtime()?.block_on(async move { tokio::task::spawn_blocking(move || db.migrate()).await? })?;
    if applied.is_empty() {
        println!("database is up to date ({backend})");
    } else {
        for m in applied {
            println!("applied {m}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Checks the configuration and prints what it would run with, and the
/// warnings about the environment.
pub(super) fn check(settings: Settings, unknown_env: &[String]) -> anyhow::Result<ExitCode> {
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
    let sealing = crate::sealing::SealingKey::from_settings(&settings).map_err(anyhow::Error::msg)?;
    println!(
        "  credentials {}",
        if sealing.is_some() { "stored ones sealed with the credentials key" } else { "no key: none can be stored" }
    );
    println!("  rate limits {}", format!("{:?}", settings.rate_limits.backend).to_lowercase());
    let nets = |n: &[ipnet::IpNet]| match n {
        [] => "any address".to_string(),
        n => n.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
    };
    println!("  admin API   {}", nets(&settings.admin_networks));
    if !settings.trusted_proxies.is_empty() {
        println!("  proxies     {} (their X-Forwarded-For is believed)", nets(&settings.trusted_proxies));
    }
    for warning in unknown_env {
        println!("warning: {warning}");
    }
    Ok(ExitCode::SUCCESS)
}
