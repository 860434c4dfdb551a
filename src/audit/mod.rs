//! The audit trail: one record per prefill and exchange, allowed or refused.
//!
//! Handlers hand records to [`AuditSink::record`]; one writer thread stores
//! them in batches, each batch in one transaction that
//! locks the chain's head row, so several nodes sharing a database extend one
//! chain. Every record's hash covers the previous record's hash and all its
//! stored fields: an edited, inserted or deleted row breaks the chain, and
//! [`verify`] names the first record where it breaks. On shutdown the writer
//! drains its queue before the process exits; a failed write is retried, not
//! dropped. The queue is bounded: when the writer falls behind (a flood of
//! cheap refused requests, a slow database), handlers wait for room before
//! they answer, so the requests slow down to what the trail can store and
//! memory stays bounded, instead of records piling up in memory.

pub mod query;

use crate::db::schema::{audit_head, audit_log};
use crate::db::{Db, DbConnection, DbError};
use crate::telemetry::Metrics;
use diesel::prelude::*;
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened in one prefill or exchange.
/// What a record is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Prefill,
    Exchange,
    /// A partner read a citizen's access log.
    AccessLog,
    /// A steward's or auditor's call, a command-line change, or one made at start-up.
    Admin,
    /// A partner filed, read, supplemented or withdrew a linked dossier.
    Dossier,
    /// lgsp called a registry for a linked dossier's step.
    Step,
}

impl Action {
    /// As stored and searched (`?action=`).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Prefill => "prefill",
            Action::Exchange => "exchange",
            Action::AccessLog => "access_log",
            Action::Admin => "admin",
            Action::Dossier => "dossier",
            Action::Step => "dossier_step",
        }
    }
}

/// How the call ended, for the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    /// A prefill some of whose registries did not answer.
    Partial,
    /// Refused as the caller's mistake or beyond its grant (a 4xx).
    Refused,
    /// lgsp or a registry failed (a 5xx).
    Failed,
}

impl Outcome {
    /// As stored and searched (`?outcome=`).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Partial => "partial",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    pub record_id: String,
    pub ts: i64,
    pub request_id: String,
    pub partner_id: String,
    pub key_id: String,
    pub action: Action,
    pub subject: Option<String>,
    pub purpose: Option<String>,
    /// The form, or `adapter.operation`.
    pub resource: String,
    pub adapters: Vec<String>,
    pub elements: Vec<String>,
    pub outcome: Outcome,
    pub status: u16,
    pub latency_us: i64,
    /// Per-source status, schema violations, the reason of a refusal.
    pub detail: Value,
}

impl AuditRecord {
    /// A record of `action` on `resource`, made now, `ok` until the call says
    /// otherwise; the caller fills in who and what.
    pub fn new(request_id: String, action: Action, resource: String) -> AuditRecord {
        AuditRecord {
            record_id: crate::telemetry::new_uuid().to_string(),
            ts: crate::db::now_micros(),
            request_id,
            partner_id: String::new(),
            key_id: String::new(),
            action,
            subject: None,
            purpose: None,
            resource,
            adapters: Vec::new(),
            elements: Vec::new(),
            outcome: Outcome::Ok,
            status: 200,
            latency_us: 0,
            detail: serde_json::json!({}),
        }
    }

    /// The record of a change no request made (`action` `admin`): by the
    /// command line (`key_id` `cli`), at start-up (`startup`), by the demo
    /// (`demo`). It has no HTTP status.
    pub fn change(by: &str, resource: String, detail: Value) -> AuditRecord {
        let mut r = AuditRecord::new(String::new(), Action::Admin, resource);
        r.key_id = by.into();
        r.status = 0;
        r.detail = detail;
        r
    }

    /// Notes in an admin record what the steward sent (a request's JSON body,
    /// or the file a command read): whole when it is small, as a partner's
    /// policy or a key's settings are, otherwise by its size; and, as the
    /// subject, the citizen it names (a dry run reads one).
    pub fn note_sent(&mut self, sent: &[u8]) {
        let Ok(value) = serde_json::from_slice::<Value>(sent) else { return };
        let citizen = value["citizen_id"].as_str().or_else(|| value["request"]["citizen_id"].as_str());
        if let Some(id) = citizen {
            self.subject = Some(id.chars().take(12).collect());
        }
        if sent.len() <= ADMIN_SENT_KEPT {
            self.detail["sent"] = value;
        } else {
            self.detail["sent_bytes"] = serde_json::json!(sent.len());
        }
    }
}

