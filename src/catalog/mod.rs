//! The live catalogue: adapters, forms, partners, keys and admin tokens, held
//! in memory as one immutable snapshot and swapped whole. Every node polls
//! `catalog_version` and reloads when it changes; the node that made a change
//! reloads at once. A reload keeps an adapter's compiled form (and its circuit
//! breaker) when its version has not changed.

pub mod manage;
pub mod sessions;
pub mod store;

use crate::adapter::{Adapter, OperationKind};
use crate::config::Settings;
use crate::db::{catalog_version, Db, DbConnection, DbError};
use crate::domain::credential::Credential;
use crate::domain::partner::{hash_secret, Partner, PartnerKind, Policy, Role};
use crate::elements::{Element, ElementDoc, Elements};
use crate::flow::Flow;
use crate::form::Form;
use crate::sealing::SealingKey;
use parking_lot::{Mutex, RwLock};
use std::any::Any;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

pub struct LiveAdapter {
    pub adapter: Arc<Adapter>,
    pub enabled: bool,
}

pub struct LiveForm {
    pub form: Arc<Form>,
    pub enabled: bool,
}

pub struct LiveFlow {
    pub flow: Arc<Flow>,
    pub enabled: bool,
}

#[derive(Debug, Clone)]
pub struct KeyRef {
    pub key_id: String,
    pub partner_id: String,
    /// Microseconds since the epoch; `None`: the key does not expire.
    pub expires_at: Option<i64>,
    /// When the key was last used; kept across reloads.
    pub used: Arc<KeyUse>,
}

/// When a key was last used (microseconds since the epoch, 0 for never): the
/// time stored in the database, raised by this node's calls, and how much of
/// that is stored already.
#[derive(Debug, Default)]
pub struct KeyUse {
    last: AtomicI64,
    stored: AtomicI64,
}

impl KeyUse {
    /// A call with the key, now.
    pub fn used_now(&self) {
        self.last.fetch_max(crate::db::now_micros(), Ordering::Relaxed);
    }

    pub fn last(&self) -> Option<i64> {
        Some(self.last.load(Ordering::Relaxed)).filter(|at| *at > 0)
    }

    /// The time the database holds.
    fn stored_at(&self, at: i64) {
        self.last.fetch_max(at, Ordering::Relaxed);
        self.stored.fetch_max(at, Ordering::Relaxed);
    }

    /// A use not yet stored.
    fn unstored(&self) -> Option<i64> {
        let last = self.last.load(Ordering::Relaxed);
        (last > self.stored.load(Ordering::Relaxed)).then_some(last)
    }
}

/// Which prefill plan a request needs: the form, the partner, and the
/// persons whose ID the request gives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PlanKey {
    pub form: String,
    pub partner: String,
    pub given: Vec<String>,
}

/// An admin token as the catalogue holds it: the caller a request that
/// presents it becomes.
#[derive(Debug, Clone)]
pub struct AdminCaller {
    pub token_id: String,
    pub role: Role,
    /// When the token stops working (microseconds since the epoch).
    pub expires_at: Option<i64>,
    /// When the token was last used; kept across reloads.
    pub used: Arc<KeyUse>,
}

/// A stored upstream credential, opened with this node's key.
pub struct LiveCredential {
    pub kind: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub updated_by: String,
    /// `None` when it does not open with this node's key.
    pub value: Option<Credential>,
}

/// One consistent snapshot.
pub struct Catalog {
    pub version: i64,
    /// The canonical data elements, compiled: every schema of this snapshot
    /// is compiled against them.
    pub elements: Arc<Elements>,
    /// Upstream credentials by name, opened.
    pub credentials: BTreeMap<String, LiveCredential>,
    pub adapters: BTreeMap<String, LiveAdapter>,
    pub forms: BTreeMap<String, LiveForm>,
    pub flows: BTreeMap<String, LiveFlow>,
    pub partners: HashMap<String, Arc<Partner>>,
    /// Live API keys by hash.
    pub keys: HashMap<String, KeyRef>,
    /// Live admin tokens by hash.
    pub admins: HashMap<String, AdminCaller>,
    /// Stored entries that no longer compile (for example after the
    /// allow-list changed), with why.
    pub broken: Vec<(String, String)>,
    /// The operations a prefill may call with a citizen ID alone, with the
    /// elements each provides: worked out once per snapshot, not per prefill.
    pub prefill_sources: Vec<(String, BTreeSet<String>)>,
    /// The elements a kept result of a linked dossier can hold: those of the
    /// write and status operations, whose outcomes the results are. A
    /// prefill reads the kept results only for a field bound to one of them.
    pub result_elements: BTreeSet<String>,
    /// The procedures the forms serve (their purposes): what a wildcard grant
    /// of purposes covers. Worked out once per snapshot, not per call.
    pub purposes: BTreeSet<String>,
    /// The prefill plans made with this snapshot (`prefill::Plan`, which this
    /// layer does not name): at most one per form, partner and set of
    /// relatives named, dropped with the snapshot.
    prefill_plans: Mutex<HashMap<PlanKey, Arc<dyn Any + Send + Sync>>>,
}

