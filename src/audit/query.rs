//! Searching the trail: auditors filter and page through it; citizens see
//! who accessed their data.

use super::AuditRow;
use crate::db::schema::audit_log;
use crate::db::{micros_to_rfc3339, DbConnection, DbError};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Filters of `/admin/v1/audit`; all optional, combined with AND.
#[derive(Debug, Default, Clone, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditFilter {
    /// Agency code of the partner.
    pub partner_id: Option<String>,
    /// The API key, or for `admin` records the admin token (`cli` for the
    /// command line), that made the call.
    pub key_id: Option<String>,
    /// Personal ID number of the subject.
    pub subject: Option<String>,
    /// `prefill`, `exchange`, `access_log`, `dossier`, `dossier_step` or `admin`.
    pub action: Option<String>,
    /// `ok`, `partial`, `refused` or `failed`.
    pub outcome: Option<String>,
    /// Form id or `adapter.operation`.
    pub resource: Option<String>,
    /// Only records at or after this instant (RFC 3339).
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// Only records before this instant (RFC 3339).
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(minimum = 1)]
    pub cursor: Option<i64>,
}

/// The time filters, parsed.
pub struct TimeRange {
    pub from: Option<i64>,
    pub to: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub seq: i64,
    pub record_id: String,
    pub time: String,
    pub request_id: String,
    pub partner_id: String,
    pub key_id: String,
    pub action: String,
    pub subject: Option<String>,
    pub purpose: Option<String>,
    pub resource: String,
    pub adapters: Vec<String>,
    pub elements: Vec<String>,
    pub outcome: String,
    pub status: i32,
    pub latency_us: i64,
    #[schema(value_type = Object)]
    pub detail: Value,
    pub hash: String,
}

impl From<AuditRow> for AuditEntry {
    fn from(r: AuditRow) -> Self {
        AuditEntry {
            seq: r.seq,
            record_id: r.record_id,
            time: micros_to_rfc3339(r.ts),
            request_id: r.request_id,
            partner_id: r.partner_id,
            key_id: r.key_id,
            action: r.action,
            subject: r.subject,
            purpose: r.purpose,
            resource: r.resource,
            adapters: serde_json::from_str(&r.adapters).unwrap_or_default(),
            elements: serde_json::from_str(&r.elements).unwrap_or_default(),
            outcome: r.outcome,
            status: r.status,
            latency_us: r.latency_us,
            detail: serde_json::from_str(&r.detail).unwrap_or(Value::Null),
            hash: r.hash,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEntry>,
    /// Pass as `cursor` to get the next (older) page; absent on the last page.
    pub next_cursor: Option<i64>,
}

/// Newest first.
pub fn search(conn: &mut DbConnection, f: &AuditFilter, time: &TimeRange) -> Result<AuditPage, DbError> {
    let limit = i64::from(f.limit.unwrap_or(50).clamp(1, 500));
    let mut q = audit_log::table.into_boxed();
    if let Some(p) = &f.partner_id {
        q = q.filter(audit_log::partner_id.eq(p.clone()));
    }
    if let Some(k) = &f.key_id {
        q = q.filter(audit_log::key_id.eq(k.clone()));
    }
    if let Some(s) = &f.subject {
        q = q.filter(audit_log::subject.eq(s.clone()));
    }
    if let Some(a) = &f.action {
        q = q.filter(audit_log::action.eq(a.clone()));
    }
    if let Some(o) = &f.outcome {
        q = q.filter(audit_log::outcome.eq(o.clone()));
    }
    if let Some(r) = &f.resource {
        q = q.filter(audit_log::resource.eq(r.clone()));
    }
    if let Some(t) = time.from {
        q = q.filter(audit_log::ts.ge(t));
    }
    if let Some(t) = time.to {
        q = q.filter(audit_log::ts.lt(t));
    }
    if let Some(c) = f.cursor {
        q = q.filter(audit_log::seq.lt(c));
    }
    let rows: Vec<AuditRow> =
        q.order(audit_log::seq.desc()).limit(limit + 1).select(AuditRow::as_select()).load(conn)?;
    let more = rows.len() as i64 > limit;
    let items: Vec<AuditEntry> = rows.into_iter().take(limit as usize).map(AuditEntry::from).collect();
    let next_cursor = if more { items.last().map(|e| e.seq) } else { None };
    Ok(AuditPage { items, next_cursor })
}

/// One access to a citizen's data, as the citizen sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Access {
    pub time: String,
    /// Agency code of the partner that asked.
    pub agency_id: String,
    pub agency_name: String,
    /// The procedure or stated purpose.
    pub purpose: Option<String>,
    pub action: String,
    pub resource: String,
    /// The data elements released.
    pub elements: Vec<String>,
    /// Those of them that are sensitive personal data (Decree 13/2023/NĐ-CP),
    /// for the portal to point out.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sensitive: Vec<String>,
    pub outcome: String,
}

/// Accesses that released the subject's data (outcome `ok` or `partial`),
/// newest first, older than record `before` if given: at most `limit`.
pub fn rows_for_subject(
    conn: &mut DbConnection,
    subject: &str,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<AuditRow>, DbError> {
    let mut q = audit_log::table
        .filter(audit_log::subject.eq(subject))
        .filter(audit_log::outcome.eq_any(["ok", "partial"]))
        .into_boxed();
    if let Some(b) = before {
        q = q.filter(audit_log::seq.lt(b));
    }
    Ok(q.order(audit_log::seq.desc()).limit(limit).select(AuditRow::as_select()).load(conn)?)
}

/// Records of one action stored, for tests and reports.
pub fn count_action(conn: &mut DbConnection, action: &str) -> Result<i64, DbError> {
    Ok(audit_log::table.filter(audit_log::action.eq(action)).count().get_result(conn)?)
}

/// Records stored, for tests and reports.
pub fn count(conn: &mut DbConnection) -> Result<i64, DbError> {
    Ok(audit_log::table.count().get_result(conn)?)
}

/// The `detail` of recent successful prefills of a form, newest first.
pub fn prefill_details(conn: &mut DbConnection, form: &str, limit: i64) -> Result<Vec<Value>, DbError> {
    let rows: Vec<String> = audit_log::table
        .filter(audit_log::action.eq("prefill"))
        .filter(audit_log::resource.eq(form))
        .filter(audit_log::outcome.eq_any(["ok", "partial"]))
        .order(audit_log::seq.desc())
        .limit(limit)
        .select(audit_log::detail)
        .load(conn)?;
    Ok(rows.iter().filter_map(|d| serde_json::from_str(d).ok()).collect())
}
