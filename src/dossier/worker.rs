//! Carrying dossiers: each node's worker claims the steps that are due, one
//! node per step (a lease in the database), calls the registry, and stores
//! what came back with the step's event and callback in one transaction.
//!
//! A step is filed with an idempotency key made of the dossier code and the
//! step: a node that dies after the registry took the application, before
//! storing its answer, leaves the lease to expire; whichever node takes the
//! step over sends the same key, and the registry answers with the
//! application it made. A registry's fault is retried with backoff, never
//! counted as the step's failure.

use super::store::{self, DossierRow, ResultRow, StepRow};
use super::{callback_body, dossier_state, Dossiers, StepState};
use crate::adapter::client::ExchangeError;
use crate::audit::{Action, AuditRecord, AuditSink, Outcome};
use crate::db::{now_micros, DbConnection, DbError};
use crate::domain::calendar::today_in_vietnam;
use crate::flow::Flow;
use crate::telemetry::Metrics;
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Worker {
    pub dossiers: Arc<Dossiers>,
    http: reqwest::Client,
    metrics: Arc<Metrics>,
    audit: Arc<AuditSink>,
    /// This node's name in the leases it holds.
    node: String,
    /// Flow versions dossiers were filed with that are no longer current.
    older: Mutex<HashMap<(String, i32), Arc<Flow>>>,
}

/// What a registry call for a step came to.
enum Came {
    Outcome(Value),
    /// A registry fault: try again later.
    Fault(ExchangeError),
    /// The request itself was refused: the step cannot go on.
    Stopped(String),
}

impl Worker {
    pub fn new(dossiers: Arc<Dossiers>, http: reqwest::Client, metrics: Arc<Metrics>, audit: Arc<AuditSink>) -> Worker {
        let node = format!("node-{}", crate::telemetry::new_uuid());
        Worker { dossiers, http, metrics, audit, node, older: Mutex::default() }
    }

    /// Runs the worker until it is dropped elsewhere (its last strong
    /// reference is the application's).
    pub fn spawn(worker: &Arc<Worker>, ready: Arc<std::sync::atomic::AtomicBool>) {
        let weak = Arc::downgrade(worker);
        let every = Duration::from_millis(worker.dossiers.settings.poll_ms.clamp(20, 60_000));
        // Overdue steps are counted every twenty looks at the queue (1 to 30 s).
        let overdue_every = (every * 20).clamp(Duration::from_secs(1), Duration::from_secs(30));
        tokio::spawn(async move {
            let mut last_overdue = Instant::now() - Duration::from_secs(3600);
            let mut busy = false;
            loop {
                // A node that just carried steps looks again at once: the
                // steps they started are due now.
                if !busy {
                    let Some(wake) = weak.upgrade().map(|w| w.dossiers.wake.clone()) else { break };
                    tokio::select! {
                        _ = tokio::time::sleep(every) => {}
                        _ = wake.notified() => {}
                    }
                }
                let Some(w) = weak.upgrade() else { break };
                if !ready.load(std::sync::atomic::Ordering::Acquire) {
                    busy = false;
                    continue;
                }
                busy = match w.tick().await {
                    Ok(n) => n > 0,
                    Err(e) => {
                        tracing::warn!(error = %e, "the dossier queue could not be read; will retry");
                        false
                    }
                };
                if let Err(e) = w.deliver_callbacks().await {
                    tracing::warn!(error = %e, "dossier callbacks could not be read; will retry");
                }
                if last_overdue.elapsed() > overdue_every {
                    w.count_overdue().await;
                    last_overdue = Instant::now();
                }
            }
        });
    }