impl Default for Catalog {
    fn default() -> Catalog {
        Catalog {
            version: 0,
            elements: Elements::shipped(),
            credentials: BTreeMap::new(),
            adapters: BTreeMap::new(),
            forms: BTreeMap::new(),
            flows: BTreeMap::new(),
            partners: HashMap::new(),
            keys: HashMap::new(),
            admins: HashMap::new(),
            broken: Vec::new(),
            prefill_sources: Vec::new(),
            result_elements: BTreeSet::new(),
            purposes: BTreeSet::new(),
            prefill_plans: Mutex::default(),
        }
    }
}

impl Catalog {
    /// An enabled adapter.
    pub fn adapter(&self, id: &str) -> Option<&Arc<Adapter>> {
        self.adapters.get(id).filter(|a| a.enabled).map(|a| &a.adapter)
    }

    /// An enabled form.
    pub fn form(&self, id: &str) -> Option<&Arc<Form>> {
        self.forms.get(id).filter(|f| f.enabled).map(|f| &f.form)
    }

    /// An enabled flow.
    pub fn flow(&self, id: &str) -> Option<&Arc<Flow>> {
        self.flows.get(id).filter(|f| f.enabled).map(|f| &f.flow)
    }

    /// `adapter.operation` → what it does, for every operation of every adapter.
    pub fn operation_kinds(&self) -> BTreeMap<String, OperationKind> {
        self.adapters
            .values()
            .flat_map(|a| a.adapter.operations.values().map(|op| (format!("{}.{}", a.adapter.id, op.name), op.kind)))
            .collect()
    }

    /// The plan for `key`, made by `make` the first time; without a key, made
    /// afresh.
    pub fn prefill_plan<P: Any + Send + Sync>(&self, key: Option<PlanKey>, make: impl FnOnce() -> P) -> Arc<P> {
        let Some(key) = key else { return Arc::new(make()) };
        if let Some(plan) = self.prefill_plans.lock().get(&key).and_then(|p| p.clone().downcast::<P>().ok()) {
            return plan;
        }
        let plan = Arc::new(make());
        self.prefill_plans.lock().insert(key, plan.clone());
        plan
    }

    /// `adapter.operation` → the elements it provides, for every adapter.
    pub fn operations(&self) -> BTreeMap<String, BTreeSet<String>> {
        self.adapters
            .values()
            .flat_map(|a| {
                a.adapter.operations.values().filter(|op| op.kind == OperationKind::Read).map(|op| {
                    (format!("{}.{}", a.adapter.id, op.name), op.elements.iter().cloned().collect::<BTreeSet<_>>())
                })
            })
            .collect()
    }
}

pub struct LiveCatalog {
    current: RwLock<Arc<Catalog>>,
    pub settings: Arc<Settings>,
    pub db: Db,
    /// The key stored credentials are sealed with; `None` without one (the
    /// start-up checks refuse a database that holds credentials then).
    pub sealing: Option<Arc<SealingKey>>,
    reloading: tokio::sync::Mutex<()>,
}

impl LiveCatalog {
    /// The catalogue of a node; an error when the credentials key the
    /// settings name cannot be read.
    pub fn new(settings: Arc<Settings>, db: Db) -> Result<LiveCatalog, String> {
        let sealing = SealingKey::from_settings(&settings)?.map(Arc::new);
        Ok(LiveCatalog {
            current: RwLock::new(Arc::new(Catalog::default())),
            settings,
            sealing,
            db,
            reloading: tokio::sync::Mutex::new(()),
        })
    }

    pub fn get(&self) -> Arc<Catalog> {
        self.current.read().clone()
    }

    /// Reloads everything from the database.
    pub async fn reload(&self) -> Result<(), DbError> {
        let _one_at_a_time = self.reloading.lock().await;
        let previous = self.get();
        let settings = self.settings.clone();
        let sealing = self.sealing.clone();
        let next = self.db.run(move |c| load(c, &settings, sealing.as_deref(), &previous)).await?;
        *self.current.write() = Arc::new(next);
        Ok(())
    }

