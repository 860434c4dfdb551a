//! The one registry of error codes, and the RFC 9457 problem document every
//! error response is rendered as.
//!
//! A client can rely on `code` (stable, snake case) and `status`; `title` is the
//! same for every instance of a code; `detail` says what to fix for this request.
//! Internal causes are logged with the request id and never sent to the client.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use std::fmt;

macro_rules! error_codes {
    ($( $variant:ident => ($status:expr, $code:literal, $title:literal) ),+ $(,)?) => {
        /// Every error code lgsp answers with. The table in README.md lists them.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode { $( $variant ),+ }

        impl ErrorCode {
            /// All codes, in the order they are documented.
            pub const ALL: &'static [ErrorCode] = &[ $( ErrorCode::$variant ),+ ];

            pub fn status(self) -> StatusCode {
                match self { $( ErrorCode::$variant => $status ),+ }
            }
            pub fn as_str(self) -> &'static str {
                match self { $( ErrorCode::$variant => $code ),+ }
            }
            pub fn title(self) -> &'static str {
                match self { $( ErrorCode::$variant => $title ),+ }
            }
        }
    };
}

error_codes! {
    MalformedJson => (StatusCode::BAD_REQUEST, "malformed_json", "The request body is not well-formed JSON"),
    InvalidBody => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", "The request body does not match its schema"),
    InvalidParameter => (StatusCode::BAD_REQUEST, "invalid_parameter", "A path or query parameter is invalid"),
    InvalidCitizenId => (StatusCode::BAD_REQUEST, "invalid_citizen_id", "The personal identification number is invalid"),
    UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "The request body must be application/json"),
    PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "The request body is too large"),
    HeaderTooLarge => (StatusCode::BAD_REQUEST, "invalid_header", "A request header is invalid"),
    Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", "Missing or invalid credentials"),
    Forbidden => (StatusCode::FORBIDDEN, "forbidden", "The caller is not permitted to do this"),
    NotFound => (StatusCode::NOT_FOUND, "not_found", "No such resource"),
    MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "The method is not allowed on this resource"),
    Conflict => (StatusCode::CONFLICT, "conflict", "The resource already exists or changed"),
    InvalidManifest => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_manifest", "The adapter manifest is invalid"),
    InvalidForm => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_form", "The form definition is invalid"),
    InvalidPartner => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_partner", "The partner definition is invalid"),
    InvalidElement => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_element", "The data element definition is invalid"),
    InvalidCredential => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_credential", "The upstream credential is invalid"),
    InvalidFlow => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_flow", "The flow definition is invalid"),
    InvalidDeclaration => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_declaration", "The declaration does not fit the flow"),
    InvalidCallback => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_callback", "The callback URL may not be called"),
    IdempotencyKeyReused => (StatusCode::CONFLICT, "idempotency_key_reused", "The idempotency key was used with another request"),
    NotAwaitingSupplement => (StatusCode::CONFLICT, "not_awaiting_supplement", "No step of the dossier waits for a supplement"),
    DossierClosed => (StatusCode::CONFLICT, "dossier_closed", "The dossier is finished or withdrawn"),
    RateLimited => (StatusCode::TOO_MANY_REQUESTS, "rate_limited", "Rate limit exceeded"),
    UpstreamRejected => (StatusCode::UNPROCESSABLE_ENTITY, "upstream_rejected", "The registry refused the request as invalid"),
    UpstreamUnavailable => (StatusCode::BAD_GATEWAY, "upstream_unavailable", "A registry could not be reached or failed"),
    UpstreamFault => (StatusCode::BAD_GATEWAY, "upstream_fault", "A SOAP registry answered with a fault"),
    UpstreamInvalidResponse => (StatusCode::BAD_GATEWAY, "upstream_invalid_response", "A registry answered with data that breaks its schema"),
    UpstreamTimeout => (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout", "A registry did not answer in time"),
    CircuitOpen => (StatusCode::SERVICE_UNAVAILABLE, "circuit_open", "A registry is failing and calls to it are paused"),
    DatabaseUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable", "The database is unavailable or saturated"),
    NotReady => (StatusCode::SERVICE_UNAVAILABLE, "not_ready", "The service is not ready"),
    Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "Internal error"),
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One failing location in a request, as a JSON pointer into the body (or the
/// name of a parameter) and what is wrong there.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct FieldError {
    pub pointer: String,
    pub message: String,
}

