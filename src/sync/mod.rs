//! The province's dossiers, carried to the national public-service portal.
//! The one-stop system reports each dossier and each status change
//! (`POST /v1/dossiers`, `POST /v1/dossiers/{code}/events`); each is stored
//! with its message to the portal in an outbox, in one transaction, and a
//! worker on each node delivers the outbox in order per dossier, through
//! outages, once. The local statuses and channels map to the national ones
//! as `schemas/flows/national-statuses.json` declares.

use crate::config::PortalSettings;
use crate::db::schema::{portal_outbox, sync_dossiers, sync_events};
use crate::db::{now_micros, Db, DbError};
use crate::error::{ApiError, ErrorCode, FieldError};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The declared map from local statuses and channels to the portal's codes.
#[derive(Debug, Deserialize)]
pub struct NationalCodes {
    pub statuses: std::collections::BTreeMap<String, i64>,
    pub channels: std::collections::BTreeMap<String, i64>,
}

#[allow(clippy::expect_used, reason = "the map is embedded at build time, and a test reads it")]
pub fn national_codes() -> &'static NationalCodes {
    static CODES: OnceLock<NationalCodes> = OnceLock::new();
    CODES.get_or_init(|| {
        serde_json::from_str(include_str!("../../schemas/flows/national-statuses.json")).expect("the map is JSON")
    })
}

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
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
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
    #[serde(default)]
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
    let kind = match r.applicant_type.as_str() {
        "citizen" => 1,
        "organisation" => 2,
        _ => {
            errors.push(FieldError::new("/applicant_type", "citizen or organisation"));
            0
        }
    };
    let mut take = |res: Result<Value, FieldError>| res.map_err(|e| errors.push(e)).unwrap_or(Value::Null);
    let channel = take(code_of(&codes.channels, &r.channel, "/channel").map(Value::from));
    let status = take(code_of(&codes.statuses, &r.status, "/status").map(Value::from));
    let received = take(portal_time(&r.received_at, "/received_at").map(Value::from));
    let due = match &r.due_at {
        Some(d) => take(portal_time(d, "/due_at").map(Value::from)),
        None => Value::Null,
    };
    if !errors.is_empty() {
        return Err(invalid(errors));
    }
    let documents: Vec<Value> =
        r.documents.iter().map(|d| json!({"TenGiayTo": d.name, "SoHoa": d.digitised, "TaiSuDung": d.reused})).collect();
    Ok(json!({
        "MaHoSo": r.code, "MaTTHC": r.procedure_code, "MaCoQuan": r.agency, "LoaiDoiTuong": kind,
        "MaDoiTuong": r.applicant_id, "KenhThucHien": channel, "NgayTiepNhan": received, "NgayHenTra": due,
        "TrangThaiHoSo": status, "PhiLePhi": r.fees_vnd.unwrap_or(0), "DanhSachGiayTo": documents,
    }))
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

fn queue(c: &mut crate::db::DbConnection, code: &str, kind: &str, payload: &Value, now: i64) -> Result<(), DbError> {
    diesel::insert_into(portal_outbox::table)
        .values((
            portal_outbox::dossier_code.eq(code),
            portal_outbox::kind.eq(kind),
            portal_outbox::payload.eq(payload.to_string()),
            portal_outbox::state.eq("pending"),
            portal_outbox::attempts.eq(0),
            portal_outbox::next_at.eq(now),
            portal_outbox::lease_until.eq(0i64),
            portal_outbox::created_at.eq(now),
        ))
        .execute(c)?;
    Ok(())
}

