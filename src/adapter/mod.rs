//! Declarative adapters: a manifest (checked against
//! `schemas/adapter-manifest.json`) names a registry's upstream and its
//! operations; it compiles once into validators for the four checkpoints of an
//! exchange (the partner's request, the request sent upstream, the registry's
//! response, lgsp's answer), jq programs, and a circuit breaker.

pub mod client;
pub mod direct;
pub mod mapping;
pub mod xml;

use crate::config::Settings;
use crate::domain::admin_units::LegacyCodes;
use crate::domain::credential::Credential;
use crate::domain::AdminUnits;
use crate::elements::Elements;
use crate::error::FieldError;
use crate::schema;
use client::{Breaker, CallOutcome, Upstream};
use jsonschema::Validator;
use mapping::{ElementMapping, Mapping};
use parking_lot::RwLock;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use xml::Format;

#[derive(Debug, Deserialize)]
struct ManifestDoc {
    id: String,
    name: String,
    #[serde(default)]
    description: String,
    upstream: UpstreamDoc,
    operations: BTreeMap<String, OperationDoc>,
}

#[derive(Debug, Deserialize)]
struct UpstreamDoc {
    base_url: String,
    credential: String,
    auth: AuthDoc,
    #[serde(default = "default_timeout")]
    timeout_ms: u64,
    #[serde(default = "default_retries")]
    retries: u32,
    #[serde(default = "default_backoff")]
    backoff_ms: u64,
    #[serde(default = "default_concurrency")]
    concurrency: usize,
    #[serde(default)]
    circuit_breaker: BreakerDoc,
}

#[derive(Debug, Deserialize)]
struct AuthDoc {
    header: String,
    #[serde(default)]
    prefix: String,
    login: Option<LoginDoc>,
}

#[derive(Debug, Deserialize)]
struct LoginDoc {
    path: String,
    #[serde(default)]
    format: Format,
    soap_action: Option<String>,
    body: String,
    token: String,
    expires_in: Option<String>,
}

#[derive(Debug, Deserialize)]
struct BreakerDoc {
    #[serde(default = "default_threshold")]
    failure_threshold: u32,
    #[serde(default = "default_open")]
    open_ms: u64,
}

impl Default for BreakerDoc {
    fn default() -> Self {
        BreakerDoc { failure_threshold: default_threshold(), open_ms: default_open() }
    }
}

fn default_timeout() -> u64 {
    2_000
}
fn default_retries() -> u32 {
    1
}
fn default_backoff() -> u64 {
    25
}
fn default_concurrency() -> usize {
    256
}
fn default_threshold() -> u32 {
    5
}
fn default_open() -> u64 {
    5_000
}

#[derive(Debug, Deserialize)]
struct OperationDoc {
    #[serde(default)]
    description: String,
    method: String,
    path: String,
    #[serde(default)]
    format: Format,
    soap_action: Option<String>,
    #[serde(default)]
    not_found_faults: Vec<String>,
    query: Option<String>,
    body: Option<String>,
    idempotent: Option<bool>,
    request_schema: Value,
    upstream_request_schema: Option<Value>,
    response_schema: Value,
    #[serde(default)]
    not_found_statuses: Vec<u16>,
    mapping: MappingDoc,
    elements: Vec<String>,
    #[serde(default)]
    kind: OperationKind,
    idempotency_header: Option<String>,
}

/// What an operation does: a look-up whose mapping gives data elements, or
/// one of the calls a flow's step makes, whose mapping gives the step's
/// outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    #[default]
    Read,
    /// A submission or a supplement: it changes what the registry holds.
    Write,
    /// A look-up of an application the registry received.
    Status,
}

/// An operation's mapping: one jq program, or a program per element.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum MappingDoc {
    Program(String),
    PerElement {
        #[serde(default = "default_root")]
        root: String,
        #[serde(default)]
        defs: String,
        #[serde(default)]
        tables: BTreeMap<String, Value>,
        elements: BTreeMap<String, String>,
    },
}