/// The largest thing a steward sent that an admin record keeps whole.
const ADMIN_SENT_KEPT: usize = 16 * 1024;

/// A stored record, as it is hashed: `adapters`, `elements` and `detail` are
/// the JSON text stored, so an exported row can be hashed again elsewhere.
/// One stored record of the trail, with its place in the chain. `adapters`
/// and `elements` hold JSON arrays, and `detail` a JSON object, as text:
/// the hash covers them byte for byte.
#[derive(Insertable, Queryable, Selectable, Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[diesel(table_name = audit_log)]
#[serde(deny_unknown_fields)]
pub struct AuditRow {
    pub seq: i64,
    pub record_id: String,
    pub ts: i64,
    pub request_id: String,
    pub partner_id: String,
    pub key_id: String,
    pub action: String,
    pub subject: Option<String>,
    pub purpose: Option<String>,
    pub resource: String,
    pub adapters: String,
    pub elements: String,
    pub outcome: String,
    pub status: i32,
    pub latency_us: i64,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditRow {
    /// The hash of this row given the previous row's: SHA-256 over the
    /// previous hash and the canonical JSON of every stored field.
    #[allow(clippy::expect_used, reason = "serializing owned strings and numbers into a hasher cannot fail")]
    pub fn compute_hash(&self) -> String {
        let fields = (
            self.seq,
            &self.record_id,
            self.ts,
            &self.request_id,
            &self.partner_id,
            &self.key_id,
            &self.action,
            &self.subject,
            &self.purpose,
            &self.resource,
            &self.adapters,
            &self.elements,
            &self.outcome,
            self.status,
            self.latency_us,
            &self.detail,
        );
        // The canonical JSON is written whole into a buffer kept by the
        // thread, then hashed in one call: fed to the hash piece by piece as
        // serde_json wrote it, an exchange's record took 2.5 µs instead of
        // 2.05 (`cargo bench --bench audit_writer`). The bytes hashed are the
        // same.
        thread_local! {
            static CANONICAL: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        CANONICAL.with_borrow_mut(|buf| {
            buf.clear();
            serde_json::to_writer(&mut *buf, &fields).expect("hashing cannot fail");
            let mut h = Sha256::new();
            h.update(self.prev_hash.as_bytes());
            h.update(b"\n");
            h.update(buf.as_slice());
            hex::encode(h.finalize())
        })
    }

    /// The row of a record, before it has its place in the chain (`seq`,
    /// `prev_hash` and `hash` are set when its batch is written).
    pub fn unchained(r: AuditRecord) -> AuditRow {
        AuditRow {
            seq: 0,
            record_id: r.record_id,
            ts: r.ts,
            request_id: r.request_id,
            partner_id: r.partner_id,
            key_id: r.key_id,
            action: r.action.as_str().into(),
            subject: r.subject,
            purpose: r.purpose,
            resource: r.resource,
            adapters: serde_json::to_string(&r.adapters).unwrap_or_default(),
            elements: serde_json::to_string(&r.elements).unwrap_or_default(),
            outcome: r.outcome.as_str().into(),
            status: i32::from(r.status),
            latency_us: r.latency_us,
            detail: r.detail.to_string(),
            prev_hash: String::new(),
            hash: String::new(),
        }
    }
}

/// The row counts of the INSERT statements a batch is written with.
const INSERT_SIZES: [usize; 4] = [64, 16, 4, 1];

/// Appends a batch to the chain in one transaction.
pub fn append(conn: &mut DbConnection, batch: Vec<AuditRecord>) -> Result<(), DbError> {
    append_rows(conn, &mut batch.into_iter().map(AuditRow::unchained).collect::<Vec<_>>())
}

/// Appends rows to the chain in one transaction, giving each its `seq`,
/// `prev_hash` and `hash` from the chain's head as it is now. A failed call
/// can be repeated with the same rows: they are placed afresh each time.
fn append_rows(conn: &mut DbConnection, rows: &mut [AuditRow]) -> Result<(), DbError> {
    conn.transaction::<_, DbError, _>(|c| {
        // Writing first takes the write lock (SQLite) or the row lock
        // (PostgreSQL) before the head is read.
        diesel::update(audit_head::table.filter(audit_head::id.eq(1)))
            .set(audit_head::seq.eq(audit_head::seq))
            .execute(c)?;
        let (mut seq, mut hash): (i64, String) =
            audit_head::table.filter(audit_head::id.eq(1)).select((audit_head::seq, audit_head::hash)).first(c)?;
        for row in rows.iter_mut() {
            seq += 1;
            row.seq = seq;
            row.prev_hash = hash;
            row.hash = row.compute_hash();
            hash = row.hash.clone();
        }
        // Multi-row statements of a few fixed sizes: each size is one prepared
        // statement kept in the connection's cache, so a batch of any length
        // reuses them instead of preparing (and caching) one per length. 64
        // rows of 18 columns stay well under SQLite's limit on parameters.
        let mut rest = &*rows;
        while !rest.is_empty() {
            let size = INSERT_SIZES.into_iter().find(|s| *s <= rest.len()).unwrap_or(1);
            let (chunk, after) = rest.split_at(size);
            let insert = diesel::insert_into(audit_log::table).values(chunk);
            match c {
                DbConnection::Sqlite(sqlite) => insert.execute(sqlite)?,
                DbConnection::Postgres(pg) => insert.execute(pg)?,
            };
            rest = after;
        }
        diesel::update(audit_head::table.filter(audit_head::id.eq(1)))
            .set((audit_head::seq.eq(seq), audit_head::hash.eq(&hash)))
            .execute(c)?;
        Ok(())
    })
}

enum Msg {
    /// A record, with whom to tell once it is stored (`store_before_answer`).
    Record(Box<AuditRecord>, Option<tokio::sync::oneshot::Sender<()>>),
    Flush(mpsc::SyncSender<()>),
}

/// The queue in front of the writer thread.
pub struct AuditSink {
    tx: RwLock<Option<tokio::sync::mpsc::Sender<Msg>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    metrics: Arc<Metrics>,
    /// Whether `record` returns only once the record is stored.
    store_before_answer: bool,
    /// Where the trail is read from.
    db: Db,
    /// This node's last verification of the chain: when, whether intact,
    /// how many records.
    last_verified: Mutex<Option<(i64, bool, i64)>>,
}

impl AuditSink {
    /// Starts the writer; at most `capacity` records wait in the queue.
    #[allow(
        clippy::expect_used,
        reason = "without its writer thread a node cannot keep its audit promise; it must not start"
    )]
    pub fn start(db: Db, metrics: Arc<Metrics>, settings: &crate::config::AuditSettings) -> AuditSink {
        let (tx, rx) = tokio::sync::mpsc::channel::<Msg>(settings.queue_capacity.max(1));
        let m = metrics.clone();
        let (batch_size, interval) =
            (settings.batch_size.max(1), Duration::from_millis(settings.flush_interval_ms.max(1)));
        let writer = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn({
                let db = db.clone();
                move || writer_loop(db, rx, m, batch_size, interval)
            })
            .expect("spawn the audit writer");
        AuditSink {
            tx: RwLock::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            metrics,
            store_before_answer: settings.store_before_answer,
            db,
            last_verified: Mutex::new(None),
        }
    }