    /// Claims the due steps and carries them, each at once.
    pub async fn tick(&self) -> Result<usize, DbError> {
        let now = now_micros();
        let s = &self.dossiers.settings;
        let until = now + (s.lease_ms as i64) * 1000;
        let (node, limit) = (self.node.clone(), s.concurrency.max(1) as i64);
        let claimed = self.dossiers.db.run(move |c| store::claim(c, &node, now, until, limit)).await?;
        let n = claimed.len();
        futures_util::future::join_all(claimed.into_iter().map(|(code, step)| async move {
            if let Err(e) = self.carry(&code, &step).await {
                tracing::warn!(dossier = %code, step = %step, error = %e, "a step could not be stored; its lease will expire and it will be taken up again");
            }
        }))
        .await;
        Ok(n)
    }

    /// The flow a dossier was filed with: the catalogue's, or an earlier
    /// version compiled once from its stored document (read only then).
    async fn flow(&self, d: &DossierRow) -> Option<Arc<Flow>> {
        let catalog = self.dossiers.catalog.get();
        if let Some(f) = catalog.flows.get(&d.flow_id).filter(|f| f.flow.version == d.flow_version) {
            return Some(f.flow.clone());
        }
        let key = (d.flow_id.clone(), d.flow_version);
        if let Some(f) = self.older.lock().get(&key) {
            return Some(f.clone());
        }
        let (id, version) = key.clone();
        let stored =
            self.dossiers.db.run(move |c| crate::catalog::store::flows::document(c, &id, version)).await.ok()??;
        let doc: Value = serde_json::from_str(&stored).ok()?;
        let forms = catalog.forms.keys().cloned().collect();
        let flow = Flow::compile(&doc, d.flow_version, &catalog.operation_kinds(), &forms, &catalog.elements).ok()?;
        let flow = Arc::new(flow);
        self.older.lock().insert(key, flow.clone());
        Some(flow)
    }

