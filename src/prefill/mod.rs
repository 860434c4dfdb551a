//! Prefill: plan which registry operations a form needs for the people it is
//! about, call only those, in parallel, within an overall time budget, merge
//! the answers field by field, and count what the citizen no longer declares.
//!
//! **Planning.** Each bound field names an element and a person. Fields the
//! partner may not receive are not planned at all. For each person the
//! planner takes the operations a field pins (`bind.source`), then covers the
//! remaining elements greedily with the operation that provides most of them,
//! so a form calls as few operations as it can. Relatives (household head,
//! parents, spouse) are found through the subject's own record.
//!
//! **Merging.** The operation the planner chose for an element is its
//! authoritative source. When another operation called for the same person
//! returns a different value for that element, the field keeps the
//! authoritative value, lists the other values in `conflicts` and becomes a
//! suggestion instead of read-only. An address whose legacy ward was split is
//! a suggestion too.

use crate::adapter::client::{CallOutcome, ExchangeError};
use crate::catalog::{Catalog, PlanKey};
use crate::db::micros_to_rfc3339;
use crate::domain::CitizenId;
use crate::dossier::Dossiers;
use crate::form::{Form, Found, SUBJECT};
use crate::telemetry::Metrics;
use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"form": "birth_registration", "citizen_id": "079195667864", "purpose": "birth_registration",
    "relatives": {"spouse": "079096466002"}}))]
pub struct PrefillRequest {
    /// Form id (see `GET /v1/forms`).
    #[schema(example = "ct01")]
    pub form: String,
    /// Personal ID number of the subject: the citizen filling in the form.
    #[schema(value_type = crate::schema::openapi::CitizenId)]
    pub citizen_id: String,
    /// The procedure this prefill serves; one of the form's purposes.
    #[schema(min_length = 1, max_length = 100, pattern = r"\S", example = "residence_change")]
    pub purpose: String,
    /// Personal ID number of the citizen who asks, where another fills
    /// the form about the subject (known to the portal from the citizen's
    /// login): the form's `requester`, if it has one.
    #[serde(default)]
    #[schema(value_type = Option<crate::schema::openapi::CitizenId>)]
    pub requester_id: Option<String>,
    /// ID numbers of other persons the form is about (those it declares,
    /// `GET /v1/forms/{id}`), where the registries do not link them to the
    /// subject or the portal knows them better.
    #[serde(default)]
    #[schema(value_type = crate::schema::openapi::Relatives)]
    pub relatives: BTreeMap<String, String>,
}

/// What became of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldStatus {
    /// A registry gave its value.
    Prefilled,
    /// It is bound to an element, but there is no value; `reason` says why.
    Unavailable,
    /// No registry holds it: the citizen declares it.
    Declare,
}

/// Why a bound field has no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unavailable {
    /// The registry holds no record, or no value for the element.
    NoRecord,
    /// The person the field is about could not be found.
    NoPerson,
    /// No enabled adapter provides the element.
    NoSource,
    /// The registry did not answer.
    SourceFailed,
    /// The partner may not receive the element.
    NotPermitted,
    /// The value did not fit the form's transform.
    TransformFailed,
}

/// How a portal should show a prefilled value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Read-only: the element's authoritative registry gave it, and no other disagrees.
    Authoritative,
    /// Let the citizen edit it: sources disagree, or lgsp chose among several.
    Suggestion,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FieldValue {
    pub id: String,
    pub label_vi: String,
    /// `prefilled`, `unavailable`, or `declare` (not held by any registry).
    #[schema(value_type = String)]
    pub status: FieldStatus,
    /// The value, shaped as its element's schema says: a string, a number, an
    /// array, an object (an address, a person), or a boolean.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = crate::schema::openapi::AnyValue)]
    pub value: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub element: Option<String>,
    /// The element's class of personal data: `basic`, or `sensitive`
    /// (Decree 13/2023/NĐ-CP: ethnic origin, religious views).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classification: Option<&'static str>,
    /// The person of the form the field is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub person: Option<String>,
    /// `adapter.operation` the value came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retrieved_at: Option<String>,
    /// Came from the element's authoritative registry, schema-checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
    /// `authoritative` (show read-only) or `suggestion` (let the citizen edit).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub mode: Option<Mode>,
    /// Why there is no value: `no_record`, `no_person`, `no_source`, `source_failed`, `not_permitted`,
    /// `transform_failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub reason: Option<Unavailable>,
    /// Other values for the field, from sources other than its authoritative one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<Conflict>,
}

