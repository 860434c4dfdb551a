//! JSON Schema (draft 2020-12, formats enforced): every schema is compiled
//! once into a validator; `$ref`s resolve against a local registry of lgsp's
//! own schemas and are never fetched over the network.

use crate::error::FieldError;
use jsonschema::{Draft, Registry, Validator};
use serde_json::{json, Value};
use std::sync::OnceLock;

pub const BASE: &str = "https://lgsp.local/schemas/";
pub const ELEMENTS_ID: &str = "https://lgsp.local/schemas/elements.json";
pub const MANIFEST_ID: &str = "https://lgsp.local/schemas/adapter-manifest.json";
pub const FORM_ID: &str = "https://lgsp.local/schemas/form.json";

const ELEMENTS: &str = include_str!("../schemas/elements.json");
const MANIFEST: &str = include_str!("../schemas/adapter-manifest.json");
const FORM: &str = include_str!("../schemas/form.json");

/// Names the OpenAPI document gives schemas that the Rust types cannot
/// derive: each stands in for a schema that `http::contract` puts in the
/// document from the source the server itself checks against.
pub mod openapi {
    use std::borrow::Cow;
    use utoipa::openapi::{ObjectBuilder, RefOr, Schema};

    /// An adapter manifest, as `schemas/adapter-manifest.json` defines it.
    pub struct AdapterManifest;

    /// A form definition, as `schemas/form.json` defines it.
    pub struct FormDefinition;

    /// A published form as partners read it: its definition and its version.
    pub struct PublishedForm;

    /// Any JSON value: a string, number, boolean, array, object or null.
    pub struct AnyValue;

    macro_rules! stand_in {
        ($($t:ident),+) => {$(
            impl utoipa::PartialSchema for $t {
                fn schema() -> RefOr<Schema> {
                    // Replaced in `complete` by the schema it stands for.
                    ObjectBuilder::new().into()
                }
            }
            impl utoipa::ToSchema for $t {
                fn name() -> Cow<'static, str> {
                    Cow::Borrowed(stringify!($t))
                }
            }
        )+};
    }
    /// A personal identification number, as `CitizenId::parse` accepts it.
    pub struct CitizenId;

    /// ID numbers of a prefill's relatives, by the person each is.
    pub struct Relatives;

    /// One entry of a partner policy's list.
    pub struct PolicyEntry;

    stand_in!(AdapterManifest, FormDefinition, PublishedForm, AnyValue, CitizenId, Relatives, PolicyEntry);
}

#[allow(clippy::expect_used, reason = "the schemas are embedded at build time, and a test compiles each")]
fn parse(text: &str) -> Value {
    serde_json::from_str(text).expect("embedded schema is JSON")
}

/// The canonical element catalogue (`schemas/elements.json`).
pub fn elements() -> &'static Value {
    static E: OnceLock<Value> = OnceLock::new();
    E.get_or_init(|| parse(ELEMENTS))
}

pub fn manifest_schema() -> &'static Value {
    static M: OnceLock<Value> = OnceLock::new();
    M.get_or_init(|| parse(MANIFEST))
}

pub fn form_schema() -> &'static Value {
    static F: OnceLock<Value> = OnceLock::new();
    F.get_or_init(|| parse(FORM))
}

#[allow(clippy::expect_used, reason = "the schemas are embedded at build time, and a test compiles each")]
fn registry() -> &'static Registry<'static> {
    static R: OnceLock<Registry<'static>> = OnceLock::new();
    R.get_or_init(|| {
        Registry::new()
            .add(ELEMENTS_ID, elements().clone())
            .and_then(|b| b.add(MANIFEST_ID, manifest_schema().clone()))
            .and_then(|b| b.add(FORM_ID, form_schema().clone()))
            .and_then(|b| b.prepare())
            .expect("embedded schemas form a valid registry")
    })
}

/// Whether `id` names a canonical element.
pub fn is_element(id: &str) -> bool {
    id != "address" && id != "person_ref" && elements()["$defs"].get(id).is_some()
}

/// The elements whose definition has `key` set to `value`, worked out once:
/// asked for every element an answer carries. They are a handful, so a list
/// compared by length first is cheaper to search than a hashed set.
fn elements_with(cell: &'static OnceLock<Vec<&'static str>>, key: &str, value: &str) -> &'static [&'static str] {
    cell.get_or_init(|| {
        elements()["$defs"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, d)| d[key] == value)
            .map(|(k, _)| k.as_str())
            .collect()
    })
}

/// Whether an element holds an address to be normalised to the 2025 units.
pub fn is_address_element(id: &str) -> bool {
    static ADDRESSES: OnceLock<Vec<&'static str>> = OnceLock::new();
    elements_with(&ADDRESSES, "x-kind", "address").contains(&id)
}

