//! Configuration: built-in defaults, then an optional TOML file, then
//! environment variables `LGSP_…` (nested keys with `__`, for example
//! `LGSP_UPSTREAMS__POPULATION__URL`). `DATABASE_URL` is honoured too, below
//! `LGSP_DATABASE_URL`.

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// A value that must never be printed: Debug and Display show `***`.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "***" })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address the gateway listens on.
    pub host: String,
    /// Port; 0 picks a free one.
    pub port: u16,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
    /// `sqlite://PATH` (default `sqlite://lgsp.db`) or `postgres://…`.
    pub database_url: Secret,
    pub database: DatabaseSettings,
    pub log: LogSettings,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Seconds in-flight requests get to finish on SIGINT/SIGTERM.
    pub shutdown_timeout_secs: u64,
    /// Upstream registries: base URL and credential per credential reference
    /// named in the adapter manifests (`population`, `civil_status`, `insurance`).
    pub upstreams: BTreeMap<String, UpstreamSettings>,
    /// Hosts (`host` or `host:port`) adapter manifests may point at. Empty
    /// means loopback only.
    pub upstream_allow_list: Vec<String>,
    /// The pool of keep-alive connections to the registries.
    pub upstream_pool: UpstreamPoolSettings,
    pub prefill: PrefillSettings,
    pub audit: AuditSettings,
    pub rate_limits: RateLimitSettings,
    /// How often each node re-reads the catalogue (adapters, forms, partners,
    /// keys) from the database, in milliseconds.
    pub catalog_refresh_ms: u64,
    /// Admin tokens created at start-up if absent: `role:token` (role is
    /// `steward` or `auditor`). Meant for first boot and the demo.
    pub bootstrap_admin_tokens: Vec<Secret>,
    pub tls: TlsSettings,
    /// Reverse proxies (CIDR networks, `/32` for one address) in front of lgsp whose
    /// `X-Forwarded-For` is believed when a partner's policy limits the
    /// networks it may call from. Empty: the connection's peer is the client.
    #[serde(deserialize_with = "crate::domain::partner::networks")]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Networks (CIDR) the admin API (`/admin`) answers; empty: any. Calls
    /// from elsewhere are refused before their token is looked at.
    #[serde(deserialize_with = "crate::domain::partner::networks")]
    pub admin_networks: Vec<ipnet::IpNet>,
    /// The key upstream credentials are sealed with in the database: 64
    /// hexadecimal digits (`lgsp credentials key` makes one). The same on
    /// every node; a node without it refuses to start once the database
    /// holds a credential.
    pub credentials_key: Secret,
    /// A file holding the key instead (its only content).
    pub credentials_key_file: Option<std::path::PathBuf>,
    pub dossiers: DossierSettings,
    pub portal: PortalSettings,
}

/// The national public-service portal the province's dossiers are carried
/// to; with no `url`, nothing is sent (the dossiers wait in the outbox).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PortalSettings {
    pub url: String,
    pub username: String,
    pub password: Secret,
    /// How often the outbox is looked at, in milliseconds.
    pub poll_ms: u64,
    /// Longest wait between two tries while the portal is down.
    pub retry_max_ms: u64,
    /// How long a node holds a change it is sending; a node killed while
    /// sending leaves it to another (or to itself restarted) after this.
    pub lease_ms: u64,
    /// The map of national codes to use instead of the shipped
    /// `schemas/flows/national-statuses.json`.
    pub statuses_file: Option<std::path::PathBuf>,
}

impl Default for PortalSettings {
    fn default() -> Self {
        PortalSettings {
            url: String::new(),
            username: String::new(),
            password: Secret::default(),
            poll_ms: 500,
            retry_max_ms: 60_000,
            lease_ms: 60_000,
            statuses_file: None,
        }
    }
}