/// A value another source gave for a field, unlike the authoritative one.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Conflict {
    /// `adapter.operation` that gave it.
    pub source: String,
    #[schema(value_type = crate::schema::openapi::AnyValue)]
    pub value: Value,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SourceStatus {
    /// `adapter.operation`.
    pub operation: String,
    pub person: String,
    /// `ok`, `no_record`, `timeout`, `unavailable`, `circuit_open`, `invalid_response`, `budget_exceeded`,
    /// `rejected`.
    #[schema(value_type = String)]
    pub status: CallOutcome,
    pub latency_ms: f64,
}

#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct Coverage {
    /// Fields the citizen would fill in without lgsp.
    pub declarable: usize,
    pub prefilled: usize,
    /// prefilled / declarable.
    pub cut: f64,
    /// Characters the citizen no longer types.
    pub characters_saved: usize,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PrefillAnswer {
    pub form: String,
    pub form_version: i32,
    pub purpose: String,
    pub fields: Vec<FieldValue>,
    pub sources: Vec<SourceStatus>,
    pub coverage: Coverage,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl PrefillAnswer {
    /// Operations called, for the audit trail.
    pub fn operations(&self) -> Vec<String> {
        let set: BTreeSet<&str> = self.sources.iter().map(|s| s.operation.as_str()).collect();
        set.into_iter().map(str::to_string).collect()
    }

    /// Elements released: `element` for the subject, `person.element` for others.
    pub fn released(&self) -> Vec<String> {
        let set: BTreeSet<String> = self
            .fields
            .iter()
            .filter(|f| f.status == FieldStatus::Prefilled)
            .filter_map(|f| {
                let e = f.element.as_ref()?;
                Some(match f.person.as_deref() {
                    Some(SUBJECT) | None => e.clone(),
                    Some(p) => format!("{p}.{e}"),
                })
            })
            .collect();
        set.into_iter().collect()
    }

    /// Whether every source answered (a missing record is an answer).
    pub fn complete(&self) -> bool {
        self.sources.iter().all(|s| s.status.answered())
    }
}

/// Element → operation for one person: pinned sources first, then a greedy cover.
fn plan(
    candidates: &[(String, BTreeSet<String>)],
    needed: &BTreeSet<String>,
    pinned: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut chosen: BTreeMap<String, String> = BTreeMap::new();
    let mut ops: Vec<&String> = Vec::new();
    for (el, op) in pinned {
        if candidates.iter().any(|(c, _)| c == op) {
            chosen.insert(el.clone(), op.clone());
            ops.push(op);
        }
    }
    // Elements already covered by a pinned operation come from it too.
    for op in ops {
        if let Some((_, els)) = candidates.iter().find(|(c, _)| c == op) {
            for el in needed.intersection(els) {
                chosen.entry(el.clone()).or_insert_with(|| op.clone());
            }
        }
    }
    let mut left: BTreeSet<&String> = needed.iter().filter(|e| !chosen.contains_key(*e)).collect();
    while !left.is_empty() {
        let best = candidates
            .iter()
            .map(|(op, els)| (left.iter().filter(|e| els.contains(**e)).count(), els.len(), op, els))
            .filter(|(n, ..)| *n > 0)
            .max_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)).then(b.2.cmp(a.2)));
        let Some((_, _, op, els)) = best else { break };
        left.retain(|e| {
            if els.contains(*e) {
                chosen.insert((*e).clone(), op.clone());
                false
            } else {
                true
            }
        });
    }
    chosen
}

/// What a prefill calls, for whom: worked out from the form, the partner's
/// grant and which relatives the request names, none of which changes
/// within a catalogue snapshot, so each snapshot keeps the plans it made.
pub struct Plan {
    /// Person → element → the `adapter.operation` that provides it.
    calls: BTreeMap<String, BTreeMap<String, String>>,
    /// Person → the operations called for them, each once, in order.
    ops: BTreeMap<String, Vec<String>>,
    /// Every element planned for: no others are mapped.
    wanted: BTreeSet<String>,
}