    /// Queues a record, waiting for room when the queue is full. With
    /// `store_before_answer`, returns only once the record is stored; the
    /// writer retries a failed write until it succeeds, so while the database
    /// is down the answer waits (and `/readyz` says the node is not ready).
    pub async fn record(&self, record: AuditRecord) {
        let tx = self.tx.read().clone();
        let Some(tx) = tx else {
            tracing::error!("audit record after shutdown; record lost");
            return;
        };
        let (stored_tx, stored_rx) = if self.store_before_answer {
            let (t, r) = tokio::sync::oneshot::channel();
            (Some(t), Some(r))
        } else {
            (None, None)
        };
        self.metrics.audit_queue.inc();
        if tx.send(Msg::Record(Box::new(record), stored_tx)).await.is_err() {
            self.metrics.audit_queue.dec();
            tracing::error!("audit writer has stopped; record lost");
            return;
        }
        if let Some(stored) = stored_rx {
            if stored.await.is_err() {
                tracing::error!("audit writer stopped before storing a record");
            }
        }
    }

    /// Waits until everything queued so far is stored (or the writer gives up
    /// after `timeout`).
    pub async fn flush(&self, timeout: Duration) {
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        let tx = self.tx.read().clone();
        let sent = match tx {
            Some(tx) => tokio::time::timeout(timeout, tx.send(Msg::Flush(done_tx))).await.is_ok_and(|r| r.is_ok()),
            None => false,
        };
        if sent {
            let _ = tokio::task::spawn_blocking(move || done_rx.recv_timeout(timeout)).await;
        }
    }

