//! Stored catalogue entries: versioned adapter manifests, form definitions
//! and data elements,
//! partners, their API keys, and admin tokens. Every write bumps
//! `catalog_version` in the same transaction, so every node reloads.

use crate::db::schema::{admin_tokens, api_keys, credentials, partners};
use crate::db::{bump_catalog, now_micros, DbConnection, DbError};
use diesel::prelude::*;
use serde::Serialize;

/// One published version of an adapter or form.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct VersionInfo {
    pub version: i32,
    pub created_at: String,
    pub created_by: String,
    pub current: bool,
}

/// The current version of one adapter or form, as stored.
#[derive(Debug, Clone)]
pub struct Current {
    pub id: String,
    pub version: i32,
    pub enabled: bool,
    pub document: String,
}

/// Outcome of publishing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publish {
    /// Only when no entry of this id exists.
    Create,
    /// Only when one exists.
    NewVersion,
    /// Create or add a version.
    Upsert,
}

/// Versioned documents (adapter manifests, form definitions): one macro, two
/// tables each, the same operations.
macro_rules! versioned_store {
    ($module:ident, $head:ident, $versions:ident, $owner:ident, $document:ident) => {
        pub mod $module {
            use super::{Current, Publish, VersionInfo};
            use crate::db::schema::{$head, $versions};
            use crate::db::{bump_catalog, micros_to_rfc3339, now_micros, DbConnection, DbError};
            use diesel::prelude::*;

            /// Stores a new version and makes it current. `Ok(None)` when the
            /// id's existence does not suit `mode`.
            pub fn publish(
                conn: &mut DbConnection,
                id: &str,
                document: &str,
                by: &str,
                mode: Publish,
            ) -> Result<Option<i32>, DbError> {
                conn.transaction::<_, DbError, _>(|c| {
                    bump_catalog(c)?;
                    let latest: Option<i32> = $versions::table
                        .filter($versions::$owner.eq(id))
                        .select(diesel::dsl::max($versions::version))
                        .first(c)?;
                    let exists = latest.is_some();
                    if (exists && mode == Publish::Create) || (!exists && mode == Publish::NewVersion) {
                        return Ok(None);
                    }
                    let version = latest.unwrap_or(0) + 1;
                    let now = now_micros();
                    diesel::insert_into($versions::table)
                        .values((
                            $versions::$owner.eq(id),
                            $versions::version.eq(version),
                            $versions::$document.eq(document),
                            $versions::created_at.eq(now),
                            $versions::created_by.eq(by),
                        ))
                        .execute(c)?;
                    if exists {
                        diesel::update($head::table.filter($head::id.eq(id)))
                            .set(($head::current_version.eq(version), $head::updated_at.eq(now)))
                            .execute(c)?;
                    } else {
                        diesel::insert_into($head::table)
                            .values((
                                $head::id.eq(id),
                                $head::current_version.eq(version),
                                $head::enabled.eq(1),
                                $head::updated_at.eq(now),
                            ))
                            .execute(c)?;
                    }
                    Ok(Some(version))
                })
            }

            /// `false` when there is no such entry.
            pub fn set_enabled(conn: &mut DbConnection, id: &str, enabled: bool) -> Result<bool, DbError> {
                conn.transaction::<_, DbError, _>(|c| {
                    bump_catalog(c)?;
                    let n = diesel::update($head::table.filter($head::id.eq(id)))
                        .set(($head::enabled.eq(i32::from(enabled)), $head::updated_at.eq(now_micros())))
                        .execute(c)?;
                    Ok(n == 1)
                })
            }

            /// Makes an earlier version current again (a rollback).
            pub fn set_current(conn: &mut DbConnection, id: &str, version: i32) -> Result<bool, DbError> {
                conn.transaction::<_, DbError, _>(|c| {
                    bump_catalog(c)?;
                    let exists: i64 = $versions::table
                        .filter($versions::$owner.eq(id).and($versions::version.eq(version)))
                        .count()
                        .get_result(c)?;
                    if exists == 0 {
                        return Ok(false);
                    }
                    diesel::update($head::table.filter($head::id.eq(id)))
                        .set(($head::current_version.eq(version), $head::updated_at.eq(now_micros())))
                        .execute(c)?;
                    Ok(true)
                })
            }

            pub fn versions(conn: &mut DbConnection, id: &str) -> Result<Option<Vec<VersionInfo>>, DbError> {
                let current: Option<i32> =
                    $head::table.filter($head::id.eq(id)).select($head::current_version).first(conn).optional()?;
                let Some(current) = current else { return Ok(None) };
                let rows: Vec<(i32, i64, String)> = $versions::table
                    .filter($versions::$owner.eq(id))
                    .order($versions::version.asc())
                    .select(($versions::version, $versions::created_at, $versions::created_by))
                    .load(conn)?;
                Ok(Some(
                    rows.into_iter()
                        .map(|(version, at, by)| VersionInfo {
                            version,
                            created_at: micros_to_rfc3339(at),
                            created_by: by,
                            current: version == current,
                        })
                        .collect(),
                ))
            }

            pub fn document(conn: &mut DbConnection, id: &str, version: i32) -> Result<Option<String>, DbError> {
                Ok($versions::table
                    .filter($versions::$owner.eq(id).and($versions::version.eq(version)))
                    .select($versions::$document)
                    .first(conn)
                    .optional()?)
            }

            /// The current version of one entry, with its document; `Ok(None)`
            /// when no entry has this id. One query, so the two always agree.
            pub fn current(conn: &mut DbConnection, id: &str) -> Result<Option<Current>, DbError> {
                Ok(currents(conn, Some(id))?.pop())
            }

            /// The current version of every entry, by id, in one query.
            pub fn all_current(conn: &mut DbConnection) -> Result<Vec<Current>, DbError> {
                currents(conn, None)
            }

            /// Each entry (or only `id`) joined to its current version.
            fn currents(conn: &mut DbConnection, id: Option<&str>) -> Result<Vec<Current>, DbError> {
                let mut query = $head::table
                    .inner_join(
                        $versions::table
                            .on($versions::$owner.eq($head::id).and($versions::version.eq($head::current_version))),
                    )
                    .order($head::id.asc())
                    .select(($head::id, $head::current_version, $head::enabled, $versions::$document))
                    .into_boxed();
                if let Some(id) = id {
                    query = query.filter($head::id.eq(id));
                }
                let rows: Vec<(String, i32, i32, String)> = query.load(conn)?;
                Ok(rows
                    .into_iter()
                    .map(|(id, version, enabled, document)| Current { id, version, enabled: enabled == 1, document })
                    .collect())
            }

            pub fn exists(conn: &mut DbConnection, id: &str) -> Result<bool, DbError> {
                let n: i64 = $head::table.filter($head::id.eq(id)).count().get_result(conn)?;
                Ok(n > 0)
            }
        }
    };
}