impl Plan {
    fn new(input: &PrefillInput<'_>, permitted: &dyn Fn(&str, &str) -> bool) -> Plan {
        // What each person needs, and the pinned sources.
        let mut needed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut pinned: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for f in &input.form.doc.fields {
            let Some(b) = &f.bind else { continue };
            if !permitted(&b.person, &b.element) {
                continue;
            }
            needed.entry(b.person.clone()).or_default().insert(b.element.clone());
            if let Some(s) = &b.source {
                pinned.entry(b.person.clone()).or_default().insert(b.element.clone(), s.clone());
            }
        }
        // What finding each of them needs of others, unless the request
        // gives their ID.
        let mut todo: Vec<String> = needed.keys().cloned().collect();
        let mut seen = BTreeSet::new();
        while let Some(p) = todo.pop() {
            if !seen.insert(p.clone()) || input.given.contains_key(&p) {
                continue;
            }
            let mut need = |person: &str, element: &str| {
                needed.entry(person.to_string()).or_default().insert(element.to_string());
                todo.push(person.to_string());
            };
            match input.form.persons.get(&p) {
                Some(Found::Through { person, element }) => need(person, element),
                Some(Found::Either { when, then, otherwise }) => {
                    need(&when.person, &when.element);
                    todo.extend([then.clone(), otherwise.clone()]);
                }
                Some(Found::Given) | None => {}
            }
        }
        let candidates = &input.catalog.prefill_sources;
        let no_pins = BTreeMap::new();
        let calls: BTreeMap<String, BTreeMap<String, String>> = needed
            .iter()
            .map(|(p, els)| (p.clone(), plan(candidates, els, pinned.get(p).unwrap_or(&no_pins))))
            .collect();
        let ops = calls
            .iter()
            .map(|(p, by_element)| {
                let mut ops: Vec<String> = by_element.values().cloned().collect();
                ops.sort();
                ops.dedup();
                (p.clone(), ops)
            })
            .collect();
        Plan { calls, ops, wanted: needed.into_values().flatten().collect() }
    }

    /// The operations called for `person`, each once.
    fn ops_of(&self, person: &str) -> &[String] {
        self.ops.get(person).map_or(&[], Vec::as_slice)
    }
}

/// What one call brought back.
#[derive(Clone)]
struct Fetched {
    result: Result<Value, CallOutcome>,
    latency_ms: f64,
    retrieved_at: i64,
}

struct Fetcher<'a> {
    catalog: &'a Catalog,
    http: &'a reqwest::Client,
    metrics: &'a Metrics,
    deadline: tokio::time::Instant,
    /// The elements the form reads; no others are mapped.
    wanted: &'a BTreeSet<String>,
    /// `(operation, citizen ID)` → what it brought back; a prefill makes a
    /// handful of calls, so a list is searched faster than a map is hashed.
    cache: Vec<((String, String), Fetched)>,
    sources: Vec<SourceStatus>,
}

impl Fetcher<'_> {
    async fn fetch_all(&mut self, calls: Vec<(String, String, String)>) {
        let todo: Vec<(String, String, String)> =
            calls.into_iter().filter(|(_, op, id)| self.get(op, id).is_none()).collect();
        let mut unique = BTreeSet::new();
        let todo: Vec<_> = todo.into_iter().filter(|(_, op, id)| unique.insert((op.clone(), id.clone()))).collect();
        let (catalog, http, metrics, deadline) = (self.catalog, self.http, self.metrics, self.deadline);
        let wanted = self.wanted;
        let futures = todo.iter().map(|(_, op_key, id)| async move {
            let started = Instant::now();
            let result = match op_key.split_once('.').and_then(|(a, o)| {
                let adapter = catalog.adapter(a)?;
                Some((adapter, adapter.operations.get(o)?))
            }) {
                None => Err(CallOutcome::Unavailable),
                Some((adapter, op)) => {
                    let request = json!({ "citizen_id": id });
                    let wanted = |e: &str| wanted.contains(e);
                    match adapter.exchange(op, &request, http, metrics, &wanted, Some(deadline)).await {
                        Ok(mapped) => Ok(mapped.elements),
                        Err(ExchangeError::NotFound) => Err(CallOutcome::NoRecord),
                        Err(e) => {
                            tracing::warn!(operation = %op_key, kind = e.kind().as_str(), "prefill source failed");
                            Err(e.kind())
                        }
                    }
                }
            };
            Fetched {
                result,
                latency_ms: started.elapsed().as_secs_f64() * 1000.0,
                retrieved_at: crate::db::now_micros(),
            }
        });
        let results = join_all(futures).await;
        for ((person, op, id), fetched) in todo.into_iter().zip(results) {
            self.sources.push(SourceStatus {
                operation: op.clone(),
                person,
                status: match &fetched.result {
                    Ok(_) => CallOutcome::Ok,
                    Err(k) => *k,
                },
                latency_ms: (fetched.latency_ms * 1000.0).round() / 1000.0,
            });
            self.cache.push(((op, id), fetched));
        }
    }

    fn get(&self, op: &str, id: &str) -> Option<&Fetched> {
        self.cache.iter().find(|((o, i), _)| o == op && i == id).map(|(_, f)| f)
    }
}