/// Whether an element is sensitive personal data (Decree 13/2023/NĐ-CP,
/// art. 2.4: ethnic origin, religious views), as `x-classification` says;
/// every other element is basic personal data.
pub fn is_sensitive_element(id: &str) -> bool {
    static SENSITIVE: OnceLock<Vec<&'static str>> = OnceLock::new();
    elements_with(&SENSITIVE, "x-classification", "sensitive").contains(&id)
}

/// `sensitive` or `basic`.
pub fn element_classification(id: &str) -> &'static str {
    if is_sensitive_element(id) {
        "sensitive"
    } else {
        "basic"
    }
}

/// The English and Vietnamese labels of an element.
pub fn element_labels(id: &str) -> (String, String) {
    let d = &elements()["$defs"][id];
    (d["title"].as_str().unwrap_or(id).to_string(), d["x-label-vi"].as_str().unwrap_or(id).to_string())
}

/// A schema for an object holding (some of) these canonical elements.
pub fn elements_object_schema<'a>(ids: impl IntoIterator<Item = &'a str>) -> Value {
    let props: serde_json::Map<String, Value> =
        ids.into_iter().map(|id| (id.to_string(), json!({ "$ref": format!("{ELEMENTS_ID}#/$defs/{id}") }))).collect();
    json!({ "type": "object", "properties": props, "additionalProperties": false })
}

/// Compiles a schema; the error says why it is not a valid schema.
pub fn compile(schema: &Value) -> Result<Validator, String> {
    jsonschema::options()
        .with_draft(Draft::Draft202012)
        .should_validate_formats(true)
        .with_registry(registry())
        .with_base_uri(BASE)
        .offline()
        .build(schema)
        .map_err(|e| e.to_string())
}

/// Checks `instance`: a fast `is_valid` first, and the full list of failing
/// JSON pointers only when it fails.
pub fn check(validator: &Validator, instance: &Value) -> Result<(), Vec<FieldError>> {
    if validator.is_valid(instance) {
        return Ok(());
    }
    Err(validator
        .iter_errors(instance)
        .take(50)
        .map(|e| FieldError { pointer: e.instance_path().to_string(), message: e.to_string() })
        .collect())
}

/// The compiled manifest schema.
#[allow(clippy::expect_used, reason = "the schemas are embedded at build time, and a test compiles each")]
pub fn manifest_validator() -> &'static Validator {
    static V: OnceLock<Validator> = OnceLock::new();
    V.get_or_init(|| compile(&json!({ "$ref": MANIFEST_ID })).expect("manifest schema compiles"))
}

/// The compiled form-definition schema.
#[allow(clippy::expect_used, reason = "the schemas are embedded at build time, and a test compiles each")]
pub fn form_validator() -> &'static Validator {
    static V: OnceLock<Validator> = OnceLock::new();
    V.get_or_init(|| compile(&json!({ "$ref": FORM_ID })).expect("form schema compiles"))
}

/// Whether `pointer` (like `/name`) names a property inside the element's
/// schema (following `$ref`s within the catalogue).
pub fn element_has_path(element: &str, pointer: &str) -> bool {
    let defs = &elements()["$defs"];
    let mut node = &defs[element];
    for part in pointer.split('/').skip(1) {
        while let Some(r) = node["$ref"].as_str() {
            node = &defs[r.trim_start_matches("#/$defs/")];
        }
        node = if node["type"] == "array" { &node["items"]["properties"][part] } else { &node["properties"][part] };
        if node.is_null() {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_schemas_compile_and_enforce_formats() {
        let v = compile(&elements_object_schema(["date_of_birth", "permanent_residence", "citizen_id"])).unwrap();
        assert!(check(&v, &json!({"date_of_birth": "1990-05-12", "citizen_id": "001090012345"})).is_ok());
        let errs = check(&v, &json!({"date_of_birth": "1990-13-45", "citizen_id": "12", "extra": 1})).unwrap_err();
        let pointers: Vec<&str> = errs.iter().map(|e| e.pointer.as_str()).collect();
        assert!(pointers.contains(&"/date_of_birth"), "{errs:?}");
        assert!(pointers.contains(&"/citizen_id"), "{errs:?}");
        assert!(errs.len() >= 3, "{errs:?}");
    }

    #[test]
    fn remote_refs_are_never_fetched() {
        assert!(compile(&json!({"$ref": "https://example.com/schema.json"})).is_err());
    }

    #[test]
    fn catalogue_labels() {
        assert!(is_element("full_name") && !is_element("address") && !is_element("nope"));
        assert!(is_address_element("permanent_residence") && !is_address_element("full_name"));
        assert_eq!(element_labels("full_name").1, "Họ, chữ đệm và tên");
    }
}