impl FieldError {
    pub fn new(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError { pointer: pointer.into(), message: message.into() }
    }
}

/// The RFC 9457 problem document.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"type": "urn:lgsp:problem:invalid_body", "title": "The request body does not match its schema",
    "status": 422, "detail": "…what to fix…", "code": "invalid_body",
    "errors": [{"pointer": "/citizen_id", "message": "…"}]}))]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    pub code: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// The error type of every handler.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub detail: String,
    pub errors: Vec<FieldError>,
    /// Seconds the client should wait (429 and some 503s).
    pub retry_after: Option<u64>,
    /// Extra headers (for example the rate-limit headers on a 429).
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        ApiError { code, detail: detail.into(), errors: Vec::new(), retry_after: None, headers: Vec::new() }
    }

    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }

    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }

    /// Adds a header; a value that is not a valid header value is dropped.
    pub fn with_header(mut self, name: &'static str, value: impl AsRef<str>) -> Self {
        if let (Ok(n), Ok(v)) = (header::HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value.as_ref()))
        {
            self.headers.push((n, v));
        }
        self
    }

    /// An internal failure: the cause goes to the log, the client gets a generic detail.
    pub fn internal(cause: impl fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        ApiError::new(ErrorCode::Internal, "An internal error occurred; it has been logged with this request's id.")
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::NotFound, what)
    }

    pub fn problem(&self) -> Problem {
        Problem {
            type_: format!("urn:lgsp:problem:{}", self.code.as_str()),
            title: self.code.title(),
            status: self.code.status().as_u16(),
            detail: self.detail.clone(),
            code: self.code.as_str(),
            errors: self.errors.clone(),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

impl std::error::Error for ApiError {}

pub const PROBLEM_JSON: &str = "application/problem+json";

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut resp = HttpResponse::build(self.status_code());
        resp.insert_header((header::CONTENT_TYPE, PROBLEM_JSON));
        if let Some(secs) = self.retry_after {
            resp.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        for (name, value) in &self.headers {
            resp.insert_header((name.clone(), value.clone()));
        }
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        resp.body(body)
    }
}

/// A problem response for a bare status (used to turn actix's own empty error
/// responses, such as 404 for an unknown route, into problems).
pub fn problem_for_status(status: StatusCode) -> ApiError {
    let code = match status {
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
        StatusCode::UNAUTHORIZED => ErrorCode::Unauthorized,
        StatusCode::FORBIDDEN => ErrorCode::Forbidden,
        StatusCode::TOO_MANY_REQUESTS => ErrorCode::RateLimited,
        StatusCode::SERVICE_UNAVAILABLE => ErrorCode::NotReady,
        s if s.is_client_error() => ErrorCode::InvalidParameter,
        _ => ErrorCode::Internal,
    };
    let detail = match code {
        ErrorCode::NotFound => "No resource at this path; see /docs for the API.".to_string(),
        ErrorCode::MethodNotAllowed => "This path does not accept this method; see /docs.".to_string(),
        _ => code.title().to_string(),
    };
    ApiError::new(code, detail)
}

/// Errors from actix's JSON extractor: malformed JSON, wrong content type,
/// body over the limit, or a body whose shape does not fit the request type.
pub fn json_error(err: &actix_web::error::JsonPayloadError) -> ApiError {
    use actix_web::error::JsonPayloadError as E;
    match err {
        E::OverflowKnownLength { length, limit } => ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("The body is {length} bytes; the limit is {limit} bytes."),
        ),
        E::Overflow { limit } => {
            ApiError::new(ErrorCode::PayloadTooLarge, format!("The body is larger than the limit of {limit} bytes."))
        }
        E::ContentType => ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "Send the body as JSON with the header Content-Type: application/json.",
        ),
        E::Deserialize(e) if e.is_data() => {
            let message = in_callers_terms(&e.to_string());
            ApiError::new(ErrorCode::InvalidBody, format!("The body does not fit the request: {message}"))
                .with_errors(vec![FieldError { pointer: String::new(), message }])
        }
        E::Deserialize(e) => ApiError::new(
            ErrorCode::MalformedJson,
            format!("The body is not valid JSON: {}", in_callers_terms(&e.to_string())),
        ),
        E::Payload(_) => ApiError::new(ErrorCode::MalformedJson, "The body could not be read completely."),
        _ => ApiError::new(ErrorCode::MalformedJson, "The body could not be read as JSON."),
    }
}

