//! A dossier's state as stored: the dossier, its steps, its timeline, the
//! callbacks owed to its partner, and the results it gave. Every change of a
//! step is one transaction, with its event and callback.

use crate::db::schema::{dossier_callbacks, dossier_days, dossier_events, dossier_steps, dossiers, results};
use crate::db::{DbConnection, DbError};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = dossiers)]
pub struct DossierRow {
    pub code: String,
    pub flow_id: String,
    pub flow_version: i32,
    pub partner_id: String,
    pub idempotency_key: String,
    pub request_hash: String,
    pub requester_id: String,
    pub subject_id: Option<String>,
    pub declaration: String,
    pub procedures: String,
    pub callback_url: Option<String>,
    pub callback_secret: Option<String>,
    pub state: String,
    pub received_on: String,
    pub due_on: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = dossier_steps, treat_none_as_null = true)]
pub struct StepRow {
    pub dossier_code: String,
    pub step_id: String,
    pub position: i32,
    pub state: String,
    pub reference: Option<String>,
    pub request: Option<String>,
    pub result: Option<String>,
    pub reason: Option<String>,
    pub supplement: Option<String>,
    pub supplement_deadline: Option<String>,
    pub attempts: i32,
    pub next_at: i64,
    pub lease_owner: Option<String>,
    pub lease_until: i64,
    pub started_on: Option<String>,
    pub due_on: Option<String>,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = dossier_events)]
pub struct EventRow {
    pub seq: i64,
    pub dossier_code: String,
    pub step_id: Option<String>,
    pub state: String,
    pub detail: String,
    pub at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = results)]
pub struct ResultRow {
    pub id: String,
    pub owner_id: String,
    pub kind: String,
    pub number: Option<String>,
    pub issued_on: Option<String>,
    pub agency: String,
    pub dossier_code: String,
    pub step_id: String,
    pub data: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = dossier_callbacks)]
pub struct CallbackRow {
    pub seq: i64,
    pub dossier_code: String,
    pub body: String,
    pub attempts: i32,
    pub next_at: i64,
    pub lease_until: i64,
    pub delivered_at: Option<i64>,
    pub last_error: Option<String>,
}

pub fn dossier_by_key(c: &mut DbConnection, partner: &str, key: &str) -> Result<Option<DossierRow>, DbError> {
    Ok(dossiers::table
        .filter(dossiers::partner_id.eq(partner))
        .filter(dossiers::idempotency_key.eq(key))
        .select(DossierRow::as_select())
        .first(c)
        .optional()?)
}

/// Takes the dossier for this transaction, before anything of it is read:
/// the write lock on SQLite (a read first could not be upgraded without
/// failing at once), the dossier's row lock on PostgreSQL, so that two steps
/// finishing at once on two nodes see each other's change.
pub fn lock_dossier(c: &mut DbConnection, code: &str) -> Result<(), DbError> {
    diesel::update(dossiers::table.find(code)).set(dossiers::updated_at.eq(dossiers::updated_at)).execute(c)?;
    Ok(())
}

/// Takes the day's numbering for a filing's transaction (see [`lock_dossier`]).
pub fn lock_day(c: &mut DbConnection, agency: &str, day: &str) -> Result<(), DbError> {
    diesel::update(dossier_days::table.find((agency, day)))
        .set(dossier_days::last.eq(dossier_days::last))
        .execute(c)?;
    Ok(())
}

pub fn dossier(c: &mut DbConnection, code: &str) -> Result<Option<DossierRow>, DbError> {
    Ok(dossiers::table.find(code).select(DossierRow::as_select()).first(c).optional()?)
}

pub fn steps(c: &mut DbConnection, code: &str) -> Result<Vec<StepRow>, DbError> {
    Ok(dossier_steps::table
        .filter(dossier_steps::dossier_code.eq(code))
        .order(dossier_steps::position)
        .select(StepRow::as_select())
        .load(c)?)
}

pub fn events(c: &mut DbConnection, code: &str) -> Result<Vec<EventRow>, DbError> {
    Ok(dossier_events::table
        .filter(dossier_events::dossier_code.eq(code))
        .order(dossier_events::seq)
        .select(EventRow::as_select())
        .load(c)?)
}

