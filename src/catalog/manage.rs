//! Changing the catalogue: the same checks and the same writes whether a
//! steward uses `/admin/v1` or the `lgsp` command line. Nothing goes live
//! unless it validates; every change is stored versioned and reloaded.

use super::store::{self, PartnerRow, Publish};
use super::LiveCatalog;
use crate::adapter::{Adapter, OperationKind};
use crate::db::now_micros;
use crate::domain::credential::Credential;
use crate::domain::partner::{
    check_agency_code, hash_secret, new_secret, PartnerKind, Policy, Role, ADMIN_TOKEN_PREFIX, KEY_PREFIX,
};
use crate::elements::{Element, ElementDoc, Elements};
use crate::error::{ApiError, ErrorCode, FieldError};
use crate::flow::Flow;
use crate::form::Form;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocKind {
    Adapter,
    Form,
    Element,
    Flow,
}

impl DocKind {
    pub fn noun(self) -> &'static str {
        match self {
            DocKind::Adapter => "adapter",
            DocKind::Form => "form",
            DocKind::Element => "element",
            DocKind::Flow => "flow",
        }
    }
    /// As the command line and the admin API name the collection.
    pub fn noun_plural(self) -> &'static str {
        match self {
            DocKind::Adapter => "adapters",
            DocKind::Form => "forms",
            DocKind::Element => "elements",
            DocKind::Flow => "flows",
        }
    }
    fn invalid(self) -> ErrorCode {
        match self {
            DocKind::Adapter => ErrorCode::InvalidManifest,
            DocKind::Form => ErrorCode::InvalidForm,
            DocKind::Element => ErrorCode::InvalidElement,
            DocKind::Flow => ErrorCode::InvalidFlow,
        }
    }
}

/// The longest partner name, in characters (the longest agency names run to about 150).
pub const MOST_NAME_CHARS: usize = 200;

/// A partner as a steward registers or changes it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"id": "000.00.15.H29", "name": "Cổng dịch vụ công tỉnh", "kind": "state_agency",
    "rate_per_minute": 6000, "burst": 200,
    "policy": {"forms": ["ct01", "tk1_ts"], "purposes": ["residence_change"],
               "operations": ["population.citizen", "insurance.*"],
               "elements": ["full_name", "date_of_birth", "permanent_residence"],
               "access_log": true, "networks": ["203.0.113.0/24"]}}))]
#[serde(deny_unknown_fields)]
pub struct PartnerInput {
    /// Agency electronic identifier, e.g. `000.00.15.H29`.
    #[schema(pattern = r"^[0-9]{3}\.[0-9]{2}\.[0-9]{2}\.[A-Z][0-9]{2}$", example = "000.00.15.H29")]
    pub id: String,
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: String,
    pub kind: PartnerKind,
    #[serde(default)]
    pub policy: Policy,
    #[schema(minimum = 1, maximum = 1_000_000)]
    #[serde(deserialize_with = "crate::domain::json::whole")]
    pub rate_per_minute: u32,
    #[schema(minimum = 1, maximum = 100_000)]
    #[serde(deserialize_with = "crate::domain::json::whole")]
    pub burst: u32,
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// A change to a partner; absent fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PartnerPatch {
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: Option<String>,
    pub kind: Option<PartnerKind>,
    pub policy: Option<Policy>,
    #[schema(minimum = 1, maximum = 1_000_000)]
    #[serde(default, deserialize_with = "crate::domain::json::optional_whole")]
    pub rate_per_minute: Option<u32>,
    #[schema(minimum = 1, maximum = 100_000)]
    #[serde(default, deserialize_with = "crate::domain::json::optional_whole")]
    pub burst: Option<u32>,
    pub enabled: Option<bool>,
}

fn yes() -> bool {
    true
}

/// A new API key: the secret is shown here once and never again.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NewKey {
    pub id: String,
    pub partner_id: String,
    pub label: String,
    pub key: String,
    /// RFC 3339; absent when the key does not expire.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
