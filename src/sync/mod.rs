//! The province's dossiers, carried to the national public-service portal.
//! The one-stop system reports each dossier and each status change
//! (`POST /v1/dossiers`, `POST /v1/dossiers/{code}/events`); each is stored
//! with its message to the portal in an outbox, in one transaction, and a
//! worker on each node delivers the outbox in order per dossier, through
//! outages, once. The local statuses and channels map to the national ones
//! as `schemas/flows/national-statuses.json` declares.

pub mod linked;
mod reconcile;
pub mod store;

pub use reconcile::{Counters, Difference, Reconciliation, SyncView, Tally, TallyRow};

use crate::config::PortalSettings;
use crate::db::schema::portal_outbox;
use crate::db::{now_micros, Db, DbError};
use crate::error::{ApiError, ErrorCode, FieldError};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

pub use crate::domain::national_codes::{national_codes, NationalCodes};

/// A document of a dossier: whether it was digitised, and whether it was
/// reused from a record the province held rather than supplied again.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentReport {
    #[schema(min_length = 1, max_length = 300)]
    pub name: String,
    #[serde(default)]
    pub digitised: bool,
    #[serde(default)]
    pub reused: bool,
}

/// A dossier as the one-stop system reports it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"code": "000.00.15.H29-261205-0001", "procedure_code": "1.001193", "agency": "000.00.15.H29",
    "applicant_type": "citizen", "applicant_id": "001090001234", "channel": "online",
    "received_at": "2026-12-05T08:30:00+07:00", "due_at": "2026-12-08T17:00:00+07:00", "status": "received",
    "fees_vnd": 0, "documents": [{"name": "Tờ khai", "digitised": true, "reused": false}]}))]
pub struct DossierReport {
    /// The dossier code (Decree 61/2018).
    pub code: String,
    /// The procedure's code in the national database of procedures.
    #[schema(min_length = 1, max_length = 50)]
    pub procedure_code: String,
    /// The receiving agency's electronic identifier.
    #[schema(min_length = 1, max_length = 50)]
    pub agency: String,
    /// `citizen` or `organisation`.
    pub applicant_type: String,
    #[schema(min_length = 1, max_length = 50)]
    pub applicant_id: String,
    /// `in_person`, `online` or `post`.
    pub channel: String,
    /// RFC 3339.
    pub received_at: String,
    /// RFC 3339: the appointment to return the result.
    #[serde(default)]
    pub due_at: Option<String>,
    /// A local status (`schemas/flows/national-statuses.json`).
    pub status: String,
    #[serde(default)]
    pub fees_vnd: Option<u64>,
    #[serde(default)]
    #[schema(max_items = 100)]
    pub documents: Vec<DocumentReport>,
}

/// A status change of a dossier, as the one-stop system reports it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"event_id": "evt-0001", "status": "processing", "at": "2026-12-05T09:00:00+07:00",
    "actor": "Nguyễn Văn A, Bộ phận một cửa", "note": "Chuyển phòng chuyên môn", "due_at": "2026-12-08T17:00:00+07:00"}))]
pub struct EventReport {
    /// The one-stop system's own id of the change: a repeat is kept once.
    #[schema(min_length = 1, max_length = 100)]
    pub event_id: String,
    pub status: String,
    /// RFC 3339.
    pub at: String,
    #[schema(min_length = 1, max_length = 300)]
    pub actor: String,
    #[serde(default)]
    pub note: Option<String>,
    /// RFC 3339: when this step is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<String>,
}

/// What a report came to.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Reported {
    pub code: String,
    /// The change's number among the dossier's (0 for the dossier itself).
    pub seq: i32,
    /// Whether this repeats a report already taken (nothing new was stored).
    pub replayed: bool,
}

/// A period of days received, `from` to `to` (`yyyy-mm-dd`), both included.
pub fn period(from: &str, to: &str) -> Result<(jiff::civil::Date, jiff::civil::Date), ApiError> {
    let day = |name: &str, v: &str| {
        v.parse::<jiff::civil::Date>()
            .map_err(|e| ApiError::new(ErrorCode::InvalidParameter, format!("{name} is a day as 2026-12-05: {e}")))
    };
    let (from, to) = (day("from", from)?, day("to", to)?);
    if from > to {
        return Err(ApiError::new(ErrorCode::InvalidParameter, "from comes after to."));
    }
    Ok((from, to))
}