/// `a / b` rounded to three decimals (0 when `b` is 0).
pub fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        ((a as f64 / b as f64) * 1000.0).round() / 1000.0
    }
}

/// Characters a citizen would type for a value.
pub fn display_chars(v: &Value) -> usize {
    match v {
        Value::String(s) => s.chars().count(),
        Value::Number(n) => n.to_string().len(),
        Value::Bool(_) | Value::Null => 0,
        Value::Array(a) => a.iter().map(display_chars).sum(),
        Value::Object(o) => {
            if let Some(t) = o.get("text").or_else(|| o.get("name")).or_else(|| o.get("full_name")) {
                display_chars(t)
            } else {
                o.values().map(display_chars).sum()
            }
        }
    }
}

static NULL: Value = Value::Null;

/// The part of an element's value a field reads (`Null` when it is missing).
fn pick<'v>(value: &'v Value, path: Option<&str>) -> &'v Value {
    match path {
        Some(p) => value.pointer(p).unwrap_or(&NULL),
        None => value,
    }
}

pub struct PrefillInput<'a> {
    pub catalog: &'a Catalog,
    pub form: &'a Form,
    pub citizen_id: CitizenId,
    pub purpose: &'a str,
    /// The other persons whose ID the request gives (`requester_id`, `relatives`).
    pub given: &'a BTreeMap<String, CitizenId>,
    /// The partner whose grant `may_receive` applies, when that grant is the
    /// one `catalog` holds: the plan made is kept in the snapshot for the
    /// partner's next prefill of the form. `None`: made for this call alone.
    pub partner: Option<&'a str>,
    /// Whether the partner may receive an element.
    pub may_receive: &'a dyn Fn(&str) -> bool,
    pub http: &'a reqwest::Client,
    pub metrics: &'a Metrics,
    pub budget: Duration,
    /// The results the province's linked procedures gave (a certificate, a
    /// card, a decision): a field no registry fills is taken from them.
    pub results: Option<&'a Dossiers>,
}

impl PrefillInput<'_> {
    fn plan_key(&self) -> Option<PlanKey> {
        let given = self.given.keys().cloned().collect();
        Some(PlanKey { form: self.form.id().to_string(), partner: self.partner?.to_string(), given })
    }
}

