//! What every handler can reach: the settings, the database, the live
//! catalogue, the registry client, the rate limits, the audit sink and the
//! linked dossiers.

use crate::audit::AuditSink;
use crate::catalog::LiveCatalog;
use crate::config::Settings;
use crate::db::Db;
use crate::dossier::worker::Worker;
use crate::dossier::Dossiers;
use crate::ratelimit::RateLimits;
use crate::telemetry::Metrics;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What every handler can reach.
pub struct AppState {
    pub settings: Arc<Settings>,
    pub db: Db,
    pub metrics: Arc<Metrics>,
    /// Database reachable, migrated, and the catalogue loaded.
    pub db_ready: Arc<AtomicBool>,
    /// Set while the readiness probe finds the database failing.
    pub db_failing: crate::telemetry::Failing,
    pub catalog: Arc<LiveCatalog>,
    /// The one HTTP client for every registry call.
    pub http: reqwest::Client,
    pub limits: RateLimits,
    pub audit: Arc<AuditSink>,
    /// Linked dossiers: filed and read here, carried by the worker.
    pub dossiers: Arc<Dossiers>,
    /// This node's worker of the dossier queue (`dossiers.worker`).
    pub worker: Option<Arc<Worker>>,
    /// The dossiers carried to the national portal, and their outbox.
    pub sync: Arc<crate::sync::PortalSync>,
}

impl AppState {
    /// Whether the database answers a query now.
    pub async fn database_answers(&self) -> Result<(), crate::db::DbError> {
        self.db.run(Db::ping).await
    }

    pub fn is_ready(&self) -> bool {
        self.db_ready.load(Ordering::Acquire)
    }
}
