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
const ELEMENT: &str = include_str!("../schemas/element.json");
const FLOW: &str = include_str!("../schemas/flow.json");
pub const FLOW_ID: &str = "https://lgsp.local/schemas/flow.json";
pub const ELEMENT_ID: &str = "https://lgsp.local/schemas/element.json";

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

    /// A flow, as `schemas/flow.json` defines it.
    pub struct FlowDefinition;

    stand_in!(
        FlowDefinition,
        AdapterManifest,
        FormDefinition,
        PublishedForm,
        AnyValue,
        CitizenId,
        Relatives,
        PolicyEntry
    );
}

#[allow(clippy::expect_used, reason = "the schemas are embedded at build time, and a test compiles each")]
fn parse(text: &str) -> Value {
    serde_json::from_str(text).expect("embedded schema is JSON")
}

/// The shipped element catalogue (`schemas/elements.json`): the seed set of
/// `elements::Elements`, and what the OpenAPI document describes.
pub fn shipped_elements() -> &'static Value {
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

pub fn flow_schema() -> &'static Value {
    static F: OnceLock<Value> = OnceLock::new();
    F.get_or_init(|| parse(FLOW))
}

pub fn element_schema() -> &'static Value {
    static E: OnceLock<Value> = OnceLock::new();
    E.get_or_init(|| parse(ELEMENT))
}

/// lgsp's own schemas, with `elements` (a document whose `$id` is
/// `ELEMENTS_ID`) as the elements `$ref`s resolve to.
pub fn registry_with(elements: Value) -> Result<Registry<'static>, String> {
    Registry::new()
        .add(ELEMENTS_ID, elements)
        .and_then(|b| b.add(MANIFEST_ID, manifest_schema().clone()))
        .and_then(|b| b.add(FORM_ID, form_schema().clone()))
        .and_then(|b| b.add(ELEMENT_ID, element_schema().clone()))
        .and_then(|b| b.add(FLOW_ID, flow_schema().clone()))
        .and_then(|b| b.prepare())
        .map_err(|e| e.to_string())
}

#[allow(clippy::expect_used, reason = "the schemas are embedded at build time, and a test compiles each")]
fn registry() -> &'static Registry<'static> {
    static R: OnceLock<Registry<'static>> = OnceLock::new();
    R.get_or_init(|| registry_with(shipped_elements().clone()).expect("embedded schemas form a valid registry"))
}

/// A schema for an object holding (some of) these canonical elements.
pub fn elements_object_schema<'a>(ids: impl IntoIterator<Item = &'a str>) -> Value {
    let props: serde_json::Map<String, Value> =
        ids.into_iter().map(|id| (id.to_string(), json!({ "$ref": format!("{ELEMENTS_ID}#/$defs/{id}") }))).collect();
    json!({ "type": "object", "properties": props, "additionalProperties": false })
}

/// Compiles one of lgsp's own schemas (against the shipped elements); the
/// error says why it is not a valid schema.
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

/// The compiled element-document schema.
#[allow(clippy::expect_used, reason = "the schemas are embedded at build time, and a test compiles each")]
pub fn element_validator() -> &'static Validator {
    static V: OnceLock<Validator> = OnceLock::new();
    V.get_or_init(|| compile(&json!({ "$ref": ELEMENT_ID })).expect("element schema compiles"))
}

/// The compiled form-definition schema.
#[allow(clippy::expect_used, reason = "the schemas are embedded at build time, and a test compiles each")]
pub fn form_validator() -> &'static Validator {
    static V: OnceLock<Validator> = OnceLock::new();
    V.get_or_init(|| compile(&json!({ "$ref": FORM_ID })).expect("form schema compiles"))
}

/// The compiled flow-document schema.
#[allow(clippy::expect_used, reason = "the schemas are embedded at build time, and a test compiles each")]
pub fn flow_validator() -> &'static Validator {
    static V: OnceLock<Validator> = OnceLock::new();
    V.get_or_init(|| compile(&json!({ "$ref": FLOW_ID })).expect("flow schema compiles"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_refs_are_never_fetched() {
        assert!(compile(&json!({"$ref": "https://example.com/schema.json"})).is_err());
    }
}