    /// Stores when API keys and admin tokens were last used on this node,
    /// where that is later than what the database holds; returns how many
    /// credentials.
    pub async fn store_key_use(&self) -> Result<usize, DbError> {
        let catalog = self.get();
        let unstored = |id: &str, used: &Arc<KeyUse>| used.unstored().map(|at| (id.to_string(), at, used.clone()));
        let keys: Vec<_> = catalog.keys.values().filter_map(|k| unstored(&k.key_id, &k.used)).collect();
        let tokens: Vec<_> = catalog.admins.values().filter_map(|t| unstored(&t.token_id, &t.used)).collect();
        let n = keys.len() + tokens.len();
        if n > 0 {
            self.db
                .run(move |c| {
                    for (id, at, used) in keys {
                        store::record_key_use(c, &id, at)?;
                        used.stored_at(at);
                    }
                    for (id, at, used) in tokens {
                        store::record_admin_token_use(c, &id, at)?;
                        used.stored_at(at);
                    }
                    Ok(())
                })
                .await?;
        }
        Ok(n)
    }

    /// Reloads if another node (or this one) changed the catalogue.
    pub async fn refresh(&self) -> Result<bool, DbError> {
        let version = self.db.run(catalog_version).await?;
        if version == self.get().version {
            return Ok(false);
        }
        self.reload().await?;
        Ok(true)
    }
}

/// The stored elements, compiled; the previous snapshot's when none changed.
/// Elements that no longer compile together leave the previous set in place.
fn load_elements(c: &mut DbConnection, previous: &Catalog) -> Result<Arc<Elements>, DbError> {
    let stored = stored_elements(c)?;
    if stored.is_empty() {
        return Ok(previous.elements.clone());
    }
    let stamp: Vec<(&str, i32)> = stored.iter().map(|e| (e.doc.id.as_str(), e.version)).collect();
    if stamp == previous.elements.stamp() {
        return Ok(previous.elements.clone());
    }
    match Elements::build(stored) {
        Ok(elements) => Ok(Arc::new(elements)),
        Err(why) => {
            tracing::error!(?why, "the stored elements do not compile; the previous ones stay");
            Ok(previous.elements.clone())
        }
    }
}

/// The current version of every stored element.
pub fn stored_elements(c: &mut DbConnection) -> Result<Vec<Element>, DbError> {
    let mut out = Vec::new();
    for cur in store::elements::all_current(c)? {
        match serde_json::from_str::<ElementDoc>(&cur.document) {
            Ok(doc) => out.push(Element { doc, version: cur.version }),
            Err(e) => tracing::error!(element = %cur.id, version = cur.version, %e, "stored element is not readable"),
        }
    }
    Ok(out)
}

/// The stored credentials, opened with `sealing`.
pub fn open_credentials(
    c: &mut DbConnection,
    sealing: Option<&SealingKey>,
) -> Result<BTreeMap<String, LiveCredential>, DbError> {
    let mut out = BTreeMap::new();
    for row in store::all_credentials(c)? {
        let value = match sealing.map(|k| k.open(&row.name, &row.sealed)) {
            Some(Ok(bytes)) => serde_json::from_slice::<Credential>(&bytes).ok(),
            Some(Err(why)) => {
                tracing::error!(credential = %row.name, %why, "stored credential does not open; calls go without it");
                None
            }
            None => None,
        };
        out.insert(
            row.name,
            LiveCredential {
                kind: row.kind,
                created_at: row.created_at,
                updated_at: row.updated_at,
                updated_by: row.updated_by,
                value,
            },
        );
    }
    Ok(out)
}

