//! Linked dossiers (Decree 63/2024) as a source of the sync: a filed dossier
//! is recorded for the portal, and each change of its steps becomes a
//! processing step there, in the transaction that makes the change. The
//! dossier's state maps to a local status, then to the portal's code, as
//! `schemas/flows/national-statuses.json` declares under `linked`.

use super::{hash, national_codes, national_record, store, DocumentReport, DossierReport, EventReport};
use crate::db::{micros_to_rfc3339, DbConnection, DbError};

/// What the sync needs of a filed linked dossier.
pub struct Filed<'a> {
    pub code: &'a str,
    pub partner: &'a str,
    /// The group's code in the national database of procedures; the flow's
    /// id where the flow declares none (the portal refuses it, and the
    /// refusal is kept for a steward to fix).
    pub procedure_code: &'a str,
    pub agency: &'a str,
    pub requester: &'a str,
    pub title: &'a str,
    pub received_at: i64,
    /// The day the whole dossier is due (`yyyy-mm-dd`).
    pub due_on: &'a str,
}

/// The local status a linked dossier's state maps to.
pub fn status_of(state: &str) -> String {
    national_codes().linked.get(state).cloned().unwrap_or_else(|| "processing".into())
}

fn due_at(day: &str) -> String {
    format!("{day}T17:00:00+07:00")
}

/// Records a filed dossier for the portal: received, online, its
/// declaration a digitised document.
pub fn filed(c: &mut DbConnection, d: &Filed, now: i64) -> Result<(), DbError> {
    let report = DossierReport {
        code: d.code.into(),
        procedure_code: d.procedure_code.into(),
        agency: d.agency.into(),
        applicant_type: "citizen".into(),
        applicant_id: d.requester.into(),
        channel: national_codes().linked_channel.clone(),
        received_at: micros_to_rfc3339(d.received_at),
        due_at: Some(due_at(d.due_on)),
        status: status_of("received"),
        fees_vnd: Some(0),
        documents: vec![DocumentReport {
            name: format!("Tờ khai liên thông: {}", d.title),
            digitised: true,
            reused: false,
        }],
    };
    // The values come from a dossier lgsp checked when it was filed; one the
    // portal's record cannot carry is recorded as it stands, for the portal
    // to refuse and a steward to fix, rather than lost.
    let record = national_record(&report).unwrap_or_else(|_| super::record_as_is(&report));
    let h = hash(&serde_json::json!({"linked": d.code}));
    store::take_dossier(c, d.partner, d.code, &h, &record, &report.status, now)?;
    Ok(())
}

/// A change of a linked dossier: a processing step on the portal with the
/// dossier's new status.
pub struct Change<'a> {
    pub code: &'a str,
    pub partner: &'a str,
    /// The dossier's state after the change.
    pub state: &'a str,
    /// Who made it: a registry, or the applicant.
    pub actor: &'a str,
    pub note: String,
    /// The day the step is due, if any.
    pub due_on: Option<&'a str>,
    /// What changed, unique within the dossier (a step and its state).
    pub what: &'a str,
}

pub fn changed(c: &mut DbConnection, ch: &Change, now: i64) -> Result<(), DbError> {
    let e = EventReport {
        event_id: format!("{}@{now}", ch.what),
        status: status_of(ch.state),
        at: micros_to_rfc3339(now),
        actor: ch.actor.into(),
        note: Some(ch.note.clone()),
        due_at: ch.due_on.map(due_at),
    };
    let raw = serde_json::to_value(&e).unwrap_or_default();
    store::take_event(c, ch.partner, ch.code, &hash(&raw), &raw.to_string(), &e, now)?;
    Ok(())
}