/// Prefills `input.form`: plans the calls (or takes the snapshot's plan),
/// fetches the records of the persons the request names, finds the persons
/// those records lead to and fetches theirs, then merges the answers field
/// by field.
pub async fn prefill(input: PrefillInput<'_>) -> PrefillAnswer {
    let form = input.form;
    let permitted = |p: &str, el: &str| (input.may_receive)(el) && form.links(p).iter().all(|l| (input.may_receive)(l));
    let planned = input.catalog.prefill_plan(input.plan_key(), || Plan::new(&input, &permitted));
    let mut fetcher = Fetcher {
        catalog: input.catalog,
        http: input.http,
        metrics: input.metrics,
        deadline: tokio::time::Instant::now() + input.budget,
        wanted: &planned.wanted,
        cache: Vec::new(),
        sources: Vec::new(),
    };
    let ids = fetch_people(&mut fetcher, &planned, &input).await;
    let merge = Merge { form, plan: &planned, fetcher: &fetcher, ids: &ids, permitted: &permitted };
    let mut notes = Vec::new();
    let mut fields: Vec<FieldValue> = form.doc.fields.iter().map(|f| merge.field(f, &mut notes)).collect();
    if let Some(results) = input.results {
        from_results(results, input.catalog, form, &ids, &mut fields, &mut notes).await;
    }
    count_fields(input.metrics, form, &fields);
    let prefilled = fields.iter().filter(|f| f.status == FieldStatus::Prefilled).count();
    let declarable = fields.len();
    let characters = fields.iter().filter_map(|f| f.value.as_ref()).map(display_chars).sum();
    PrefillAnswer {
        form: form.id().to_string(),
        form_version: form.version,
        purpose: input.purpose.to_string(),
        fields,
        sources: fetcher.sources,
        coverage: Coverage { declarable, prefilled, cut: ratio(prefilled, declarable), characters_saved: characters },
        notes,
    }
}

/// Fetches what the plan needs, a round at a time: the records of the
/// persons whose ID the request gives, then of those these records lead to,
/// and so on. Returns each person's ID number; a person not found has none.
async fn fetch_people(fetcher: &mut Fetcher<'_>, plan: &Plan, input: &PrefillInput<'_>) -> BTreeMap<String, String> {
    let form = input.form;
    let mut ids: BTreeMap<String, String> = BTreeMap::from([(SUBJECT.to_string(), input.citizen_id.to_string())]);
    ids.extend(input.given.iter().map(|(p, id)| (p.clone(), id.to_string())));
    // Persons whose records are fetched, and those that cannot be found.
    let mut fetched: BTreeSet<String> = BTreeSet::new();
    let mut lost: BTreeSet<String> = BTreeSet::new();
    loop {
        let round: Vec<(String, String, String)> = ids
            .iter()
            .filter(|(p, _)| !fetched.contains(*p))
            .flat_map(|(p, id)| plan.ops_of(p).iter().map(move |op| (p.clone(), op.clone(), id.clone())))
            .collect();
        fetched.extend(ids.keys().cloned());
        fetcher.fetch_all(round).await;
        // What a fetched person's record holds for an element.
        let value = |p: &str, el: &str| -> Option<Value> {
            let op = plan.calls.get(p)?.get(el)?;
            let v = fetcher.get(op, ids.get(p)?)?.result.as_ref().ok()?.get(el)?;
            (!v.is_null()).then(|| v.clone())
        };
        let mut found = Vec::new();
        for (p, how) in &form.persons {
            if ids.contains_key(p) || lost.contains(p) {
                continue;
            }
            let ready = |q: &str| fetched.contains(q) || lost.contains(q);
            let id = match how {
                Found::Given => None,
                Found::Through { person, element } if ready(person) => {
                    value(person, element).and_then(|v| v["citizen_id"].as_str().map(String::from))
                }
                Found::Either { when, then, otherwise } if ready(&when.person) => {
                    match value(&when.person, &when.element) {
                        Some(v) => {
                            let chosen = if v == when.equals { then } else { otherwise };
                            if !ids.contains_key(chosen) && !lost.contains(chosen) {
                                // Not found yet: tried again next round.
                                continue;
                            }
                            ids.get(chosen).cloned()
                        }
                        None => None,
                    }
                }
                _ => continue,
            };
            found.push((p.clone(), id));
        }
        if found.is_empty() {
            return ids;
        }
        for (p, id) in found {
            match id {
                Some(id) => {
                    ids.insert(p, id);
                }
                None => {
                    lost.insert(p);
                }
            }
        }
    }
}