    /// A page of the auditors' search, with every record queued so far stored first.
    pub async fn search(
        &self,
        filter: query::AuditFilter,
        time: query::TimeRange,
    ) -> Result<query::AuditPage, DbError> {
        self.flush(READ_AFTER).await;
        self.db.run(move |c| query::search(c, &filter, &time)).await
    }

    /// The chain verified against `anchors`, every record queued so far stored first.
    pub async fn verify(&self, anchors: BTreeMap<i64, String>) -> Result<Verification, DbError> {
        self.flush(READ_AFTER).await;
        let v = self.db.run(move |c| verify_anchored(c, &anchors)).await?;
        *self.last_verified.lock() = Some((crate::db::now_micros(), v.is_intact(), v.records));
        Ok(v)
    }

    /// This node's last verification of the chain: when (microseconds),
    /// whether it was intact, and how many records it checked.
    pub fn last_verification(&self) -> Option<(i64, bool, i64)> {
        *self.last_verified.lock()
    }

    /// The chain's head: the last record's number and hash.
    pub async fn head(&self) -> Result<(i64, String), DbError> {
        self.flush(READ_AFTER).await;
        self.db
            .run(|c| {
                Ok(audit_head::table
                    .filter(audit_head::id.eq(1))
                    .select((audit_head::seq, audit_head::hash))
                    .first::<(i64, String)>(c)?)
            })
            .await
    }

    /// Calls per minute since `since` (microseconds), by partner and by the
    /// operations called: `(minute, partner, adapters as stored, count)`,
    /// counted in the database from the trail itself, so every node shows
    /// the whole cluster's traffic without Prometheus.
    pub async fn traffic(&self, since: i64) -> Result<Vec<(i64, String, String, i64)>, DbError> {
        #[derive(diesel::QueryableByName)]
        struct Bucket {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            minute: i64,
            #[diesel(sql_type = diesel::sql_types::Text)]
            partner_id: String,
            #[diesel(sql_type = diesel::sql_types::Text)]
            adapters: String,
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            calls: i64,
        }
        self.db
            .run(move |c| {
                let sql = "SELECT ts / 60000000 AS minute, partner_id, adapters, COUNT(*) AS calls FROM audit_log \
                           WHERE ts >= $1 AND action IN ('prefill', 'exchange', 'dossier_step') \
                           GROUP BY ts / 60000000, partner_id, adapters";
                let rows: Vec<Bucket> = match c {
                    DbConnection::Sqlite(c) => {
                        diesel::sql_query(sql.replace("$1", "?")).bind::<diesel::sql_types::BigInt, _>(since).load(c)?
                    }
                    DbConnection::Postgres(c) => {
                        diesel::sql_query(sql).bind::<diesel::sql_types::BigInt, _>(since).load(c)?
                    }
                };
                Ok(rows.into_iter().map(|b| (b.minute, b.partner_id, b.adapters, b.calls)).collect())
            })
            .await
    }

    /// A partner's calls since `since` (microseconds), and how many of them
    /// were refused.
    pub async fn partner_counts(&self, partner: String, since: i64) -> Result<(i64, i64), DbError> {
        self.db
            .run(move |c| {
                let mine = || {
                    audit_log::table.filter(audit_log::partner_id.eq(partner.clone())).filter(audit_log::ts.ge(since))
                };
                let calls: i64 = mine().count().get_result(c)?;
                let refused: i64 = mine().filter(audit_log::outcome.eq("refused")).count().get_result(c)?;
                Ok((calls, refused))
            })
            .await
    }

    /// One stored record, with its hash and the hash before it.
    pub async fn row(&self, seq: i64) -> Result<Option<AuditRow>, DbError> {
        self.flush(READ_AFTER).await;
        self.db.run(move |c| Ok(audit_log::table.find(seq).select(AuditRow::as_select()).first(c).optional()?)).await
    }

