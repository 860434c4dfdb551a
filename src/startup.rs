//! Assembling and running the gateway: `Application::build(settings)` binds its
//! own listener (port 0 in tests), `run_until_stopped()` serves until SIGINT or
//! SIGTERM, lets in-flight requests finish and flushes pending audit records.

use crate::audit::AuditSink;
use crate::catalog::LiveCatalog;
use crate::config::{Settings, UpstreamPoolSettings};
use crate::db::Db;
use crate::dossier::worker::Worker;
use crate::dossier::Dossiers;
use crate::ratelimit::RateLimits;
use crate::state::AppState;
use crate::telemetry::Metrics;
use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The one HTTP client every registry call goes through, pooled as `pool` says.
pub fn registry_client(pool: &UpstreamPoolSettings) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(pool.max_idle_per_host)
        .pool_idle_timeout(Duration::from_secs(pool.idle_timeout_secs))
        .connect_timeout(Duration::from_secs(2))
        // A registry is called only where its adapter says: a redirect
        // is not followed, or it could take the call (and its
        // credential's request) to a host the allow list does not name.
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
}

/// A node that cannot open the credentials its database holds.
#[derive(Debug)]
pub struct KeyMismatch(String);

impl std::fmt::Display for KeyMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KeyMismatch {}

/// Refuses to start a node that could not open the credentials the database
/// holds: without a key, or with another key than they were sealed with.
fn check_credentials_key(
    conn: &mut crate::db::DbConnection,
    key: Option<&crate::sealing::SealingKey>,
) -> anyhow::Result<()> {
    let rows = crate::catalog::store::all_credentials(conn)?;
    if rows.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    let Some(key) = key else {
        return Err(KeyMismatch(format!(
            "the database holds {} upstream credential(s) ({}) sealed with a key this node lacks: set credentials_key \
             (LGSP_CREDENTIALS_KEY) or credentials_key_file to the key the other nodes use",
            rows.len(),
            names.join(", ")
        ))
        .into());
    };
    for r in &rows {
        key.open(&r.name, &r.sealed).map_err(|e| {
            KeyMismatch(format!(
                "the stored credential {} does not open: {e}; set credentials_key to the key it was sealed with",
                r.name
            ))
        })?;
    }
    Ok(())
}