/// Fills the fields no registry filled (none provides the element, or its
/// registry holds no value) from the results kept for the person they are
/// about: the electronic records of the procedures the province carried.
/// Only fields bound to an element some result can hold are looked for, so
/// a form none of whose open fields a result could fill reads nothing.
async fn from_results(
    results: &Dossiers,
    catalog: &Catalog,
    form: &Form,
    ids: &BTreeMap<String, String>,
    fields: &mut [FieldValue],
    notes: &mut Vec<String>,
) {
    // The fields a result could fill, each with its binding: `fields` holds
    // the form's fields in their order, so a field's declaration is the one
    // in the same place.
    let fillable: Vec<(usize, &crate::form::Binding)> = fields
        .iter()
        .zip(&form.doc.fields)
        .enumerate()
        .filter(|(_, (f, _))| {
            f.status == FieldStatus::Unavailable
                && matches!(f.reason, Some(Unavailable::NoSource | Unavailable::NoRecord))
        })
        .filter_map(|(i, (_, d))| {
            d.bind.as_ref().filter(|b| catalog.result_elements.contains(&b.element)).map(|b| (i, b))
        })
        .collect();
    let person_of = |f: &FieldValue| f.person.as_deref().and_then(|p| ids.get(p));
    let persons: BTreeSet<&String> = fillable.iter().filter_map(|(i, _)| person_of(&fields[*i])).collect();
    for id in persons {
        let kept = match results.result_elements(id).await {
            Ok(k) if !k.is_empty() => k,
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "the kept results could not be read; their fields stay unavailable");
                return;
            }
        };
        for &(i, b) in &fillable {
            let f = &mut fields[i];
            if person_of(f) != Some(id) {
                continue;
            }
            let Some((value, dossier)) = kept.get(&b.element) else { continue };
            let value = pick(value, b.path.as_deref());
            let Ok(value) = form.release(&f.id, value) else { continue };
            if value.is_null() {
                continue;
            }
            f.value = Some(value);
            f.status = FieldStatus::Prefilled;
            f.reason = None;
            f.source = Some(format!("lgsp.results/{dossier}"));
            f.mode = Some(Mode::Authoritative);
            f.verified = Some(true);
            notes.push(format!("{}: from the result of linked dossier {dossier}", f.id));
        }
    }
}

/// What merging a field reads: the plan, what was fetched, and who is who.
struct Merge<'a> {
    form: &'a Form,
    plan: &'a Plan,
    fetcher: &'a Fetcher<'a>,
    ids: &'a BTreeMap<String, String>,
    permitted: &'a dyn Fn(&str, &str) -> bool,
}

impl Merge<'_> {
    /// One field of the answer: its value from its authoritative source,
    /// with the other sources' differing values, or why it has none.
    fn field(&self, f: &crate::form::FormField, notes: &mut Vec<String>) -> FieldValue {
        let mut out = FieldValue {
            id: f.id.clone(),
            label_vi: f.label_vi.clone(),
            status: FieldStatus::Declare,
            value: None,
            element: None,
            classification: None,
            person: None,
            source: None,
            retrieved_at: None,
            verified: None,
            mode: None,
            reason: None,
            conflicts: Vec::new(),
        };
        let Some(b) = &f.bind else { return out };
        out.element = Some(b.element.clone());
        out.classification = Some(self.fetcher.catalog.elements.class(&b.element).as_str());
        out.person = Some(b.person.clone());
        out.status = FieldStatus::Unavailable;
        let unavailable = |mut out: FieldValue, why: Unavailable| {
            out.reason = Some(why);
            out
        };
        if !(self.permitted)(&b.person, &b.element) {
            return unavailable(out, Unavailable::NotPermitted);
        }
        let Some(id) = self.ids.get(&b.person) else { return unavailable(out, Unavailable::NoPerson) };
        let Some(op) = self.plan.calls.get(&b.person).and_then(|m| m.get(&b.element)) else {
            return unavailable(out, Unavailable::NoSource);
        };
        out.source = Some(op.clone());
        let Some(fetched) = self.fetcher.get(op, id) else { return unavailable(out, Unavailable::SourceFailed) };
        let elements = match &fetched.result {
            Ok(e) => e,
            Err(CallOutcome::NoRecord) => return unavailable(out, Unavailable::NoRecord),
            Err(_) => return unavailable(out, Unavailable::SourceFailed),
        };
        let element_value = elements.get(&b.element).unwrap_or(&NULL);
        let value = pick(element_value, b.path.as_deref());
        if value.is_null() || value.as_array().is_some_and(Vec::is_empty) {
            return unavailable(out, Unavailable::NoRecord);
        }
        out.conflicts = self.conflicts(f, op, id, value);
        let guessed = element_value["is_guess"] == true;
        if guessed {
            notes.push(format!(
                "{}: the legacy ward was split; the default new ward was chosen, confirm it with the citizen",
                f.id
            ));
        }
        let value = match self.form.release(&f.id, value) {
            Ok(v) if !v.is_null() => v,
            _ => {
                // The jq error quotes the value, so only the field is logged.
                tracing::warn!(form = self.form.id(), field = %f.id, "field transform failed");
                out.conflicts.clear();
                return unavailable(out, Unavailable::TransformFailed);
            }
        };
        out.mode = Some(if out.conflicts.is_empty() && !guessed { Mode::Authoritative } else { Mode::Suggestion });
        out.verified = Some(out.conflicts.is_empty());
        out.retrieved_at = Some(micros_to_rfc3339(fetched.retrieved_at));
        out.value = Some(value);
        out.status = FieldStatus::Prefilled;
        out
    }

    /// The values other sources called for the same person give for the
    /// field, where they differ from the authoritative `value`.
    fn conflicts(&self, f: &crate::form::FormField, authoritative: &str, id: &str, value: &Value) -> Vec<Conflict> {
        let Some(b) = &f.bind else { return Vec::new() };
        let mut conflicts = Vec::new();
        for other in self.plan.ops_of(&b.person).iter().filter(|o| *o != authoritative) {
            if let Some(Ok(els)) = self.fetcher.get(other, id).map(|f| &f.result) {
                let v = pick(els.get(&b.element).unwrap_or(&NULL), b.path.as_deref());
                if !v.is_null() && v != value {
                    // What the form asks for, never more (a year, not the whole date).
                    let shown = self.form.release(&f.id, v).unwrap_or(Value::Null);
                    conflicts.push(Conflict { source: other.to_string(), value: shown });
                }
            }
        }
        conflicts
    }
}