fn default_root() -> String {
    ".".into()
}

/// One compiled operation.
pub struct Operation {
    pub name: String,
    pub description: String,
    pub method: reqwest::Method,
    pub path: String,
    path_params: Vec<String>,
    query: Option<Mapping>,
    body: Option<Mapping>,
    pub idempotent: bool,
    pub request_schema: Value,
    pub response_schema: Value,
    pub output_schema: Value,
    request: Validator,
    upstream_request: Option<Validator>,
    response: Validator,
    output: Validator,
    not_found: Vec<u16>,
    mapping: ElementMapping,
    pub elements: Vec<String>,
    /// What the registry speaks: JSON, XML, or SOAP 1.1 or 1.2.
    pub format: Format,
    pub soap_action: Option<String>,
    /// SOAP fault codes that mean no such record.
    pub not_found_faults: Vec<String>,
    /// Those of `elements` that are addresses, normalised when mapped.
    pub addresses: BTreeSet<String>,
    pub kind: OperationKind,
    /// For a write: the header the registry reads an idempotency key from.
    pub idempotency_header: Option<reqwest::header::HeaderName>,
}

/// A compiled, live adapter.
pub struct Adapter {
    pub id: String,
    pub version: i32,
    pub name: String,
    pub description: String,
    pub manifest: Value,
    pub upstream: Upstream,
    pub operations: BTreeMap<String, Operation>,
}

fn problem(pointer: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError { pointer: pointer.into(), message: message.into() }
}

/// Whether `host:port` may be called: listed in the allow-list, or loopback
/// when the list is empty.
pub fn host_allowed(url: &reqwest::Url, allow: &[String]) -> bool {
    let Some(host) = url.host_str() else { return false };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = url.port_or_known_default().unwrap_or(0);
    if allow.is_empty() {
        return host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    }
    allow.iter().any(|a| a.eq_ignore_ascii_case(host) || a.eq_ignore_ascii_case(&format!("{host}:{port}")))
}

fn path_params(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        let Some(end) = rest[start..].find('}') else { break };
        out.push(rest[start + 1..start + end].to_string());
        rest = &rest[start + end + 1..];
    }
    out
}

