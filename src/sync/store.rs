//! The sync's tables, written inside the caller's transaction: a dossier
//! with its record, a change with the record's new status and its step, and
//! each message to the portal queued in the outbox beside them. Whatever
//! the source (the one-stop system's reports or a linked dossier's own
//! changes), the change and its outbox rows commit or fail together.

use super::{national_codes, portal_time, EventReport};
use crate::db::schema::{portal_outbox, sync_dossiers, sync_events};
use crate::db::{DbConnection, DbError};
use diesel::prelude::*;
use serde_json::{json, Value};

/// Queues one message to the portal for `code`, after those queued before it.
pub fn queue(c: &mut DbConnection, code: &str, kind: &str, payload: &Value, now: i64) -> Result<(), DbError> {
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

/// The portal's processing step for the `seq`th change of dossier `code`.
/// The change was checked when it was taken; a value it lacks is left empty.
pub fn step_message(code: &str, seq: i32, e: &EventReport) -> Value {
    let status = national_codes().statuses.get(&e.status).copied().unwrap_or(0);
    let at = portal_time(&e.at, "/at").unwrap_or_default();
    let due = e.due_at.as_ref().and_then(|d| portal_time(d, "/due_at").ok());
    json!({"MaHoSo": code, "QuaTrinhXuLy": [{
        "ThuTu": seq, "NguoiXuLy": e.actor, "ThoiDiemXuLy": at, "TrangThai": status,
        "NoiDungXuLy": e.note.clone().unwrap_or_default(), "NgayBatDau": at, "NgayKetThucTheoQuyDinh": due,
    }]})
}

/// Stores a new dossier and queues its record. `Some(same)` when the code is
/// held already, `same` telling whether by a report with this hash.
pub fn take_dossier(
    c: &mut DbConnection,
    partner: &str,
    code: &str,
    hash: &str,
    record: &Value,
    status: &str,
    now: i64,
) -> Result<Option<bool>, DbError> {
    let existing: Option<String> =
        sync_dossiers::table.find(code).select(sync_dossiers::request_hash).first(c).optional()?;
    if let Some(previous) = existing {
        return Ok(Some(previous == hash));
    }
    diesel::insert_into(sync_dossiers::table)
        .values((
            sync_dossiers::code.eq(code),
            sync_dossiers::partner_id.eq(partner),
            sync_dossiers::request_hash.eq(hash),
            sync_dossiers::record.eq(record.to_string()),
            sync_dossiers::status.eq(status),
            sync_dossiers::events.eq(0),
            sync_dossiers::created_at.eq(now),
            sync_dossiers::updated_at.eq(now),
            sync_dossiers::received_on.eq(record["NgayTiepNhan"].as_str().and_then(|t| t.get(..8)).unwrap_or("")),
        ))
        .execute(c)?;
    queue(c, code, "record", record, now)?;
    Ok(None)
}

/// What taking a change came to.
pub enum Taken {
    /// Stored as the dossier's change `seq`; `replayed` when it repeats one.
    Stored { seq: i32, replayed: bool },
    /// The partner reported no such dossier.
    NoDossier,
    /// The change's id was change `seq`, with other values.
    Conflict(i32),
}

/// Stores a change of `code` (reported by `partner`) and queues the record
/// with its new status, then the step. The dossier's row is written first:
/// its lock orders the dossier's changes on every backend.
pub fn take_event(
    c: &mut DbConnection,
    partner: &str,
    code: &str,
    hash: &str,
    raw: &str,
    e: &EventReport,
    now: i64,
) -> Result<Taken, DbError> {
    let touched = diesel::update(sync_dossiers::table.find(code).filter(sync_dossiers::partner_id.eq(partner)))
        .set(sync_dossiers::events.eq(sync_dossiers::events + 1))
        .execute(c)?;
    if touched == 0 {
        return Ok(Taken::NoDossier);
    }
    let seen: Option<(i32, String)> = sync_events::table
        .filter(sync_events::dossier_code.eq(code))
        .filter(sync_events::event_id.eq(&e.event_id))
        .select((sync_events::seq, sync_events::request_hash))
        .first(c)
        .optional()?;
    if let Some((seq, previous)) = seen {
        // Undo the count: nothing new is stored.
        diesel::update(sync_dossiers::table.find(code))
            .set(sync_dossiers::events.eq(sync_dossiers::events - 1))
            .execute(c)?;
        return Ok(if previous == hash { Taken::Stored { seq, replayed: true } } else { Taken::Conflict(seq) });
    }
    let (seq, record): (i32, String) =
        sync_dossiers::table.find(code).select((sync_dossiers::events, sync_dossiers::record)).first(c)?;
    diesel::insert_into(sync_events::table)
        .values((
            sync_events::dossier_code.eq(code),
            sync_events::seq.eq(seq),
            sync_events::event_id.eq(&e.event_id),
            sync_events::request_hash.eq(hash),
            sync_events::event.eq(raw),
            sync_events::created_at.eq(now),
        ))
        .execute(c)?;
    let mut record: Value = serde_json::from_str(&record).unwrap_or(Value::Null);
    record["TrangThaiHoSo"] = json!(national_codes().statuses.get(&e.status).copied().unwrap_or(0));
    diesel::update(sync_dossiers::table.find(code))
        .set((
            sync_dossiers::record.eq(record.to_string()),
            sync_dossiers::status.eq(&e.status),
            sync_dossiers::updated_at.eq(now),
        ))
        .execute(c)?;
    queue(c, code, "record", &record, now)?;
    queue(c, code, "step", &step_message(code, seq, e), now)?;
    Ok(Taken::Stored { seq, replayed: false })
}

/// Queues again, whole, what lgsp holds of `code`: its record, then every
/// step in order.
pub fn queue_whole(c: &mut DbConnection, code: &str, now: i64) -> Result<(), DbError> {
    let record: String = sync_dossiers::table.find(code).select(sync_dossiers::record).first(c)?;
    let record: Value = serde_json::from_str(&record).unwrap_or(Value::Null);
    queue(c, code, "record", &record, now)?;
    let events: Vec<(i32, String)> = sync_events::table
        .filter(sync_events::dossier_code.eq(code))
        .order(sync_events::seq)
        .select((sync_events::seq, sync_events::event))
        .load(c)?;
    for (seq, event) in events {
        if let Ok(e) = serde_json::from_str::<EventReport>(&event) {
            queue(c, code, "step", &step_message(code, seq, &e), now)?;
        }
    }
    Ok(())
}