fn load(
    c: &mut DbConnection,
    settings: &Settings,
    sealing: Option<&SealingKey>,
    previous: &Catalog,
) -> Result<Catalog, DbError> {
    let version = catalog_version(c)?;
    let elements = load_elements(c, previous)?;
    let credentials = open_credentials(c, sealing)?;
    // Compiled adapters are kept across a reload only while the elements
    // they were compiled against are the same.
    let same_elements = Arc::ptr_eq(&elements, &previous.elements);
    let mut cat = Catalog { version, elements, credentials, ..Default::default() };
    for cur in store::adapters::all_current(c)? {
        let reuse = previous.adapters.get(&cur.id).filter(|a| same_elements && a.adapter.version == cur.version);
        let adapter = match reuse {
            Some(a) => Ok(a.adapter.clone()),
            None => serde_json::from_str(&cur.document)
                .map_err(|e| e.to_string())
                .and_then(|m| Adapter::compile(&m, cur.version, settings, &cat.elements).map_err(|e| format!("{e:?}")))
                .map(Arc::new),
        };
        match adapter {
            Ok(adapter) => {
                let stored = cat.credentials.get(&adapter.upstream.credential).and_then(|c| c.value.as_ref());
                adapter.authenticate(settings, stored);
                cat.adapters.insert(cur.id, LiveAdapter { adapter, enabled: cur.enabled });
            }
            Err(why) => {
                tracing::error!(adapter = %cur.id, version = cur.version, %why, "stored adapter does not compile");
                cat.broken.push((cur.id, why));
            }
        }
    }
    let operations = cat.operations();
    for cur in store::forms::all_current(c)? {
        let form = serde_json::from_str(&cur.document)
            .map_err(|e| e.to_string())
            .and_then(|d| Form::compile(&d, cur.version, &operations, &cat.elements).map_err(|e| format!("{e:?}")));
        match form {
            Ok(f) => {
                cat.forms.insert(cur.id, LiveForm { form: Arc::new(f), enabled: cur.enabled });
            }
            Err(why) => {
                tracing::error!(form = %cur.id, version = cur.version, %why, "stored form does not compile");
                cat.broken.push((cur.id, why));
            }
        }
    }
    let kinds = cat.operation_kinds();
    let form_ids: BTreeSet<String> = cat.forms.keys().cloned().collect();
    for cur in store::flows::all_current(c)? {
        let flow = serde_json::from_str(&cur.document).map_err(|e| e.to_string()).and_then(|d| {
            Flow::compile(&d, cur.version, &kinds, &form_ids, &cat.elements).map_err(|e| format!("{e:?}"))
        });
        match flow {
            Ok(f) => {
                cat.flows.insert(cur.id, LiveFlow { flow: Arc::new(f), enabled: cur.enabled });
            }
            Err(why) => {
                tracing::error!(flow = %cur.id, version = cur.version, %why, "stored flow does not compile");
                cat.broken.push((cur.id, why));
            }
        }
    }
    for row in store::all_partners(c)? {
        let policy: Policy = serde_json::from_str(&row.policy).unwrap_or_default();
        let partner = Partner {
            kind: PartnerKind::parse(&row.kind).unwrap_or(PartnerKind::ConsentRequired),
            id: row.id,
            name: row.name,
            policy,
            rate_per_minute: row.rate_per_minute.max(1) as u32,
            burst: row.burst.max(1) as u32,
            enabled: row.enabled == 1,
        };
        cat.partners.insert(partner.id.clone(), Arc::new(partner));
    }
    for k in store::live_keys(c)? {
        let used = previous.keys.get(&k.key_hash).map(|p| p.used.clone()).unwrap_or_default();
        used.stored_at(k.last_used_at.unwrap_or(0));
        cat.keys.insert(k.key_hash, KeyRef { key_id: k.id, partner_id: k.partner_id, expires_at: k.expires_at, used });
    }
    for t in store::live_admin_tokens(c)? {
        if let Some(role) = Role::parse(&t.role) {
            let used = previous.admins.get(&t.token_hash).map(|p| p.used.clone()).unwrap_or_default();
            used.stored_at(t.last_used_at.unwrap_or(0));
            let caller = AdminCaller { token_id: t.id, role, expires_at: t.expires_at, used };
            cat.admins.insert(t.token_hash, caller);
        }
    }
    cat.prefill_sources = prefill_sources(&cat);
    cat.result_elements = result_elements(&cat);
    cat.purposes = cat.forms.values().flat_map(|f| f.form.doc.purposes.iter().cloned()).collect();
    cat.purposes.extend(cat.flows.values().map(|f| f.flow.doc.purpose.clone()));
    Ok(cat)
}