/// Counts each field's fate in `lgsp_prefill_fields_total`.
fn count_fields(metrics: &Metrics, form: &Form, fields: &[FieldValue]) {
    for f in fields {
        let result = match (f.status, f.reason) {
            (FieldStatus::Prefilled, _) => "prefilled",
            (FieldStatus::Declare, _) => "declared",
            (_, Some(Unavailable::NotPermitted)) => "not_permitted",
            _ => "unavailable",
        };
        metrics.prefill_fields.with_label_values(&[form.id(), result]).inc();
    }
}

/// The element object of a field list, for tests and reports.
pub fn values_by_id(answer: &PrefillAnswer) -> Map<String, Value> {
    answer.fields.iter().filter_map(|f| Some((f.id.clone(), f.value.clone()?))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_planner_covers_a_form_with_as_few_operations_as_it_can() {
        let c = vec![
            ("civil_status.birth".to_string(), set(&["full_name", "date_of_birth", "birth_registration"])),
            ("insurance.card".to_string(), set(&["social_insurance_number"])),
            ("population.citizen".to_string(), set(&["full_name", "date_of_birth", "sex", "phone"])),
        ];
        let p = plan(&c, &set(&["full_name", "sex", "phone"]), &BTreeMap::new());
        assert!(p.values().all(|op| op == "population.citizen"), "{p:?}");
        let pinned = BTreeMap::from([("full_name".to_string(), "civil_status.birth".to_string())]);
        let p = plan(&c, &set(&["full_name", "date_of_birth", "social_insurance_number"]), &pinned);
        assert_eq!(p["full_name"], "civil_status.birth");
        assert_eq!(p["date_of_birth"], "civil_status.birth", "a pinned source also serves what else it holds");
        assert_eq!(p["social_insurance_number"], "insurance.card");
        assert!(plan(&c, &set(&["email"]), &BTreeMap::new()).is_empty(), "nothing provides it");
    }

    #[test]
    fn characters_count_what_a_citizen_would_type() {
        assert_eq!(display_chars(&json!("Nguyễn Văn An")), 13);
        assert_eq!(display_chars(&json!({"code": "01", "name": "Kinh"})), 4);
        assert_eq!(display_chars(&json!({"text": "Phường Ba Đình, Hà Nội", "ward_code": "00004"})), 22);
        assert_eq!(display_chars(&json!([{"full_name": "A B"}, {"full_name": "C"}])), 4);
    }
}
