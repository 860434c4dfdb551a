//! Reading a request: a JSON body (UTF-8 only), read as a type with errors
//! at JSON pointers, and the personal ID numbers it names.

use crate::domain::CitizenId;
use crate::error::{in_callers_terms, ApiError, ErrorCode, FieldError};
use actix_web::http::header::CONTENT_TYPE;
use actix_web::HttpRequest;
use serde_json::Value;

/// A JSON body, with a clear error for anything else. JSON is UTF-8 (RFC
/// 8259): a body declared in another charset is refused, not misread.
pub fn json_body(req: &HttpRequest, body: &[u8]) -> Result<Value, ApiError> {
    let ct = req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mut parts = ct.split(';');
    let essence = parts.next().unwrap_or("").trim();
    if !(essence.eq_ignore_ascii_case("application/json") || essence.ends_with("+json")) {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "Send the body as JSON with the header Content-Type: application/json.",
        ));
    }
    let charset = parts
        .filter_map(|p| p.split_once('='))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("charset"))
        .map(|(_, v)| v.trim().trim_matches('"'));
    if let Some(cs) = charset.filter(|cs| !cs.eq_ignore_ascii_case("utf-8") && !cs.eq_ignore_ascii_case("utf8")) {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!("JSON is read as UTF-8 only; send the body in UTF-8 (charset {cs} was declared)."),
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            ErrorCode::MalformedJson,
            format!("The body is not valid JSON: {}", in_callers_terms(&e.to_string())),
        )
    })
}

/// A JSON body read as `T`. A body that does not fit is refused with `code`,
/// naming where it fails and saying, with `shape`, what to send.
pub fn typed_body<T: serde::de::DeserializeOwned>(
    req: &HttpRequest,
    body: &[u8],
    code: ErrorCode,
    shape: &str,
) -> Result<T, ApiError> {
    typed_value(json_body(req, body)?, code, shape)
}

/// A JSON value read as `T`, refused as [`typed_body`] refuses a body.
pub fn typed_value<T: serde::de::DeserializeOwned>(value: Value, code: ErrorCode, shape: &str) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        use serde_path_to_error::Segment;
        let mut pointer = String::new();
        for segment in e.path().iter() {
            match segment {
                Segment::Seq { index } => pointer.push_str(&format!("/{index}")),
                Segment::Map { key } => pointer.push_str(&format!("/{}", key.replace('~', "~0").replace('/', "~1"))),
                Segment::Enum { .. } | Segment::Unknown => {}
            }
        }
        let message = in_callers_terms(&e.inner().to_string());
        let at = if pointer.is_empty() { String::new() } else { format!(" at {pointer}") };
        ApiError::new(code, format!("{shape}{at}: {message}")).with_errors(vec![FieldError::new(pointer, message)])
    })
}

/// A personal ID number of the request, at `pointer` in its body.
pub fn citizen_id_at(pointer: &str, id: &str) -> Result<CitizenId, ApiError> {
    CitizenId::parse(id).map_err(|e| {
        let at = pointer.trim_start_matches('/').replace('/', ".");
        ApiError::new(ErrorCode::InvalidCitizenId, format!("{at}: {e}"))
            .with_errors(vec![FieldError::new(pointer, e.to_string())])
    })
}