impl Adapter {
    /// Validates and compiles a manifest. Every problem found is listed, each
    /// with the JSON pointer of the part of the manifest it concerns.
    pub fn compile(
        manifest: &Value,
        version: i32,
        settings: &Settings,
        elements: &Elements,
    ) -> Result<Adapter, Vec<FieldError>> {
        schema::check(schema::manifest_validator(), manifest)?;
        let doc: ManifestDoc =
            serde_json::from_value(manifest.clone()).map_err(|e| vec![problem("", e.to_string())])?;
        let mut errors = Vec::new();

        // The node's configuration may point the credential elsewhere (a test
        // registry, the province's own address); that URL is then the one called.
        let credential = settings.upstreams.get(&doc.upstream.credential);
        let configured = credential.map(|u| u.url.clone()).filter(|u| !u.is_empty());
        let from = configured
            .as_ref()
            .map(|_| format!(" (the node's upstreams.{}.url, which replaces the manifest's)", doc.upstream.credential))
            .unwrap_or_default();
        let base_url = configured.unwrap_or(doc.upstream.base_url.clone());
        match reqwest::Url::parse(&base_url) {
            Ok(url) if host_allowed(&url, &settings.upstream_allow_list) => {}
            Ok(url) => errors.push(problem(
                "/upstream/base_url",
                format!(
                    "host {}{from} is not in the upstream allow-list; add it to upstream_allow_list to permit it",
                    url.host_str().unwrap_or("")
                ),
            )),
            Err(e) => errors.push(problem("/upstream/base_url", format!("not a URL{from}: {e}"))),
        }
        let header = reqwest::header::HeaderName::from_bytes(doc.upstream.auth.header.as_bytes());
        if header.is_err() {
            errors.push(problem("/upstream/auth/header", "not a valid header name"));
        }

        let login = doc.upstream.auth.login.as_ref().and_then(|l| compile_login(l, &mut errors));
        let mut operations = BTreeMap::new();
        for (name, op) in doc.operations {
            if let Some(op) = compile_operation(name, op, elements, &mut errors) {
                operations.insert(op.name.clone(), op);
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let auth_header = header.map_err(|_| vec![problem("/upstream/auth/header", "invalid")])?;
        let upstream = Upstream {
            base_url: base_url.trim_end_matches('/').to_string(),
            credential: doc.upstream.credential.clone(),
            auth: RwLock::new(Arc::new((auth_header.clone(), reqwest::header::HeaderValue::from_static("")))),
            auth_header,
            auth_prefix: doc.upstream.auth.prefix.clone(),
            login,
            login_secret: RwLock::new(None),
            token: tokio::sync::Mutex::new(None),
            timeout: Duration::from_millis(doc.upstream.timeout_ms),
            retries: doc.upstream.retries,
            backoff: Duration::from_millis(doc.upstream.backoff_ms),
            limit: Arc::new(tokio::sync::Semaphore::new(doc.upstream.concurrency)),
            breaker: Breaker::new(doc.upstream.circuit_breaker.failure_threshold, doc.upstream.circuit_breaker.open_ms),
        };
        let adapter = Adapter {
            id: doc.id,
            version,
            name: doc.name,
            description: doc.description,
            manifest: manifest.clone(),
            upstream,
            operations,
        };
        adapter.authenticate(settings, None);
        Ok(adapter)
    }
}

impl Adapter {
    /// Sets the credential the calls present: the node's configuration
    /// (`upstreams.NAME.token`) first, then the stored credential of that
    /// name; with neither, the manifest's prefix alone.
    pub fn authenticate(&self, settings: &Settings, stored: Option<&Credential>) {
        use base64::Engine as _;
        use reqwest::header::{HeaderValue, AUTHORIZATION};
        let up = &self.upstream;
        let configured = settings.upstreams.get(&up.credential).map(|u| u.token.expose()).filter(|t| !t.is_empty());
        let (name, value) = match (configured, stored) {
            (Some(token), _) => (up.auth_header.clone(), format!("{}{token}", up.auth_prefix)),
            (None, Some(Credential::Static { token })) => {
                (up.auth_header.clone(), format!("{}{token}", up.auth_prefix))
            }
            (None, Some(Credential::Basic { username, password })) => {
                let pair = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
                (AUTHORIZATION, format!("Basic {pair}"))
            }
            // The token is the login's: each call puts it after the prefix.
            (None, Some(Credential::Login { .. })) => (up.auth_header.clone(), up.auth_prefix.clone()),
            (None, None) => (up.auth_header.clone(), up.auth_prefix.clone()),
        };
        let value = HeaderValue::from_str(&value).unwrap_or_else(|_| {
            tracing::error!(credential = %up.credential, "the credential does not fit in a header; calls go without it");
            HeaderValue::from_static("")
        });
        *up.auth.write() = Arc::new((name, value));
        let secret = match (configured, stored) {
            (None, Some(Credential::Login { username, password })) => Some((username.clone(), password.clone())),
            _ => None,
        };
        let mut held = up.login_secret.write();
        if *held != secret {
            *held = secret;
            // A rotated login is used from the next call: the token it
            // replaces is forgotten (unless a login is under way, whose
            // token the next 401 replaces).
            if let Ok(mut token) = up.token.try_lock() {
                *token = None;
            }
        }
    }
}

/// A JSON Schema of a manifest, compiled; `None`, with the problem added to
/// `errors` at `pointer`, if it is not one.
fn json_schema(elements: &Elements, pointer: String, s: &Value, errors: &mut Vec<FieldError>) -> Option<Validator> {
    match elements.compile(s) {
        Ok(v) => Some(v),
        Err(e) => {
            errors.push(problem(pointer, format!("not a valid JSON Schema: {e}")));
            None
        }
    }
}

/// A jq program of a manifest, compiled, as [`json_schema`] compiles a schema.
fn jq_program(pointer: String, code: &str, errors: &mut Vec<FieldError>) -> Option<Mapping> {
    match Mapping::compile(code) {
        Ok(m) => Some(m),
        Err(e) => {
            errors.push(problem(pointer, e));
            None
        }
    }
}

/// The registry's login operation: its programs compiled, at
/// `/upstream/auth/login/…` when they do not.
fn compile_login(l: &LoginDoc, errors: &mut Vec<FieldError>) -> Option<client::Login> {
    let at = |field: &str| format!("/upstream/auth/login/{field}");
    let body = jq_program(at("body"), &l.body, errors);
    let token = jq_program(at("token"), &l.token, errors);
    let expires_in = l.expires_in.as_ref().map(|e| jq_program(at("expires_in"), e, errors));
    if !l.format.is_soap() && l.soap_action.is_some() {
        errors.push(problem(at("soap_action"), "soap_action is for a SOAP login (format soap11 or soap12)"));
    }
    Some(client::Login {
        path: l.path.clone(),
        format: l.format,
        soap_action: l.soap_action.clone(),
        body: body?,
        token: token?,
        expires_in: match expires_in {
            Some(Some(m)) => Some(m),
            Some(None) => return None,
            None => None,
        },
    })
}

/// Compiles one operation of a manifest: its schemas, its programs, and the
/// checks between them; `None`, with every problem added to `errors`, if any
/// part does not compile.
fn compile_operation(
    name: String,
    op: OperationDoc,
    elements: &Elements,
    errors: &mut Vec<FieldError>,
) -> Option<Operation> {
    let at = |field: &str| format!("/operations/{name}/{field}");
    let request = json_schema(elements, at("request_schema"), &op.request_schema, errors);
    let response = json_schema(elements, at("response_schema"), &op.response_schema, errors);
    let upstream_request = op
        .upstream_request_schema
        .as_ref()
        .and_then(|s| json_schema(elements, at("upstream_request_schema"), s, errors));
    if op.body.is_some() && op.upstream_request_schema.is_none() {
        errors.push(problem(at("upstream_request_schema"), "an operation with a body needs a schema for it"));
    }
    if op.format.is_soap() && (op.method != "POST" || op.body.is_none()) {
        errors
            .push(problem(at("format"), "a SOAP operation is a POST with a body program building the Body's elements"));
    }
    if !op.format.is_soap() && (op.soap_action.is_some() || !op.not_found_faults.is_empty()) {
        errors.push(problem(
            at("format"),
            "soap_action and not_found_faults are for SOAP operations (format soap11 or soap12)",
        ));
    }
    let mapping = compile_mapping(&op, &at, errors);
    let query = op.query.as_ref().and_then(|c| jq_program(at("query"), c, errors));
    let body = op.body.as_ref().and_then(|c| jq_program(at("body"), c, errors));
    for (i, el) in op.elements.iter().enumerate() {
        if !elements.is_element(el) {
            errors.push(problem(at(&format!("elements/{i}")), format!("unknown data element \"{el}\"")));
        }
    }
    let params = path_params(&op.path);
    let required: Vec<&str> = op.request_schema["required"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for p in params.iter().filter(|p| !required.contains(&p.as_str())) {
        errors.push(problem(at("path"), format!("path parameter {{{p}}} must be a required field of request_schema")));
    }
    let elements_schema = schema::elements_object_schema(op.elements.iter().map(String::as_str));
    let output_schema = match op.kind {
        OperationKind::Read => elements_schema,
        OperationKind::Write | OperationKind::Status => outcome_schema(elements_schema),
    };
    if op.kind != OperationKind::Read && !matches!(op.mapping, MappingDoc::Program(_)) {
        errors.push(problem(
            at("mapping"),
            "a write or status operation's mapping is one jq program giving the step's outcome \
             ({state, reference, reason, supplement_deadline, result})",
        ));
    }
    if op.idempotency_header.is_some() && op.kind != OperationKind::Write {
        errors.push(problem(at("idempotency_header"), "only a write operation sends an idempotency key"));
    }
    let idempotency_header =
        match op.idempotency_header.as_deref().map(|h| reqwest::header::HeaderName::from_bytes(h.as_bytes())) {
            Some(Err(_)) => {
                errors.push(problem(at("idempotency_header"), "not a valid header name"));
                None
            }
            Some(Ok(h)) => Some(h),
            None => None,
        };
    let output = json_schema(elements, at("elements"), &output_schema, errors);
    let (Some(request), Some(response), Some(mapping), Some(output)) = (request, response, mapping, output) else {
        return None;
    };
    let method = if op.method == "POST" { reqwest::Method::POST } else { reqwest::Method::GET };
    let idempotent = match op.kind {
        // A write is retried only when the registry can tell a repeat.
        OperationKind::Write => idempotency_header.is_some(),
        _ => op.idempotent.unwrap_or(method == reqwest::Method::GET),
    };
    Some(Operation {
        name,
        description: op.description,
        idempotent,
        kind: op.kind,
        idempotency_header,
        method,
        path: op.path,
        path_params: params,
        query,
        body,
        request_schema: op.request_schema,
        response_schema: op.response_schema,
        output_schema,
        request,
        upstream_request,
        response,
        output,
        not_found: op.not_found_statuses,
        mapping,
        addresses: op.elements.iter().filter(|e| elements.is_address(e)).cloned().collect(),
        elements: op.elements,
        format: op.format,
        soap_action: op.soap_action,
        not_found_faults: op.not_found_faults,
    })
}

/// What a write or status operation's mapping gives: the step's outcome,
/// with its result as data elements.
fn outcome_schema(elements: Value) -> Value {
    json!({
        "type": "object",
        "required": ["state"],
        "additionalProperties": false,
        "properties": {
            "state": { "enum": ["received", "processing", "supplement", "done", "refused"] },
            "reference": { "type": ["string", "null"], "minLength": 1, "maxLength": 200 },
            "reason": { "type": ["string", "null"] },
            "supplement_deadline": { "type": ["string", "null"], "format": "date" },
            "result": { "anyOf": [{ "type": "null" }, elements] },
        },
    })
}

/// An operation's mapping to canonical elements: one jq program for them
/// all, or one per element, each of the operation's elements mapped once.
fn compile_mapping(
    op: &OperationDoc,
    at: &dyn Fn(&str) -> String,
    errors: &mut Vec<FieldError>,
) -> Option<ElementMapping> {
    match &op.mapping {
        MappingDoc::Program(code) => jq_program(at("mapping"), code, errors).map(ElementMapping::Program),
        MappingDoc::PerElement { root, defs, tables, elements } => {
            for name in elements.keys().filter(|k| !op.elements.contains(k)) {
                errors.push(problem(
                    at(&format!("mapping/elements/{name}")),
                    format!("\"{name}\" is not one of the operation's elements; list it in elements or remove it"),
                ));
            }
            for name in op.elements.iter().filter(|e| !elements.contains_key(*e)) {
                errors.push(problem(
                    at("mapping/elements"),
                    format!("element \"{name}\" is listed in elements but has no program here"),
                ));
            }
            ElementMapping::per_element(root, defs, tables, elements)
                .map_err(|errs| {
                    for (element, message) in errs {
                        let field = element.map(|e| format!("mapping/elements/{e}")).unwrap_or("mapping".into());
                        errors.push(problem(at(&field), message));
                    }
                })
                .ok()
        }
    }
}

impl Operation {
    /// Checkpoint 1: the partner's request.
    pub fn check_request(&self, request: &Value) -> Result<(), Vec<FieldError>> {
        schema::check(&self.request, request)
    }

    /// The path with `{param}`s filled from the request, URL-encoded.
    pub fn render_path(&self, request: &Value) -> String {
        let mut path = self.path.clone();
        for p in &self.path_params {
            let v = match &request[p] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            path = path.replace(&format!("{{{p}}}"), &urlencoding::encode(&v));
        }
        path
    }

    pub fn render_query(&self, request: &Value) -> Result<Vec<(String, String)>, String> {
        let Some(q) = &self.query else { return Ok(Vec::new()) };
        let out = q.run(request)?;
        let obj = out.as_object().ok_or("the query program must produce an object")?;
        Ok(obj
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
            .collect())
    }

    /// The upstream body, checked against its schema (checkpoint 2).
    /// The body sent upstream (checkpoint 2 on the JSON the body program
    /// builds), written as the registry's format wants it.
    pub fn render_body(&self, request: &Value) -> Result<Option<Vec<u8>>, BodyError> {
        let Some(b) = &self.body else { return Ok(None) };
        let body = b.run(request).map_err(BodyError::Mapping)?;
        if let Some(v) = &self.upstream_request {
            schema::check(v, &body).map_err(BodyError::Invalid)?;
        }
        self.format.encode(&body).map(Some).map_err(BodyError::Mapping)
    }

    pub fn is_not_found(&self, status: u16) -> bool {
        status == 404 || self.not_found.contains(&status)
    }

    /// The mapping from the registry's response to canonical elements.
    pub fn mapping(&self) -> &ElementMapping {
        &self.mapping
    }

    /// A write's or status's outcome from the registry's response, checked
    /// (checkpoint 4).
    pub fn outcome(&self, response: &Value) -> Result<Value, MapError> {
        let ElementMapping::Program(program) = &self.mapping else {
            return Err(MapError::Mapping("this operation gives data elements, not an outcome".into()));
        };
        let mut outcome = program.run(response).map_err(MapError::Mapping)?;
        if let Some(o) = outcome.as_object_mut() {
            o.retain(|_, v| !v.is_null());
        }
        schema::check(&self.output, &outcome).map_err(MapError::Invalid)?;
        Ok(outcome)
    }

    /// Checkpoint 3: the registry's response.
    pub fn check_response(&self, response: &Value) -> Result<(), Vec<FieldError>> {
        schema::check(&self.response, response)
    }

    /// Maps a response to the canonical elements `wanted` accepts, normalises
    /// addresses, and checks the result (checkpoint 4). Elements mapped to
    /// null are left out; with a per-element mapping, unwanted elements are
    /// never computed.
    pub fn map(&self, response: &Value, wanted: &dyn Fn(&str) -> bool) -> Result<MappedElements, MapError> {
        let mapped = self.mapping.run(response, wanted).map_err(MapError::Mapping)?;
        let mut elements = Map::new();
        let mut notes = Vec::new();
        for (k, v) in mapped {
            if self.addresses.contains(&k) {
                match normalise_address(&v) {
                    Ok(a) => {
                        elements.insert(k, a);
                    }
                    Err(e) => notes.push(format!("{k}: {e}")),
                }
            } else {
                elements.insert(k, v);
            }
        }
        let value = Value::Object(elements);
        schema::check(&self.output, &value).map_err(MapError::Invalid)?;
        Ok(MappedElements { elements: value, notes })
    }
}

#[derive(Debug)]
pub enum BodyError {
    Mapping(String),
    Invalid(Vec<FieldError>),
}

#[derive(Debug)]
pub enum MapError {
    Mapping(String),
    Invalid(Vec<FieldError>),
}

#[derive(Debug, Clone)]
pub struct MappedElements {
    pub elements: Value,
    /// Elements left out because they could not be normalised.
    pub notes: Vec<String>,
}

/// A mapped address `{scheme: "legacy"|"2025", province_code, district_code,
/// ward_code, street}` to the canonical address in 2025 units, keeping the
/// original legacy codes and saying when a split ward's default was guessed.
pub fn normalise_address(raw: &Value) -> Result<Value, String> {
    let units = AdminUnits::get();
    let s = |k: &str| raw[k].as_str().unwrap_or("");
    let street = raw["street"].as_str().filter(|s| !s.is_empty());
    let (n, legacy) = if s("scheme") == "2025" {
        (units.current(s("ward_code")).map_err(|e| e.to_string())?, Value::Null)
    } else {
        let codes = LegacyCodes {
            province_code: s("province_code"),
            district_code: s("district_code"),
            ward_code: s("ward_code"),
        };
        let n = units.from_legacy(&codes).map_err(|e| e.to_string())?;
        let l = if codes.ward_code.is_empty() {
            units.legacy_district(codes.district_code)
        } else {
            units.legacy_ward(codes.ward_code)
        };
        let legacy = json!({
            "province_code": l.map(|l| l.province_code).unwrap_or(codes.province_code),
            "province_name": l.map(|l| l.province_name).unwrap_or(""),
            "district_code": l.map(|l| l.district_code).unwrap_or(codes.district_code),
            "district_name": l.map(|l| l.district_name).unwrap_or(""),
            "ward_code": codes.ward_code,
            "ward_name": l.map(|l| l.ward_name).unwrap_or(""),
        });
        (n, legacy)
    };
    let text = match street {
        Some(st) => format!("{st}, {}, {}", n.ward_name, n.province_name),
        None => format!("{}, {}", n.ward_name, n.province_name),
    };
    Ok(json!({
        "street": street,
        "ward_code": n.ward_code,
        "ward_name": n.ward_name,
        "province_code": n.province_code,
        "province_name": n.province_name,
        "is_guess": n.is_guess,
        "alternatives": n.alternatives,
        "text": text,
        "legacy": legacy,
    }))
}

/// The adapters shipped in `adapters/`, embedded in the binary.
pub const SHIPPED: [(&str, &str); 3] = [
    ("population", include_str!("../../adapters/population.json")),
    ("civil_status", include_str!("../../adapters/civil_status.json")),
    ("insurance", include_str!("../../adapters/insurance.json")),
];

/// What one operation of a dry run brought back.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct DryRunResult {
    pub operation: String,
    /// Whether the registry answered (a missing record counts as an answer).
    pub ok: bool,
    /// `ok`, or how the call failed (as a prefill's source status says).
    #[schema(value_type = String)]
    pub status: CallOutcome,
    pub latency_ms: f64,
    /// The canonical elements mapped from the answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub elements: Option<Value>,
    /// The registry's answer as it came (once it passed its schema), to
    /// compare with the elements mapped from it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub raw: Option<Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// What went wrong, as a partner would be told.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl Adapter {
    /// Calls each operation (or those named) with `request` and reports what
    /// came back: a steward's check of an adapter against its registry.
    pub async fn dry_run(
        &self,
        request: &Value,
        only: &[String],
        http: &reqwest::Client,
        metrics: &crate::telemetry::Metrics,
    ) -> Vec<DryRunResult> {
        let mut out = Vec::new();
        // Reads only: a dry run never files an application with a registry.
        let reads = self.operations.values().filter(|op| op.kind == OperationKind::Read);
        for op in reads.filter(|op| only.is_empty() || only.contains(&op.name)) {
            let started = std::time::Instant::now();
            let (raw, result) = self.exchange_showing(op, request, http, metrics).await;
            let latency_ms = (started.elapsed().as_secs_f64() * 1e6).round() / 1e3;
            out.push(match result {
                Ok(m) => DryRunResult {
                    operation: op.name.clone(),
                    ok: true,
                    status: CallOutcome::Ok,
                    latency_ms,
                    elements: Some(m.elements),
                    raw,
                    notes: m.notes,
                    detail: None,
                    errors: Vec::new(),
                },
                Err(e) => {
                    let status = e.kind();
                    let problem = crate::error::ApiError::from(e);
                    DryRunResult {
                        operation: op.name.clone(),
                        ok: status.answered(),
                        status,
                        latency_ms,
                        elements: None,
                        raw,
                        notes: Vec::new(),
                        detail: Some(problem.detail),
                        errors: problem.errors,
                    }
                }
            });
        }
        out
    }
}
