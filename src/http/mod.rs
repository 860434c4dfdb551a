//! The route tree, built in one place, and the OpenAPI document generated from
//! the handlers' annotations.

pub mod ops;

use crate::config::Settings;
use crate::error::{json_error, path_error, query_error};
use actix_web::web;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "lgsp",
        description = "Provincial data-integration and sharing platform: prefill, schema-checked exchanges with the national registries, partner access policy, and a tamper-evident audit trail. Every error is an RFC 9457 problem document with a stable `code`."
    ),
    paths(ops::healthz, ops::readyz, ops::metrics),
    components(schemas(crate::error::Problem, crate::error::FieldError)),
    tags(
        (name = "operations", description = "Health, readiness, metrics"),
    )
)]
pub struct ApiDoc;

pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// Registers every route and the extractor configuration.
pub fn configure(cfg: &mut web::ServiceConfig, settings: &Settings) {
    cfg.app_data(
        web::JsonConfig::default().limit(settings.max_body_bytes).error_handler(|err, _req| json_error(&err).into()),
    )
    .app_data(web::PathConfig::default().error_handler(|err, _req| path_error(&err).into()))
    .app_data(web::QueryConfig::default().error_handler(|err, _req| query_error(&err).into()))
    .app_data(web::PayloadConfig::default().limit(settings.max_body_bytes))
    .service(ops::healthz)
    .service(ops::readyz)
    .service(ops::metrics)
    .service(ops::openapi_json)
    .service(ops::docs)
    .default_service(web::route().to(ops::not_found));
}