/// An instant as the portal writes it: `yyyyMMddHHmmss` in Vietnam's time.
pub fn portal_time(rfc3339: &str, pointer: &str) -> Result<String, FieldError> {
    let t: jiff::Timestamp = rfc3339
        .parse()
        .map_err(|e| FieldError::new(pointer, format!("an RFC 3339 instant, as 2026-12-05T08:30:00+07:00: {e}")))?;
    let local = t.to_zoned(jiff::tz::TimeZone::fixed(jiff::tz::Offset::constant(7))).datetime();
    Ok(format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        local.year(),
        local.month(),
        local.day(),
        local.hour(),
        local.minute(),
        local.second()
    ))
}

fn code_of(map: &std::collections::BTreeMap<String, i64>, word: &str, pointer: &str) -> Result<i64, FieldError> {
    map.get(word).copied().ok_or_else(|| {
        let known: Vec<&str> = map.keys().map(String::as_str).collect();
        FieldError::new(pointer, format!("\"{word}\" is not one of {}", known.join(", ")))
    })
}

fn invalid(errors: Vec<FieldError>) -> ApiError {
    ApiError::new(ErrorCode::InvalidBody, "The report does not fit; see errors.").with_errors(errors)
}

/// The national record of a reported dossier.
/// `value` has `min` to `max` characters; otherwise why not, at `pointer`.
fn length(errors: &mut Vec<FieldError>, pointer: &str, value: &str, min: usize, max: usize) {
    let n = value.chars().count();
    if n < min || n > max {
        errors.push(FieldError::new(pointer, format!("{min} to {max} characters")));
    }
}

pub fn national_record(r: &DossierReport) -> Result<Value, ApiError> {
    let codes = national_codes();
    let mut errors = Vec::new();
    length(&mut errors, "/procedure_code", &r.procedure_code, 1, 50);
    length(&mut errors, "/agency", &r.agency, 1, 50);
    length(&mut errors, "/applicant_id", &r.applicant_id, 1, 50);
    if r.documents.len() > 100 {
        errors.push(FieldError::new("/documents", "at most 100 documents"));
    }
    for (i, d) in r.documents.iter().enumerate() {
        length(&mut errors, &format!("/documents/{i}/name"), &d.name, 1, 300);
    }
    if crate::domain::dossier_code::DossierCode::parse(&r.code).is_err() {
        errors.push(FieldError::new("/code", "a dossier code as Decree 61/2018 gives it: AGENCY-yyMMdd-NNNN"));
    }
    if !matches!(r.applicant_type.as_str(), "citizen" | "organisation") {
        errors.push(FieldError::new("/applicant_type", "citizen or organisation"));
    }
    let checks = [
        code_of(&codes.channels, &r.channel, "/channel").map(drop),
        code_of(&codes.statuses, &r.status, "/status").map(drop),
        portal_time(&r.received_at, "/received_at").map(drop),
        r.due_at.as_ref().map_or(Ok(()), |d| portal_time(d, "/due_at").map(drop)),
    ];
    errors.extend(checks.into_iter().filter_map(Result::err));
    if !errors.is_empty() {
        return Err(invalid(errors));
    }
    Ok(record_as_is(r))
}

/// The national record of a report, its values as they stand.
fn record_as_is(r: &DossierReport) -> Value {
    let codes = national_codes();
    let time = |t: &str| portal_time(t, "").unwrap_or_else(|_| t.to_string());
    let documents: Vec<Value> =
        r.documents.iter().map(|d| json!({"TenGiayTo": d.name, "SoHoa": d.digitised, "TaiSuDung": d.reused})).collect();
    let kind = if r.applicant_type == "organisation" { 2 } else { 1 };
    let channel = codes.channels.get(&r.channel).copied().unwrap_or(0);
    let status = codes.statuses.get(&r.status).copied().unwrap_or(0);
    let (received, due) = (time(&r.received_at), r.due_at.as_deref().map(time));
    json!({
        "MaHoSo": r.code, "MaTTHC": r.procedure_code, "MaCoQuan": r.agency, "LoaiDoiTuong": kind,
        "MaDoiTuong": r.applicant_id, "KenhThucHien": channel, "NgayTiepNhan": received, "NgayHenTra": due,
        "TrangThaiHoSo": status, "PhiLePhi": r.fees_vnd.unwrap_or(0), "DanhSachGiayTo": documents,
    })
}

