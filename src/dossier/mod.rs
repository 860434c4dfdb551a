//! Linked dossiers (Decree 63/2024/NĐ-CP): one declaration carried through
//! several agencies that write, as a flow declares. A portal files a dossier;
//! its state lives in the database; the workers of every node carry its
//! steps (see [`worker`]); the partner reads its timeline, answers supplement
//! requests, withdraws it, and is told of each change at its callback URL.

pub mod store;
pub mod worker;

use crate::catalog::LiveCatalog;
use crate::config::DossierSettings;
use crate::db::{micros_to_rfc3339, now_micros, Db, DbError};
use crate::domain::calendar::{today_in_vietnam, WorkingCalendar};
use crate::domain::dossier_code::DossierCode;
use crate::error::{ApiError, ErrorCode, FieldError};
use crate::flow::Flow;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;
use store::{DossierRow, StepRow};

/// Where a step stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// Waits for the steps it comes after.
    Waiting,
    /// To be filed with the registry.
    Ready,
    /// Filed; the registry has not taken it up yet.
    Received,
    /// The registry is processing it.
    Processing,
    /// The registry asks for more documents (see the deadline).
    Supplement,
    /// The documents came; to be sent to the registry.
    Supplementing,
    Done,
    Refused,
    /// lgsp could not file it (the registry refused the request as invalid,
    /// or found no record it names); the reason says why.
    Failed,
    /// Not carried: a step it needs was refused or failed.
    Cancelled,
    /// Not carried: the dossier was withdrawn before it was filed.
    Withdrawn,
}

/// The states of a step not yet finished.
pub const OPEN_STATES: [&str; 6] = ["waiting", "ready", "received", "processing", "supplement", "supplementing"];

impl StepState {
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Waiting => "waiting",
            StepState::Ready => "ready",
            StepState::Received => "received",
            StepState::Processing => "processing",
            StepState::Supplement => "supplement",
            StepState::Supplementing => "supplementing",
            StepState::Done => "done",
            StepState::Refused => "refused",
            StepState::Failed => "failed",
            StepState::Cancelled => "cancelled",
            StepState::Withdrawn => "withdrawn",
        }
    }

    pub fn parse(s: &str) -> StepState {
        match s {
            "waiting" => StepState::Waiting,
            "ready" => StepState::Ready,
            "received" => StepState::Received,
            "processing" => StepState::Processing,
            "supplement" => StepState::Supplement,
            "supplementing" => StepState::Supplementing,
            "done" => StepState::Done,
            "refused" => StepState::Refused,
            "cancelled" => StepState::Cancelled,
            "withdrawn" => StepState::Withdrawn,
            _ => StepState::Failed,
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(
            self,
            StepState::Done | StepState::Refused | StepState::Failed | StepState::Cancelled | StepState::Withdrawn
        )
    }
}

/// Where a dossier stands, from its steps.
pub fn dossier_state(steps: &[StepRow], withdrawn: bool) -> &'static str {
    let states: Vec<StepState> = steps.iter().map(|s| StepState::parse(&s.state)).collect();
    if states.contains(&StepState::Supplement) {
        return "supplement";
    }
    if states.iter().any(|s| !s.is_finished()) {
        return if withdrawn { "withdrawing" } else { "processing" };
    }
    let done = states.iter().filter(|s| **s == StepState::Done).count();
    if withdrawn {
        "withdrawn"
    } else if done == states.len() {
        "done"
    } else if done > 0 {
        "partly_done"
    } else if states.contains(&StepState::Refused) {
        "refused"
    } else {
        "failed"
    }
}

/// A dossier as a portal files it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"flow": "birth_residence_insurance", "requester_id": "001090001234",
    "declaration": {"child": {"surname": "Nguyễn", "middle_name": "Minh", "given_name": "An",
        "date_of_birth": "2026-11-30", "sex": "male"}, "mother_id": "001190004321",
        "household_head_id": "001090001234", "relationship": "cha"},
    "procedures": ["birth_registration", "permanent_residence", "health_insurance_card"],
    "callback_url": "https://portal.example.gov.vn/lgsp/callbacks"}))]