    /// Records `from` to `from + limit - 1` as JSON lines, and how many there were.
    pub async fn export_page(&self, from: i64, limit: i64) -> Result<(Vec<u8>, i64), DbError> {
        self.flush(READ_AFTER).await;
        self.db
            .run(move |c| {
                let mut lines = Vec::new();
                let n = export(c, from, Some(from.saturating_add(limit - 1)), &mut lines).map_err(|e| match e {
                    ExportError::Db(e) => e,
                    // Writing to memory does not fail; kept for completeness.
                    ExportError::Write(e) => DbError::Unavailable(e.to_string()),
                })?;
                Ok((lines, n))
            })
            .await
    }

    /// The `detail` of the latest successful prefills of a form, at most `limit`.
    pub async fn prefill_details(&self, form: String, limit: i64) -> Result<Vec<Value>, DbError> {
        self.flush(READ_AFTER).await;
        self.db.run(move |c| query::prefill_details(c, &form, limit)).await
    }

    /// The accesses that released a citizen's data, newest first, older than `before`.
    pub async fn accesses(&self, subject: String, before: Option<i64>, limit: i64) -> Result<Vec<AuditRow>, DbError> {
        self.flush(READ_AFTER).await;
        self.db.run(move |c| query::rows_for_subject(c, &subject, before, limit)).await
    }

    /// True once `shutdown` has run: no record is taken any more and the
    /// writer has stored everything it had.
    pub fn is_closed(&self) -> bool {
        self.tx.read().is_none() && self.writer.lock().is_none()
    }

    /// Stops accepting records, stores everything queued, and joins the writer.
    pub fn shutdown(&self) {
        self.tx.write().take();
        if let Some(handle) = self.writer.lock().take() {
            let _ = handle.join();
        }
    }
}

impl Drop for AuditSink {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// How long a read of the trail waits for the records queued before it.
const READ_AFTER: Duration = Duration::from_secs(2);

/// How often the writer looks at its queue while it gathers a batch.
const GATHER_POLL: Duration = Duration::from_millis(1);

fn writer_loop(
    db: Db,
    mut rx: tokio::sync::mpsc::Receiver<Msg>,
    metrics: Arc<Metrics>,
    batch_size: usize,
    interval: Duration,
) {
    let mut batch: Vec<AuditRow> = Vec::with_capacity(batch_size);
    let mut waiting = Waiting::default();
    let mut open = true;
    while open || !batch.is_empty() {
        if open {
            // Block for the first message; then gather the batch for up to
            // `interval` (group commit: one transaction for many records),
            // cut short when it is full, when someone waits for it (a flush,
            // or answers waiting for their records: then it holds everything
            // queued so far), or at shutdown.
            match rx.blocking_recv() {
                Some(m) => take(m, &mut batch, &mut waiting),
                None => open = false,
            }
            // Gather by polling the queue rather than waiting on it: a sender
            // then never has to wake this thread, one record at a time.
            let deadline = Instant::now() + interval;
            while open && !batch.is_empty() {
                while open && batch.len() < batch_size {
                    match rx.try_recv() {
                        Ok(m) => take(m, &mut batch, &mut waiting),
                        Err(tokio::sync::mpsc::error::TryRecvError::Empty) => break,
                        Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => open = false,
                    }
                }
                let now = Instant::now();
                if batch.len() >= batch_size || !waiting.is_empty() || now >= deadline {
                    break;
                }
                std::thread::sleep((deadline - now).min(GATHER_POLL));
            }
        }
        if !batch.is_empty() {
            let n = batch.len();
            let mut delay = Duration::from_millis(50);
            loop {
                let result = db.conn().and_then(|mut c| append_rows(&mut c, &mut batch));
                match result {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::error!(error = %e, records = n, "audit batch not stored; retrying");
                        std::thread::sleep(delay);
                        delay = (delay * 2).min(Duration::from_secs(2));
                    }
                }
            }
            batch.clear();
            metrics.audit_written.inc_by(n as u64);
            metrics.audit_queue.sub(n as i64);
            waiting.stored();
        }
        waiting.flushed();
    }
}