impl PortalSync {
    pub fn new(db: Db, settings: PortalSettings, http: reqwest::Client) -> PortalSync {
        PortalSync { db, settings, http, session: tokio::sync::Mutex::new(None), wake: Arc::default() }
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
                    let existing: Option<String> =
                        sync_dossiers::table.find(&code).select(sync_dossiers::request_hash).first(c).optional()?;
                    if let Some(previous) = existing {
                        return Ok(Some(previous == h));
                    }
                    let now = now_micros();
                    diesel::insert_into(sync_dossiers::table)
                        .values((
                            sync_dossiers::code.eq(&code),
                            sync_dossiers::partner_id.eq(&partner),
                            sync_dossiers::request_hash.eq(&h),
                            sync_dossiers::record.eq(record.to_string()),
                            sync_dossiers::status.eq(&status),
                            sync_dossiers::events.eq(0),
                            sync_dossiers::created_at.eq(now),
                            sync_dossiers::updated_at.eq(now),
                        ))
                        .execute(c)?;
                    queue(c, &code, "record", &record, now)?;
                    Ok(None)
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
        let status = code_of(&codes.statuses, &e.status, "/status").map_err(|x| errors.push(x)).unwrap_or(0);
        let at = portal_time(&e.at, "/at").map_err(|x| errors.push(x)).unwrap_or_default();
        let due = e.due_at.as_ref().map(|d| portal_time(d, "/due_at").map_err(|x| errors.push(x)).unwrap_or_default());
        if !errors.is_empty() {
            return Err(invalid(errors));
        }
        let (partner, code2, h) = (partner.to_string(), code.to_string(), hash(raw));
        let (raw_text, event_id) = (raw.to_string(), e.event_id.clone());
        let outcome = self
            .db
            .run(move |c| {
                crate::db::write_transaction(c, |c| {
                    // The dossier's row first: its lock orders the dossier's changes.
                    let touched = diesel::update(sync_dossiers::table.find(&code2).filter(sync_dossiers::partner_id.eq(&partner)))
                        .set(sync_dossiers::events.eq(sync_dossiers::events + 1))
                        .execute(c)?;
                    if touched == 0 {
                        return Ok(Err(None));
                    }
                    let seen: Option<(i32, String)> = sync_events::table
                        .filter(sync_events::dossier_code.eq(&code2))
                        .filter(sync_events::event_id.eq(&e.event_id))
                        .select((sync_events::seq, sync_events::request_hash))
                        .first(c)
                        .optional()?;
                    if let Some((seq, previous)) = seen {
                        // Undo the count: nothing new is stored.
                        diesel::update(sync_dossiers::table.find(&code2))
                            .set(sync_dossiers::events.eq(sync_dossiers::events - 1))
                            .execute(c)?;
                        return Ok(if previous == h { Ok((seq, true)) } else { Err(Some(seq)) });
                    }
                    let (seq, record): (i32, String) = sync_dossiers::table
                        .find(&code2)
                        .select((sync_dossiers::events, sync_dossiers::record))
                        .first(c)?;
                    let now = now_micros();
                    diesel::insert_into(sync_events::table)
                        .values((
                            sync_events::dossier_code.eq(&code2),
                            sync_events::seq.eq(seq),
                            sync_events::event_id.eq(&e.event_id),
                            sync_events::request_hash.eq(&h),
                            sync_events::event.eq(&raw_text),
                            sync_events::created_at.eq(now),
                        ))
                        .execute(c)?;
                    let mut record: Value = serde_json::from_str(&record).unwrap_or(Value::Null);
                    record["TrangThaiHoSo"] = json!(status);
                    diesel::update(sync_dossiers::table.find(&code2))
                        .set((
                            sync_dossiers::record.eq(record.to_string()),
                            sync_dossiers::status.eq(&e.status),
                            sync_dossiers::updated_at.eq(now),
                        ))
                        .execute(c)?;
                    let step = json!({"MaHoSo": code2, "QuaTrinhXuLy": [{
                        "ThuTu": seq, "NguoiXuLy": e.actor, "ThoiDiemXuLy": at, "TrangThai": status,
                        "NoiDungXuLy": e.note.clone().unwrap_or_default(), "NgayBatDau": at, "NgayKetThucTheoQuyDinh": due,
                    }]});
                    queue(c, &code2, "record", &record, now)?;
                    queue(c, &code2, "step", &step, now)?;
                    Ok(Ok((seq, false)))
                })
            })
            .await?;
        self.wake.notify_one();
        match outcome {
            Ok((seq, replayed)) => Ok(Reported { code: code.to_string(), seq, replayed }),
            Err(None) => {
                Err(ApiError::not_found(format!("No dossier \"{code}\" reported by this partner; report it first.")))
            }
            Err(Some(seq)) => Err(ApiError::new(
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
        let until = now + 60_000_000;
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
            .timeout(Duration::from_secs(10))
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

    /// Sends one outbox row: `Ok(None)` delivered, `Ok(Some(error))` refused
    /// by the portal (kept for a person to fix), `Err` a fault to retry.
    async fn send(&self, row: &OutboxRow) -> Result<Option<String>, String> {
        let payload: Value = serde_json::from_str(&row.payload).map_err(|e| e.to_string())?;
        let (path, body) = match row.kind.as_str() {
            "record" => ("dong-bo-ho-so", json!({"DanhSachHoSo": [payload]})),
            _ => ("cap-nhat-tien-do", payload),
        };
        let url = format!("{}/dvcqg/api/{path}", self.settings.url.trim_end_matches('/'));
        let mut fresh = false;
        loop {
            let session = self.session(fresh).await?;
            let r = self
                .http
                .post(&url)
                .timeout(Duration::from_secs(10))
                .header("PhienLamViec", session)
                .json(&body)
                .send()
                .await
                .map_err(|e| e.without_url().to_string())?;
            if r.status() == 401 && !fresh {
                fresh = true;
                continue;
            }
            if !r.status().is_success() {
                return Err(format!("the portal answered {}", r.status().as_u16()));
            }
            let answer: Value = r.json().await.map_err(|e| e.without_url().to_string())?;
            let result = if row.kind == "record" { &answer["KetQua"][0] } else { &answer };
            return Ok(match result["MaLoi"].as_str() {
                Some("0") => None,
                Some(code) => Some(format!("{code}: {}", result["MoTa"].as_str().unwrap_or(""))),
                None => return Err("the portal's answer has no MaLoi".into()),
            });
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

/// One dossier on which the province and the portal disagree, and why.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Difference {
    pub code: String,
    pub procedure: String,
    /// The national channel code (1 in person, 2 online, 3 post).
    pub channel: i64,
    /// The national status lgsp holds.
    pub status: i64,
    /// `never_sent`, `refused`, `steps_missing` or `status_behind`.
    pub why: String,
    pub detail: String,
}

/// Dossiers of one procedure, channel and status.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct Tally {
    /// Those lgsp holds.
    pub held: usize,
    /// Those the portal holds alike.
    pub matching: usize,
}

/// The province's dossiers received in a period, against what the portal holds.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Reconciliation {
    pub from: String,
    pub to: String,
    pub dossiers: usize,
    pub matching: usize,
    /// Per `procedure/channel/status`: the dossiers lgsp holds, and how many the portal holds alike.
    pub tally: std::collections::BTreeMap<String, Tally>,
    pub differences: Vec<Difference>,
}

impl PortalSync {
    async fn lookup(&self, code: &str) -> Result<Option<Value>, String> {
        let url = format!(
            "{}/dvcqg/api/tra-cuu-ho-so?MaHoSo={}",
            self.settings.url.trim_end_matches('/'),
            urlencoding::encode(code)
        );
        let mut fresh = false;
        loop {
            let session = self.session(fresh).await?;
            let r = self
                .http
                .get(&url)
                .timeout(Duration::from_secs(10))
                .header("PhienLamViec", session)
                .send()
                .await
                .map_err(|e| e.without_url().to_string())?;
            match r.status().as_u16() {
                401 if !fresh => fresh = true,
                404 => return Ok(None),
                200 => return r.json().await.map(Some).map_err(|e| e.without_url().to_string()),
                s => return Err(format!("the portal answered {s}")),
            }
        }
    }

    /// Compares the dossiers received from `from` to `to` (`yyyy-mm-dd`,
    /// both included) with what the portal holds, asking it for each.
    pub async fn reconcile(&self, from: jiff::civil::Date, to: jiff::civil::Date) -> Result<Reconciliation, ApiError> {
        if self.settings.url.is_empty() {
            return Err(ApiError::new(ErrorCode::NotReady, "No national portal is configured (portal.url)."));
        }
        let rows: Vec<(String, String, i32)> = self
            .db
            .run(|c| {
                Ok(sync_dossiers::table
                    .select((sync_dossiers::code, sync_dossiers::record, sync_dossiers::events))
                    .order(sync_dossiers::code)
                    .load(c)?)
            })
            .await?;
        let day = |d: jiff::civil::Date| format!("{:04}{:02}{:02}", d.year(), d.month(), d.day());
        let (lo, hi) = (day(from), day(to));
        let mut out = Reconciliation {
            from: from.to_string(),
            to: to.to_string(),
            dossiers: 0,
            matching: 0,
            tally: Default::default(),
            differences: Vec::new(),
        };
        for (code, record, events) in rows {
            let record: Value = serde_json::from_str(&record).unwrap_or(Value::Null);
            let received = record["NgayTiepNhan"].as_str().unwrap_or("").get(..8).unwrap_or("").to_string();
            if received < lo || received > hi {
                continue;
            }
            out.dossiers += 1;
            let procedure = record["MaTTHC"].as_str().unwrap_or("").to_string();
            let (channel, status) =
                (record["KenhThucHien"].as_i64().unwrap_or(0), record["TrangThaiHoSo"].as_i64().unwrap_or(0));
            let key = format!("{procedure}/{channel}/{status}");
            let held = self.lookup(&code).await.map_err(|why| {
                ApiError::new(ErrorCode::UpstreamUnavailable, format!("The portal could not be asked: {why}"))
            })?;
            let difference = match held {
                None => {
                    let refused = self.outbox(&code).await?.into_iter().find(|r| r.state == "refused");
                    match refused {
                        Some(r) => Some(("refused", r.last_error.unwrap_or_default())),
                        None => Some(("never_sent", "the portal holds no such dossier".to_string())),
                    }
                }
                Some(h) => {
                    let steps = h["QuaTrinhXuLy"].as_array().map_or(0, Vec::len);
                    if (steps as i32) < events {
                        Some(("steps_missing", format!("the portal holds {steps} of {events} steps")))
                    } else if h["HoSo"]["TrangThaiHoSo"].as_i64() != Some(status) {
                        Some((
                            "status_behind",
                            format!("the portal holds status {}, lgsp {status}", h["HoSo"]["TrangThaiHoSo"]),
                        ))
                    } else {
                        None
                    }
                }
            };
            let entry = out.tally.entry(key).or_default();
            entry.held += 1;
            match difference {
                None => {
                    entry.matching += 1;
                    out.matching += 1;
                }
                Some((why, detail)) => {
                    out.differences.push(Difference { code, procedure, channel, status, why: why.into(), detail })
                }
            }
        }
        Ok(out)
    }

    /// Sends again, whole, each dossier that differs (its record, then every
    /// step in order): what the portal lacks is filled, what it holds is
    /// replaced by the same. Returns the dossiers queued.
    pub async fn resend(&self, differences: &[Difference]) -> Result<Vec<String>, DbError> {
        let codes: Vec<String> = differences.iter().filter(|d| d.why != "refused").map(|d| d.code.clone()).collect();
        let queued = codes.clone();
        self.db
            .run(move |c| {
                crate::db::write_transaction(c, |c| {
                    let now = now_micros();
                    for code in &codes {
                        let record: String = sync_dossiers::table.find(code).select(sync_dossiers::record).first(c)?;
                        let record: Value = serde_json::from_str(&record).unwrap_or(Value::Null);
                        queue(c, code, "record", &record, now)?;
                        let events: Vec<(i32, String)> = sync_events::table
                            .filter(sync_events::dossier_code.eq(code))
                            .order(sync_events::seq)
                            .select((sync_events::seq, sync_events::event))
                            .load(c)?;
                        for (seq, event) in events {
                            let e: EventReport = match serde_json::from_str(&event) {
                                Ok(e) => e,
                                Err(_) => continue,
                            };
                            let codes = national_codes();
                            let status = codes.statuses.get(&e.status).copied().unwrap_or(0);
                            let at = portal_time(&e.at, "/at").unwrap_or_default();
                            let due = e.due_at.as_ref().and_then(|d| portal_time(d, "/due_at").ok());
                            let step = json!({"MaHoSo": code, "QuaTrinhXuLy": [{
                                "ThuTu": seq, "NguoiXuLy": e.actor, "ThoiDiemXuLy": at, "TrangThai": status,
                                "NoiDungXuLy": e.note.unwrap_or_default(), "NgayBatDau": at, "NgayKetThucTheoQuyDinh": due,
                            }]});
                            queue(c, code, "step", &step, now)?;
                        }
                    }
                    Ok(())
                })
            })
            .await?;
        self.wake.notify_one();
        Ok(queued)
    }
}
