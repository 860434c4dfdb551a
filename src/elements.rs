//! The canonical data elements a catalogue snapshot holds: what adapters map
//! registry data to, what forms bind their fields to, and what partners are
//! granted. Stewards register and version them at run time; the elements
//! shipped in `schemas/elements.json` are the seed set stored at first start.
//!
//! Every element's schema is placed at `$defs/{id}` of one document,
//! `https://lgsp.local/schemas/elements.json`, so that schemas refer to
//! elements as `{ELEMENTS_ID}#/$defs/{id}` and elements to each other as
//! `#/$defs/{id}`. The snapshot compiles that document into its own schema
//! registry: a validator compiled with it sees exactly these elements.

use crate::error::FieldError;
use crate::schema::{self, ELEMENTS_ID};
use jsonschema::{Draft, Registry, Validator};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};

/// The class of personal data an element holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// Basic personal data.
    #[default]
    Basic,
    /// Sensitive personal data (Decree 13/2023/NĐ-CP, art. 2.4: ethnic
    /// origin, religious views): granted to a partner only by name.
    Sensitive,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Basic => "basic",
            Class::Sensitive => "sensitive",
        }
    }
}

/// What lgsp does with an element's value beyond checking it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Normalised to the 2025 administrative units when an adapter maps it.
    Address,
}

/// One element as a steward registers it (`schemas/element.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"id": "enterprise_code", "label_en": "Enterprise code", "label_vi": "Mã số doanh nghiệp",
    "class": "basic", "schema": {"type": "string", "pattern": "^[0-9]{10}(-[0-9]{3})?$"}}))]
pub struct ElementDoc {
    #[schema(pattern = "^[a-z][a-z0-9_]{0,63}$")]
    pub id: String,
    #[schema(min_length = 1, max_length = 200)]
    pub label_en: String,
    #[schema(min_length = 1, max_length = 200)]
    pub label_vi: String,
    #[serde(default)]
    pub class: Class,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<Kind>,
    /// A type other elements `$ref` (an address, a related person), not
    /// itself named by adapters, forms or policies.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shared: bool,
    /// JSON Schema (draft 2020-12) of the element's value.
    #[schema(value_type = Object)]
    pub schema: Value,
}

impl ElementDoc {
    /// The element's schema as placed in the elements document, with its
    /// labels and class as annotations.
    fn annotated(&self) -> Value {
        let mut s = match &self.schema {
            Value::Object(o) => o.clone(),
            _ => Map::new(),
        };
        s.insert("title".into(), json!(self.label_en));
        s.insert("x-label-vi".into(), json!(self.label_vi));
        if self.class == Class::Sensitive {
            s.insert("x-classification".into(), json!("sensitive"));
        }
        if self.kind == Some(Kind::Address) {
            s.insert("x-kind".into(), json!("address"));
        }
        Value::Object(s)
    }

    /// The shipped elements: the `$defs` of `schemas/elements.json`, read as
    /// element documents.
    pub fn shipped() -> Vec<ElementDoc> {
        let defs = schema::shipped_elements()["$defs"].as_object().cloned().unwrap_or_default();
        defs.into_iter()
            .map(|(id, def)| {
                let mut s = def.as_object().cloned().unwrap_or_default();
                let take = |s: &mut Map<String, Value>, k: &str| s.remove(k).and_then(|v| v.as_str().map(String::from));
                let label_en = take(&mut s, "title").unwrap_or_else(|| id.clone());
                let label_vi = take(&mut s, "x-label-vi").unwrap_or_else(|| id.clone());
                let class = if take(&mut s, "x-classification").as_deref() == Some("sensitive") {
                    Class::Sensitive
                } else {
                    Class::Basic
                };
                let kind = (take(&mut s, "x-kind").as_deref() == Some("address")).then_some(Kind::Address);
                ElementDoc {
                    shared: SHIPPED_SHARED.contains(&id.as_str()),
                    id,
                    label_en,
                    label_vi,
                    class,
                    kind,
                    schema: Value::Object(s),
                }
            })
            .collect()
    }
}

/// The shipped elements that are shared types.
const SHIPPED_SHARED: [&str; 2] = ["address", "person_ref"];

/// One stored element: its document and version.
#[derive(Debug, Clone)]
pub struct Element {
    pub doc: ElementDoc,
    pub version: i32,
}

/// The elements of one catalogue snapshot, compiled.
pub struct Elements {
    by_id: BTreeMap<String, Element>,
    /// `{"$id": ELEMENTS_ID, "$defs": {...}}`.
    document: Value,
    registry: Registry<'static>,
    sensitive: BTreeSet<String>,
    addresses: BTreeSet<String>,
}

