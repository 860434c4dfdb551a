//! Signing in and out of the console, the session behind each page, and the
//! CSRF check of each change.

use super::{app_state, error_page, page};
use crate::catalog::sessions::SessionRow;
use crate::catalog::AdminCaller;
use crate::domain::partner::Role;
use crate::error::{ApiError, ErrorCode};
use crate::http::caller::require_network;
use crate::state::AppState;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest, HttpResponse};
use futures_util::future::LocalBoxFuture;
use serde::Deserialize;
use serde_json::json;

const SESSION_COOKIE: &str = "lgsp_console";
/// The sign-in form's own token, against a sign-in another site forges.
const LOGIN_COOKIE: &str = "lgsp_console_login";

/// A signed-in steward or auditor: the admin token's caller as the
/// catalogue holds it now, and the session.
pub struct ConsoleUser {
    pub caller: AdminCaller,
    pub session: SessionRow,
}

impl ConsoleUser {
    /// Refuses a page that needs `role`, as the admin API would.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        crate::http::caller::admit_admin(&self.caller, role)
    }

    /// Refuses a change whose CSRF token (the form's `_csrf`, or htmx's
    /// `X-CSRF-Token` header) is not the session's.
    pub fn check_csrf(&self, req: &HttpRequest, form_token: Option<&str>) -> Result<(), ApiError> {
        let header = req.headers().get("x-csrf-token").and_then(|v| v.to_str().ok());
        let sent = form_token.or(header).unwrap_or("");
        if crate::registries::constant_time_eq(sent.as_bytes(), self.session.csrf.as_bytes()) && !sent.is_empty() {
            return Ok(());
        }
        Err(ApiError::new(
            ErrorCode::Forbidden,
            "This change did not come from a console page; reload the page and try again.",
        ))
    }
}

fn secure_cookie(req: &HttpRequest) -> bool {
    req.connection_info().scheme() == "https"
}

/// The admin networks first, as the admin API checks them.
fn from_admin_network(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    require_network(req, &state.settings.trusted_proxies, &state.settings.admin_networks, |from| {
        format!("The console does not answer {from}; open it from a network in admin_networks.")
    })
}

/// The session the cookie names, if it is live and its token still is.
async fn user_of(req: &HttpRequest) -> Result<Option<ConsoleUser>, ApiError> {
    let state = app_state(req).ok_or_else(|| ApiError::internal("no application state"))?;
    from_admin_network(req, &state)?;
    let Some(cookie) = req.cookie(SESSION_COOKIE).map(|c| c.value().to_string()) else { return Ok(None) };
    let Some(session) = state.catalog.console_session(&cookie).await? else { return Ok(None) };
    let catalog = state.catalog.get();
    // The token as it is now: revoked or expired, the session ends with it.
    let live = catalog.admins.values().find(|a| a.token_id == session.token_id).cloned();
    let Some(caller) = live.filter(|a| a.expires_at.is_none_or(|at| at > crate::db::now_micros())) else {
        return Ok(None);
    };
    caller.used.used_now();
    req.extensions_mut().insert(caller.clone());
    Ok(Some(ConsoleUser { caller, session }))
}

/// A page that needs a session: without one, the answer is the sign-in
/// page (a redirect for a page, 401 for an htmx request).
impl FromRequest for ConsoleUser {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, actix_web::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            match user_of(&req).await {
                Ok(Some(user)) => Ok(user),
                Ok(None) => {
                    let resp = if req.headers().contains_key("hx-request") {
                        HttpResponse::Unauthorized().insert_header(("HX-Redirect", "/console/login")).finish()
                    } else {
                        HttpResponse::SeeOther().insert_header((header::LOCATION, "/console/login")).finish()
                    };
                    Err(actix_web::error::InternalError::from_response("not signed in", resp).into())
                }
                Err(e) => {
                    let resp = error_page(&req, None, &e);
                    Err(actix_web::error::InternalError::from_response(e.detail, resp).into())
                }
            }
        })
    }
}

pub(super) async fn login_form(req: HttpRequest) -> HttpResponse {
    let Some(state) = app_state(&req) else { return HttpResponse::InternalServerError().finish() };
    if let Err(e) = from_admin_network(&req, &state) {
        return error_page(&req, None, &e);
    }
    login_page(&req, None)
}

