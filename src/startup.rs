//! Assembling and running the gateway: `Application::build(settings)` binds its
//! own listener (port 0 in tests), `run_until_stopped()` serves until SIGINT or
//! SIGTERM, lets in-flight requests finish and flushes pending audit records.

use crate::config::Settings;
use crate::db::Db;
use crate::telemetry::Metrics;
use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What every handler can reach.
pub struct AppState {
    pub settings: Arc<Settings>,
    pub db: Db,
    pub metrics: Arc<Metrics>,
    /// Database reachable and migrated.
    pub db_ready: Arc<AtomicBool>,
}

impl AppState {
    pub fn is_ready(&self) -> bool {
        self.db_ready.load(Ordering::Acquire)
    }
}

pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let settings = Arc::new(settings);
        let db = Db::new(&settings.database_url, &settings.database)?;
        let metrics = Arc::new(Metrics::new());
        let db_ready = Arc::new(AtomicBool::new(false));

        // Migrate now if the database is there; otherwise keep trying in the
        // background while /healthz says alive and /readyz says not ready.
        let first = {
            let db = db.clone();
            tokio::task::spawn_blocking(move || db.migrate()).await?
        };
        match first {
            Ok(applied) => {
                if !applied.is_empty() {
                    tracing::info!(?applied, "migrations applied");
                }
                db_ready.store(true, Ordering::Release);
            }
            Err(e) => {
                tracing::error!(error = %e, "database not ready; retrying in the background");
                let (db, ready) = (db.clone(), db_ready.clone());
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        let db2 = db.clone();
                        if let Ok(Ok(_)) = tokio::task::spawn_blocking(move || db2.migrate()).await {
                            tracing::info!("database is ready");
                            ready.store(true, Ordering::Release);
                            break;
                        }
                    }
                });
            }
        }

        let state = web::Data::new(AppState { settings: settings.clone(), db, metrics, db_ready });

        let listener = TcpListener::bind((settings.host.as_str(), settings.port))?;
        let port = listener.local_addr()?.port();
        let app_state = state.clone();
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .configure(|cfg| crate::http::configure(cfg, &app_state.settings))
                .wrap(actix_web::middleware::from_fn(crate::telemetry::observe))
        })
        .shutdown_timeout(settings.shutdown_timeout_secs);
        if settings.workers > 0 {
            server = server.workers(settings.workers);
        }
        let server = server.listen(listener)?.run();
        Ok(Application { port, server, state })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Serves until the process is asked to stop; then in-flight requests
    /// finish (up to `shutdown_timeout_secs`) and pending writes are flushed.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Application { server, state, .. } = self;
        server.await?;
        tracing::info!("server stopped; flushing");
        drop(state);
        Ok(())
    }
}