pub fn path_error(err: &actix_web::error::PathError) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidParameter,
        format!("A path parameter is invalid: {}", in_callers_terms(&err.to_string())),
    )
}

pub fn query_error(err: &actix_web::error::QueryPayloadError) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidParameter,
        format!("A query parameter is invalid: {}", in_callers_terms(&err.to_string())),
    )
}

/// A message from a parser (serde, serde_json, serde_urlencoded) in the
/// caller's terms: JSON's and the query string's, never Rust's types.
pub fn in_callers_terms(message: &str) -> String {
    use regex_bites::Regex;
    use std::sync::OnceLock;
    static RULES: OnceLock<Vec<(Regex, &'static str)>> = OnceLock::new();
    let rules = RULES.get_or_init(|| {
        [
            (r"recursion limit exceeded", "the JSON is nested too deeply (at most 128 levels)"),
            (r#"can not parse "([^"]*)" to a "#, r#""$1" is not a "#),
            (r"\ba (u8|u16|u32|u64|u128|usize)\b", "a whole number of 0 or more"),
            (r"\b(u8|u16|u32|u64|u128|usize)\b", "a whole number of 0 or more"),
            (r"\ba (i8|i16|i32|i64|i128|isize)\b", "a whole number"),
            (r"\b(i8|i16|i32|i64|i128|isize)\b", "a whole number"),
            (r"\b(f32|f64)\b", "a number"),
            (r"\bfloating point\b", "number"),
            (r"\bstruct [A-Za-z_]+\b", "an object"),
            (r"\benum [A-Za-z_]+\b", "a string"),
            (r"\ba sequence\b", "an array"),
            (r"\bsequence\b", "array"),
            (r"\ba map\b", "an object"),
            (r"\bmap\b", "object"),
            (r"\bunit value\b", "null"),
        ]
        .into_iter()
        .filter_map(|(pattern, plain)| Regex::new(pattern).ok().map(|r| (r, plain)))
        .collect()
    });
    let mut out = message.to_string();
    for (rule, plain) in rules {
        out = rule.replace_all(&out, *plain).into_owned();
    }
    out
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::in_callers_terms;

    #[test]
    fn parser_messages_speak_of_json_not_rust() {
        for (said, plain) in [
            ("can not parse \"abc\" to a i32", "\"abc\" is not a whole number"),
            (
                "invalid type: floating point `911614.5`, expected u64",
                "invalid type: number `911614.5`, expected a whole number of 0 or more",
            ),
            ("invalid type: sequence, expected struct PrefillRequest", "invalid type: array, expected an object"),
            (
                "recursion limit exceeded at line 1 column 128",
                "the JSON is nested too deeply (at most 128 levels) at line 1 column 128",
            ),
            ("invalid type: map, expected a string", "invalid type: object, expected a string"),
            ("missing field `form`", "missing field `form`"),
        ] {
            assert_eq!(in_callers_terms(said), plain);
        }
    }
}