pub struct FileRequest {
    /// The flow (`GET /v1/flows`).
    pub flow: String,
    /// The citizen who declares (from the portal's login).
    #[schema(value_type = crate::schema::openapi::CitizenId)]
    pub requester_id: String,
    /// The declaration, as the flow's `declaration_schema` defines it.
    #[schema(value_type = Object)]
    pub declaration: Value,
    /// The procedures chosen (step ids); every one of the flow's when absent.
    #[serde(default)]
    #[schema(max_items = 20)]
    pub procedures: Option<Vec<String>>,
    /// Where each change of the dossier is sent, signed.
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub callback_url: Option<String>,
}

/// A dossier just filed (or the one an earlier request with the same key filed).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Filed {
    /// The dossier code (Decree 61/2018: agency-yyMMdd-sequence).
    pub code: String,
    pub state: String,
    /// Where to read it.
    pub location: String,
    /// The key that signs the callbacks (HMAC-SHA256 over the body, in
    /// `X-Lgsp-Signature: sha256=<hex>`): shown once, when the dossier is filed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_secret: Option<String>,
    /// Whether this answers a repeated request (nothing new was filed).
    pub replayed: bool,
}

/// One step of a dossier, as its partner reads it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StepView {
    pub id: String,
    pub title: String,
    pub agency: String,
    pub state: StepState,
    /// The registry's own number for the application.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_on: Option<String>,
    /// The step's deadline, in working days from its start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_on: Option<String>,
    pub overdue: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supplement_deadline: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What the step gave, as data elements (the child's ID number, the
    /// certificate, the card).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    /// Tries that met a failing registry since the last answer.
    pub attempts: i32,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventView {
    pub at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    pub state: String,
    #[schema(value_type = Object)]
    pub detail: Value,
}

/// A dossier with each step and its timeline.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DossierView {
    pub code: String,
    pub flow: String,
    pub flow_version: i32,
    pub state: String,
    #[schema(value_type = crate::schema::openapi::CitizenId)]
    pub requester_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_id: Option<String>,
    pub received_on: String,
    pub due_on: String,
    pub overdue: bool,
    pub steps: Vec<StepView>,
    pub timeline: Vec<EventView>,
}

/// Documents answering a supplement request.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"step": "birth_registration",
    "documents": [{"name": "Giấy chứng sinh", "reference": "GCS-2026-0113"}]}))]
pub struct SupplementRequest {
    /// The step waiting for them; the only one waiting when absent.
    #[serde(default)]
    pub step: Option<String>,
    #[schema(min_items = 1, max_items = 20)]
    pub documents: Vec<Document>,
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Document {
    #[schema(min_length = 1, max_length = 300)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 300)]
    pub reference: Option<String>,
}

/// A result kept as the province's electronic record of it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ResultView {
    pub id: String,
    /// What it is: the step that gave it (`birth_registration`, `health_insurance_card`…).
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_on: Option<String>,
    /// The registry that issued it.
    pub agency: String,
    #[schema(value_type = crate::schema::openapi::CitizenId)]
    pub owner_id: String,
    pub dossier: String,
    #[schema(value_type = Object)]
    pub data: Value,
}

/// The dossiers service: filing and reading; the worker carries them.
pub struct Dossiers {
    pub db: Db,
    pub catalog: Arc<LiveCatalog>,
    pub settings: DossierSettings,
    pub calendar: WorkingCalendar,
    /// Wakes this node's worker when a dossier is filed or supplemented here.
    pub wake: Arc<tokio::sync::Notify>,
}

fn hash_request(r: &Value) -> String {
    hex::encode(Sha256::digest(r.to_string().as_bytes()))
}

impl Dossiers {
    pub fn new(db: Db, catalog: Arc<LiveCatalog>, settings: DossierSettings) -> Dossiers {
        let calendar = settings.calendar();
        Dossiers { db, catalog, settings, calendar, wake: Arc::default() }
    }