fn hash(v: &Value) -> String {
    hex::encode(Sha256::digest(v.to_string().as_bytes()))
}

/// An outbox row, as delivered.
#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = portal_outbox)]
pub struct OutboxRow {
    pub id: i64,
    pub dossier_code: String,
    pub kind: String,
    pub payload: String,
    pub state: String,
    pub attempts: i32,
    pub next_at: i64,
    pub lease_until: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
}

/// The dossiers carried to the national portal.
pub struct PortalSync {
    pub db: Db,
    pub settings: PortalSettings,
    http: reqwest::Client,
    session: tokio::sync::Mutex<Option<String>>,
    pub wake: Arc<tokio::sync::Notify>,
}

impl PortalSync {
    pub fn new(db: Db, settings: PortalSettings, http: reqwest::Client) -> PortalSync {
        PortalSync { db, settings, http, session: tokio::sync::Mutex::new(None), wake: Arc::default() }
    }

    /// How long one call to the portal may take: a third of the lease, so
    /// that a login and a send end before another node may take the change.
    fn timeout(&self) -> Duration {
        Duration::from_millis((self.settings.lease_ms / 3).clamp(1_000, 10_000))
    }

    /// Takes a dossier: stored with its record for the portal, in one
    /// transaction. The same report again is answered with what it stored; the
    /// same code with another report is a 409.
    pub async fn report_dossier(&self, partner: &str, raw: &Value, r: DossierReport) -> Result<Reported, ApiError> {
        let record = national_record(&r)?;
        let (partner, code, h) = (partner.to_string(), r.code.clone(), hash(raw));
        let status = r.status.clone();
        let outcome = self
            .db
            .run(move |c| {
                crate::db::write_transaction(c, |c| {
                    store::take_dossier(c, &partner, &code, &h, &record, &status, now_micros())
                })
            })
            .await?;
        self.wake.notify_one();
        match outcome {
            None => Ok(Reported { code: r.code, seq: 0, replayed: false }),
            Some(true) => Ok(Reported { code: r.code, seq: 0, replayed: true }),
            Some(false) => Err(ApiError::new(
                ErrorCode::Conflict,
                format!("Dossier {} was reported already, with other values; report its changes as events.", r.code),
            )),
        }
    }

    /// Takes a status change: stored with the record's new status and the
    /// step for the portal, in order, in one transaction.
    pub async fn report_event(
        &self,
        partner: &str,
        code: &str,
        raw: &Value,
        e: EventReport,
    ) -> Result<Reported, ApiError> {
        let codes = national_codes();
        let mut errors = Vec::new();
        length(&mut errors, "/event_id", &e.event_id, 1, 100);
        length(&mut errors, "/actor", &e.actor, 1, 300);
        if let Err(x) = code_of(&codes.statuses, &e.status, "/status") {
            errors.push(x);
        }
        if let Err(x) = portal_time(&e.at, "/at") {
            errors.push(x);
        }
        if let Some(Err(x)) = e.due_at.as_ref().map(|d| portal_time(d, "/due_at")) {
            errors.push(x);
        }
        if !errors.is_empty() {
            return Err(invalid(errors));
        }
        let (partner, code2, h) = (partner.to_string(), code.to_string(), hash(raw));
        let (raw_text, event_id) = (raw.to_string(), e.event_id.clone());
        let outcome = self
            .db
            .run(move |c| {
                crate::db::write_transaction(c, |c| {
                    store::take_event(c, &partner, &code2, &h, &raw_text, &e, now_micros())
                })
            })
            .await?;
        self.wake.notify_one();
        match outcome {
            store::Taken::Stored { seq, replayed } => Ok(Reported { code: code.to_string(), seq, replayed }),
            store::Taken::NoDossier => {
                Err(ApiError::not_found(format!("No dossier \"{code}\" reported by this partner; report it first.")))
            }
            store::Taken::Conflict(seq) => Err(ApiError::new(
                ErrorCode::Conflict,
                format!("event_id \"{event_id}\" was change {seq} of this dossier, with other values."),
            )),
        }
    }