/// The next number among the dossiers `agency` received on `day` (yyMMdd).
pub fn next_sequence(c: &mut DbConnection, agency: &str, day: &str) -> Result<i32, DbError> {
    // One statement on both backends: two nodes filing at once on
    // PostgreSQL wait for each other's row, never take the same number.
    let upsert = "INSERT INTO dossier_days (agency, day, last) VALUES ($1, $2, 1) \
                  ON CONFLICT (agency, day) DO UPDATE SET last = dossier_days.last + 1";
    match c {
        DbConnection::Sqlite(c) => {
            diesel::sql_query(upsert.replace('$', "?")).bind::<Text, _>(agency).bind::<Text, _>(day).execute(c)?
        }
        DbConnection::Postgres(c) => {
            diesel::sql_query(upsert).bind::<Text, _>(agency).bind::<Text, _>(day).execute(c)?
        }
    };
    Ok(dossier_days::table.find((agency, day)).select(dossier_days::last).first(c)?)
}

pub fn insert_dossier(c: &mut DbConnection, d: &DossierRow, steps: &[StepRow]) -> Result<(), DbError> {
    diesel::insert_into(dossiers::table).values(d).execute(c)?;
    for s in steps {
        diesel::insert_into(dossier_steps::table).values(s).execute(c)?;
    }
    Ok(())
}

pub fn event(
    c: &mut DbConnection,
    code: &str,
    step: Option<&str>,
    state: &str,
    detail: &serde_json::Value,
    at: i64,
) -> Result<(), DbError> {
    diesel::insert_into(dossier_events::table)
        .values((
            dossier_events::dossier_code.eq(code),
            dossier_events::step_id.eq(step),
            dossier_events::state.eq(state),
            dossier_events::detail.eq(detail.to_string()),
            dossier_events::at.eq(at),
        ))
        .execute(c)?;
    Ok(())
}

pub fn queue_callback(c: &mut DbConnection, code: &str, body: &str, at: i64) -> Result<(), DbError> {
    diesel::insert_into(dossier_callbacks::table)
        .values((
            dossier_callbacks::dossier_code.eq(code),
            dossier_callbacks::body.eq(body),
            dossier_callbacks::attempts.eq(0),
            dossier_callbacks::next_at.eq(at),
            dossier_callbacks::lease_until.eq(0i64),
        ))
        .execute(c)?;
    Ok(())
}

pub fn save_step(c: &mut DbConnection, s: &StepRow) -> Result<(), DbError> {
    diesel::update(dossier_steps::table.find((&s.dossier_code, &s.step_id))).set(s).execute(c)?;
    Ok(())
}

pub fn set_dossier_state(c: &mut DbConnection, code: &str, state: &str, at: i64) -> Result<(), DbError> {
    diesel::update(dossiers::table.find(code))
        .set((dossiers::state.eq(state), dossiers::updated_at.eq(at)))
        .execute(c)?;
    Ok(())
}

pub fn insert_result(c: &mut DbConnection, r: &ResultRow) -> Result<(), DbError> {
    diesel::insert_into(results::table).values(r).execute(c)?;
    Ok(())
}

pub fn results_of(c: &mut DbConnection, owner: &str, limit: i64) -> Result<Vec<ResultRow>, DbError> {
    Ok(results::table
        .filter(results::owner_id.eq(owner))
        .order(results::created_at.desc())
        .limit(limit)
        .select(ResultRow::as_select())
        .load(c)?)
}

#[derive(QueryableByName)]
struct Claimed {
    #[diesel(sql_type = Text)]
    dossier_code: String,
    #[diesel(sql_type = Text)]
    step_id: String,
}

/// The states a step is worked in: due when its `next_at` comes.
pub const WORKED: &str = "'ready','received','processing','supplementing'";