/// A key as stewards see it: never its secret.
pub struct KeyInfo {
    pub id: String,
    pub label: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
    pub expires_at: Option<String>,
    /// When a call last presented the key: as stored by every node (each
    /// stores its own once a minute), or as this node saw it, if later.
    pub last_used_at: Option<String>,
    /// `live`, `expired` or `revoked`.
    pub state: &'static str,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
/// An admin token as stewards see it: never its secret.
pub struct TokenInfo {
    pub id: String,
    /// `steward` or `auditor`.
    pub role: String,
    pub label: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
    pub expires_at: Option<String>,
    /// When a call last presented the token, as for an API key.
    pub last_used_at: Option<String>,
    /// `live`, `expired` or `revoked`.
    pub state: &'static str,
}

fn new_key_id() -> String {
    format!("key_{}", &crate::telemetry::new_uuid().simple().to_string()[..16])
}

fn no_live_key(partner: &str, key_id: &str) -> ApiError {
    ApiError::not_found(format!("Partner {partner} has no live key {key_id}."))
}

/// The longest a rotated key may stay valid beside its replacement.
pub const MAX_ROTATION_GRACE_SECS: u64 = 30 * 24 * 3600;

/// An expiry as sent by a steward: an RFC 3339 time in the future, in
/// microseconds since the epoch.
pub fn parse_expiry(text: &str) -> Result<i64, ApiError> {
    let invalid = |why: String| {
        ApiError::new(ErrorCode::InvalidBody, format!("expires_at {why}."))
            .with_errors(vec![FieldError::new("/expires_at", &why)])
    };
    let at: jiff::Timestamp = text.parse().map_err(|_| {
        invalid(format!("\"{text}\" is not an RFC 3339 time; send one such as 2027-06-30T00:00:00+07:00"))
    })?;
    if at <= jiff::Timestamp::now() {
        return Err(invalid(format!("{at} is not in the future")));
    }
    Ok(at.as_microsecond())
}

/// Whether an API key or admin token works: `live`, `expired` or `revoked`.
pub fn credential_state(revoked_at: Option<i64>, expires_at: Option<i64>, now: i64) -> &'static str {
    match (revoked_at, expires_at) {
        (Some(_), _) => "revoked",
        (None, Some(at)) if at <= now => "expired",
        _ => "live",
    }
}

impl LiveCatalog {
    /// Opens a console session for a live admin token: the cookie's value.
    pub async fn open_console_session(
        &self,
        token_id: &str,
    ) -> Result<(String, super::sessions::SessionRow), ApiError> {
        let token_id = token_id.to_string();
        Ok(self.db.run(move |c| super::sessions::open(c, &token_id)).await?)
    }

    /// The live session a console cookie names.
    pub async fn console_session(&self, cookie: &str) -> Result<Option<super::sessions::SessionRow>, ApiError> {
        let cookie = cookie.to_string();
        Ok(self.db.run(move |c| super::sessions::find(c, &cookie)).await?)
    }

    pub async fn end_console_session(&self, cookie: &str) -> Result<(), ApiError> {
        let cookie = cookie.to_string();
        Ok(self.db.run(move |c| super::sessions::end(c, &cookie)).await?)
    }

    /// Validates and publishes an adapter manifest or form definition.
    /// `path_id`, when given, must match the document's id.
    pub async fn publish(
        &self,
        kind: DocKind,
        doc: Value,
        path_id: Option<&str>,
        by: &str,
        mode: Publish,
    ) -> Result<(String, i32), ApiError> {
        let invalid = |errors: Vec<FieldError>| {
            ApiError::new(
                kind.invalid(),
                format!("The {} was refused; fix every problem listed in errors.", kind.noun()),
            )
            .with_errors(errors)
        };
        self.check_document(kind, &doc, 0).await.map_err(invalid)?;
        let id = doc["id"].as_str().unwrap_or_default().to_string();
        if let Some(p) = path_id {
            if p != id {
                return Err(invalid(vec![FieldError::new(
                    "/id",
                    format!("the id \"{id}\" differs from \"{p}\" in the path"),
                )]));
            }
        }
        let text = doc.to_string();
        let by = by.to_string();
        let id2 = id.clone();
        let stored = self
            .db
            .run(move |c| match kind {
                DocKind::Adapter => store::adapters::publish(c, &id2, &text, &by, mode),
                DocKind::Form => store::forms::publish(c, &id2, &text, &by, mode),
                DocKind::Element => store::elements::publish(c, &id2, &text, &by, mode),
                DocKind::Flow => store::flows::publish(c, &id2, &text, &by, mode),
            })
            .await?;
        let Some(version) = stored else {
            return Err(match mode {
                Publish::Create => ApiError::new(
                    ErrorCode::Conflict,
                    format!("A {} \"{id}\" exists; publish a new version with PUT instead.", kind.noun()),
                ),
                _ => ApiError::not_found(format!("No {} \"{id}\"; register it with POST first.", kind.noun())),
            });
        };
        self.reload().await?;
        Ok((id, version))
    }

