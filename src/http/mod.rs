//! The route tree, built in one place, and the OpenAPI document generated from
//! the handlers' annotations.

pub mod admin;
pub mod admission;
pub mod body;
pub mod caller;
pub mod console;
pub mod contract;
pub mod credentials;
pub mod dossiers;
pub mod elements;
pub mod flows;
pub mod middleware;
pub mod ops;
pub mod partner;
pub mod reconciliation;

use crate::config::Settings;
use crate::error::{json_error, path_error, query_error};
use actix_web::web;
use utoipa::OpenApi;

/// Declares the documented routes once: each handler is both described in the
/// OpenAPI document (from its `#[utoipa::path]` annotation) and registered
/// with actix (from its route attribute), so neither list can miss one.
macro_rules! documented_routes {
    ($($module:ident::$handler:ident),* $(,)?) => {
        #[derive(OpenApi)]
        #[openapi(
            info(
                title = "lgsp",
                description = "Provincial data-integration and sharing platform: prefill, schema-checked exchanges with the national registries, partner access policy, and a tamper-evident audit trail. Every error is an RFC 9457 problem document with a stable `code`."
            ),
            paths($($module::$handler),*),
            components(schemas(crate::error::Problem, crate::error::FieldError)),
            modifiers(&SecuritySchemes),
            tags(
                (name = "partners", description = "Prefill and exchange for partner agencies (Authorization: Bearer <API key>)"),
                (name = "stewards", description = "Adapters, forms and partners (admin token with the steward role)"),
                (name = "auditors", description = "The audit trail (admin token with the auditor role)"),
                (name = "operations", description = "Health, readiness, metrics"),
            )
        )]
        pub struct ApiDoc;

        /// Registers every documented route.
        fn documented(cfg: &mut web::ServiceConfig) {
            $(cfg.service($module::$handler);)*
        }
    };
}

documented_routes!(
    ops::healthz,
    ops::readyz,
    ops::metrics,
    partner::prefill,
    partner::exchange,
    partner::list_forms,
    partner::get_form,
    partner::form_coverage,
    partner::list_adapters,
    partner::access_log,
    dossiers::file_dossier,
    dossiers::get_dossier,
    dossiers::supplement_dossier,
    dossiers::withdraw_dossier,
    dossiers::subject_results,
    dossiers::report_dossier,
    dossiers::report_event,
    reconciliation::reconciliation,
    reconciliation::resend,
    elements::partner_elements,
    admin::create_adapter,
    admin::update_adapter,
    admin::list_adapters,
    admin::get_adapter,
    admin::adapter_versions,
    admin::adapter_version,
    admin::adapter_state,
    admin::test_adapter,
    admin::create_form,
    admin::update_form,
    admin::list_forms,
    admin::form_versions,
    admin::form_version,
    admin::form_state,
    elements::create_element,
    elements::update_element,
    elements::list_elements,
    elements::get_element,
    elements::element_versions,
    elements::element_version,
    elements::element_state,
    flows::partner_flows,
    flows::create_flow,
    flows::update_flow,
    flows::list_flows,
    flows::flow_versions,
    flows::flow_version,
    flows::flow_state,
    credentials::set_credential,
    credentials::list_credentials,
    admin::create_partner,
    admin::list_partners,
    admin::get_partner,
    admin::update_partner,
    admin::create_key,
    admin::list_keys,
    admin::revoke_key,
    admin::rotate_key,
    admin::create_token,
    admin::list_tokens,
    admin::revoke_token,
    admin::search_audit,
    admin::verify_audit,
    admin::export_audit,
);

struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("partner_key", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
        components.add_security_scheme("admin_token", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document `/openapi.json` serves: the generated one, completed as a
/// contract (see `contract`). It depends on the code alone, so it is made
/// once, on first use.
pub fn document() -> &'static [u8] {
    static DOC: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = serde_json::to_value(openapi()).unwrap_or_default();
        contract::complete(&mut doc);
        serde_json::to_vec(&doc).unwrap_or_default()
    })
}

/// Registers every route and the extractor configuration.
pub fn configure(cfg: &mut web::ServiceConfig, settings: &Settings) {
    cfg.app_data(
        web::JsonConfig::default().limit(settings.max_body_bytes).error_handler(|err, _req| json_error(&err).into()),
    )
    .app_data(web::PathConfig::default().error_handler(|err, _req| path_error(&err).into()))
    .app_data(web::QueryConfig::default().error_handler(|err, _req| query_error(&err).into()))
    .app_data(web::PayloadConfig::default().limit(settings.max_body_bytes))
    .configure(documented)
    .service(ops::openapi_json)
    .service(ops::docs)
    .service(ops::redoc_js)
    .configure(|cfg| console::routes(cfg, settings))
    .default_service(web::route().to(ops::no_route));
}

/// The methods each path answers, matched as the router matches paths, so
/// that a known path asked with another method is a 405 naming the methods in
/// `Allow` (RFC 9110), not a 404. Read from the OpenAPI document, which the
/// handlers' annotations make, and the undocumented pages beside it.
pub struct MethodTable(Vec<(actix_web::dev::ResourceDef, Vec<&'static str>)>);

impl MethodTable {
    const METHODS: [&'static str; 8] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"];

    /// The table, made once from the document for every worker.
    pub fn get() -> &'static MethodTable {
        static TABLE: std::sync::OnceLock<MethodTable> = std::sync::OnceLock::new();
        TABLE.get_or_init(MethodTable::build)
    }

    fn build() -> MethodTable {
        let mut rows = Vec::new();
        for (path, item) in openapi().paths.paths {
            let methods: Vec<&'static str> = [
                ("GET", item.get.is_some()),
                ("HEAD", item.head.is_some()),
                ("POST", item.post.is_some()),
                ("PUT", item.put.is_some()),
                ("PATCH", item.patch.is_some()),
                ("DELETE", item.delete.is_some()),
                ("OPTIONS", item.options.is_some()),
                ("TRACE", item.trace.is_some()),
            ]
            .into_iter()
            .filter_map(|(m, answered)| answered.then_some(m))
            .collect();
            rows.push((actix_web::dev::ResourceDef::new(path), methods));
        }
        for page in ["/openapi.json", "/docs", "/docs/redoc-{version}.js"] {
            rows.push((actix_web::dev::ResourceDef::new(page), vec!["GET"]));
        }
        MethodTable(rows)
    }

    /// The methods `path` answers, or `None` where no route has it.
    pub fn allowed(&self, path: &str) -> Option<Vec<&'static str>> {
        let matching: Vec<&'static str> =
            self.0.iter().filter(|(def, _)| def.is_match(path)).flat_map(|(_, m)| m.iter().copied()).collect();
        let methods: Vec<&'static str> = Self::METHODS.into_iter().filter(|m| matching.contains(m)).collect();
        (!methods.is_empty()).then_some(methods)
    }
}