/// Migrates, stores what ships with lgsp if absent, and loads the catalogue.
pub async fn prepare(db: &Db, settings: &Arc<Settings>, catalog: &LiveCatalog) -> anyhow::Result<()> {
    let (db2, s, key) = (db.clone(), settings.clone(), catalog.sealing.clone());
    let applied = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<String>> {
        let applied = db2.migrate()?;
        let mut conn = db2.conn()?;
        check_credentials_key(&mut conn, key.as_deref())?;
        let stored = crate::catalog::seed(&mut conn, &s)?;
        if stored > 0 {
            tracing::info!(
                stored,
                "stored the shipped adapters and forms and the bootstrap admin tokens the database lacked"
            );
        }
        Ok(applied)
    })
    .await??;
    if !applied.is_empty() {
        tracing::info!(?applied, "migrations applied");
    }
    catalog.reload().await?;
    Ok(())
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let settings = Arc::new(settings);
        // A TLS misconfiguration stops the start, before anything else runs.
        settings.check()?;
        crate::domain::national_codes::install(settings.portal.statuses_file.as_deref()).map_err(anyhow::Error::msg)?;
        let tls = crate::tls::from_settings(&settings.tls)?;
        let db = Db::new(&settings.database_url, &settings.database)?;
        let metrics = Arc::new(Metrics::new());
        let db_ready = Arc::new(AtomicBool::new(false));
        let catalog = Arc::new(LiveCatalog::new(settings.clone(), db.clone()).map_err(anyhow::Error::msg)?);
        let http = registry_client(&settings.upstream_pool)?;

        // Prepare now if the database is there; otherwise keep trying in the
        // background while /healthz says alive and /readyz says not ready.
        match prepare(&db, &settings, &catalog).await {
            Ok(()) => db_ready.store(true, Ordering::Release),
            // Waiting would not help: the node must be given the right key.
            Err(e) if e.downcast_ref::<KeyMismatch>().is_some() => return Err(e),
            Err(e) => {
                tracing::error!(error = %e, "database not ready; retrying in the background");
                let (db, ready, settings, catalog) = (db.clone(), db_ready.clone(), settings.clone(), catalog.clone());
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        match prepare(&db, &settings, &catalog).await {
                            Ok(()) => {
                                tracing::info!("database is ready");
                                ready.store(true, Ordering::Release);
                                break;
                            }
                            Err(e) if e.downcast_ref::<KeyMismatch>().is_some() => {
                                tracing::error!(error = %e, "the stored credentials do not open; not ready");
                            }
                            Err(_) => {}
                        }
                    }
                });
            }
        }

        let audit = Arc::new(AuditSink::start(db.clone(), metrics.clone(), &settings.audit));
        let dossiers = Arc::new(Dossiers::new(db.clone(), catalog.clone(), settings.dossiers.clone()));
        let sync = Arc::new(crate::sync::PortalSync::new(db.clone(), settings.portal.clone(), http.clone()));
        if !settings.portal.url.is_empty() {
            crate::sync::PortalSync::spawn(&sync, db_ready.clone());
        }
        let worker = settings.dossiers.worker.then(|| {
            let worker = Arc::new(Worker::new(dossiers.clone(), http.clone(), metrics.clone(), audit.clone()));
            Worker::spawn(&worker, db_ready.clone());
            worker
        });
        let limits = RateLimits::new(&settings.rate_limits, metrics.rate_limit_fallbacks.clone())
            .map_err(|e| anyhow::anyhow!(e))?;
        let state = web::Data::new(AppState {
            settings: settings.clone(),
            db,
            metrics,
            db_ready,
            db_failing: crate::telemetry::Failing::new(
                "readiness: the database",
                "not ready until it answers",
                "ready",
            ),
            catalog,
            http,
            limits,
            audit,
            dossiers,
            worker,
            sync,
        });

        // Follow catalogue changes made by other nodes; prune idle rate-limit buckets.
        let weak = Arc::downgrade(&state.clone().into_inner());
        let every = Duration::from_millis(settings.catalog_refresh_ms.max(50));
        tokio::spawn(async move {
            let mut last_prune = tokio::time::Instant::now();
            loop {
                tokio::time::sleep(every).await;
                let Some(background) = weak.upgrade() else { break };
                if background.is_ready() {
                    if let Err(e) = background.catalog.refresh().await {
                        tracing::warn!(error = %e, "catalogue refresh failed");
                    }
                }
                if last_prune.elapsed() > Duration::from_secs(60) {
                    background.limits.prune(Duration::from_secs(60));
                    if let Err(e) = background.catalog.store_key_use().await {
                        tracing::warn!(error = %e, "could not store when keys were last used; will retry");
                    }
                    last_prune = tokio::time::Instant::now();
                }
            }
        });

        let listener = TcpListener::bind((settings.host.as_str(), settings.port)).map_err(|e| {
            anyhow::anyhow!("cannot listen on {}:{} (settings host and port): {e}", settings.host, settings.port)
        })?;
        let port = listener.local_addr()?.port();
        let app_state = state.clone();
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .configure(|cfg| crate::http::configure(cfg, &app_state.settings))
                .wrap(actix_web::middleware::from_fn(crate::http::middleware::observe))
        })
        .shutdown_timeout(settings.shutdown_timeout_secs);
        if settings.workers > 0 {
            server = server.workers(settings.workers);
        }
        let server = match tls {
            Some(config) => server.listen_rustls_0_23(listener, config)?.run(),
            None => server.listen(listener)?.run(),
        };
        Ok(Application { port, server, state })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server from inside the process, as SIGTERM would:
    /// `handle().stop(true)` lets in-flight requests finish, after which
    /// `run_until_stopped` stores the pending audit records and returns.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Serves until the process is asked to stop; then in-flight requests
    /// finish (up to `shutdown_timeout_secs`) and pending audit records are stored.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Application { server, state, .. } = self;
        server.await?;
        tracing::info!("server stopped; storing pending audit records");
        if let Err(e) = state.catalog.store_key_use().await {
            tracing::warn!(error = %e, "could not store when keys were last used");
        }
        let s = state.clone();
        let _ = tokio::task::spawn_blocking(move || s.audit.shutdown()).await;
        Ok(())
    }
}