    pub async fn set_enabled(&self, kind: DocKind, id: &str, enabled: bool) -> Result<(), ApiError> {
        let id2 = id.to_string();
        let found = self
            .db
            .run(move |c| match kind {
                DocKind::Adapter => store::adapters::set_enabled(c, &id2, enabled),
                DocKind::Form => store::forms::set_enabled(c, &id2, enabled),
                DocKind::Flow => store::flows::set_enabled(c, &id2, enabled),
                // Adapters and forms name elements: one that disappeared
                // would break them.
                DocKind::Element => Ok(false),
            })
            .await?;
        if !found {
            return Err(ApiError::not_found(format!("No {} \"{id}\".", kind.noun())));
        }
        self.reload().await?;
        Ok(())
    }

    pub async fn versions(&self, kind: DocKind, id: &str) -> Result<Vec<store::VersionInfo>, ApiError> {
        let id2 = id.to_string();
        self.db
            .run(move |c| match kind {
                DocKind::Adapter => store::adapters::versions(c, &id2),
                DocKind::Form => store::forms::versions(c, &id2),
                DocKind::Element => store::elements::versions(c, &id2),
                DocKind::Flow => store::flows::versions(c, &id2),
            })
            .await?
            .ok_or_else(|| ApiError::not_found(format!("No {} \"{id}\".", kind.noun())))
    }

    /// A stored version of a document (the current one without `version`),
    /// as it was published: `(version, document)`.
    pub async fn document(&self, kind: DocKind, id: &str, version: Option<i32>) -> Result<(i32, Value), ApiError> {
        let id2 = id.to_string();
        let found = self
            .db
            .run(move |c| match (kind, version) {
                (DocKind::Adapter, None) => Ok(store::adapters::current(c, &id2)?.map(|e| (e.version, e.document))),
                (DocKind::Form, None) => Ok(store::forms::current(c, &id2)?.map(|e| (e.version, e.document))),
                (DocKind::Element, None) => Ok(store::elements::current(c, &id2)?.map(|e| (e.version, e.document))),
                (DocKind::Flow, None) => Ok(store::flows::current(c, &id2)?.map(|e| (e.version, e.document))),
                (DocKind::Adapter, Some(v)) => Ok(store::adapters::document(c, &id2, v)?.map(|d| (v, d))),
                (DocKind::Form, Some(v)) => Ok(store::forms::document(c, &id2, v)?.map(|d| (v, d))),
                (DocKind::Element, Some(v)) => Ok(store::elements::document(c, &id2, v)?.map(|d| (v, d))),
                (DocKind::Flow, Some(v)) => Ok(store::flows::document(c, &id2, v)?.map(|d| (v, d))),
            })
            .await?;
        let (version, text) = found.ok_or_else(|| match version {
            Some(v) => ApiError::not_found(format!("No version {v} of {} \"{id}\".", kind.noun())),
            None => ApiError::not_found(format!("No {} \"{id}\".", kind.noun())),
        })?;
        Ok((version, serde_json::from_str(&text).map_err(ApiError::internal)?))
    }

    /// Makes an earlier version current again, after checking it still compiles.
    pub async fn rollback(&self, kind: DocKind, id: &str, version: i32) -> Result<(), ApiError> {
        let (_, doc) = self.document(kind, id, Some(version)).await?;
        let refuse = |e: Vec<FieldError>| {
            ApiError::new(kind.invalid(), format!("Version {version} no longer validates; see errors.")).with_errors(e)
        };
        self.check_document(kind, &doc, version).await.map_err(refuse)?;
        let id2 = id.to_string();
        self.db
            .run(move |c| match kind {
                DocKind::Adapter => store::adapters::set_current(c, &id2, version),
                DocKind::Form => store::forms::set_current(c, &id2, version),
                DocKind::Element => store::elements::set_current(c, &id2, version),
                DocKind::Flow => store::flows::set_current(c, &id2, version),
            })
            .await?;
        self.reload().await?;
        Ok(())
    }