/// How linked dossiers are carried.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DossierSettings {
    /// Whether this node works the dossier queue (every node may; on SQLite
    /// one node works it).
    pub worker: bool,
    /// How often the queue is looked at, and an application a registry is
    /// still processing is read back, in milliseconds.
    pub poll_ms: u64,
    /// Longest wait between two tries of a step whose registry is failing.
    pub retry_max_ms: u64,
    /// Longest wait between two readings of an application a registry is
    /// processing (the wait doubles from `poll_ms`).
    pub status_max_ms: u64,
    /// How long a node holds a step it claimed; another takes it over after
    /// that if the node died.
    pub lease_ms: u64,
    /// Steps carried at once by this node.
    pub concurrency: usize,
    /// Hosts (`host` or `host:port`) a partner's callback URL may point at.
    /// Empty means loopback only.
    pub callback_allow_list: Vec<String>,
    /// Days off besides the public holidays (bridge days), as `yyyy-mm-dd`.
    pub extra_days_off: Vec<jiff::civil::Date>,
    /// Weekend days worked to make a bridge day up.
    pub extra_working_days: Vec<jiff::civil::Date>,
}

impl Default for DossierSettings {
    fn default() -> Self {
        DossierSettings {
            worker: true,
            poll_ms: 500,
            retry_max_ms: 60_000,
            status_max_ms: 600_000,
            lease_ms: 60_000,
            concurrency: 16,
            callback_allow_list: Vec::new(),
            extra_days_off: Vec::new(),
            extra_working_days: Vec::new(),
        }
    }
}