versioned_store!(adapters, adapters, adapter_versions, adapter_id, manifest);
versioned_store!(forms, forms, form_versions, form_id, definition);
versioned_store!(elements, elements, element_versions, element_id, definition);
versioned_store!(flows, flows, flow_versions, flow_id, definition);

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = partners)]
pub struct PartnerRow {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub policy: String,
    pub rate_per_minute: i32,
    pub burst: i32,
    pub enabled: i32,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = api_keys)]
pub struct KeyRow {
    pub id: String,
    pub partner_id: String,
    pub key_hash: String,
    pub label: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = admin_tokens)]
pub struct AdminTokenRow {
    pub id: String,
    pub token_hash: String,
    pub role: String,
    pub label: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

/// `false` if the id is taken.
pub fn insert_partner(conn: &mut DbConnection, row: &PartnerRow) -> Result<bool, DbError> {
    conn.transaction::<_, DbError, _>(|c| {
        bump_catalog(c)?;
        let n: i64 = partners::table.filter(partners::id.eq(&row.id)).count().get_result(c)?;
        if n > 0 {
            return Ok(false);
        }
        diesel::insert_into(partners::table).values(row).execute(c)?;
        Ok(true)
    })
}

pub fn update_partner(conn: &mut DbConnection, row: &PartnerRow) -> Result<bool, DbError> {
    conn.transaction::<_, DbError, _>(|c| {
        bump_catalog(c)?;
        let n = diesel::update(partners::table.filter(partners::id.eq(&row.id)))
            .set((
                partners::name.eq(&row.name),
                partners::kind.eq(&row.kind),
                partners::policy.eq(&row.policy),
                partners::rate_per_minute.eq(row.rate_per_minute),
                partners::burst.eq(row.burst),
                partners::enabled.eq(row.enabled),
                partners::updated_at.eq(now_micros()),
            ))
            .execute(c)?;
        Ok(n == 1)
    })
}

pub fn partner(conn: &mut DbConnection, id: &str) -> Result<Option<PartnerRow>, DbError> {
    Ok(partners::table.filter(partners::id.eq(id)).select(PartnerRow::as_select()).first(conn).optional()?)
}

pub fn all_partners(conn: &mut DbConnection) -> Result<Vec<PartnerRow>, DbError> {
    Ok(partners::table.order(partners::id.asc()).select(PartnerRow::as_select()).load(conn)?)
}

/// A new key; `expires_at` in microseconds, `None` for a key that does not expire.
pub fn insert_key(
    conn: &mut DbConnection,
    id: &str,
    partner: &str,
    hash: &str,
    label: &str,
    expires_at: Option<i64>,
) -> Result<(), DbError> {
    conn.transaction::<_, DbError, _>(|c| {
        bump_catalog(c)?;
        insert_key_row(c, id, partner, hash, label, expires_at)
    })
}

fn insert_key_row(
    c: &mut DbConnection,
    id: &str,
    partner: &str,
    hash: &str,
    label: &str,
    expires_at: Option<i64>,
) -> Result<(), DbError> {
    diesel::insert_into(api_keys::table)
        .values((
            api_keys::id.eq(id),
            api_keys::partner_id.eq(partner),
            api_keys::key_hash.eq(hash),
            api_keys::label.eq(label),
            api_keys::created_at.eq(now_micros()),
            api_keys::expires_at.eq(expires_at),
        ))
        .execute(c)?;
    Ok(())
}

/// A key that replaces a live one.
pub struct Replacement<'a> {
    pub id: &'a str,
    pub hash: &'a str,
    pub expires_at: Option<i64>,
}