/// Who waits on the batch being gathered: callers of `flush`, and handlers
/// whose answer waits for its record (`store_before_answer`).
#[derive(Default)]
struct Waiting {
    flushes: Vec<mpsc::SyncSender<()>>,
    records: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl Waiting {
    fn is_empty(&self) -> bool {
        self.flushes.is_empty() && self.records.is_empty()
    }

    /// The batch is stored: tells those whose records were in it.
    fn stored(&mut self) {
        for r in self.records.drain(..) {
            let _ = r.send(());
        }
    }

    /// Everything queued before them is stored: tells the flushes.
    fn flushed(&mut self) {
        for w in self.flushes.drain(..) {
            let _ = w.try_send(());
        }
    }
}

fn take(m: Msg, batch: &mut Vec<AuditRow>, waiting: &mut Waiting) {
    match m {
        Msg::Record(r, stored) => {
            batch.push(AuditRow::unchained(*r));
            waiting.records.extend(stored);
        }
        Msg::Flush(w) => waiting.flushes.push(w),
    }
}

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    pub records: i64,
    pub head_seq: i64,
    /// The last record's hash: kept outside the database with `head_seq`, it
    /// is an anchor that a later verification checks (see `verify_anchored`).
    pub head_hash: String,
    /// The first record where the chain breaks, and why.
    pub broken_at: Option<i64>,
    pub reason: Option<String>,
}

impl Verification {
    pub fn is_intact(&self) -> bool {
        self.broken_at.is_none()
    }
}

/// Up to `limit` stored records from `seq` on, in order.
fn rows_from(conn: &mut DbConnection, seq: i64, limit: i64) -> Result<Vec<AuditRow>, DbError> {
    Ok(audit_log::table
        .filter(audit_log::seq.ge(seq))
        .order(audit_log::seq.asc())
        .limit(limit)
        .select(AuditRow::as_select())
        .load(conn)?)
}

/// Writes the records `from..=to` (all from `from` when `to` is `None`) as
/// JSON lines, one stored row each with its hashes, from one snapshot of the
/// database; returns how many. [`verify_export`] checks such a file without
/// the database.
pub fn export(
    conn: &mut DbConnection,
    from: i64,
    to: Option<i64>,
    out: &mut dyn std::io::Write,
) -> Result<i64, ExportError> {
    in_snapshot(conn, |c| {
        let (mut next, mut n) = (from.max(1), 0i64);
        loop {
            let page = rows_from(c, next, 2_000)?;
            let Some(last) = page.last().map(|r| r.seq) else { break };
            for row in page.iter().take_while(|r| to.is_none_or(|to| r.seq <= to)) {
                serde_json::to_writer(&mut *out, row)?;
                out.write_all(b"\n")?;
                n += 1;
            }
            if to.is_some_and(|to| last >= to) {
                break;
            }
            next = last + 1;
        }
        out.flush()?;
        Ok(n)
    })
}

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("cannot write the export: {0}")]
    Write(#[from] std::io::Error),
}

impl From<diesel::result::Error> for ExportError {
    fn from(e: diesel::result::Error) -> Self {
        ExportError::Db(e.into())
    }
}

impl From<serde_json::Error> for ExportError {
    fn from(e: serde_json::Error) -> Self {
        ExportError::Write(e.into())
    }
}

/// What [`verify_export`] found in a file of exported records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportVerification {
    pub records: i64,
    pub first_seq: i64,
    pub last_seq: i64,
    /// The hash the first record links to: the genesis value when the export
    /// starts at record 1; otherwise the previous record's, which an anchor
    /// for it confirms.
    pub links_to: String,
    pub last_hash: String,
    pub broken_at: Option<i64>,
    pub reason: Option<String>,
}

impl ExportVerification {
    pub fn is_intact(&self) -> bool {
        self.broken_at.is_none()
    }
}