/// Claims up to `limit` due steps for `owner` until `until`: no other node
/// takes them before then. On PostgreSQL, rows another node is claiming are
/// skipped, not waited for.
pub fn claim(
    c: &mut DbConnection,
    owner: &str,
    now: i64,
    until: i64,
    limit: i64,
) -> Result<Vec<(String, String)>, DbError> {
    let rows: Vec<Claimed> = match c {
        DbConnection::Sqlite(c) => diesel::sql_query(format!(
            "UPDATE dossier_steps SET lease_owner = ?, lease_until = ? WHERE rowid IN \
             (SELECT rowid FROM dossier_steps WHERE state IN ({WORKED}) AND next_at <= ? AND lease_until < ? \
              ORDER BY next_at LIMIT ?) RETURNING dossier_code, step_id"
        ))
        .bind::<Text, _>(owner)
        .bind::<BigInt, _>(until)
        .bind::<BigInt, _>(now)
        .bind::<BigInt, _>(now)
        .bind::<BigInt, _>(limit)
        .load(c)?,
        DbConnection::Postgres(c) => diesel::sql_query(format!(
            "UPDATE dossier_steps s SET lease_owner = $1, lease_until = $2 FROM \
             (SELECT dossier_code, step_id FROM dossier_steps WHERE state IN ({WORKED}) AND next_at <= $3 \
              AND lease_until < $3 ORDER BY next_at LIMIT $4 FOR UPDATE SKIP LOCKED) due \
             WHERE s.dossier_code = due.dossier_code AND s.step_id = due.step_id \
             RETURNING s.dossier_code, s.step_id"
        ))
        .bind::<Text, _>(owner)
        .bind::<BigInt, _>(until)
        .bind::<BigInt, _>(now)
        .bind::<BigInt, _>(limit)
        .load(c)?,
    };
    Ok(rows.into_iter().map(|r| (r.dossier_code, r.step_id)).collect())
}

/// Claims the callbacks due, the first undelivered of each dossier only, so
/// that a dossier's changes arrive in order.
pub fn claim_callbacks(c: &mut DbConnection, now: i64, until: i64, limit: i64) -> Result<Vec<CallbackRow>, DbError> {
    // No transaction: each claim is one conditional update.
    {
        let due: Vec<CallbackRow> = dossier_callbacks::table
            .filter(dossier_callbacks::delivered_at.is_null())
            .filter(dossier_callbacks::next_at.le(now))
            .filter(dossier_callbacks::lease_until.lt(now))
            .order(dossier_callbacks::seq)
            .limit(limit)
            .select(CallbackRow::as_select())
            .load(c)?;
        let mut claimed = Vec::new();
        for cb in due {
            let earlier: i64 = dossier_callbacks::table
                .filter(dossier_callbacks::dossier_code.eq(&cb.dossier_code))
                .filter(dossier_callbacks::delivered_at.is_null())
                .filter(dossier_callbacks::seq.lt(cb.seq))
                .count()
                .get_result(c)?;
            if earlier > 0 {
                continue;
            }
            let taken = diesel::update(
                dossier_callbacks::table
                    .find(cb.seq)
                    .filter(dossier_callbacks::lease_until.lt(now))
                    .filter(dossier_callbacks::delivered_at.is_null()),
            )
            .set(dossier_callbacks::lease_until.eq(until))
            .execute(c)?;
            if taken == 1 {
                claimed.push(cb);
            }
        }
        Ok(claimed)
    }
}

pub fn callback_delivered(c: &mut DbConnection, seq: i64, at: i64) -> Result<(), DbError> {
    diesel::update(dossier_callbacks::table.find(seq))
        .set((dossier_callbacks::delivered_at.eq(Some(at)), dossier_callbacks::lease_until.eq(0i64)))
        .execute(c)?;
    Ok(())
}

pub fn callback_failed(c: &mut DbConnection, seq: i64, next_at: i64, error: &str) -> Result<(), DbError> {
    diesel::update(dossier_callbacks::table.find(seq))
        .set((
            dossier_callbacks::attempts.eq(dossier_callbacks::attempts + 1),
            dossier_callbacks::next_at.eq(next_at),
            dossier_callbacks::lease_until.eq(0i64),
            dossier_callbacks::last_error.eq(Some(error)),
        ))
        .execute(c)?;
    Ok(())
}

/// Steps past their deadline and not yet finished.
pub fn overdue(c: &mut DbConnection, today: &str) -> Result<Vec<StepRow>, DbError> {
    Ok(dossier_steps::table
        .filter(dossier_steps::due_on.lt(today))
        .filter(dossier_steps::state.eq_any(super::OPEN_STATES))
        .select(StepRow::as_select())
        .load(c)?)
}