    /// One claimed step: the registry call its state calls for, then its
    /// outcome stored.
    async fn carry(&self, code: &str, step_id: &str) -> Result<(), DbError> {
        let (code2, step2) = (code.to_string(), step_id.to_string());
        let loaded = self
            .dossiers
            .db
            .run(move |c| {
                let Some(d) = store::dossier(c, &code2)? else { return Ok(None) };
                let steps = store::steps(c, &code2)?;
                Ok(Some((d, steps, step2)))
            })
            .await?;
        let Some((dossier, steps, step_id)) = loaded else { return Ok(()) };
        let Some(step) = steps.iter().find(|s| s.step_id == step_id).cloned() else { return Ok(()) };
        if step.lease_owner.as_deref() != Some(self.node.as_str()) {
            return Ok(());
        }
        let Some(flow) = self.flow(&dossier).await else {
            return self.stop(&dossier, &step, "the flow this dossier was filed with no longer compiles").await;
        };
        let Some(decl) = flow.step(&step.step_id) else {
            return self.stop(&dossier, &step, "the flow has no such step").await;
        };
        let catalog = self.dossiers.catalog.get();
        let Some(adapter) = catalog.adapter(&decl.doc.adapter).cloned() else {
            return self.retry(&dossier, step, &format!("adapter {} is not enabled", decl.doc.adapter)).await;
        };
        let state = StepState::parse(&step.state);
        let reference = json!(step.reference);
        let (op_name, request, key) = match state {
            StepState::Ready => {
                let request = match &step.request {
                    Some(r) => serde_json::from_str(r).unwrap_or(Value::Null),
                    None => {
                        let results: serde_json::Map<String, Value> = steps
                            .iter()
                            .filter_map(|s| Some((s.step_id.clone(), serde_json::from_str(s.result.as_ref()?).ok()?)))
                            .collect();
                        let input = json!({
                            "declaration": serde_json::from_str::<Value>(&dossier.declaration).unwrap_or(Value::Null),
                            "requester_id": dossier.requester_id,
                            "results": results,
                        });
                        match decl.request.run(&input) {
                            Ok(r) => r,
                            Err(e) => {
                                return self.stop(&dossier, &step, &format!("the step's request program: {e}")).await
                            }
                        }
                    }
                };
                (decl.doc.submit.clone(), request, Some(format!("{}:{}", dossier.code, step.step_id)))
            }
            StepState::Received | StepState::Processing => {
                match &decl.doc.status {
                    Some(op) => (op.clone(), json!({"reference": reference}), None),
                    None => return self
                        .stop(
                            &dossier,
                            &step,
                            "the registry is still processing it and the step has no status operation to read it back",
                        )
                        .await,
                }
            }
            StepState::Supplementing => match &decl.doc.supplement {
                Some(op) => {
                    let docs: Value =
                        step.supplement.as_deref().and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default();
                    let mut request = json!({"reference": reference, "documents": docs["documents"]});
                    if let Some(note) = docs["note"].as_str() {
                        request["note"] = json!(note);
                    }
                    let key =
                        format!("{}:{}:supplement:{}", dossier.code, step.step_id, hex::encode(&sha2_of(&docs)[..8]));
                    (op.clone(), request, Some(key))
                }
                None => return self.stop(&dossier, &step, "the step has no supplement operation").await,
            },
            _ => return self.release(&step).await,
        };
        let Some(op) = adapter.operations.get(&op_name) else {
            return self.retry(&dossier, step, &format!("adapter {} has no operation {op_name}", adapter.id)).await;
        };
        if state == StepState::Ready && step.request.is_none() {
            let mut s = step.clone();
            s.request = Some(request.to_string());
            let saved = s.clone();
            self.dossiers.db.run(move |c| store::save_step(c, &saved)).await?;
        }
        let started = Instant::now();
        let result = adapter.carry(op, &request, key.as_deref(), &self.http, &self.metrics).await;
        let came = match result {
            Ok(outcome) => Came::Outcome(outcome),
            Err(e) => match e {
                ExchangeError::InvalidRequest(ref errors) => {
                    let at: Vec<String> = errors.iter().map(|e| format!("{} {}", e.pointer, e.message)).collect();
                    Came::Stopped(format!("the request does not fit {}.{op_name}: {}", adapter.id, at.join("; ")))
                }
                ExchangeError::NotFound => Came::Stopped(format!("{} holds no record the request names", adapter.id)),
                ExchangeError::Rejected(status) if state == StepState::Supplementing => {
                    // Sent already (by a node that died before storing the
                    // answer): read the application back instead.
                    Came::Outcome(json!({"state": "processing", "reason": format!("supplement answered {status}")}))
                }
                ExchangeError::Rejected(status) => {
                    Came::Stopped(format!("{} refused the request as invalid (HTTP {status})", adapter.id))
                }
                ExchangeError::Fault(ref f) if f.is_senders() => {
                    Came::Stopped(format!("{} refused the request with the fault {}", adapter.id, f.code))
                }
                other => Came::Fault(other),
            },
        };
        let resource = format!("{}.{op_name}", adapter.id);
        self.audit_call(&dossier, &flow, &step, (&resource, &request), &came, started).await;
        match came {
            Came::Outcome(outcome) => self.apply(&dossier, &flow, step, outcome).await,
            Came::Stopped(reason) => self.stop(&dossier, &step, &reason).await,
            Came::Fault(e) => {
                let why = format!("{}: {}", e.kind(), crate::error::ApiError::from(e).detail);
                self.retry(&dossier, step, &why).await
            }
        }
    }