impl Elements {
    /// Compiles a set of elements. Every problem is listed, at
    /// `/{id}/…` pointers: a schema that does not compile, a `$ref` to no
    /// element, an address element that is not an address.
    pub fn build(elements: Vec<Element>) -> Result<Elements, Vec<FieldError>> {
        let by_id: BTreeMap<String, Element> = elements.into_iter().map(|e| (e.doc.id.clone(), e)).collect();
        let mut errors = Vec::new();
        for e in by_id.values() {
            errors.extend(
                check_references(&e.doc, &by_id)
                    .into_iter()
                    .map(|m| FieldError::new(format!("/{}/schema", e.doc.id), m)),
            );
            if e.doc.kind == Some(Kind::Address) && e.doc.schema != json!({"$ref": "#/$defs/address"}) {
                errors.push(FieldError::new(
                    format!("/{}/schema", e.doc.id),
                    "an address element's schema is {\"$ref\": \"#/$defs/address\"}: lgsp normalises it to that shape",
                ));
            }
        }
        if errors.is_empty() {
            errors.extend(cycles(&by_id));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let defs: Map<String, Value> = by_id.iter().map(|(id, e)| (id.clone(), e.doc.annotated())).collect();
        let document = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": ELEMENTS_ID,
            "$defs": defs,
        });
        let registry = schema::registry_with(document.clone())
            .map_err(|e| vec![FieldError::new("", format!("the elements do not form a valid schema document: {e}"))])?;
        let elements = Elements {
            sensitive: by_id.values().filter(|e| e.doc.class == Class::Sensitive).map(|e| e.doc.id.clone()).collect(),
            addresses: by_id.values().filter(|e| e.doc.kind == Some(Kind::Address)).map(|e| e.doc.id.clone()).collect(),
            by_id,
            document,
            registry,
        };
        {
            for id in elements.by_id.keys() {
                if let Err(e) = elements.compile(&json!({ "$ref": format!("{ELEMENTS_ID}#/$defs/{id}") })) {
                    errors.push(FieldError::new(format!("/{id}/schema"), format!("not a valid JSON Schema: {e}")));
                }
            }
        }
        if errors.is_empty() {
            Ok(elements)
        } else {
            Err(errors)
        }
    }

    /// The shipped elements, compiled once: what a node holds before its
    /// catalogue is loaded, and what tests compile against.
    #[allow(clippy::expect_used, reason = "the shipped elements are embedded at build time, and a test compiles them")]
    pub fn shipped() -> Arc<Elements> {
        static SHIPPED: OnceLock<Arc<Elements>> = OnceLock::new();
        SHIPPED
            .get_or_init(|| {
                let docs = ElementDoc::shipped().into_iter().map(|doc| Element { doc, version: 1 }).collect();
                Arc::new(Elements::build(docs).expect("the shipped elements compile"))
            })
            .clone()
    }

    /// Every element, shared types included, by id.
    pub fn all(&self) -> impl Iterator<Item = &Element> {
        self.by_id.values()
    }

    pub fn get(&self, id: &str) -> Option<&Element> {
        self.by_id.get(id)
    }

    /// `(id, version)` of each element: equal stamps, equal elements.
    pub fn stamp(&self) -> Vec<(&str, i32)> {
        self.by_id.values().map(|e| (e.doc.id.as_str(), e.version)).collect()
    }

    /// Whether `id` names an element that adapters, forms and policies may
    /// name (a shared type is not one).
    pub fn is_element(&self, id: &str) -> bool {
        self.by_id.get(id).is_some_and(|e| !e.doc.shared)
    }

    /// Whether an element holds an address to be normalised to the 2025 units.
    pub fn is_address(&self, id: &str) -> bool {
        self.addresses.contains(id)
    }

    /// Whether an element is sensitive personal data.
    pub fn is_sensitive(&self, id: &str) -> bool {
        self.sensitive.contains(id)
    }

    pub fn class(&self, id: &str) -> Class {
        if self.is_sensitive(id) {
            Class::Sensitive
        } else {
            Class::Basic
        }
    }

    /// Compiles a schema whose `$ref`s may point into these elements.
    pub fn compile(&self, schema: &Value) -> Result<Validator, String> {
        jsonschema::options()
            .with_draft(Draft::Draft202012)
            .should_validate_formats(true)
            .with_registry(&self.registry)
            .with_base_uri(schema::BASE)
            .offline()
            .build(schema)
            .map_err(|e| e.to_string())
    }

    /// Whether `pointer` (like `/name`) names a property inside the element's
    /// schema (following `$ref`s between elements).
    pub fn has_path(&self, element: &str, pointer: &str) -> bool {
        let defs = &self.document["$defs"];
        let mut node = &defs[element];
        for part in pointer.split('/').skip(1) {
            let mut hops = 0;
            while let Some(r) = node["$ref"].as_str() {
                node = &defs[r.trim_start_matches(ELEMENTS_ID).trim_start_matches("#/$defs/")];
                hops += 1;
                if hops > 16 {
                    return false;
                }
            }
            node = if node["type"] == "array" { &node["items"]["properties"][part] } else { &node["properties"][part] };
            if node.is_null() {
                return false;
            }
        }
        true
    }
}

impl crate::domain::partner::Sensitivity for Elements {
    fn is_sensitive(&self, element: &str) -> bool {
        self.sensitive.contains(element)
    }
}