impl DossierSettings {
    pub fn calendar(&self) -> crate::domain::calendar::WorkingCalendar {
        crate::domain::calendar::WorkingCalendar {
            extra_days_off: self.extra_days_off.iter().copied().collect(),
            extra_working_days: self.extra_working_days.iter().copied().collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    pub max_connections: u32,
    /// How long a request waits for a free connection before answering 503.
    pub acquire_timeout_ms: u64,
    /// SQLite's busy_timeout.
    pub sqlite_busy_timeout_ms: u64,
    /// SQLite's `synchronous`: `normal` (the default) syncs the WAL at
    /// checkpoints, so a power loss may undo the last commits; `full` syncs
    /// every commit.
    pub sqlite_synchronous: SqliteSynchronous,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSynchronous {
    #[default]
    Normal,
    Full,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A tracing filter, such as `info` or `lgsp=debug,actix_web=info`.
    pub level: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamSettings {
    pub url: String,
    pub token: Secret,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamPoolSettings {
    /// Idle connections kept open per registry host; more are closed when
    /// they fall idle.
    pub max_idle_per_host: usize,
    /// Seconds an idle connection is kept before it is closed.
    pub idle_timeout_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrefillSettings {
    /// Overall time budget of one prefill, in milliseconds.
    pub budget_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditSettings {
    /// Most records written in one transaction.
    pub batch_size: usize,
    /// Longest a record waits before its batch is written, in milliseconds.
    pub flush_interval_ms: u64,
    /// Most records waiting to be written; when it is reached, requests wait
    /// for room before they are answered.
    pub queue_capacity: usize,
    /// Answer a prefill or exchange only once its record is stored, so that
    /// not even a crash of the process loses the record of an answer given.
    pub store_before_answer: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitSettings {
    /// `local`: each node keeps its own buckets, so N nodes grant a partner up
    /// to N times its quota. `redis`: the nodes share one bucket per partner.
    pub backend: RateLimitBackend,
    /// The Redis server of the `redis` backend; `rediss://` connects with TLS.
    pub redis_url: Secret,
    /// PEM file of the certificate authorities trusted for a `rediss://`
    /// server; without it, the system's trusted roots.
    pub redis_ca_file: Option<String>,
    /// Prefix of the bucket keys in Redis.
    pub key_prefix: String,
    /// Longest a check waits for Redis before this node's own bucket decides.
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RateLimitBackend {
    Local,
    Redis,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM certificate chain; with `key_path`, the gateway serves HTTPS.
    pub cert_path: Option<String>,
    pub key_path: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            host: "127.0.0.1".into(),
            port: 8080,
            workers: 0,
            database_url: Secret::new("sqlite://lgsp.db"),
            database: DatabaseSettings::default(),
            log: LogSettings::default(),
            max_body_bytes: 256 * 1024,
            shutdown_timeout_secs: 30,
            upstreams: BTreeMap::new(),
            upstream_allow_list: Vec::new(),
            upstream_pool: UpstreamPoolSettings::default(),
            prefill: PrefillSettings::default(),
            audit: AuditSettings::default(),
            rate_limits: RateLimitSettings::default(),
            catalog_refresh_ms: 500,
            bootstrap_admin_tokens: Vec::new(),
            tls: TlsSettings::default(),
            trusted_proxies: Vec::new(),
            admin_networks: Vec::new(),
            credentials_key: Secret::default(),
            credentials_key_file: None,
            dossiers: DossierSettings::default(),
            portal: PortalSettings::default(),
        }
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        DatabaseSettings {
            max_connections: 16,
            acquire_timeout_ms: 2_000,
            sqlite_busy_timeout_ms: 5_000,
            sqlite_synchronous: SqliteSynchronous::Normal,
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings { format: LogFormat::Text, level: "info".into() }
    }
}

impl Default for UpstreamPoolSettings {
    fn default() -> Self {
        UpstreamPoolSettings { max_idle_per_host: 512, idle_timeout_secs: 90 }
    }
}

impl Default for PrefillSettings {
    fn default() -> Self {
        PrefillSettings { budget_ms: 3_000 }
    }
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings { batch_size: 512, flush_interval_ms: 20, queue_capacity: 4096, store_before_answer: false }
    }
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        RateLimitSettings {
            backend: RateLimitBackend::Local,
            redis_url: Secret::new("redis://127.0.0.1:6379"),
            redis_ca_file: None,
            key_prefix: "lgsp:rate:".into(),
            timeout_ms: 50,
        }
    }
}

impl Settings {
    /// Loads the settings: defaults, then `file` (if given, it must exist;
    /// otherwise `lgsp.toml` if present), then the environment, and checks
    /// them. A key the file misspells is refused, as is a misspelt key under
    /// a known section of the environment (`LGSP_DATABASE__MAX_CONECTIONS`);
    /// other `LGSP_…` variables (`LGSP_KEY`, `LGSP_CONFIG`) are not settings
    /// and are left alone.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Settings> {
        let mut fig = Figment::from(Serialized::defaults(Settings::default()));
        match file {
            Some(path) => {
                anyhow::ensure!(path.exists(), "configuration file {} does not exist", path.display());
                fig = fig.merge(Toml::file(path));
            }
            None => fig = fig.merge(Toml::file("lgsp.toml")),
        }
        let sections = Settings::sections();
        let fig = fig.merge(Env::raw().only(&["DATABASE_URL"]).map(|_| "database_url".into())).merge(
            Env::prefixed("LGSP_").split("__").filter(move |key| {
                let top = key.as_str().split('.').next().unwrap_or_default();
                sections.iter().any(|s| s.eq_ignore_ascii_case(top))
            }),
        );
        let settings: Settings = fig.extract().map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        settings.check()?;
        Ok(settings)
    }

    /// The `LGSP_…` variables of this process's environment that are neither
    /// settings nor any other variable lgsp or its scripts read, each with the
    /// setting it may have meant. A misspelt top-level name (`LGSP_PROT`) is
    /// otherwise ignored without a word; a misspelt key under a known section
    /// is refused by `load`.
    pub fn unknown_env() -> Vec<String> {
        Settings::unknown_env_in(std::env::vars_os().filter_map(|(k, _)| k.into_string().ok()))
    }

    fn unknown_env_in(names: impl Iterator<Item = String>) -> Vec<String> {
        // Read by the command line, the demo's instructions, the tests, the
        // benchmarks and CI, not by the settings.
        const OTHERS: [&str; 4] = ["LGSP_CONFIG", "LGSP_KEY", "LGSP_STEWARD", "LGSP_AUDITOR"];
        const OTHER_PREFIXES: [&str; 6] =
            ["LGSP_MOCK_", "LGSP_TEST_", "LGSP_BENCH_", "LGSP_LOAD_", "LGSP_CI_", "LGSP_CONFORMANCE_"];
        let sections = Settings::sections();
        let mut unknown: Vec<String> = names
            .filter_map(|name| {
                let rest = name.strip_prefix("LGSP_")?;
                let top = rest.split("__").next().unwrap_or_default().to_ascii_lowercase();
                if sections.contains(&top)
                    || OTHERS.contains(&name.as_str())
                    || OTHER_PREFIXES.iter().any(|p| name.starts_with(p))
                {
                    return None;
                }
                let near = sections
                    .iter()
                    .map(|s| (strsim::damerau_levenshtein(s, &top), s))
                    .filter(|(d, s)| *d <= 2.max(s.len() / 4))
                    .min();
                Some(match near {
                    Some((_, s)) => {
                        format!("{name} is not a setting and is ignored; did you mean LGSP_{}?", s.to_ascii_uppercase())
                    }
                    None => format!("{name} is not a setting and is ignored"),
                })
            })
            .collect();
        unknown.sort();
        unknown
    }

    /// The top-level keys.
    fn sections() -> Vec<String> {
        match serde_json::to_value(Settings::default()) {
            Ok(serde_json::Value::Object(map)) => map.into_iter().map(|(k, _)| k).collect(),
            _ => Vec::new(),
        }
    }

    /// Every value that parses but cannot work, each named with what to set
    /// instead; called before anything starts.
    pub fn check(&self) -> anyhow::Result<()> {
        let mut problems = Vec::new();
        let mut at_least = |key: &str, value: u64, min: u64, why: &str| {
            if value < min {
                problems.push(format!("{key} is {value}; set it to at least {min} ({why})"));
            }
        };
        at_least(
            "database.max_connections",
            self.database.max_connections.into(),
            1,
            "every request needs a connection",
        );
        at_least(
            "database.acquire_timeout_ms",
            self.database.acquire_timeout_ms,
            1,
            "0 would refuse a request whenever no connection is free that instant",
        );
        at_least("max_body_bytes", self.max_body_bytes as u64, 64, "smaller refuses every prefill body");
        at_least("prefill.budget_ms", self.prefill.budget_ms, 1, "0 would give every registry call no time");
        at_least("audit.batch_size", self.audit.batch_size as u64, 1, "records are written in batches of this size");
        at_least(
            "audit.flush_interval_ms",
            self.audit.flush_interval_ms,
            1,
            "how long a record may wait for its batch",
        );
        at_least("audit.queue_capacity", self.audit.queue_capacity as u64, 1, "records wait here to be written");
        at_least("rate_limits.timeout_ms", self.rate_limits.timeout_ms, 1, "0 would never wait for Redis");
        at_least("catalog_refresh_ms", self.catalog_refresh_ms, 50, "checking more often only loads the database");
        let d = &self.dossiers;
        at_least("dossiers.poll_ms", d.poll_ms, 10, "looking at the queue more often only loads the database");
        at_least("dossiers.retry_max_ms", d.retry_max_ms, d.poll_ms, "the retries' wait starts at poll_ms");
        at_least("dossiers.status_max_ms", d.status_max_ms, d.poll_ms, "the readings' wait starts at poll_ms");
        at_least(
            "dossiers.lease_ms",
            d.lease_ms,
            5_000,
            "a lease shorter than a registry call lets another node take a step still being carried",
        );
        at_least("dossiers.concurrency", d.concurrency as u64, 1, "the worker carries this many steps at once");
        let p = &self.portal;
        at_least("portal.poll_ms", p.poll_ms, 10, "looking at the outbox more often only loads the database");
        at_least("portal.retry_max_ms", p.retry_max_ms, p.poll_ms, "the retries' wait starts at poll_ms");
        at_least(
            "portal.lease_ms",
            p.lease_ms,
            3_000,
            "a change is sent within a third of its lease; shorter leaves the portal no time to answer",
        );
        if let Some(file) = &self.portal.statuses_file {
            if let Err(e) = crate::domain::national_codes::NationalCodes::read(file) {
                problems.push(format!("portal.statuses_file {e}"));
            }
        }
        if self.workers > MAX_WORKERS {
            problems
                .push(format!("workers is {}; set it to at most {MAX_WORKERS}, or 0 for one per core", self.workers));
        }
        if let Err(e) = check_log_filter(&self.log.level) {
            problems.push(format!("log.level \"{}\": {e}", self.log.level));
        }
        if let Err(e) = DatabaseUrl::parse(self.database_url.expose()) {
            problems.push(format!("database_url: {e}"));
        }
        for (name, upstream) in &self.upstreams {
            if upstream.url.is_empty() {
                continue;
            }
            match reqwest::Url::parse(&upstream.url) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
                _ => problems.push(format!(
                    "upstreams.{name}.url \"{}\" is not an http:// or https:// URL with a host",
                    upstream.url
                )),
            }
        }
        anyhow::ensure!(problems.is_empty(), "invalid configuration:\n  - {}", problems.join("\n  - "));
        Ok(())
    }
}

/// A log filter: a level, `target=level` directives, or both, separated by
/// commas. A bare word that is not a level is refused: tracing would take it
/// for a target and log nothing else, so `level = "warning"` would silence the
/// log.
fn check_log_filter(filter: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    for directive in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        if !directive.contains('=') && !LEVELS.iter().any(|l| l.eq_ignore_ascii_case(directive)) {
            return Err(format!(
                "\"{directive}\" is not a level ({}); to set one module's level, write module=level",
                LEVELS.join(", ")
            ));
        }
    }
    tracing_subscriber::EnvFilter::try_new(filter)
        .map(|_| ())
        .map_err(|e| format!("not a log filter ({e}); use a level or directives such as \"lgsp=debug,actix_web=info\""))
}

/// actix-web's own limit on worker threads.
const MAX_WORKERS: usize = 512;

/// Which database backend a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// A database URL whose backend has been decided from its scheme.
#[derive(Clone)]
pub struct DatabaseUrl {
    pub backend: Backend,
    /// What the driver is given: a file path for SQLite, the URL for PostgreSQL.
    pub(crate) connect: String,
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DatabaseUrl({})", self.backend.name())
    }
}

impl DatabaseUrl {
    /// The file of a SQLite database (not of an in-memory one).
    pub fn sqlite_file(&self) -> Option<&str> {
        (self.backend == Backend::Sqlite && self.connect != ":memory:").then_some(self.connect.as_str())
    }

    /// `sqlite://PATH` (relative, or absolute as `sqlite:///abs/path`),
    /// `sqlite::memory:`, or `postgres://…` / `postgresql://…`. Anything else is
    /// refused: a mistyped URL must never silently create an empty SQLite file.
    pub fn parse(url: &str) -> Result<DatabaseUrl, String> {
        if let Some(rest) = url.strip_prefix("sqlite://") {
            if rest.is_empty() {
                return Err("sqlite:// needs a file path, for example sqlite://lgsp.db".into());
            }
            return Ok(DatabaseUrl { backend: Backend::Sqlite, connect: rest.to_string() });
        }
        if url == "sqlite::memory:" {
            return Ok(DatabaseUrl { backend: Backend::Sqlite, connect: ":memory:".into() });
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DatabaseUrl { backend: Backend::Postgres, connect: url.to_string() });
        }
        let scheme = url.split_once(':').map(|(s, _)| s).unwrap_or("");
        if scheme.is_empty() {
            Err("DATABASE_URL has no scheme; use sqlite://PATH or postgres://USER@HOST/DB".into())
        } else {
            Err(format!(
                "DATABASE_URL scheme \"{scheme}\" is not supported; use sqlite://PATH or postgres://USER@HOST/DB"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_not_printed() {
        let s = Settings { database_url: Secret::new("postgres://user:hunter2@db/lgsp"), ..Default::default() };
        let printed = format!("{s:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("***"));
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn environment_overrides_file_and_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("lgsp.toml", "port = 9000\n[prefill]\nbudget_ms = 1500\n")?;
            jail.set_env("LGSP_PORT", "9100");
            jail.set_env("LGSP_UPSTREAMS__POPULATION__URL", "http://127.0.0.1:7001");
            let s = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(s.port, 9100);
            assert_eq!(s.prefill.budget_ms, 1500);
            assert_eq!(s.upstreams["population"].url, "http://127.0.0.1:7001");
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn a_misspelt_key_in_the_file_is_refused_with_its_name_and_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("lgsp.toml", "[database]\nmax_conections = 4\n")?;
            let e = Settings::load(None).expect_err("a misspelt key is refused").to_string();
            assert!(e.contains("max_conections") && e.contains("max_connections") && e.contains("lgsp.toml"), "{e}");

            jail.create_file("lgsp.toml", "prot = 9000\n")?;
            let e = Settings::load(None).expect_err("a misspelt top-level key is refused").to_string();
            assert!(e.contains("prot"), "{e}");
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn the_environment_is_checked_under_known_sections_only() {
        figment::Jail::expect_with(|jail| {
            // Not settings: what the demo tells to export, the config path,
            // the test suite's own variables.
            jail.set_env("LGSP_KEY", "lgsp_pk_0000");
            jail.set_env("LGSP_CONFIG", "elsewhere.toml");
            jail.set_env("LGSP_TEST_POSTGRES_URL", "postgres://x@y/z");
            jail.set_env("LGSP_DATABASE__MAX_CONNECTIONS", "4");
            let s = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(s.database.max_connections, 4);

            jail.set_env("LGSP_DATABASE__MAX_CONECTIONS", "4");
            let e = Settings::load(None).expect_err("a misspelt key under [database] is refused").to_string();
            assert!(e.contains("max_conections"), "{e}");
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn trusted_proxies_are_networks() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("lgsp.toml", "trusted_proxies = [\"10.0.0.0/8\", \"192.0.2.7/32\"]\n")?;
            let s = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(s.trusted_proxies.len(), 2);
            assert!(s.trusted_proxies[0].contains(&"10.1.2.3".parse::<std::net::IpAddr>().unwrap()));
            jail.create_file("lgsp.toml", "trusted_proxies = [\"10.0.0.0/8\", \"proxy.local\"]\n")?;
            let e = Settings::load(None).expect_err("a name is not a network").to_string();
            assert!(e.contains("\"proxy.local\" is not a network") && e.contains("trusted_proxies"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn unknown_lgsp_variables_are_named_with_the_setting_they_may_mean() {
        let names = [
            "LGSP_PROT",
            "LGSP_DATABSE__MAX_CONNECTIONS",
            "LGSP_WHATEVER",
            "LGSP_PORT",
            "LGSP_DATABASE__MAX_CONNECTIONS",
            "LGSP_KEY",
            "LGSP_CONFIG",
            "LGSP_TEST_POSTGRES_URL",
            "LGSP_MOCK_SEED",
            "PATH",
        ];
        let found = Settings::unknown_env_in(names.iter().map(|n| n.to_string()));
        assert_eq!(
            found,
            [
                "LGSP_DATABSE__MAX_CONNECTIONS is not a setting and is ignored; did you mean LGSP_DATABASE?",
                "LGSP_PROT is not a setting and is ignored; did you mean LGSP_PORT?",
                "LGSP_WHATEVER is not a setting and is ignored",
            ]
        );
    }

    #[test]
    fn a_log_filter_is_a_level_or_directives() {
        for good in ["info", "WARN", "lgsp=debug,actix_web=info", "warn,lgsp::audit=trace", "off"] {
            assert!(check_log_filter(good).is_ok(), "{good}: {:?}", check_log_filter(good));
        }
        for bad in ["warning", "verbose!!", "info,lgsp", "lgsp=loud"] {
            assert!(check_log_filter(bad).is_err(), "{bad} is accepted");
        }
    }

    #[test]
    fn every_unworkable_value_is_named_with_what_to_set() {
        assert!(Settings::default().check().is_ok(), "the defaults work");
        let mut s = Settings { workers: 1_000, max_body_bytes: 0, catalog_refresh_ms: 0, ..Default::default() };
        s.audit.batch_size = 0;
        s.audit.queue_capacity = 0;
        s.database.max_connections = 0;
        s.prefill.budget_ms = 0;
        s.log.level = "lgsp=debug,warning".into();
        s.database_url = Secret::new("lgsp.db");
        s.upstreams
            .insert("population".into(), UpstreamSettings { url: "ftp://registry".into(), token: Secret::default() });
        s.upstreams.insert(
            "insurance".into(),
            UpstreamSettings { url: "https://bhxh.example".into(), token: Secret::default() },
        );
        let e = s.check().expect_err("refused").to_string();
        for key in [
            "workers is 1000",
            "max_body_bytes is 0",
            "catalog_refresh_ms is 0",
            "audit.batch_size is 0",
            "audit.queue_capacity is 0",
            "database.max_connections is 0",
            "prefill.budget_ms is 0",
            "log.level \"lgsp=debug,warning\": \"warning\" is not a level",
            "database_url",
            "upstreams.population.url",
        ] {
            assert!(e.contains(key), "{key} is not named in: {e}");
        }
        assert!(!e.contains("upstreams.insurance"), "a good URL is not named: {e}");
        assert_eq!(e.lines().count(), 11, "one line per problem after the heading: {e}");
    }
}