    /// Files a dossier: checked against the flow, stored with its steps in one
    /// transaction, the first steps due at once. A repeated key with the same
    /// request answers the dossier it filed; with another request, 409.
    pub async fn file(
        &self,
        partner_id: &str,
        key: &str,
        raw: &Value,
        request: FileRequest,
        flow: Arc<Flow>,
    ) -> Result<Filed, ApiError> {
        let hash = hash_request(raw);
        let procedures = flow.choose(request.procedures.as_deref()).map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidDeclaration,
                format!("The procedures chosen do not fit the flow: {}", e.message),
            )
            .with_errors(vec![e])
        })?;
        crate::schema::check(&flow.declaration, &request.declaration).map_err(|errors| {
            let errors: Vec<FieldError> =
                errors.into_iter().map(|e| FieldError::new(format!("/declaration{}", e.pointer), e.message)).collect();
            ApiError::new(
                ErrorCode::InvalidDeclaration,
                format!(
                    "The declaration does not fit flow {}'s declaration_schema (GET /v1/flows); see errors.",
                    flow.id()
                ),
            )
            .with_errors(errors)
        })?;
        let secret = request.callback_url.as_ref().map(|_| crate::domain::partner::new_secret("cbs_"));
        // Kept sealed with the credentials key where the node has one: the
        // database alone does not give it away.
        let stored_secret = match (&secret, &self.catalog.sealing) {
            (Some(plain), Some(key)) => {
                Some(format!("sealed:{}", key.seal("callback", plain.as_bytes()).map_err(ApiError::internal)?))
            }
            (plain, _) => plain.clone(),
        };
        let today = today_in_vietnam();
        let now = now_micros();
        let subject = flow.subject_of(&request.declaration, &request.requester_id);
        let day = format!("{:02}{:02}{:02}", today.year() % 100, today.month(), today.day());
        let (partner, key, flow2) = (partner_id.to_string(), key.to_string(), flow.clone());
        let calendar = self.calendar.clone();
        let outcome = self
            .db
            .run(move |c| {
                crate::db::write_transaction(c, |c| {
                    store::lock_day(c, &flow2.doc.receiving_agency, &day)?;
                    if let Some(existing) = store::dossier_by_key(c, &partner, &key)? {
                        return Ok(Err(existing));
                    }
                    let agency = &flow2.doc.receiving_agency;
                    let seq = store::next_sequence(c, agency, &day)?;
                    let code = DossierCode::new(agency, today, seq.clamp(1, 9999) as u16)
                        .map(|c| c.to_string())
                        .unwrap_or_else(|_| format!("{agency}-{day}-{seq:04}"));
                    let row = DossierRow {
                        code: code.clone(),
                        flow_id: flow2.doc.id.clone(),
                        flow_version: flow2.version,
                        partner_id: partner.clone(),
                        idempotency_key: key.clone(),
                        request_hash: hash.clone(),
                        requester_id: request.requester_id.clone(),
                        subject_id: subject.clone(),
                        declaration: request.declaration.to_string(),
                        procedures: json!(procedures).to_string(),
                        callback_url: request.callback_url.clone(),
                        callback_secret: stored_secret.clone(),
                        state: "processing".into(),
                        received_on: today.to_string(),
                        due_on: calendar.add_working_days(today, flow2.doc.deadline_days).to_string(),
                        created_at: now,
                        updated_at: now,
                    };
                    let steps: Vec<StepRow> = flow2
                        .steps
                        .iter()
                        .enumerate()
                        .filter(|(_, s)| procedures.contains(&s.doc.id))
                        .map(|(i, s)| {
                            let first = s.doc.after.is_empty();
                            StepRow {
                                dossier_code: code.clone(),
                                step_id: s.doc.id.clone(),
                                position: i as i32,
                                state: if first { "ready" } else { "waiting" }.into(),
                                reference: None,
                                request: None,
                                result: None,
                                reason: None,
                                supplement: None,
                                supplement_deadline: None,
                                attempts: 0,
                                next_at: if first { now } else { i64::MAX },
                                lease_owner: None,
                                lease_until: 0,
                                started_on: first.then(|| today.to_string()),
                                due_on: first
                                    .then(|| calendar.add_working_days(today, s.doc.deadline_days).to_string()),
                                updated_at: now,
                            }
                        })
                        .collect();
                    store::insert_dossier(c, &row, &steps)?;
                    let detail = json!({"procedures": procedures, "partner": partner});
                    store::event(c, &code, None, "received", &detail, now)?;
                    crate::sync::linked::filed(
                        c,
                        &crate::sync::linked::Filed {
                            code: &code,
                            partner: &partner,
                            procedure_code: flow2.doc.procedure_code.as_deref().unwrap_or(&flow2.doc.id),
                            agency,
                            requester: &row.requester_id,
                            title: &flow2.doc.title,
                            received_at: now,
                            due_on: &row.due_on,
                        },
                        now,
                    )?;
                    if row.callback_url.is_some() {
                        store::queue_callback(c, &code, &callback_body(&row, None, "received", now), now)?;
                    }
                    Ok(Ok(row))
                })
            })
            .await?;
        self.wake.notify_one();
        let location = |code: &str| format!("/v1/linked-dossiers/{code}");
        match outcome {
            Ok(row) => Ok(Filed {
                location: location(&row.code),
                code: row.code,
                state: row.state,
                callback_secret: secret,
                replayed: false,
            }),
            Err(existing) if existing.request_hash == hash_request(raw) => Ok(Filed {
                location: location(&existing.code),
                code: existing.code,
                state: existing.state,
                callback_secret: None,
                replayed: true,
            }),
            Err(existing) => Err(ApiError::new(
                ErrorCode::IdempotencyKeyReused,
                format!(
                    "Idempotency-Key \"{}\" filed dossier {} with another request; use a new key for a new dossier.",
                    existing.idempotency_key, existing.code
                ),
            )),
        }
    }

    /// A dossier its partner filed.
    async fn owned(&self, partner_id: &str, code: &str) -> Result<DossierRow, ApiError> {
        let code2 = code.to_string();
        let row = self.db.run(move |c| store::dossier(c, &code2)).await?;
        row.filter(|d| d.partner_id == partner_id)
            .ok_or_else(|| ApiError::not_found(format!("No dossier \"{code}\" filed by this partner.")))
    }

    pub async fn view(&self, partner_id: &str, code: &str) -> Result<DossierView, ApiError> {
        let row = self.owned(partner_id, code).await?;
        self.view_of(row).await
    }

    /// Any partner's dossier, as its partner reads it (for stewards).
    pub async fn view_any(&self, code: &str) -> Result<DossierView, ApiError> {
        let code2 = code.to_string();
        let row = self.db.run(move |c| store::dossier(c, &code2)).await?;
        let row = row.ok_or_else(|| ApiError::not_found(format!("No dossier \"{code}\".")))?;
        self.view_of(row).await
    }

    async fn view_of(&self, row: DossierRow) -> Result<DossierView, ApiError> {
        let code2 = row.code.clone();
        let (steps, events) = self.db.run(move |c| Ok((store::steps(c, &code2)?, store::events(c, &code2)?))).await?;
        let flow = self.catalog.get().flows.get(&row.flow_id).map(|f| f.flow.clone());
        let today = today_in_vietnam().to_string();
        let late = |due: &Option<String>, state: StepState| {
            !state.is_finished() && due.as_deref().is_some_and(|d| d < today.as_str())
        };
        let steps: Vec<StepView> = steps
            .into_iter()
            .map(|s| {
                let state = StepState::parse(&s.state);
                let doc = flow.as_ref().and_then(|f| f.step(&s.step_id)).map(|st| &st.doc);
                StepView {
                    title: doc.map(|d| d.title.clone()).unwrap_or_default(),
                    agency: doc.map(|d| d.adapter.clone()).unwrap_or_default(),
                    overdue: late(&s.due_on, state),
                    id: s.step_id,
                    state,
                    reference: s.reference,
                    started_on: s.started_on,
                    due_on: s.due_on,
                    supplement_deadline: s.supplement_deadline,
                    reason: s.reason,
                    result: s.result.and_then(|r| serde_json::from_str(&r).ok()),
                    attempts: s.attempts,
                }
            })
            .collect();
        let open = steps.iter().any(|s| !s.state.is_finished());
        Ok(DossierView {
            overdue: open && row.due_on < today,
            code: row.code,
            flow: row.flow_id,
            flow_version: row.flow_version,
            state: row.state,
            requester_id: row.requester_id,
            subject_id: row.subject_id,
            received_on: row.received_on,
            due_on: row.due_on,
            steps,
            timeline: events
                .into_iter()
                .map(|e| EventView {
                    at: micros_to_rfc3339(e.at),
                    step: e.step_id,
                    state: e.state,
                    detail: serde_json::from_str(&e.detail).unwrap_or(Value::Null),
                })
                .collect(),
        })
    }

    /// Answers a supplement request: the documents are kept on the step,
    /// which a worker sends to the registry at once.
    pub async fn supplement(&self, partner_id: &str, code: &str, s: SupplementRequest) -> Result<String, ApiError> {
        let row = self.owned(partner_id, code).await?;
        let documents = json!({"documents": s.documents, "note": s.note});
        let wanted = s.step.clone();
        let (code2, partner) = (row.code.clone(), row.partner_id.clone());
        let outcome = self
            .db
            .run(move |c| {
                crate::db::write_transaction(c, |c| {
                    store::lock_dossier(c, &code2)?;
                    let steps = store::steps(c, &code2)?;
                    let waiting: Vec<&StepRow> = steps
                        .iter()
                        .filter(|st| st.state == "supplement")
                        .filter(|st| wanted.as_ref().is_none_or(|w| *w == st.step_id))
                        .collect();
                    let [step] = waiting.as_slice() else {
                        return Ok(Err(waiting.len()));
                    };
                    let mut step = (*step).clone();
                    let now = now_micros();
                    step.state = "supplementing".into();
                    step.supplement = Some(documents.to_string());
                    step.next_at = now;
                    step.attempts = 0;
                    step.updated_at = now;
                    store::save_step(c, &step)?;
                    store::event(c, &code2, Some(&step.step_id), "supplement_received", &documents, now)?;
                    let mut all = steps.clone();
                    if let Some(s) = all.iter_mut().find(|s| s.step_id == step.step_id) {
                        *s = step.clone();
                    }
                    let state = dossier_state(&all, false);
                    store::set_dossier_state(c, &code2, state, now)?;
                    let what = format!("{}:supplement_received", step.step_id);
                    let change = crate::sync::linked::Change {
                        code: &code2,
                        partner: &partner,
                        state,
                        actor: "applicant",
                        note: format!("{}: supplement_received", step.step_id),
                        due_on: None,
                        what: &what,
                    };
                    crate::sync::linked::changed(c, &change, now)?;
                    Ok(Ok(step.step_id))
                })
            })
            .await?;
        self.wake.notify_one();
        outcome.map_err(|n| {
            let which = s.step.as_deref().map(|w| format!("step \"{w}\" of ")).unwrap_or_default();
            let detail = if n == 0 {
                format!("No {which}dossier {code} waits for a supplement; see its steps' states.")
            } else {
                format!("{n} steps of dossier {code} wait for a supplement; name the step.")
            };
            ApiError::new(ErrorCode::NotAwaitingSupplement, detail)
        })
    }

    /// Withdraws a dossier: the steps not yet filed are not filed; those a
    /// registry holds already run to their end.
    pub async fn withdraw(&self, partner_id: &str, code: &str) -> Result<String, ApiError> {
        let row = self.owned(partner_id, code).await?;
        let code2 = row.code.clone();
        let state = self
            .db
            .run(move |c| {
                crate::db::write_transaction(c, |c| {
                    store::lock_dossier(c, &code2)?;
                    let Some(d) = store::dossier(c, &code2)? else { return Ok(None) };
                    if matches!(d.state.as_str(), "done" | "partly_done" | "refused" | "failed" | "withdrawn") {
                        return Ok(None);
                    }
                    let now = now_micros();
                    let mut steps = store::steps(c, &code2)?;
                    for s in steps.iter_mut().filter(|s| matches!(s.state.as_str(), "waiting" | "ready")) {
                        s.state = "withdrawn".into();
                        s.next_at = i64::MAX;
                        s.updated_at = now;
                        store::save_step(c, s)?;
                    }
                    let state = dossier_state(&steps, true);
                    store::set_dossier_state(c, &code2, state, now)?;
                    store::event(c, &code2, None, "withdrawn", &json!({}), now)?;
                    let change = crate::sync::linked::Change {
                        code: &code2,
                        partner: &d.partner_id,
                        state,
                        actor: "applicant",
                        note: "withdrawn".into(),
                        due_on: None,
                        what: "withdrawn",
                    };
                    crate::sync::linked::changed(c, &change, now)?;
                    if d.callback_url.is_some() {
                        let d = DossierRow { state: state.into(), ..d };
                        store::queue_callback(c, &code2, &callback_body(&d, None, "withdrawn", now), now)?;
                    }
                    Ok(Some(state.to_string()))
                })
            })
            .await?;
        state.ok_or_else(|| {
            ApiError::new(ErrorCode::DossierClosed, format!("Dossier {code} is finished or withdrawn already."))
        })
    }

    /// How many dossiers are in progress, and how many steps are overdue.
    pub async fn counts(&self) -> Result<Value, DbError> {
        let today = today_in_vietnam().to_string();
        self.db
            .run(move |c| {
                use crate::db::schema::dossiers;
                use diesel::prelude::*;
                let open: i64 = dossiers::table
                    .filter(dossiers::state.eq_any(["processing", "supplement", "withdrawing"]))
                    .count()
                    .get_result(c)?;
                let overdue = store::overdue(c, &today)?.len();
                Ok(json!({"open": open, "overdue": overdue}))
            })
            .await
    }

    /// The latest dossiers, for the console.
    pub async fn recent(&self, limit: i64) -> Result<Vec<Value>, DbError> {
        self.db
            .run(move |c| {
                use crate::db::schema::dossiers;
                use diesel::prelude::*;
                let rows: Vec<DossierRow> = dossiers::table
                    .order(dossiers::created_at.desc())
                    .limit(limit)
                    .select(DossierRow::as_select())
                    .load(c)?;
                Ok(rows
                    .into_iter()
                    .map(|d| {
                        json!({"code": d.code, "flow": d.flow_id, "partner": d.partner_id, "state": d.state,
                               "received_on": d.received_on, "due_on": d.due_on})
                    })
                    .collect())
            })
            .await
    }

    /// The results kept for a citizen, newest first.
    pub async fn results(&self, owner: &str) -> Result<Vec<ResultView>, DbError> {
        let owner = owner.to_string();
        let rows = self.db.run(move |c| store::results_of(c, &owner, 200)).await?;
        Ok(rows
            .into_iter()
            .map(|r| ResultView {
                id: r.id,
                kind: r.kind,
                number: r.number,
                issued_on: r.issued_on,
                agency: r.agency,
                owner_id: r.owner_id,
                dossier: r.dossier_code,
                data: serde_json::from_str(&r.data).unwrap_or(Value::Null),
            })
            .collect())
    }

    /// The stored results of a citizen as data elements, newest first: what
    /// a prefill may take from them.
    pub async fn result_elements(&self, owner: &str) -> Result<BTreeMap<String, (Value, String)>, DbError> {
        let mut out = BTreeMap::new();
        for r in self.results(owner).await? {
            if let Value::Object(elements) = r.data {
                for (k, v) in elements {
                    out.entry(k).or_insert((v, r.dossier.clone()));
                }
            }
        }
        Ok(out)
    }
}

/// A dossier's callback secret as stored: opened with the credentials key
/// when it was sealed with it.
pub fn callback_secret(stored: &str, sealing: Option<&crate::sealing::SealingKey>) -> Option<String> {
    match stored.strip_prefix("sealed:") {
        Some(sealed) => sealing?.open("callback", sealed).ok().and_then(|b| String::from_utf8(b).ok()),
        None => Some(stored.to_string()),
    }
}

/// The body of one callback: the dossier's state after a change.
pub fn callback_body(d: &DossierRow, step: Option<(&str, &str)>, event: &str, at: i64) -> String {
    json!({
        "dossier": d.code,
        "flow": d.flow_id,
        "state": d.state,
        "event": event,
        "step": step.map(|s| s.0),
        "step_state": step.map(|s| s.1),
        "at": micros_to_rfc3339(at),
    })
    .to_string()
}