/// The `$ref`s of an element's schema that name no element: each may point
/// to another element only (`#/$defs/{id}`, or the same under `ELEMENTS_ID`).
fn check_references(doc: &ElementDoc, known: &BTreeMap<String, Element>) -> Vec<String> {
    let mut refs = Vec::new();
    collect_refs(&doc.schema, &mut refs);
    refs.into_iter()
        .filter_map(|r| {
            let local = r.strip_prefix(ELEMENTS_ID).unwrap_or(&r);
            match local.strip_prefix("#/$defs/") {
                Some(id) if known.contains_key(id) => None,
                Some(id) => Some(format!("$ref \"{r}\" names no element \"{id}\"; register it first")),
                None if local.starts_with('#') => None,
                None => Some(format!(
                    "$ref \"{r}\" points outside the elements; refer to another element as #/$defs/{{id}}"
                )),
            }
        })
        .collect()
}

/// Elements that refer to themselves, directly or through others: a value
/// of such an element could never be checked to the end.
fn cycles(by_id: &BTreeMap<String, Element>) -> Vec<FieldError> {
    let refers = |id: &str| -> Vec<String> {
        let mut refs = Vec::new();
        if let Some(e) = by_id.get(id) {
            collect_refs(&e.doc.schema, &mut refs);
        }
        refs.iter()
            .filter_map(|r| r.strip_prefix(ELEMENTS_ID).unwrap_or(r).strip_prefix("#/$defs/").map(String::from))
            .collect()
    };
    let mut errors = Vec::new();
    for start in by_id.keys() {
        // Every element reachable from `start`; a cycle through it comes back to it.
        let mut seen = BTreeSet::new();
        let mut todo = refers(start);
        while let Some(next) = todo.pop() {
            if next == *start {
                errors.push(FieldError::new(
                    format!("/{start}/schema"),
                    "the element refers to itself, directly or through other elements; elements may not be recursive",
                ));
                break;
            }
            if seen.insert(next.clone()) {
                todo.extend(refers(&next));
            }
        }
    }
    errors
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, v) in o {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_elements_compile_and_keep_their_labels_and_classes() {
        let e = Elements::shipped();
        assert!(e.is_element("full_name") && !e.is_element("address") && !e.is_element("nope"));
        assert!(e.is_address("permanent_residence") && !e.is_address("full_name"));
        assert!(e.is_sensitive("ethnicity") && !e.is_sensitive("full_name"));
        assert_eq!(e.get("full_name").unwrap().doc.label_vi, "Họ, chữ đệm và tên");
        assert!(e.has_path("father", "/full_name") && !e.has_path("father", "/nope"));
    }

    #[test]
    fn element_schemas_compile_and_enforce_formats() {
        let e = Elements::shipped();
        let v =
            e.compile(&schema::elements_object_schema(["date_of_birth", "permanent_residence", "citizen_id"])).unwrap();
        assert!(schema::check(&v, &json!({"date_of_birth": "1990-05-12", "citizen_id": "001090012345"})).is_ok());
        let errs =
            schema::check(&v, &json!({"date_of_birth": "1990-13-45", "citizen_id": "12", "extra": 1})).unwrap_err();
        let pointers: Vec<&str> = errs.iter().map(|e| e.pointer.as_str()).collect();
        assert!(pointers.contains(&"/date_of_birth") && pointers.contains(&"/citizen_id"), "{errs:?}");
    }

    #[test]
    fn references_to_no_element_and_broken_schemas_are_listed() {
        let mut docs: Vec<Element> = Elements::shipped().all().cloned().collect();
        let doc = |id: &str, schema: Value| Element {
            doc: ElementDoc {
                id: id.into(),
                label_en: id.into(),
                label_vi: id.into(),
                class: Class::Basic,
                kind: None,
                shared: false,
                schema,
            },
            version: 1,
        };
        docs.push(doc("owner", json!({"$ref": "#/$defs/nobody"})));
        docs.push(doc("remote", json!({"$ref": "https://example.com/x.json"})));
        let errors = Elements::build(docs.clone()).err().unwrap();
        let at: Vec<&str> = errors.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(at, ["/owner/schema", "/remote/schema"], "{errors:?}");
        docs.truncate(docs.len() - 2);
        docs.push(doc("loop_a", json!({"type": "array", "items": {"$ref": "#/$defs/loop_b"}})));
        docs.push(doc("loop_b", json!({"$ref": "#/$defs/loop_a"})));
        let errors = Elements::build(docs.clone()).err().unwrap();
        let at: Vec<&str> = errors.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(at, ["/loop_a/schema", "/loop_b/schema"], "{errors:?}");
        docs.truncate(docs.len() - 2);
        docs.push(doc("bad", json!({"type": "no-such-type"})));
        let errors = Elements::build(docs).err().unwrap();
        assert_eq!(errors[0].pointer, "/bad/schema", "{errors:?}");
    }
}