    /// Records the registry call in the audit trail as an exchange made for
    /// the dossier's partner.
    async fn audit_call(
        &self,
        d: &DossierRow,
        flow: &Flow,
        step: &StepRow,
        (resource, request): (&str, &Value),
        came: &Came,
        started: Instant,
    ) {
        let mut r = AuditRecord::new(String::new(), Action::Step, resource.to_string());
        r.partner_id = d.partner_id.clone();
        r.key_id = "dossier".into();
        r.subject = request["citizen_id"].as_str().map(str::to_string).or_else(|| d.subject_id.clone());
        r.purpose = Some(flow.doc.purpose.clone());
        r.adapters = vec![resource.to_string()];
        r.latency_us = started.elapsed().as_micros() as i64;
        r.detail = json!({"dossier": d.code, "step": step.step_id, "from": step.state});
        match came {
            Came::Outcome(o) => {
                r.detail["state"] = o["state"].clone();
                if let Some(result) = o["result"].as_object() {
                    r.elements = result.keys().cloned().collect();
                }
            }
            Came::Stopped(reason) => {
                r.outcome = Outcome::Refused;
                r.status = 422;
                r.detail["reason"] = json!(reason);
            }
            Came::Fault(e) => {
                r.outcome = Outcome::Failed;
                r.status = 502;
                r.detail["error"] = json!(e.kind().as_str());
            }
        }
        self.audit.record(r).await;
    }

    /// Gives the step back without a change (nothing to do in its state).
    async fn release(&self, step: &StepRow) -> Result<(), DbError> {
        let mut s = step.clone();
        s.lease_owner = None;
        s.lease_until = 0;
        self.dossiers.db.run(move |c| store::save_step(c, &s)).await
    }

    /// A registry fault: the step is tried again after a backoff.
    async fn retry(&self, d: &DossierRow, mut step: StepRow, why: &str) -> Result<(), DbError> {
        let settings = &self.dossiers.settings;
        step.attempts += 1;
        let base = settings.poll_ms.max(50);
        let wait = base.saturating_mul(1u64 << step.attempts.clamp(0, 16)).min(settings.retry_max_ms.max(base));
        let now = now_micros();
        step.next_at = now + (wait as i64) * 1000;
        step.lease_owner = None;
        step.lease_until = 0;
        step.updated_at = now;
        self.metrics.dossier_retries.with_label_values(&[&d.flow_id, &step.step_id]).inc();
        tracing::warn!(dossier = %d.code, step = %step.step_id, attempts = step.attempts, retry_in_ms = wait, %why, "registry fault; the step will be tried again");
        let (code, first, why) = (d.code.clone(), step.attempts == 1, why.to_string());
        self.dossiers
            .db
            .run(move |c| {
                crate::db::write_transaction(c, |c| {
                    store::save_step(c, &step)?;
                    // The first fault of a run shows in the timeline; the
                    // retries after it only in the step's attempts.
                    if first {
                        store::event(c, &code, Some(&step.step_id), "retrying", &json!({"why": why}), now)?;
                    }
                    Ok(())
                })
            })
            .await
    }

    /// The step cannot go on: it fails, and the steps after it are cancelled.
    async fn stop(&self, d: &DossierRow, step: &StepRow, reason: &str) -> Result<(), DbError> {
        tracing::warn!(dossier = %d.code, step = %step.step_id, %reason, "a dossier step failed");
        let outcome = json!({"state": "failed", "reason": reason});
        self.store_outcome(d, step.clone(), outcome, None).await
    }

    /// A registry's answer: the step moves on, and with it the dossier.
    async fn apply(&self, d: &DossierRow, flow: &Arc<Flow>, step: StepRow, outcome: Value) -> Result<(), DbError> {
        self.store_outcome(d, step, outcome, Some(flow.clone())).await
    }