/// Replaces a partner's live key `old` with `new`, under the old key's label,
/// in one transaction: the old key is revoked, or with `old_until`
/// (microseconds) made to expire then (or at its own expiry, if sooner).
/// Returns the label, or `None` when the partner has no such live key, and
/// then writes nothing. The catalogue row is locked first, so two rotations
/// of one key cannot both replace it.
pub fn rotate_key(
    conn: &mut DbConnection,
    partner: &str,
    old: &str,
    new: &Replacement,
    old_until: Option<i64>,
) -> Result<Option<String>, DbError> {
    conn.transaction::<_, DbError, _>(|c| {
        bump_catalog(c)?;
        let live = api_keys::id.eq(old).and(api_keys::partner_id.eq(partner)).and(api_keys::revoked_at.is_null());
        let Some((label, current)) = api_keys::table
            .filter(live)
            .select((api_keys::label, api_keys::expires_at))
            .first::<(String, Option<i64>)>(c)
            .optional()?
        else {
            return Ok(None);
        };
        insert_key_row(c, new.id, partner, new.hash, &label, new.expires_at)?;
        let old_key = api_keys::table.filter(live);
        match old_until {
            None => diesel::update(old_key).set(api_keys::revoked_at.eq(now_micros())).execute(c)?,
            Some(at) => {
                let at = current.map_or(at, |e| e.min(at));
                diesel::update(old_key).set(api_keys::expires_at.eq(at)).execute(c)?
            }
        };
        Ok(Some(label))
    })
}

/// `false` when the partner has no such live key.
pub fn revoke_key(conn: &mut DbConnection, partner: &str, key_id: &str) -> Result<bool, DbError> {
    conn.transaction::<_, DbError, _>(|c| {
        bump_catalog(c)?;
        let n =
            diesel::update(api_keys::table.filter(
                api_keys::id.eq(key_id).and(api_keys::partner_id.eq(partner)).and(api_keys::revoked_at.is_null()),
            ))
            .set(api_keys::revoked_at.eq(now_micros()))
            .execute(c)?;
        Ok(n == 1)
    })
}

/// Records that a key was used at `at` (microseconds), unless a later use is
/// already stored. Not a catalogue change: no node reloads for it.
pub fn record_key_use(conn: &mut DbConnection, key_id: &str, at: i64) -> Result<(), DbError> {
    diesel::update(
        api_keys::table
            .filter(api_keys::id.eq(key_id))
            .filter(api_keys::last_used_at.is_null().or(api_keys::last_used_at.lt(at))),
    )
    .set(api_keys::last_used_at.eq(at))
    .execute(conn)?;
    Ok(())
}

/// Records that an admin token was used at `at`, as `record_key_use` does for
/// API keys.
pub fn record_admin_token_use(conn: &mut DbConnection, token_id: &str, at: i64) -> Result<(), DbError> {
    diesel::update(
        admin_tokens::table
            .filter(admin_tokens::id.eq(token_id))
            .filter(admin_tokens::last_used_at.is_null().or(admin_tokens::last_used_at.lt(at))),
    )
    .set(admin_tokens::last_used_at.eq(at))
    .execute(conn)?;
    Ok(())
}

pub fn keys_of(conn: &mut DbConnection, partner: &str) -> Result<Vec<KeyRow>, DbError> {
    Ok(api_keys::table
        .filter(api_keys::partner_id.eq(partner))
        .order(api_keys::created_at.asc())
        .select(KeyRow::as_select())
        .load(conn)?)
}

pub fn live_keys(conn: &mut DbConnection) -> Result<Vec<KeyRow>, DbError> {
    Ok(api_keys::table.filter(api_keys::revoked_at.is_null()).select(KeyRow::as_select()).load(conn)?)
}