    /// The outbox of a dossier, oldest first.
    pub async fn outbox(&self, code: &str) -> Result<Vec<OutboxRow>, DbError> {
        let code = code.to_string();
        self.db
            .run(move |c| {
                Ok(portal_outbox::table
                    .filter(portal_outbox::dossier_code.eq(&code))
                    .order(portal_outbox::id)
                    .select(OutboxRow::as_select())
                    .load(c)?)
            })
            .await
    }

    /// Claims the outbox rows due, the first undelivered of each dossier only.
    async fn claim(&self) -> Result<Vec<OutboxRow>, DbError> {
        let now = now_micros();
        // A send and a login each take at most a third of it (`timeout`).
        let until = now + self.settings.lease_ms as i64 * 1000;
        self.db
            .run(move |c| {
                let due: Vec<OutboxRow> = portal_outbox::table
                    .filter(portal_outbox::state.eq("pending"))
                    .filter(portal_outbox::next_at.le(now))
                    .filter(portal_outbox::lease_until.lt(now))
                    .order(portal_outbox::id)
                    .limit(64)
                    .select(OutboxRow::as_select())
                    .load(c)?;
                let mut claimed = Vec::new();
                let mut seen = std::collections::BTreeSet::new();
                for row in due {
                    if !seen.insert(row.dossier_code.clone()) {
                        continue;
                    }
                    let earlier: i64 = portal_outbox::table
                        .filter(portal_outbox::dossier_code.eq(&row.dossier_code))
                        .filter(portal_outbox::state.eq("pending"))
                        .filter(portal_outbox::id.lt(row.id))
                        .count()
                        .get_result(c)?;
                    if earlier > 0 {
                        continue;
                    }
                    let taken = diesel::update(
                        portal_outbox::table
                            .find(row.id)
                            .filter(portal_outbox::state.eq("pending"))
                            .filter(portal_outbox::lease_until.lt(now)),
                    )
                    .set(portal_outbox::lease_until.eq(until))
                    .execute(c)?;
                    if taken == 1 {
                        claimed.push(row);
                    }
                }
                Ok(claimed)
            })
            .await
    }

    async fn session(&self, fresh: bool) -> Result<String, String> {
        let mut held = self.session.lock().await;
        if let (Some(s), false) = (held.as_ref(), fresh) {
            return Ok(s.clone());
        }
        let body = json!({"TenDangNhap": self.settings.username, "MatKhau": self.settings.password.expose()});
        let url = format!("{}/dvcqg/api/dang-nhap", self.settings.url.trim_end_matches('/'));
        let r = self
            .http
            .post(url)
            .timeout(self.timeout())
            .json(&body)
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        let answer: Value = r.json().await.map_err(|e| e.without_url().to_string())?;
        let session =
            answer["PhienLamViec"].as_str().ok_or_else(|| format!("login refused: {}", answer["MoTa"]))?.to_string();
        *held = Some(session.clone());
        Ok(session)
    }

    /// Sends a request to the portal with the session, logging in first when
    /// there is none, and once again when the portal answers 401.
    async fn call(&self, request: impl Fn() -> reqwest::RequestBuilder) -> Result<reqwest::Response, String> {
        let mut fresh = false;
        loop {
            let session = self.session(fresh).await?;
            let r = request()
                .timeout(self.timeout())
                .header("PhienLamViec", session)
                .send()
                .await
                .map_err(|e| e.without_url().to_string())?;
            if r.status() == 401 && !fresh {
                fresh = true;
                continue;
            }
            return Ok(r);
        }
    }