    async fn store_outcome(
        &self,
        d: &DossierRow,
        step: StepRow,
        outcome: Value,
        flow: Option<Arc<Flow>>,
    ) -> Result<(), DbError> {
        let me = self.node.clone();
        let d = d.clone();
        let poll = self.dossiers.settings.poll_ms as i64 * 1000;
        let status_max = self.dossiers.settings.status_max_ms as i64 * 1000;
        let calendar = self.dossiers.calendar.clone();
        let metrics = self.metrics.clone();
        let flow = match flow {
            Some(f) => Some(f),
            None => self.flow(&d).await,
        };
        self.dossiers
            .db
            .run(move |c| {
                crate::db::write_transaction(c, |c| {
                    store::lock_dossier(c, &d.code)?;
                    let mut steps = store::steps(c, &d.code)?;
                    let Some(i) = steps.iter().position(|s| s.step_id == step.step_id) else { return Ok(()) };
                    // Another node took the step over (this one was too slow):
                    // its answer is the one kept.
                    if steps[i].lease_owner.as_deref() != Some(me.as_str()) {
                        return Ok(());
                    }
                    let now = now_micros();
                    let today = today_in_vietnam();
                    let before = StepState::parse(&steps[i].state);
                    let last_look = steps[i].updated_at;
                    let state = match outcome["state"].as_str() {
                        Some("done") => StepState::Done,
                        Some("refused") => StepState::Refused,
                        Some("supplement") => StepState::Supplement,
                        Some("received") => StepState::Received,
                        Some("processing") => StepState::Processing,
                        _ => StepState::Failed,
                    };
                    let s = &mut steps[i];
                    s.state = state.as_str().into();
                    s.attempts = 0;
                    s.lease_owner = None;
                    s.lease_until = 0;
                    s.updated_at = now;
                    if let Some(r) = outcome["reference"].as_str() {
                        s.reference = Some(r.to_string());
                    }
                    s.reason = outcome["reason"]
                        .as_str()
                        .map(str::to_string)
                        .or(s.reason.take().filter(|_| !state.is_finished()));
                    s.supplement_deadline = outcome["supplement_deadline"].as_str().map(str::to_string);
                    s.next_at = match state {
                        // Read back again soon after it was filed, then
                        // less and less often: twice the last wait, up to
                        // `status_max_ms` (a registry may take days).
                        StepState::Received | StepState::Processing => {
                            let again = matches!(before, StepState::Received | StepState::Processing);
                            let waited = if again { (now - last_look).max(0) } else { 0 };
                            now + (2 * waited).clamp(poll, status_max.max(poll))
                        }
                        _ => i64::MAX,
                    };
                    if state == StepState::Done {
                        let result = outcome.get("result").cloned().filter(|r| !r.is_null()).unwrap_or(json!({}));
                        s.result = Some(result.to_string());
                        keep_result(c, &d, s, &result, flow.as_deref(), now)?;
                    }
                    let changed = before != state;
                    let step_id = s.step_id.clone();
                    if changed {
                        let mut detail = json!({});
                        for k in ["reference", "reason", "supplement_deadline", "result"] {
                            if let Some(v) = outcome.get(k).filter(|v| !v.is_null()) {
                                detail[k] = v.clone();
                            }
                        }
                        store::event(c, &d.code, Some(&step_id), state.as_str(), &detail, now)?;
                        metrics.dossier_steps.with_label_values(&[&d.flow_id, &step_id, state.as_str()]).inc();
                    }
                    store::save_step(c, &steps[i])?;
                    // What follows: the next steps start, or are cancelled.
                    let mut started = Vec::new();
                    if let Some(flow) = &flow {
                        match state {
                            StepState::Done => {
                                for j in 0..steps.len() {
                                    if steps[j].state != "waiting" {
                                        continue;
                                    }
                                    let Some(decl) = flow.step(&steps[j].step_id) else { continue };
                                    let all_done = decl
                                        .doc
                                        .after
                                        .iter()
                                        .all(|a| steps.iter().any(|s| &s.step_id == a && s.state == "done"));
                                    if all_done {
                                        let n = &mut steps[j];
                                        n.state = "ready".into();
                                        n.next_at = now;
                                        n.started_on = Some(today.to_string());
                                        n.due_on =
                                            Some(calendar.add_working_days(today, decl.doc.deadline_days).to_string());
                                        n.updated_at = now;
                                        store::save_step(c, n)?;
                                        store::event(c, &d.code, Some(&n.step_id), "ready", &json!({}), now)?;
                                        started.push(n.step_id.clone());
                                    }
                                }
                            }
                            StepState::Refused | StepState::Failed => {
                                cancel_after(c, &d.code, &mut steps, flow, &step_id, now)?;
                            }
                            _ => {}
                        }
                    }
                    // As it is now: a withdrawal may have come while the registry was called.
                    let current = store::dossier(c, &d.code)?.map(|x| x.state).unwrap_or_default();
                    let dossier_now = dossier_state(&steps, current == "withdrawing");
                    if current != dossier_now {
                        store::set_dossier_state(c, &d.code, dossier_now, now)?;
                        if !matches!(dossier_now, "processing" | "supplement" | "withdrawing") {
                            store::event(c, &d.code, None, dossier_now, &json!({}), now)?;
                        }
                    }
                    if changed {
                        let step = &steps[i];
                        let (actor, title) = match flow.as_deref().and_then(|f| f.step(&step_id)) {
                            Some(decl) => (decl.doc.adapter.as_str(), decl.doc.title.as_str()),
                            None => (step_id.as_str(), step_id.as_str()),
                        };
                        let what = format!("{step_id}:{}", state.as_str());
                        let change = crate::sync::linked::Change {
                            code: &d.code,
                            partner: &d.partner_id,
                            state: dossier_now,
                            actor,
                            note: format!("{title}: {}", state.as_str()),
                            due_on: step.due_on.as_deref(),
                            what: &what,
                        };
                        crate::sync::linked::changed(c, &change, now)?;
                    }
                    if changed && d.callback_url.is_some() {
                        let row = DossierRow { state: dossier_now.into(), ..d.clone() };
                        store::queue_callback(
                            c,
                            &d.code,
                            &callback_body(&row, Some((&step_id, state.as_str())), "step", now),
                            now,
                        )?;
                    }
                    Ok(())
                })
            })
            .await
    }