/// Adds an admin token unless one with this hash exists (revoked ones
/// included, so a revoked bootstrap token stays revoked).
pub fn ensure_admin_token(
    conn: &mut DbConnection,
    hash: &str,
    role: &str,
    label: &str,
) -> Result<Option<String>, DbError> {
    conn.transaction::<_, DbError, _>(|c| {
        let n: i64 = admin_tokens::table.filter(admin_tokens::token_hash.eq(hash)).count().get_result(c)?;
        if n > 0 {
            return Ok(None);
        }
        let id = format!("adm_{}", &crate::telemetry::new_uuid().simple().to_string()[..12]);
        insert_admin_token(c, &id, hash, role, label, None)?;
        Ok(Some(id))
    })
}

pub fn insert_admin_token(
    c: &mut DbConnection,
    id: &str,
    hash: &str,
    role: &str,
    label: &str,
    expires_at: Option<i64>,
) -> Result<(), DbError> {
    c.transaction::<_, DbError, _>(|c| {
        bump_catalog(c)?;
        diesel::insert_into(admin_tokens::table)
            .values((
                admin_tokens::id.eq(id),
                admin_tokens::token_hash.eq(hash),
                admin_tokens::role.eq(role),
                admin_tokens::label.eq(label),
                admin_tokens::created_at.eq(now_micros()),
                admin_tokens::expires_at.eq(expires_at),
            ))
            .execute(c)?;
        Ok(())
    })
}

/// What revoking an admin token did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRevocation {
    Revoked,
    NotFound,
    /// Refused: it is the last live steward token without an expiry, and
    /// nobody could manage lgsp once the others expire.
    LastSteward,
}

pub fn revoke_admin_token(conn: &mut DbConnection, id: &str) -> Result<TokenRevocation, DbError> {
    conn.transaction::<_, DbError, _>(|c| {
        // Bumping first locks the catalogue row, so two concurrent revocations
        // cannot both see another steward left.
        bump_catalog(c)?;
        let live = || admin_tokens::table.filter(admin_tokens::revoked_at.is_null());
        let Some((role, expires_at)) = live()
            .filter(admin_tokens::id.eq(id))
            .select((admin_tokens::role, admin_tokens::expires_at))
            .first::<(String, Option<i64>)>(c)
            .optional()?
        else {
            return Ok(TokenRevocation::NotFound);
        };
        // Tokens that expire do not count: one steward token that does not
        // must always be left.
        if role == "steward" && expires_at.is_none() {
            let lasting: i64 = live()
                .filter(admin_tokens::role.eq("steward"))
                .filter(admin_tokens::expires_at.is_null())
                .count()
                .get_result(c)?;
            if lasting <= 1 {
                return Ok(TokenRevocation::LastSteward);
            }
        }
        diesel::update(admin_tokens::table.filter(admin_tokens::id.eq(id)))
            .set(admin_tokens::revoked_at.eq(now_micros()))
            .execute(c)?;
        Ok(TokenRevocation::Revoked)
    })
}

pub fn all_admin_tokens(conn: &mut DbConnection) -> Result<Vec<AdminTokenRow>, DbError> {
    Ok(admin_tokens::table.order(admin_tokens::created_at.asc()).select(AdminTokenRow::as_select()).load(conn)?)
}

pub fn live_admin_tokens(conn: &mut DbConnection) -> Result<Vec<AdminTokenRow>, DbError> {
    Ok(admin_tokens::table.filter(admin_tokens::revoked_at.is_null()).select(AdminTokenRow::as_select()).load(conn)?)
}

/// A stored upstream credential, its secret still sealed.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = credentials)]
pub struct CredentialRow {
    pub name: String,
    pub kind: String,
    pub sealed: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub updated_by: String,
}

/// Stores a credential, or replaces the one of that name.
pub fn set_credential(c: &mut DbConnection, name: &str, kind: &str, sealed: &str, by: &str) -> Result<(), DbError> {
    c.transaction::<_, DbError, _>(|c| {
        bump_catalog(c)?;
        let now = now_micros();
        let updated = diesel::update(credentials::table.filter(credentials::name.eq(name)))
            .set((
                credentials::kind.eq(kind),
                credentials::sealed.eq(sealed),
                credentials::updated_at.eq(now),
                credentials::updated_by.eq(by),
            ))
            .execute(c)?;
        if updated == 0 {
            diesel::insert_into(credentials::table)
                .values((
                    credentials::name.eq(name),
                    credentials::kind.eq(kind),
                    credentials::sealed.eq(sealed),
                    credentials::created_at.eq(now),
                    credentials::updated_at.eq(now),
                    credentials::updated_by.eq(by),
                ))
                .execute(c)?;
        }
        Ok(())
    })
}

pub fn all_credentials(c: &mut DbConnection) -> Result<Vec<CredentialRow>, DbError> {
    Ok(credentials::table.order(credentials::name.asc()).select(CredentialRow::as_select()).load(c)?)
}