/// Checks exported records (JSON lines, as [`export`] writes them) without
/// the database: each is there, links to the one before and matches its hash.
/// An export from record 1 must start from the genesis value; one from later
/// links to the record before it, which an anchor (`seq - 1`) can confirm.
pub fn verify_export(
    lines: impl std::io::BufRead,
    anchors: &BTreeMap<i64, String>,
) -> Result<ExportVerification, String> {
    let mut walk: Option<ChainWalk> = None;
    let mut result = ExportVerification {
        records: 0,
        first_seq: 0,
        last_seq: 0,
        links_to: String::new(),
        last_hash: String::new(),
        broken_at: None,
        reason: None,
    };
    for (i, line) in lines.lines().enumerate() {
        let line = line.map_err(|e| format!("cannot read line {}: {e}", i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let row: AuditRow =
            serde_json::from_str(&line).map_err(|e| format!("line {} is not an exported audit record: {e}", i + 1))?;
        let walk = walk.get_or_insert_with(|| {
            result.first_seq = row.seq;
            result.links_to.clone_from(&row.prev_hash);
            if row.seq == 1 {
                ChainWalk::from_genesis(anchors)
            } else {
                ChainWalk::from_record(&row, anchors)
            }
        });
        if let Err((seq, reason)) = walk.check(&row) {
            result.broken_at = Some(seq);
            result.reason = Some(reason);
            break;
        }
        result.records = walk.count();
        result.last_seq = row.seq;
        result.last_hash = row.hash;
    }
    if result.is_intact() && result.first_seq > 1 {
        if let Some(anchor) = anchors.get(&(result.first_seq - 1)) {
            if *anchor != result.links_to {
                result.broken_at = Some(result.first_seq);
                result.reason = Some(format!(
                    "the first record does not link to the hash anchored for record {}",
                    result.first_seq - 1
                ));
            }
        }
    }
    Ok(result)
}

/// Walks the chain from the first record, recomputing every hash. It reads
/// one snapshot, so batches stored while it runs neither count nor break it.
pub fn verify(conn: &mut DbConnection) -> Result<Verification, DbError> {
    verify_anchored(conn, &BTreeMap::new())
}

/// Anchors as `SEQ:HASH`, separated by commas (the form `verify` reports a
/// chain head in, to be kept outside the database).
pub fn parse_anchors(text: &str) -> Result<BTreeMap<i64, String>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| {
            let (seq, hash) = a.split_once(':').ok_or_else(|| format!("anchor `{a}` is not SEQ:HASH"))?;
            let seq: i64 = seq
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("anchor `{a}`: SEQ is a record number, 1 or more"))?;
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
                return Err(format!("anchor `{a}`: HASH is 64 lower-case hex digits"));
            }
            Ok((seq, hash.to_string()))
        })
        .collect()
}

/// `verify`, and also checks that each anchored record (`seq` to the hash
/// recorded for it earlier, outside the database) still has that hash. The
/// chain alone cannot see a rewrite that recomputed every later hash and the
/// head; an anchor taken before the rewrite can.
pub fn verify_anchored(conn: &mut DbConnection, anchors: &BTreeMap<i64, String>) -> Result<Verification, DbError> {
    in_snapshot(conn, |c| verify_snapshot(c, anchors))
}

/// Runs `f` in one read-only transaction that sees one snapshot of the trail
/// (SQLite's transactions do; PostgreSQL's need repeatable read), so batches
/// stored meanwhile neither count nor break what `f` reads.
fn in_snapshot<T, E: From<diesel::result::Error>>(
    conn: &mut DbConnection,
    f: impl FnOnce(&mut DbConnection) -> Result<T, E>,
) -> Result<T, E> {
    conn.transaction::<_, E, _>(|c| {
        if let DbConnection::Postgres(pg) = c {
            diesel::sql_query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY").execute(pg)?;
        }
        f(c)
    })
}

/// Follows a chain of records in `seq` order, checking that none is missing,
/// each links to the one before, each hash matches its content, and each
/// anchored record has its anchored hash.
pub struct ChainWalk<'a> {
    next_seq: i64,
    prev: String,
    count: i64,
    anchors: &'a BTreeMap<i64, String>,
}

impl<'a> ChainWalk<'a> {
    /// From the first record of the trail.
    pub fn from_genesis(anchors: &'a BTreeMap<i64, String>) -> Self {
        ChainWalk { next_seq: 1, prev: GENESIS.to_string(), count: 0, anchors }
    }

    /// From `first`, a record in the middle of the trail (an export that
    /// starts there): its link to the record before is taken as given.
    pub fn from_record(first: &AuditRow, anchors: &'a BTreeMap<i64, String>) -> Self {
        ChainWalk { next_seq: first.seq, prev: first.prev_hash.clone(), count: 0, anchors }
    }

    /// The next record; on a break, its `seq` and why.
    pub fn check(&mut self, row: &AuditRow) -> Result<(), (i64, String)> {
        if row.seq != self.next_seq {
            return Err((
                self.next_seq,
                format!("record {} is missing (the next record is {})", self.next_seq, row.seq),
            ));
        }
        if row.prev_hash != self.prev {
            return Err((row.seq, "its link to the previous record does not match".into()));
        }
        if row.compute_hash() != row.hash {
            return Err((row.seq, "its content does not match its hash (edited)".into()));
        }
        if self.anchors.get(&row.seq).is_some_and(|a| *a != row.hash) {
            return Err((
                row.seq,
                "its hash is not the one anchored for it: the chain was rewritten at or before this record".into(),
            ));
        }
        self.prev.clone_from(&row.hash);
        self.next_seq += 1;
        self.count += 1;
        Ok(())
    }