    /// Sends the callbacks due, signed, each dossier's in order.
    pub async fn deliver_callbacks(&self) -> Result<usize, DbError> {
        let now = now_micros();
        let until = now + 30_000_000;
        let due = self.dossiers.db.run(move |c| store::claim_callbacks(c, now, until, 32)).await?;
        let n = due.len();
        for cb in due {
            let code = cb.dossier_code.clone();
            let d = self.dossiers.db.run(move |c| store::dossier(c, &code)).await?;
            let Some(d) = d else { continue };
            let sealing = self.dossiers.catalog.sealing.clone();
            let secret = d.callback_secret.as_deref().and_then(|s| super::callback_secret(s, sealing.as_deref()));
            let (Some(url), Some(secret)) = (d.callback_url.as_deref(), secret.as_deref()) else {
                let seq = cb.seq;
                self.dossiers.db.run(move |c| store::callback_delivered(c, seq, now)).await?;
                continue;
            };
            let signature = sign(secret, cb.body.as_bytes());
            let sent = self
                .http
                .post(url)
                .timeout(Duration::from_secs(10))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header("X-Lgsp-Signature", format!("sha256={signature}"))
                .header("X-Lgsp-Delivery", cb.seq.to_string())
                .body(cb.body.clone())
                .send()
                .await;
            let seq = cb.seq;
            match sent {
                Ok(r) if r.status().is_success() => {
                    self.dossiers.db.run(move |c| store::callback_delivered(c, seq, now_micros())).await?;
                }
                other => {
                    let why = match other {
                        Ok(r) => format!("answered {}", r.status().as_u16()),
                        Err(e) => format!("not reached: {}", e.without_url()),
                    };
                    let base = self.dossiers.settings.poll_ms.max(50);
                    let wait = base
                        .saturating_mul(1u64 << (cb.attempts + 1).clamp(0, 16))
                        .min(self.dossiers.settings.retry_max_ms.max(base));
                    tracing::warn!(dossier = %cb.dossier_code, seq, attempts = cb.attempts + 1, %why, "callback not delivered; will retry");
                    let next = now_micros() + wait as i64 * 1000;
                    self.dossiers.db.run(move |c| store::callback_failed(c, seq, next, &why)).await?;
                }
            }
        }
        Ok(n)
    }

