//! Console sessions: a steward or auditor signs in with an admin token and
//! gets a session cookie. The database keeps the session's hash (never the
//! cookie), the token it was opened with, and its CSRF token, so that any
//! node answers the session and revoking the token ends it everywhere.

use crate::db::schema::console_sessions;
use crate::db::{now_micros, DbConnection, DbError};
use crate::domain::partner::{hash_secret, new_secret};
use diesel::prelude::*;

/// How long a console session lasts: a working day.
pub const SESSION_HOURS: i64 = 8;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = console_sessions)]
pub struct SessionRow {
    pub id_hash: String,
    pub token_id: String,
    pub csrf: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub ended_at: Option<i64>,
}

/// Opens a session for the admin token `token_id`; returns the cookie's
/// value and the session.
pub fn open(c: &mut DbConnection, token_id: &str) -> Result<(String, SessionRow), DbError> {
    let cookie = new_secret("cs_");
    let now = now_micros();
    let row = SessionRow {
        id_hash: hash_secret(&cookie),
        token_id: token_id.to_string(),
        csrf: new_secret(""),
        created_at: now,
        expires_at: now + SESSION_HOURS * 3_600_000_000,
        ended_at: None,
    };
    diesel::insert_into(console_sessions::table).values(&row).execute(c)?;
    Ok((cookie, row))
}

/// The live session a cookie names.
pub fn find(c: &mut DbConnection, cookie: &str) -> Result<Option<SessionRow>, DbError> {
    let now = now_micros();
    Ok(console_sessions::table
        .find(hash_secret(cookie))
        .filter(console_sessions::ended_at.is_null())
        .filter(console_sessions::expires_at.gt(now))
        .select(SessionRow::as_select())
        .first(c)
        .optional()?)
}

/// Ends the session a cookie names (signing out).
pub fn end(c: &mut DbConnection, cookie: &str) -> Result<(), DbError> {
    diesel::update(console_sessions::table.find(hash_secret(cookie)))
        .set(console_sessions::ended_at.eq(Some(now_micros())))
        .execute(c)?;
    Ok(())
}