fn login_page(req: &HttpRequest, problem: Option<&str>) -> HttpResponse {
    let nonce = crate::domain::partner::new_secret("");
    let mut resp = page(req, None, "login.html", json!({"title": "lgsp", "login_nonce": nonce, "problem": problem}));
    let cookie = Cookie::build(LOGIN_COOKIE, nonce)
        .path("/console/login")
        .http_only(true)
        .secure(secure_cookie(req))
        .same_site(SameSite::Strict)
        .max_age(actix_web::cookie::time::Duration::minutes(30))
        .finish();
    let _ = resp.add_cookie(&cookie);
    if problem.is_some() {
        *resp.status_mut() = actix_web::http::StatusCode::UNAUTHORIZED;
    }
    resp
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    token: String,
    #[serde(rename = "_login", default)]
    login: String,
}

/// Exchanges an admin token for a session, and audits the sign-in (or its
/// refusal) as an admin call.
pub(super) async fn login(req: HttpRequest, form: web::Form<LoginForm>, state: web::Data<AppState>) -> HttpResponse {
    if let Err(e) = from_admin_network(&req, &state) {
        return error_page(&req, None, &e);
    }
    let expected = req.cookie(LOGIN_COOKIE).map(|c| c.value().to_string()).unwrap_or_default();
    if expected.is_empty() || !crate::registries::constant_time_eq(expected.as_bytes(), form.login.as_bytes()) {
        return login_page(&req, Some(refused_words(&req, "form")));
    }
    let mut audit = crate::http::admission::Audit::start(&req, crate::audit::Action::Admin, "console/sign-in".into());
    let catalog = state.catalog.get();
    let found = catalog.admins.get(&crate::domain::partner::hash_secret(form.token.trim())).cloned();
    let live = found.filter(|a| a.expires_at.is_none_or(|at| at > crate::db::now_micros()));
    let Some(caller) = live else {
        let refused = ApiError::new(ErrorCode::Unauthorized, "unknown, revoked or expired admin token");
        let _ = audit.finish_admin(&state, &req, b"", Err(refused)).await;
        return login_page(&req, Some(refused_words(&req, "token")));
    };
    audit.record.key_id = caller.token_id.clone();
    let opened = state.catalog.open_console_session(&caller.token_id).await;
    let (cookie, _) = match opened {
        Ok(s) => s,
        Err(e) => return error_page(&req, None, &e),
    };
    req.extensions_mut().insert(caller.clone());
    let mut resp = HttpResponse::SeeOther().insert_header((header::LOCATION, "/console")).finish();
    let session = Cookie::build(SESSION_COOKIE, cookie)
        .path("/console")
        .http_only(true)
        .secure(secure_cookie(&req))
        .same_site(SameSite::Strict)
        .max_age(actix_web::cookie::time::Duration::hours(crate::catalog::sessions::SESSION_HOURS))
        .finish();
    let _ = resp.add_cookie(&session);
    let mut gone = Cookie::build(LOGIN_COOKIE, "").path("/console/login").finish();
    gone.make_removal();
    let _ = resp.add_cookie(&gone);
    let _ = audit.finish_admin(&state, &req, b"", Ok(HttpResponse::SeeOther().finish())).await;
    resp
}

fn refused_words(req: &HttpRequest, what: &str) -> &'static str {
    let en = super::Lang::of(req) == super::Lang::En;
    match (what, en) {
        ("token", false) => "Mã quản trị không đúng, đã bị thu hồi hoặc đã hết hạn.",
        ("token", true) => "The admin token is unknown, revoked or expired.",
        (_, false) => "Biểu mẫu đăng nhập đã hết hạn; hãy thử lại.",
        (_, true) => "The sign-in form expired; try again.",
    }
}

#[derive(Deserialize)]
pub(super) struct CsrfForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
}

/// Ends the session (a change: it needs the CSRF token).
pub(super) async fn logout(
    req: HttpRequest,
    user: ConsoleUser,
    form: web::Form<CsrfForm>,
    state: web::Data<AppState>,
) -> HttpResponse {
    if let Err(e) = user.check_csrf(&req, Some(&form.csrf)) {
        return error_page(&req, Some(&user), &e);
    }
    if let Some(cookie) = req.cookie(SESSION_COOKIE) {
        if let Err(e) = state.catalog.end_console_session(cookie.value()).await {
            return error_page(&req, Some(&user), &e);
        }
    }
    let audit = crate::http::admission::Audit::start(&req, crate::audit::Action::Admin, "console/sign-out".into());
    let _ = audit.finish_admin(&state, &req, b"", Ok(HttpResponse::SeeOther().finish())).await;
    let mut resp = HttpResponse::SeeOther().insert_header((header::LOCATION, "/console/login")).finish();
    let mut gone = Cookie::build(SESSION_COOKIE, "").path("/console").finish();
    gone.make_removal();
    let _ = resp.add_cookie(&gone);
    resp
}