/// First start: stores the shipped elements (in one record of the trail),
/// adapters and forms that the database does not hold yet, and the bootstrap admin tokens from the settings, and notes
/// each in the audit trail (action `admin`, key `startup`) in the same
/// transaction, so that every change of what may be called, and by whom, is
/// in the trail, this one too. Returns how many things it stored.
pub fn seed(c: &mut DbConnection, settings: &Settings) -> anyhow::Result<usize> {
    use store::Publish;
    let mut tokens = Vec::new();
    for t in &settings.bootstrap_admin_tokens {
        let (role, token) = t
            .expose()
            .split_once(':')
            .filter(|(r, tok)| Role::parse(r).is_some() && tok.len() >= 16)
            .ok_or_else(|| anyhow::anyhow!("bootstrap_admin_tokens entries are role:token with role steward or auditor and a token of at least 16 characters"))?;
        tokens.push((role, hash_secret(token)));
    }
    let stored = diesel::Connection::transaction::<_, DbError, _>(c, |c| {
        let mut records = Vec::new();
        let mut note = |resource: &str, detail: serde_json::Value| {
            records.push(crate::audit::AuditRecord::change("startup", resource.to_string(), detail));
        };
        // Looked for first: publishing takes the catalogue's version (and
        // with it the write lock) even when the id exists, and every node
        // would reload at each start.
        let mut elements = Vec::new();
        for doc in ElementDoc::shipped() {
            if store::elements::exists(c, &doc.id)? {
                continue;
            }
            let text = serde_json::to_string(&doc).unwrap_or_default();
            if store::elements::publish(c, &doc.id, &text, "shipped", Publish::Create)?.is_some() {
                elements.push(doc.id);
            }
        }
        if !elements.is_empty() {
            note("elements", serde_json::json!({"shipped": elements, "version": 1}));
        }
        // A shipped document no steward changed since is brought up to this
        // version's (the adapters' write operations came so); one a steward
        // published over is left as it is.
        macro_rules! upgrade {
            ($module:ident, $id:expr, $text:expr, $what:expr) => {
                if let Some(cur) = store::$module::current(c, $id)? {
                    let by_shipped = store::$module::versions(c, $id)?
                        .unwrap_or_default()
                        .iter()
                        .any(|v| v.current && v.created_by == "shipped");
                    if by_shipped && cur.document != $text.trim() {
                        if let Some(version) = store::$module::publish(c, $id, $text.trim(), "shipped", Publish::NewVersion)? {
                            note($what, serde_json::json!({"upgraded": $id, "version": version}));
                        }
                    }
                    continue;
                }
            };
        }
        for (id, text) in crate::adapter::SHIPPED {
            upgrade!(adapters, id, text, "adapters");
            if let Some(version) = store::adapters::publish(c, id, text.trim(), "shipped", Publish::Create)? {
                note("adapters", serde_json::json!({"shipped": id, "version": version}));
            }
        }
        for (id, text) in crate::form::SHIPPED {
            upgrade!(forms, id, text, "forms");
            if let Some(version) = store::forms::publish(c, id, text.trim(), "shipped", Publish::Create)? {
                note("forms", serde_json::json!({"shipped": id, "version": version}));
            }
        }
        for (id, text) in crate::flow::SHIPPED {
            upgrade!(flows, id, text, "flows");
            if let Some(version) = store::flows::publish(c, id, text.trim(), "shipped", Publish::Create)? {
                note("flows", serde_json::json!({"shipped": id, "version": version}));
            }
        }
        for (role, hash) in &tokens {
            if let Some(token_id) = store::ensure_admin_token(c, hash, role, "bootstrap")? {
                note(
                    "tokens",
                    serde_json::json!({"token_id": token_id, "role": role, "from": "bootstrap_admin_tokens"}),
                );
            }
        }
        let n = records.len();
        if n > 0 {
            crate::audit::append(c, records)?;
        }
        Ok(n)
    })?;
    Ok(stored)
}

/// The elements the outcomes of write and status operations give (kept in
/// each catalogue snapshot as `result_elements`). An outcome's result holds
/// no other: its schema allows only the operation's elements. Disabled
/// adapters count too, since their earlier results are still kept.
fn result_elements(catalog: &Catalog) -> BTreeSet<String> {
    catalog
        .adapters
        .values()
        .flat_map(|live| live.adapter.operations.values())
        .filter(|op| matches!(op.kind, OperationKind::Write | OperationKind::Status))
        .flat_map(|op| op.elements.iter().cloned())
        .collect()
}

/// Operations callable with only a citizen ID, with what they provide (kept
/// in each catalogue snapshot as `prefill_sources`).
fn prefill_sources(catalog: &Catalog) -> Vec<(String, BTreeSet<String>)> {
    let mut out = Vec::new();
    for (id, live) in &catalog.adapters {
        if !live.enabled {
            continue;
        }
        for op in live.adapter.operations.values().filter(|op| op.kind == OperationKind::Read) {
            let required = op.request_schema["required"].as_array().cloned().unwrap_or_default();
            if required.iter().all(|r| r == "citizen_id") {
                out.push((format!("{id}.{}", op.name), op.elements.iter().cloned().collect()));
            }
        }
    }
    out
}