    /// Every problem with a document about to be published (or made current
    /// again), against what the catalogue holds.
    async fn check_document(&self, kind: DocKind, doc: &Value, version: i32) -> Result<(), Vec<FieldError>> {
        let catalog = self.get();
        match kind {
            DocKind::Adapter => Adapter::compile(doc, version, &self.settings, &catalog.elements).map(drop),
            DocKind::Form => Form::compile(doc, version, &catalog.operations(), &catalog.elements).map(drop),
            DocKind::Element => self.check_element(doc).await,
            DocKind::Flow => {
                let forms = catalog.forms.keys().cloned().collect();
                Flow::compile(doc, version, &catalog.operation_kinds(), &forms, &catalog.elements).map(drop)
            }
        }
    }

    /// An element, checked on its own and with the other elements, and then
    /// every stored adapter and form compiled against the elements it would
    /// make: a change that would break one is refused, naming each.
    async fn check_element(&self, doc: &Value) -> Result<(), Vec<FieldError>> {
        crate::schema::check(crate::schema::element_validator(), doc)?;
        let new: ElementDoc =
            serde_json::from_value(doc.clone()).map_err(|e| vec![FieldError::new("", e.to_string())])?;
        let id = new.id.clone();
        let (mut stored, adapters, forms) = self
            .db
            .run(|c| Ok((super::stored_elements(c)?, store::adapters::all_current(c)?, store::forms::all_current(c)?)))
            .await
            .map_err(|e| vec![FieldError::new("", format!("the stored catalogue could not be read: {e}"))])?;
        stored.retain(|e| e.doc.id != id);
        stored.push(Element { doc: new, version: 0 });
        let candidate = Elements::build(stored).map_err(|errors| {
            errors
                .into_iter()
                .map(|e| match e.pointer.strip_prefix(&format!("/{id}")) {
                    Some(own) => FieldError::new(own, e.message),
                    None => {
                        FieldError::new("", format!("element {}: {}", e.pointer.trim_start_matches('/'), e.message))
                    }
                })
                .collect::<Vec<_>>()
        })?;
        let mut errors = Vec::new();
        let mut broken = |what: &str, at: &str, problems: Vec<FieldError>| {
            for p in problems {
                errors.push(FieldError::new(
                    "",
                    format!("{what} \"{at}\" would no longer validate ({}: {}); change it first", p.pointer, p.message),
                ));
            }
        };
        // What is broken already (for another reason, such as the allow-list)
        // is not this change's doing.
        let already: BTreeSet<String> = self.get().broken.iter().map(|(id, _)| id.clone()).collect();
        let mut operations = BTreeMap::new();
        for cur in adapters.into_iter().filter(|a| !already.contains(&a.id)) {
            let Ok(manifest) = serde_json::from_str::<Value>(&cur.document) else { continue };
            match Adapter::compile(&manifest, cur.version, &self.settings, &candidate) {
                Ok(a) => {
                    operations.extend(a.operations.values().filter(|op| op.kind == OperationKind::Read).map(|op| {
                        (format!("{}.{}", a.id, op.name), op.elements.iter().cloned().collect::<BTreeSet<_>>())
                    }))
                }
                Err(problems) => broken("adapter", &cur.id, problems),
            }
        }
        for cur in forms.into_iter().filter(|f| !already.contains(&f.id)) {
            let Ok(definition) = serde_json::from_str::<Value>(&cur.document) else { continue };
            if let Err(problems) = Form::compile(&definition, cur.version, &operations, &candidate) {
                broken("form", &cur.id, problems);
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn check_partner(&self, p: &PartnerInput) -> Result<(), ApiError> {
        let mut errors = Vec::new();
        if let Err(e) = check_agency_code(&p.id) {
            errors.push(FieldError::new("/id", e));
        }
        if p.name.trim().is_empty() || p.name.chars().count() > MOST_NAME_CHARS {
            errors.push(FieldError::new(
                "/name",
                format!("the agency's name is required, at most {MOST_NAME_CHARS} characters"),
            ));
        }
        if p.rate_per_minute == 0 || p.rate_per_minute > 1_000_000 {
            errors.push(FieldError::new("/rate_per_minute", "must be between 1 and 1000000"));
        }
        if p.burst == 0 || p.burst > 100_000 {
            errors.push(FieldError::new("/burst", "must be between 1 and 100000"));
        }
        errors.extend(p.policy.check_bounds());
        errors.extend(policy_references(&p.policy, &self.get()));
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::InvalidPartner,
                "The partner was refused; fix every problem listed in errors.",
            )
            .with_errors(errors))
        }
    }