    /// Counts the steps past their deadline (`lgsp_dossier_steps_overdue`)
    /// and names each in the log.
    async fn count_overdue(&self) {
        let today = today_in_vietnam().to_string();
        match self.dossiers.db.run(move |c| store::overdue(c, &today)).await {
            Ok(late) => {
                self.metrics.dossier_steps_overdue.set(late.len() as i64);
                for s in &late {
                    tracing::warn!(dossier = %s.dossier_code, step = %s.step_id, due_on = ?s.due_on, state = %s.state, "dossier step overdue");
                }
            }
            Err(e) => tracing::warn!(error = %e, "overdue steps could not be counted"),
        }
    }
}

fn sha2_of(v: &Value) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(v.to_string().as_bytes()).to_vec()
}

/// HMAC-SHA256 of `body` with `secret`, in hex.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    hex::encode(ring::hmac::sign(&key, body).as_ref())
}

/// Cancels the steps that need `failed`, directly or through another.
fn cancel_after(
    c: &mut DbConnection,
    code: &str,
    steps: &mut [StepRow],
    flow: &Flow,
    failed: &str,
    now: i64,
) -> Result<(), DbError> {
    let mut stopped = vec![failed.to_string()];
    let mut i = 0;
    while i < stopped.len() {
        let gone = stopped[i].clone();
        for s in steps.iter_mut().filter(|s| s.state == "waiting") {
            let needs = flow.step(&s.step_id).is_some_and(|d| d.doc.after.contains(&gone));
            if needs {
                s.state = "cancelled".into();
                s.reason = Some(format!("\"{gone}\" did not succeed"));
                s.next_at = i64::MAX;
                s.updated_at = now;
                store::save_step(c, s)?;
                store::event(c, code, Some(&s.step_id), "cancelled", &json!({"reason": s.reason}), now)?;
                stopped.push(s.step_id.clone());
            }
        }
        i += 1;
    }
    Ok(())
}

/// Keeps a done step's result as the province's electronic record of it,
/// owned by the citizen it is about.
fn keep_result(
    c: &mut DbConnection,
    d: &DossierRow,
    s: &StepRow,
    result: &Value,
    flow: Option<&Flow>,
    now: i64,
) -> Result<(), DbError> {
    let owner = result["citizen_id"]
        .as_str()
        .map(str::to_string)
        .or_else(|| d.subject_id.clone())
        .unwrap_or_else(|| d.requester_id.clone());
    let (number, issued_on) = result
        .as_object()
        .and_then(|o| {
            o.values().find_map(|v| {
                let number = v
                    .get("certificate_number")
                    .or_else(|| v.get("number"))
                    .or_else(|| v.get("decision_number"))
                    .or_else(|| v.get("household_book_number"))?
                    .as_str()?
                    .to_string();
                let date = ["registration_date", "valid_from", "decision_date", "removal_date"]
                    .iter()
                    .find_map(|k| v.get(*k).and_then(Value::as_str))
                    .map(str::to_string);
                Some((Some(number), date))
            })
        })
        .unwrap_or((None, None));
    let agency = flow.and_then(|f| f.step(&s.step_id)).map(|st| st.doc.adapter.clone()).unwrap_or_default();
    let row = ResultRow {
        id: crate::telemetry::new_uuid().to_string(),
        owner_id: owner,
        kind: s.step_id.clone(),
        number,
        issued_on,
        agency,
        dossier_code: d.code.clone(),
        step_id: s.step_id.clone(),
        data: result.to_string(),
        created_at: now,
    };
    store::insert_result(c, &row)
}