    /// Records checked so far.
    pub fn count(&self) -> i64 {
        self.count
    }

    /// The hash of the last record checked (or the starting link).
    pub fn last_hash(&self) -> &str {
        &self.prev
    }

    /// The `seq` the next record must have.
    pub fn next_seq(&self) -> i64 {
        self.next_seq
    }
}

fn verify_snapshot(conn: &mut DbConnection, anchors: &BTreeMap<i64, String>) -> Result<Verification, DbError> {
    let head: Option<(i64, String)> = audit_head::table
        .filter(audit_head::id.eq(1))
        .select((audit_head::seq, audit_head::hash))
        .first(conn)
        .optional()?;
    let head_missing = head.is_none();
    let (head_seq, head_hash) = head.unwrap_or((0, String::new()));
    let mut walk = ChainWalk::from_genesis(anchors);
    let broken = |seq: i64, reason: String, count: i64| Verification {
        records: count,
        head_seq,
        head_hash: head_hash.clone(),
        broken_at: Some(seq),
        reason: Some(reason),
    };
    loop {
        let page = rows_from(conn, walk.next_seq(), 2_000)?;
        if page.is_empty() {
            break;
        }
        for row in page {
            if let Err((seq, reason)) = walk.check(&row) {
                return Ok(broken(seq, reason, walk.count()));
            }
        }
    }
    let (count, prev) = (walk.count(), walk.last_hash().to_string());
    if head_missing {
        return Ok(broken(
            count + 1,
            format!(
                "the chain head is missing (deleted), so nothing shows how many records were written; \
                 {count} records remain"
            ),
            count,
        ));
    }
    if count != head_seq {
        return Ok(broken(
            count + 1,
            format!("the chain ends at record {count} but {head_seq} were written (records deleted at the end)"),
            count,
        ));
    }
    if prev != head_hash {
        return Ok(broken(head_seq, "the last record does not match the chain head".into(), count));
    }
    if let Some((&seq, _)) = anchors.range(count + 1..).next() {
        return Ok(broken(seq, "an anchored record is no longer in the chain".into(), count));
    }
    Ok(Verification { records: count, head_seq, head_hash, broken_at: None, reason: None })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Rows stored by earlier versions hashed the canonical JSON of a
    /// `serde_json::Value` array of the fields; the hash must stay the same
    /// byte for byte, or their chains would no longer verify.
    #[test]
    fn the_hash_covers_the_same_bytes_as_the_stored_chains() {
        let mut row = AuditRow {
            seq: 7,
            record_id: "5d0c6d2e-1b7c-4c57-9d0e-3f2f0a4a1b2c".into(),
            ts: 1_795_000_000_000_000,
            request_id: "req \"quoted\" \u{1}".into(),
            partner_id: "000.00.15.H29".into(),
            key_id: "k1".into(),
            action: "exchange".into(),
            subject: Some("001090001234".into()),
            purpose: None,
            resource: "population.citizen".into(),
            adapters: "[\"population.citizen\"]".into(),
            elements: "[\"full_name\",\"sex\"]".into(),
            outcome: "ok".into(),
            status: 200,
            latency_us: -1,
            detail: "{\"withheld\":[\"phone\"],\"tên\":\"Nguyễn\"}".into(),
            prev_hash: GENESIS.into(),
            hash: String::new(),
        };
        let earlier = |r: &AuditRow| {
            let fields = json!([
                r.seq,
                r.record_id,
                r.ts,
                r.request_id,
                r.partner_id,
                r.key_id,
                r.action,
                r.subject,
                r.purpose,
                r.resource,
                r.adapters,
                r.elements,
                r.outcome,
                r.status,
                r.latency_us,
                r.detail,
            ]);
            let mut h = Sha256::new();
            h.update(r.prev_hash.as_bytes());
            h.update(b"\n");
            h.update(fields.to_string().as_bytes());
            hex::encode(h.finalize())
        };
        assert_eq!(row.compute_hash(), earlier(&row));
        row.purpose = Some("residence_change".into());
        row.subject = None;
        assert_eq!(row.compute_hash(), earlier(&row));
        let before = row.compute_hash();
        row.latency_us += 1;
        assert_ne!(row.compute_hash(), before, "every field is covered");
    }
}