    pub async fn create_partner(&self, p: PartnerInput) -> Result<(), ApiError> {
        self.check_partner(&p)?;
        let now = now_micros();
        let row = PartnerRow {
            id: p.id.clone(),
            name: p.name,
            kind: p.kind.as_str().into(),
            policy: serde_json::to_string(&p.policy).map_err(ApiError::internal)?,
            rate_per_minute: p.rate_per_minute as i32,
            burst: p.burst as i32,
            enabled: i32::from(p.enabled),
            created_at: now,
            updated_at: now,
        };
        if !self.db.run(move |c| store::insert_partner(c, &row)).await? {
            return Err(ApiError::new(ErrorCode::Conflict, format!("Partner {} exists; change it with PATCH.", p.id)));
        }
        self.reload().await?;
        Ok(())
    }

    pub async fn update_partner(&self, id: &str, patch: PartnerPatch) -> Result<(), ApiError> {
        let id2 = id.to_string();
        let row = self
            .db
            .run(move |c| store::partner(c, &id2))
            .await?
            .ok_or_else(|| ApiError::not_found(format!("No partner {id}.")))?;
        let merged = PartnerInput {
            id: row.id.clone(),
            name: patch.name.unwrap_or(row.name),
            kind: patch.kind.or(PartnerKind::parse(&row.kind)).unwrap_or(PartnerKind::ConsentRequired),
            policy: match patch.policy {
                Some(p) => p,
                None => serde_json::from_str(&row.policy).unwrap_or_default(),
            },
            rate_per_minute: patch.rate_per_minute.unwrap_or(row.rate_per_minute as u32),
            burst: patch.burst.unwrap_or(row.burst as u32),
            enabled: patch.enabled.unwrap_or(row.enabled == 1),
        };
        self.check_partner(&merged)?;
        let updated = PartnerRow {
            id: merged.id,
            name: merged.name,
            kind: merged.kind.as_str().into(),
            policy: serde_json::to_string(&merged.policy).map_err(ApiError::internal)?,
            rate_per_minute: merged.rate_per_minute as i32,
            burst: merged.burst as i32,
            enabled: i32::from(merged.enabled),
            created_at: row.created_at,
            updated_at: now_micros(),
        };
        self.db.run(move |c| store::update_partner(c, &updated)).await?;
        self.reload().await?;
        Ok(())
    }

    /// Makes a key for a partner, valid until `expires_at` (microseconds)
    /// if given; the secret is returned once.
    pub async fn create_key(&self, partner: &str, label: &str, expires_at: Option<i64>) -> Result<NewKey, ApiError> {
        self.known_partner(partner)?;
        let key = new_secret(KEY_PREFIX);
        let new = NewKey {
            id: new_key_id(),
            partner_id: partner.to_string(),
            label: label.chars().take(100).collect(),
            key: key.clone(),
            expires_at: expires_at.map(crate::db::micros_to_rfc3339),
        };
        let (id, p, l, h) = (new.id.clone(), new.partner_id.clone(), new.label.clone(), hash_secret(&key));
        self.db.run(move |c| store::insert_key(c, &id, &p, &h, &l, expires_at)).await?;
        self.reload().await?;
        Ok(new)
    }

    fn known_partner(&self, partner: &str) -> Result<(), ApiError> {
        match self.get().partners.contains_key(partner) {
            true => Ok(()),
            false => Err(ApiError::not_found(format!("No partner {partner}."))),
        }
    }

    /// A partner's keys, revoked ones included, oldest first.
    pub async fn keys(&self, partner: &str) -> Result<Vec<KeyInfo>, ApiError> {
        self.known_partner(partner)?;
        let p = partner.to_string();
        let keys = self.db.run(move |c| store::keys_of(c, &p)).await?;
        let now = now_micros();
        let catalog = self.get();
        let seen_here = |key_id: &str| catalog.keys.values().find(|k| k.key_id == key_id).and_then(|k| k.used.last());
        Ok(keys
            .into_iter()
            .map(|k| KeyInfo {
                last_used_at: k.last_used_at.max(seen_here(&k.id)).map(crate::db::micros_to_rfc3339),
                state: credential_state(k.revoked_at, k.expires_at, now),
                id: k.id,
                label: k.label,
                created_at: crate::db::micros_to_rfc3339(k.created_at),
                revoked_at: k.revoked_at.map(crate::db::micros_to_rfc3339),
                expires_at: k.expires_at.map(crate::db::micros_to_rfc3339),
            })
            .collect())
    }