    /// Sends one outbox row: `Ok(None)` delivered, `Ok(Some(error))` refused
    /// by the portal (kept for a person to fix), `Err` a fault to retry.
    async fn send(&self, row: &OutboxRow) -> Result<Option<String>, String> {
        let payload: Value = serde_json::from_str(&row.payload).map_err(|e| e.to_string())?;
        let (path, body) = match row.kind.as_str() {
            "record" => ("dong-bo-ho-so", json!({"DanhSachHoSo": [payload]})),
            _ => ("cap-nhat-tien-do", payload),
        };
        let url = format!("{}/dvcqg/api/{path}", self.settings.url.trim_end_matches('/'));
        let r = self.call(|| self.http.post(&url).json(&body)).await?;
        if !r.status().is_success() {
            return Err(format!("the portal answered {}", r.status().as_u16()));
        }
        let answer: Value = r.json().await.map_err(|e| e.without_url().to_string())?;
        let result = if row.kind == "record" { &answer["KetQua"][0] } else { &answer };
        match result["MaLoi"].as_str() {
            Some("0") => Ok(None),
            Some(code) => Ok(Some(format!("{code}: {}", result["MoTa"].as_str().unwrap_or("")))),
            None => Err("the portal's answer has no MaLoi".into()),
        }
    }

    /// Delivers what is due; how many rows it sent.
    pub async fn deliver(&self) -> Result<usize, DbError> {
        let rows = self.claim().await?;
        let n = rows.len();
        for row in rows {
            let outcome = self.send(&row).await;
            let now = now_micros();
            let base = self.settings.poll_ms.max(50);
            let id = row.id;
            let attempts = row.attempts + 1;
            let wait = base.saturating_mul(1u64 << attempts.clamp(0, 16)).min(self.settings.retry_max_ms.max(base));
            if let Err(why) = &outcome {
                tracing::warn!(dossier = %row.dossier_code, id, attempts, %why, "the national portal did not take a change; will retry");
            }
            if let Ok(Some(error)) = &outcome {
                tracing::warn!(dossier = %row.dossier_code, id, %error, "the national portal refused a change; kept for a person to fix");
            }
            self.db
                .run(move |c| {
                    let target = portal_outbox::table.find(id);
                    match outcome {
                        Ok(None) => diesel::update(target)
                            .set((
                                portal_outbox::state.eq("delivered"),
                                portal_outbox::delivered_at.eq(Some(now)),
                                portal_outbox::lease_until.eq(0i64),
                            ))
                            .execute(c)?,
                        Ok(Some(error)) => diesel::update(target)
                            .set((
                                portal_outbox::state.eq("refused"),
                                portal_outbox::last_error.eq(Some(error)),
                                portal_outbox::lease_until.eq(0i64),
                            ))
                            .execute(c)?,
                        Err(why) => diesel::update(target)
                            .set((
                                portal_outbox::attempts.eq(attempts),
                                portal_outbox::next_at.eq(now + wait as i64 * 1000),
                                portal_outbox::last_error.eq(Some(why)),
                                portal_outbox::lease_until.eq(0i64),
                            ))
                            .execute(c)?,
                    };
                    Ok(())
                })
                .await?;
        }
        Ok(n)
    }

    /// Runs the delivery until the sync is dropped elsewhere.
    pub fn spawn(sync: &Arc<PortalSync>, ready: Arc<std::sync::atomic::AtomicBool>) {
        let weak = Arc::downgrade(sync);
        let every = Duration::from_millis(sync.settings.poll_ms.clamp(20, 60_000));
        tokio::spawn(async move {
            let mut busy = false;
            loop {
                if !busy {
                    let Some(wake) = weak.upgrade().map(|s| s.wake.clone()) else { break };
                    tokio::select! {
                        _ = tokio::time::sleep(every) => {}
                        _ = wake.notified() => {}
                    }
                }
                let Some(s) = weak.upgrade() else { break };
                if !ready.load(std::sync::atomic::Ordering::Acquire) {
                    busy = false;
                    continue;
                }
                busy = match s.deliver().await {
                    Ok(n) => n > 0,
                    Err(e) => {
                        tracing::warn!(error = %e, "the portal outbox could not be read; will retry");
                        false
                    }
                };
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_are_written_in_vietnams_time_and_the_map_reads() {
        assert_eq!(portal_time("2026-12-05T01:30:00Z", "/at").unwrap(), "20261205083000");
        assert_eq!(portal_time("2026-12-05T08:30:00+07:00", "/at").unwrap(), "20261205083000");
        assert!(portal_time("05/12/2026", "/at").is_err());
        assert_eq!(national_codes().statuses["returned"], 10);
        assert_eq!(national_codes().channels["post"], 3);
    }
}
