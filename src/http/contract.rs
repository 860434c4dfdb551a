//! The OpenAPI document as a contract a generated client can rely on. The
//! handlers' annotations (utoipa) give the paths and the Rust types' schemas;
//! this adds what holds for every operation alike, from the same sources the
//! server itself uses, so that nothing is written twice:
//!
//! - the stewards' documents are the JSON Schemas that check them
//!   (`schemas/adapter-manifest.json`, `schemas/form.json`, `schemas/flow.json`), put in as
//!   components, their `$defs` hoisted beside them;
//! - every error an operation can answer is documented as
//!   `application/problem+json` with the `Problem` schema, each status with
//!   the stable codes `error::ErrorCode` gives it.

use crate::error::ErrorCode;
use serde_json::{json, Value};

/// Completes the generated document (see the module's comment).
pub fn complete(doc: &mut Value) {
    let schemas = &mut doc["components"]["schemas"];
    hoist(schemas, "AdapterManifest", crate::schema::manifest_schema());
    hoist(schemas, "FormDefinition", crate::schema::form_schema());
    hoist(schemas, "FlowDefinition", crate::schema::flow_schema());
    let mut published = schemas["FormDefinition"].clone();
    published["properties"]["version"] =
        json!({"type": "integer", "minimum": 1, "description": "The version published"});
    push_required(&mut published, "version");
    schemas["PublishedForm"] = published;
    schemas["AnyValue"] = json!({"description": "Any JSON value"});
    // A state change says at least one thing (utoipa has no attribute for it).
    schemas["StateChange"]["minProperties"] = json!(1);
    schemas["PolicyEntry"] =
        json!({"type": "string", "minLength": 1, "maxLength": crate::domain::partner::Policy::LONGEST_ENTRY});
    schemas["Relatives"] = json!({
        "type": "object",
        "description": "ID numbers of other persons the form is about, by the name the form gives each (its \
                        persons; without them, household_head, father, mother, spouse, child_mother, child_father).",
        "propertyNames": {"pattern": "^[a-z][a-z0-9_]{0,39}$"},
        "maxProperties": 16,
        "additionalProperties": {"$ref": "#/components/schemas/CitizenId"},
    });
    schemas["CitizenId"] = json!({
        "type": "string",
        "pattern": crate::domain::citizen_id::pattern(),
        "description": "Personal identification number (số định danh cá nhân): 12 digits; the first three are \
                        the code of the province that registered the birth, the fourth the century and sex (0-5).",
        "examples": ["001090001234"],
    });

    let Some(paths) = doc["paths"].as_object_mut() else { return };
    for item in paths.values_mut() {
        let Some(item) = item.as_object_mut() else { continue };
        for (method, op) in item.iter_mut() {
            if ["get", "put", "post", "patch", "delete"].contains(&method.as_str()) {
                document_problems(op);
            }
        }
    }
}

/// Puts a JSON Schema in as component `name`, its `$defs` as `name.def`.
fn hoist(schemas: &mut Value, name: &str, schema: &Value) {
    let mut text = schema.to_string();
    text = text.replace("\"#/$defs/", &format!("\"#/components/schemas/{name}."));
    let mut schema: Value = serde_json::from_str(&text).unwrap_or_default();
    let Some(obj) = schema.as_object_mut() else { return };
    obj.remove("$schema");
    obj.remove("$id");
    // The component's name names it; a title would rename it in generated code.
    if let Some(Value::String(title)) = obj.remove("title") {
        obj.entry("description").or_insert(Value::String(title));
    }
    if let Some(Value::Object(defs)) = obj.remove("$defs") {
        for (def, s) in defs {
            schemas[format!("{name}.{def}")] = s;
        }
    }
    schemas[name] = schema;
}

fn push_required(schema: &mut Value, field: &str) {
    match schema["required"].as_array_mut() {
        Some(r) => r.push(json!(field)),
        None => schema["required"] = json!([field]),
    }
}

/// The statuses an operation can be refused with, by what it is: every call
/// can be malformed, name a missing resource or find the database down; a
/// call with credentials can lack them or their grant; a partner's call can
/// be over its quota; a call with a body can send too much, the wrong type or
/// a body that does not fit.
fn problem_statuses(op: &Value) -> Vec<u16> {
    if op["tags"].as_array().is_some_and(|t| t.iter().any(|t| t == "operations")) {
        return Vec::new();
    }
    let mut statuses = vec![400, 404, 503];
    let security = op["security"].as_array().map(|s| s.iter().flat_map(|s| s.as_object()).collect::<Vec<_>>());
    let schemes: Vec<&str> = security.iter().flatten().flat_map(|s| s.keys().map(String::as_str)).collect();
    if !schemes.is_empty() {
        statuses.extend([401, 403]);
    }
    if schemes.contains(&"partner_key") {
        statuses.push(429);
    }
    if op.get("requestBody").is_some() {
        statuses.extend([413, 415, 422]);
    }
    statuses
}

/// Every error of `op` as a problem document.
fn document_problems(op: &mut Value) {
    let statuses = problem_statuses(op);
    let Some(responses) = op["responses"].as_object_mut() else { return };
    // Problems the annotations name, sent as `application/problem+json`.
    for (status, response) in responses.iter_mut() {
        if status.starts_with('4') || status.starts_with('5') {
            if let Some(content) = response["content"].as_object_mut() {
                if let Some(json) = content.remove("application/json") {
                    content.insert(crate::error::PROBLEM_JSON.into(), json);
                }
            }
        }
    }
    for status in statuses {
        let key = status.to_string();
        let response = responses.entry(key).or_insert_with(|| json!({}));
        let Some(response) = response.as_object_mut() else { continue };
        if !response.contains_key("content") {
            response.insert(
                "content".into(),
                json!({ crate::error::PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}} }),
            );
        }
        let described = response.get("description").and_then(Value::as_str).is_some_and(|d| !d.is_empty());
        if !described {
            response.insert("description".into(), Value::String(codes_of(status)));
        }
    }
}

/// "A problem: `code` (title), …" for the codes answered with `status`.
fn codes_of(status: u16) -> String {
    let codes: Vec<String> = ErrorCode::ALL
        .iter()
        .filter(|c| c.status().as_u16() == status)
        .map(|c| format!("`{}`: {}", c.as_str(), c.title()))
        .collect();
    format!("A problem document (RFC 9457): {}", codes.join("; "))
}