    /// Every admin token, revoked ones included, oldest first.
    pub async fn admin_tokens(&self) -> Result<Vec<TokenInfo>, ApiError> {
        let rows = self.db.run(store::all_admin_tokens).await?;
        let now = now_micros();
        let catalog = self.get();
        let seen_here = |id: &str| catalog.admins.values().find(|t| t.token_id == id).and_then(|t| t.used.last());
        Ok(rows
            .into_iter()
            .map(|t| TokenInfo {
                last_used_at: t.last_used_at.max(seen_here(&t.id)).map(crate::db::micros_to_rfc3339),
                state: credential_state(t.revoked_at, t.expires_at, now),
                expires_at: t.expires_at.map(crate::db::micros_to_rfc3339),
                id: t.id,
                role: t.role,
                label: t.label,
                created_at: crate::db::micros_to_rfc3339(t.created_at),
                revoked_at: t.revoked_at.map(crate::db::micros_to_rfc3339),
            })
            .collect())
    }

    pub async fn revoke_key(&self, partner: &str, key_id: &str) -> Result<(), ApiError> {
        let (p, k) = (partner.to_string(), key_id.to_string());
        if !self.db.run(move |c| store::revoke_key(c, &p, &k)).await? {
            return Err(no_live_key(partner, key_id));
        }
        self.reload().await?;
        Ok(())
    }

    /// A new key replacing `key_id`. The old key is revoked at once with no
    /// `grace`; otherwise it stays valid that much longer (or until its own
    /// expiry, if sooner), so that the partner can deploy the new key first.
    pub async fn rotate_key(
        &self,
        partner: &str,
        key_id: &str,
        grace: std::time::Duration,
        expires_at: Option<i64>,
    ) -> Result<NewKey, ApiError> {
        if grace.as_secs() > MAX_ROTATION_GRACE_SECS {
            return Err(ApiError::new(
                ErrorCode::InvalidBody,
                format!(
                    "grace_seconds is {}; the old key may stay valid at most {MAX_ROTATION_GRACE_SECS} seconds (30 days).",
                    grace.as_secs()
                ),
            )
            .with_errors(vec![FieldError::new("/grace_seconds", "more than 30 days")]));
        }
        self.known_partner(partner)?;
        let old_until = (!grace.is_zero())
            .then(|| now_micros().saturating_add(i64::try_from(grace.as_micros()).unwrap_or(i64::MAX)));
        let (id, key) = (new_key_id(), new_secret(KEY_PREFIX));
        let (p, k, new_id, hash) = (partner.to_string(), key_id.to_string(), id.clone(), hash_secret(&key));
        let label = self
            .db
            .run(move |c| {
                let new = store::Replacement { id: &new_id, hash: &hash, expires_at };
                store::rotate_key(c, &p, &k, &new, old_until)
            })
            .await?
            .ok_or_else(|| no_live_key(partner, key_id))?;
        self.reload().await?;
        Ok(NewKey {
            id,
            partner_id: partner.to_string(),
            label,
            key,
            expires_at: expires_at.map(crate::db::micros_to_rfc3339),
        })
    }

    /// Makes an admin token with a role, valid until `expires_at`
    /// (microseconds) if given; the secret is returned once.
    pub async fn create_admin_token(
        &self,
        role: Role,
        label: &str,
        expires_at: Option<i64>,
    ) -> Result<NewAdminToken, ApiError> {
        let token = new_secret(ADMIN_TOKEN_PREFIX);
        let new = NewAdminToken {
            id: format!("adm_{}", &crate::telemetry::new_uuid().simple().to_string()[..12]),
            role,
            label: label.chars().take(100).collect(),
            expires_at: expires_at.map(crate::db::micros_to_rfc3339),
            token: token.clone(),
        };
        let (id, l, h) = (new.id.clone(), new.label.clone(), hash_secret(&token));
        self.db.run(move |c| store::insert_admin_token(c, &id, &h, role.as_str(), &l, expires_at)).await?;
        self.reload().await?;
        Ok(new)
    }

    /// Revokes an admin token at once; the last live steward token cannot be revoked.
    pub async fn revoke_admin_token(&self, id: &str) -> Result<(), ApiError> {
        let owned = id.to_string();
        match self.db.run(move |c| store::revoke_admin_token(c, &owned)).await? {
            store::TokenRevocation::Revoked => {}
            store::TokenRevocation::NotFound => return Err(ApiError::not_found(format!("No live admin token {id}."))),
            store::TokenRevocation::LastSteward => {
                return Err(ApiError::new(
                    ErrorCode::Conflict,
                    format!(
                        "{id} is the last live steward token without an expiry; create another steward token \
                         without one before revoking it."
                    ),
                ))
            }
        }
        self.reload().await?;
        Ok(())
    }
}

/// A new admin token: the secret is shown here once and never again.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NewAdminToken {
    pub id: String,
    pub role: Role,
    pub label: String,
    /// When the token stops working (RFC 3339), if it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    pub token: String,
}

/// Problems with a policy's references, given what the catalogue holds:
/// unknown data elements, forms and operations.
pub fn policy_references(policy: &Policy, catalog: &super::Catalog) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for e in &policy.elements {
        if e != "*" && !catalog.elements.is_element(e) {
            errors.push(FieldError::new("/policy/elements", format!("unknown data element \"{e}\"")));
        }
    }
    for f in &policy.forms {
        if f != "*" && !catalog.forms.contains_key(f) {
            errors.push(FieldError::new("/policy/forms", format!("unknown form \"{f}\"")));
        }
    }
    for o in &policy.operations {
        if o == "*" {
            continue;
        }
        let known = o.split_once('.').is_some_and(|(a, op)| {
            catalog.adapters.get(a).is_some_and(|e| op == "*" || e.adapter.operations.contains_key(op))
        });
        if !known {
            errors.push(FieldError::new(
                "/policy/operations",
                format!("unknown operation \"{o}\"; use adapter.operation or adapter.*"),
            ));
        }
    }
    errors
}

/// An upstream credential as stewards see it: never its secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CredentialInfo {
    pub name: String,
    /// `static` or `basic`.
    pub kind: String,
    pub created_at: String,
    pub updated_at: String,
    /// Who set it last: `steward:{token id}` or `cli`.
    pub updated_by: String,
    /// Whether this node's calls present it: `false` where the node's
    /// configuration names a token for it (`upstreams.NAME.token`, which
    /// overrides), or where it does not open with this node's key.
    pub in_use: bool,
    /// The adapters whose manifests name it.
    pub used_by: Vec<String>,
}

impl LiveCatalog {
    /// Stores (or replaces) an upstream credential, sealed; every node's
    /// calls present it from their next catalogue load.
    pub async fn set_credential(&self, name: &str, credential: Credential, by: &str) -> Result<(), ApiError> {
        let mut errors: Vec<FieldError> = credential.check();
        if let Err(e) = crate::domain::credential::check_name(name) {
            errors.insert(0, FieldError::new("", e));
        }
        if !errors.is_empty() {
            return Err(ApiError::new(
                ErrorCode::InvalidCredential,
                "The credential was refused; fix every problem listed in errors.",
            )
            .with_errors(errors));
        }
        let Some(key) = self.sealing.clone() else {
            return Err(ApiError::new(
                ErrorCode::NotReady,
                "This node has no credentials key to seal credentials with; set credentials_key (or \
                 credentials_key_file) on every node, then set the credential again.",
            ));
        };
        let plain = serde_json::to_vec(&credential).map_err(ApiError::internal)?;
        let sealed = key.seal(name, &plain).map_err(ApiError::internal)?;
        let (name, kind, by) = (name.to_string(), credential.kind(), by.to_string());
        self.db.run(move |c| store::set_credential(c, &name, kind, &sealed, &by)).await?;
        self.reload().await?;
        Ok(())
    }

    /// Every stored credential, and how this node uses it.
    pub fn credentials(&self) -> Vec<CredentialInfo> {
        let catalog = self.get();
        catalog
            .credentials
            .iter()
            .map(|(name, c)| {
                let configured = self.settings.upstreams.get(name).is_some_and(|u| !u.token.is_empty());
                CredentialInfo {
                    name: name.clone(),
                    kind: c.kind.clone(),
                    created_at: crate::db::micros_to_rfc3339(c.created_at),
                    updated_at: crate::db::micros_to_rfc3339(c.updated_at),
                    updated_by: c.updated_by.clone(),
                    in_use: c.value.is_some() && !configured,
                    used_by: catalog
                        .adapters
                        .values()
                        .filter(|a| a.adapter.upstream.credential == *name)
                        .map(|a| a.adapter.id.clone())
                        .collect(),
                }
            })
            .collect()
    }
}
