//! The web console for stewards and auditors, served by lgsp itself at
//! `/console`: pages rendered on the server (minijinja templates embedded in
//! the binary), htmx for partial updates (vendored, pinned, served from
//! `/console/static`), no script or style from anywhere else. Vietnamese
//! first, English with `?lang=en`.
//!
//! Signing in exchanges an admin token for a session cookie (HttpOnly,
//! SameSite=Strict, Secure under TLS, expiring). Every page checks the same
//! role the admin API would, from the same catalogue, and every change needs
//! the session's CSRF token and is audited as the API audits it.

mod pages;
mod session;

use crate::state::AppState;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use minijinja::Environment;
use serde_json::{json, Value};
use std::sync::OnceLock;

pub use session::ConsoleUser;

const TEMPLATES: [(&str, &str); 25] = [
    ("paste.html", include_str!("templates/paste.html")),
    ("form.html", include_str!("templates/form.html")),
    ("diff.html", include_str!("templates/diff.html")),
    ("forms.html", include_str!("templates/forms.html")),
    ("elements.html", include_str!("templates/elements.html")),
    ("credentials.html", include_str!("templates/credentials.html")),
    ("tokens.html", include_str!("templates/tokens.html")),
    ("dossier.html", include_str!("templates/dossier.html")),
    ("problems.html", include_str!("templates/problems.html")),
    ("dry_run.html", include_str!("templates/dry_run.html")),
    ("partners.html", include_str!("templates/partners.html")),
    ("partner.html", include_str!("templates/partner.html")),
    ("policy_fields.html", include_str!("templates/policy_fields.html")),
    ("base.html", include_str!("templates/base.html")),
    ("login.html", include_str!("templates/login.html")),
    ("error.html", include_str!("templates/error.html")),
    ("overview.html", include_str!("templates/overview.html")),
    ("adapters.html", include_str!("templates/adapters.html")),
    ("adapter.html", include_str!("templates/adapter.html")),
    ("flows.html", include_str!("templates/flows.html")),
    ("audit.html", include_str!("templates/audit.html")),
    ("audit_record.html", include_str!("templates/audit_record.html")),
    ("verification.html", include_str!("templates/verification.html")),
    ("reconciliation.html", include_str!("templates/reconciliation.html")),
    ("sync_dossier.html", include_str!("templates/sync_dossier.html")),
];

const HTMX: &str = include_str!("static/htmx-2.0.4.min.js");
const CSS: &str = include_str!("static/console.css");
const JS: &str = include_str!("static/console.js");
const JS_TYPE: &str = "text/javascript; charset=utf-8";

/// Only the console's own scripts, styles and forms; never framed.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

#[allow(clippy::expect_used, reason = "the templates are embedded at build time, and a test renders each")]
fn templates() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, text) in TEMPLATES {
            env.add_template(name, text).expect("an embedded template parses");
        }
        env
    })
}

/// The console's language: Vietnamese unless `?lang=en` (or the cookie it sets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Vi,
    En,
}

impl Lang {
    fn of(req: &HttpRequest) -> Lang {
        let asked = web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
            .ok()
            .and_then(|q| q.get("lang").cloned());
        let chosen = asked.or_else(|| req.cookie("lgsp_lang").map(|c| c.value().to_string()));
        if chosen.as_deref() == Some("en") {
            Lang::En
        } else {
            Lang::Vi
        }
    }

    fn code(self) -> &'static str {
        match self {
            Lang::Vi => "vi",
            Lang::En => "en",
        }
    }
}

/// The console's words, in Vietnamese and English.
const WORDS: &[(&str, &str, &str)] = &[
    ("overview", "Tổng quan", "Overview"),
    ("sync", "Đồng bộ DVCQG", "National portal sync"),
    (
        "sync_help",
        "Hồ sơ tiếp nhận trong kỳ so với dữ liệu Cổng Dịch vụ công quốc gia đang giữ, hỏi từng hồ sơ.",
        "The dossiers received in the period against what the national portal holds, asked dossier by dossier.",
    ),
    ("period_from", "Từ ngày", "From"),
    ("period_to", "Đến ngày", "To"),
    ("show", "Xem", "Show"),
    ("procedure", "Mã TTHC", "Procedure"),
    ("channel", "Kênh", "Channel"),
    ("status", "Trạng thái", "Status"),
    ("held_by_lgsp", "lgsp giữ", "Held by lgsp"),
    ("alike_on_portal", "Khớp trên Cổng", "Alike on the portal"),
    ("differences", "Hồ sơ chênh lệch", "Dossiers that differ"),
    ("no_differences", "Không có chênh lệch.", "No differences."),
    ("why", "Lý do", "Why"),
    ("resend", "Gửi lại hồ sơ thiếu", "Send again what the portal lacks"),
    ("resent", "Đã gửi lại", "Sent again"),
    ("counters_766", "Chỉ số theo Quyết định 766/QĐ-TTg", "Decision 766/QĐ-TTg counters"),
    ("as_of", "tính đến", "as of"),
    ("received_by_channel", "Tiếp nhận (trực tuyến / trực tiếp / bưu chính)", "Received (online / in person / post)"),
    ("processed_by_time", "Đã giải quyết (trước hạn / đúng hạn / quá hạn)", "Processed (early / on time / late)"),
    ("in_progress_by_time", "Đang giải quyết (trong hạn / quá hạn)", "In progress (within / past the deadline)"),
    ("supplement_requested", "Yêu cầu bổ sung", "Returned for supplement"),
    ("digitised", "Hồ sơ được số hóa", "Dossiers digitised"),
    ("reused", "Hồ sơ tái sử dụng giấy tờ", "Dossiers reusing documents"),
    ("held_record", "Bản ghi lgsp giữ", "The record lgsp holds"),
    ("portal_copy", "Bản ghi trên Cổng", "The portal's copy"),
    ("portal_none", "Cổng không có hồ sơ này.", "The portal holds no such dossier."),
    ("outbox", "Hàng đợi gửi Cổng", "Sent to the portal"),
    ("attempts", "Số lần thử", "Attempts"),
    ("last_error", "Lỗi gần nhất", "Last error"),
    ("changes", "Thay đổi đã báo", "Changes reported"),
    ("adapters", "Bộ kết nối", "Adapters"),
    ("flows", "Quy trình liên thông", "Flows and dossiers"),
    ("partners", "Đối tác", "Partners"),
    ("forms", "Biểu mẫu", "Forms"),
    ("form", "Biểu mẫu", "Form"),
    ("fields", "Trường gắn CSDL", "Fields bound"),
    ("ceiling", "Trần tối đa", "Ceiling"),
    ("measured_cut", "Mức giảm đo được", "Measured cut"),
    (
        "cut_target",
        "Mỗi biểu mẫu phải giảm ít nhất 20% dữ liệu công dân khai (vạch đỏ).",
        "Every form must cut what a citizen declares by at least 20% (the red mark).",
    ),
    ("element", "Phần tử", "Element"),
    ("class", "Phân loại", "Class"),
    ("credentials", "Thông tin xác thực", "Credentials"),
    (
        "credentials_help",
        "Chỉ ghi: giá trị được niêm phong và không bao giờ hiển thị lại.",
        "Write-only: values are sealed and never shown again.",
    ),
    ("updated", "Cập nhật", "Updated"),
    ("set_credential", "Đặt hoặc thay thông tin xác thực", "Set or rotate a credential"),
    ("token_or_user", "Mã hoặc tên đăng nhập", "Token or user name"),
    ("password", "Mật khẩu", "Password"),
    ("tokens", "Mã quản trị", "Admin tokens"),
    ("role", "Vai trò", "Role"),
    ("new_token", "Tạo mã quản trị", "New admin token"),
    ("step", "Bước", "Step"),
    ("reference", "Số hồ sơ tại CSDL", "Registry reference"),
    ("result", "Kết quả", "Result"),
    ("timeline", "Diễn biến", "Timeline"),
    ("traffic", "Lưu lượng 60 phút qua, theo đối tác và bộ kết nối", "The last hour's calls, by partner and adapter"),
    ("peak", "cao nhất", "peak"),
    ("lines_differ", "dòng khác nhau", "lines differ"),
    ("raw_answer", "Dữ liệu CSDL trả về", "The registry's answer"),
    ("last_verified", "Kiểm tra gần nhất", "Last verified"),
    ("or_upload", "hoặc tải tệp lên", "or upload a file"),
    ("register_document", "Đăng ký mới (dán JSON)", "Register a new one (paste its JSON)"),
    ("document_json", "Tài liệu (JSON)", "Document (JSON)"),
    ("field", "Trường", "Field"),
    ("bound_to", "Lấy từ phần tử", "Bound to element"),
    ("person", "Người", "Person"),
    ("declared", "công dân tự khai", "declared by the citizen"),
    ("compare", "So sánh", "Compare"),
    ("rotate", "Thay khóa", "Rotate"),
    ("grace_hours", "Số giờ khóa cũ còn hiệu lực", "Hours the old key keeps working"),
    ("last_hour", "60 phút qua", "The last hour"),
    ("calls_word", "lượt gọi", "calls"),
    ("refused_word", "bị từ chối", "refused"),
    ("export", "Tải nhật ký (JSON lines, 10.000 bản ghi mỗi tệp)", "Export (JSON lines, 10,000 records a file)"),
    ("no_traffic", "Chưa có lượt gọi nào trong 60 phút qua.", "No calls in the last hour."),
    ("register_adapter", "Đăng ký bộ kết nối", "Register an adapter"),
    ("manifest_json", "Bản mô tả (JSON)", "Manifest (JSON)"),
    ("register", "Đăng ký", "Register"),
    ("dry_run", "Chạy thử với CSDL", "Dry run against the registry"),
    ("citizen_id", "Số định danh cá nhân", "Personal ID number"),
    ("run", "Chạy", "Run"),
    ("versions", "Các phiên bản", "Versions"),
    ("version", "Phiên bản", "Version"),
    ("published_at", "Công bố lúc", "Published"),
    ("by", "Bởi", "By"),
    ("current", "hiện hành", "current"),
    ("roll_back", "Quay lại phiên bản này", "Roll back to it"),
    ("publish_version", "Công bố phiên bản mới", "Publish a new version"),
    ("publish", "Công bố", "Publish"),
    ("quota", "Hạn mức", "Quota"),
    ("new_partner", "Thêm đối tác", "New partner"),
    ("agency_code", "Mã định danh cơ quan", "Agency code"),
    ("per_minute", "Lượt mỗi phút", "Requests per minute"),
    ("burst", "Đột biến", "Burst"),
    ("create", "Tạo", "Create"),
    ("policy", "Chính sách truy cập", "Access policy"),
    ("policy_forms", "Biểu mẫu", "Forms"),
    ("policy_purposes", "Mục đích", "Purposes"),
    ("policy_operations", "Nghiệp vụ", "Operations"),
    ("policy_elements", "Phần tử dữ liệu", "Elements"),
    ("policy_networks", "Mạng được phép", "Networks"),
    ("policy_access_log", "Nhật ký truy cập", "Access log"),
    ("save", "Lưu", "Save"),
    ("keys", "Khóa API", "API keys"),
    ("key", "Khóa", "Key"),
    ("label", "Nhãn", "Label"),
    ("created", "Tạo lúc", "Created"),
    ("last_used", "Dùng lần cuối", "Last used"),
    ("revoked", "Đã thu hồi", "Revoked"),
    ("revoke", "Thu hồi", "Revoke"),
    ("new_key", "Tạo khóa mới", "New key"),
    (
        "key_shown_once",
        "Khóa mới chỉ hiển thị một lần: hãy lưu lại ngay.",
        "The new key is shown this once: keep it now.",
    ),
    ("audit", "Nhật ký kiểm toán", "Audit trail"),
    ("role_steward", "Quản trị dữ liệu", "Data steward"),
    ("role_auditor", "Kiểm toán viên", "Auditor"),
    ("sign_out", "Đăng xuất", "Sign out"),
    ("sign_in", "Đăng nhập", "Sign in"),
    ("sign_in_title", "Đăng nhập bảng điều khiển lgsp", "Sign in to the lgsp console"),
    (
        "sign_in_help",
        "Dùng mã quản trị (admin token) của quản trị dữ liệu hoặc kiểm toán viên.",
        "Use a data steward's or an auditor's admin token.",
    ),
    ("admin_token", "Mã quản trị", "Admin token"),
    ("other_language", "English", "Tiếng Việt"),
    ("readiness", "Sẵn sàng", "Readiness"),
    ("ready", "Sẵn sàng", "Ready"),
    ("not_ready", "Chưa sẵn sàng", "Not ready"),
    ("catalog_version", "Phiên bản danh mục", "Catalogue version"),
    ("chain_head", "Đầu chuỗi kiểm toán", "Audit chain head"),
    ("dossiers_open", "Hồ sơ liên thông đang xử lý", "Linked dossiers in progress"),
    ("overdue", "Quá hạn", "Overdue"),
    ("registries", "Cơ sở dữ liệu kết nối", "Registries"),
    ("adapter", "Bộ kết nối", "Adapter"),
    ("breaker", "Ngắt mạch", "Breaker"),
    ("breaker_closed", "Đóng (bình thường)", "Closed (normal)"),
    ("breaker_open", "Mở (tạm dừng gọi)", "Open (calls paused)"),
    ("breaker_half_open", "Nửa mở (đang thử)", "Half-open (probing)"),
    ("calls", "Lượt gọi", "Calls"),
    ("mean_latency", "Độ trễ trung bình", "Mean latency"),
    ("state", "Trạng thái", "State"),
    ("enabled", "Đang hoạt động", "Enabled"),
    ("disabled", "Đã tắt", "Disabled"),
    ("enable", "Bật", "Enable"),
    ("disable", "Tắt", "Disable"),
    ("expiring", "Khóa và mã sắp hết hạn", "Keys and tokens about to expire"),
    ("credential", "Khóa / mã", "Key / token"),
    ("owner", "Thuộc về", "Belongs to"),
    ("expires_at", "Hết hạn", "Expires"),
    ("nothing_expiring", "Không có khóa hay mã nào hết hạn trong 30 ngày tới.", "Nothing expires in the next 30 days."),
    ("name", "Tên", "Name"),
    ("upstream", "Địa chỉ", "Upstream"),
    ("operations", "Nghiệp vụ", "Operations"),
    ("operation", "Nghiệp vụ", "Operation"),
    ("kind", "Loại", "Kind"),
    ("request", "Yêu cầu", "Request"),
    ("elements", "Phần tử dữ liệu", "Elements"),
    ("manifest", "Bản mô tả", "Manifest"),
    ("flow", "Quy trình", "Flow"),
    ("steps", "Các bước", "Steps"),
    ("deadline", "Thời hạn (ngày làm việc)", "Deadline (working days)"),
    ("recent_dossiers", "Hồ sơ gần đây", "Recent dossiers"),
    ("dossier", "Mã hồ sơ", "Dossier"),
    ("partner", "Đối tác", "Partner"),
    ("received", "Tiếp nhận", "Received"),
    ("due", "Hạn", "Due"),
    ("none_yet", "Chưa có.", "None yet."),
    ("search", "Tìm", "Search"),
    ("time", "Thời điểm", "Time"),
    ("action", "Hành động", "Action"),
    ("resource", "Tài nguyên", "Resource"),
    ("subject", "Công dân", "Citizen"),
    ("outcome", "Kết quả", "Outcome"),
    ("no_records", "Không có bản ghi nào khớp.", "No record matches."),
    ("older", "Cũ hơn", "Older"),
    ("verify_chain", "Kiểm tra chuỗi", "Verify the chain"),
    ("anchors", "Điểm neo (số:hash, cách nhau bởi dấu phẩy)", "Anchors (seq:hash, comma-separated)"),
    ("verify", "Kiểm tra", "Verify"),
    ("chain_intact", "Chuỗi nguyên vẹn", "The chain is intact"),
    ("chain_broken", "Chuỗi bị phá vỡ", "The chain is broken"),
    ("records", "bản ghi", "records"),
    ("record", "Bản ghi", "Record"),
    ("detail", "Chi tiết", "Detail"),
    ("filter_partner_id", "Đối tác", "Partner"),
    ("filter_key_id", "Khóa / mã", "Key or token"),
    ("filter_subject", "Số định danh", "Citizen ID"),
    ("filter_action", "Hành động", "Action"),
    ("filter_outcome", "Kết quả", "Outcome"),
    ("filter_resource", "Tài nguyên", "Resource"),
    ("filter_from", "Từ (RFC 3339)", "From (RFC 3339)"),
    ("filter_to", "Đến (RFC 3339)", "To (RFC 3339)"),
];

fn words(lang: Lang) -> Value {
    let map: serde_json::Map<String, Value> =
        WORDS.iter().map(|(k, vi, en)| (k.to_string(), json!(if lang == Lang::En { en } else { vi }))).collect();
    Value::Object(map)
}

/// A page: `template` rendered with `context`, the language's words, the
/// signed-in user and the session's CSRF token, under the console's
/// security headers.
pub fn page(req: &HttpRequest, user: Option<&ConsoleUser>, template: &str, mut context: Value) -> HttpResponse {
    let lang = Lang::of(req);
    context["lang"] = json!(lang.code());
    context["other_lang"] = json!(if lang == Lang::En { "vi" } else { "en" });
    context["tr"] = words(lang);
    if let Some(u) = user {
        context["user"] = json!({"role": u.caller.role.as_str(), "token_id": u.caller.token_id});
        context["csrf"] = json!(u.session.csrf);
    }
    let rendered = templates().get_template(template).and_then(|t| t.render(&context));
    let mut resp = match rendered {
        Ok(html) => HttpResponse::Ok().content_type("text/html; charset=utf-8").body(html),
        Err(e) => {
            tracing::error!(template, error = %e, "a console page failed to render");
            HttpResponse::InternalServerError().content_type("text/plain; charset=utf-8").body("internal error")
        }
    };
    secure(&mut resp, req, lang);
    resp
}

/// The console's headers on every answer: its content policy, no framing,
/// no caching of pages that show personal data, and the language chosen.
fn secure(resp: &mut HttpResponse, req: &HttpRequest, lang: Lang) {
    let h = resp.headers_mut();
    let set = |h: &mut header::HeaderMap, name: header::HeaderName, value: &'static str| {
        h.insert(name, header::HeaderValue::from_static(value));
    };
    set(h, header::CONTENT_SECURITY_POLICY, CSP);
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::CACHE_CONTROL, "no-store");
    let asked = req.query_string().contains("lang=");
    if asked {
        let cookie = actix_web::cookie::Cookie::build("lgsp_lang", lang.code())
            .path("/console")
            .same_site(actix_web::cookie::SameSite::Strict)
            .http_only(true)
            .finish();
        let _ = resp.add_cookie(&cookie);
    }
}

/// An error shown as a page, with the problem's code and what to do.
pub fn error_page(req: &HttpRequest, user: Option<&ConsoleUser>, e: &crate::error::ApiError) -> HttpResponse {
    let mut resp =
        page(req, user, "error.html", json!({"title": e.code.title(), "detail": e.detail, "code": e.code.as_str()}));
    *resp.status_mut() = e.code.status();
    resp
}

/// A file the console embeds: htmx, pinned by its name, is cached for good;
/// the console's own script and style are checked each time.
fn embedded(content_type: &'static str, cache: &'static str, body: &'static str) -> actix_web::Route {
    web::get().to(move || async move {
        HttpResponse::Ok().content_type(content_type).insert_header((header::CACHE_CONTROL, cache)).body(body)
    })
}

/// The console's routes, under `/console`.
pub fn routes(cfg: &mut web::ServiceConfig, settings: &crate::config::Settings) {
    cfg.service(
        web::scope("/console")
            // A manifest pasted into a form is as large as one sent to the API.
            .app_data(web::FormConfig::default().limit(settings.max_body_bytes))
            .route("/static/htmx-2.0.4.min.js", embedded(JS_TYPE, "public, max-age=31536000, immutable", HTMX))
            .route("/static/console.css", embedded("text/css; charset=utf-8", "no-cache", CSS))
            .route("/static/console.js", embedded(JS_TYPE, "no-cache", JS))
            .route("/login", web::get().to(session::login_form))
            .route("/login", web::post().to(session::login))
            .route("/logout", web::post().to(session::logout))
            .route("", web::get().to(pages::overview))
            .route("/", web::get().to(pages::overview))
            .route("/adapters", web::get().to(pages::adapters))
            .route("/adapters/{id}", web::get().to(pages::adapter))
            .route("/adapters", web::post().to(pages::register_adapter))
            .route("/adapters/{id}/state", web::post().to(pages::adapter_state))
            .route("/adapters/{id}/publish", web::post().to(pages::publish_adapter))
            .route("/adapters/{id}/test", web::post().to(pages::test_adapter))
            .route("/partners", web::get().to(pages::partners))
            .route("/partners", web::post().to(pages::create_partner))
            .route("/partners/{id}", web::get().to(pages::partner))
            .route("/partners/{id}", web::post().to(pages::update_partner))
            .route("/partners/{id}/keys", web::post().to(pages::create_key))
            .route("/partners/{id}/keys/{key}/revoke", web::post().to(pages::revoke_key))
            .route("/partners/{id}/keys/{key}/rotate", web::post().to(pages::rotate_key))
            .route("/adapters/{id}/diff", web::get().to(pages::adapter_diff))
            .route("/audit/export", web::get().to(pages::export))
            .route("/flows", web::get().to(pages::flows))
            .route("/dossiers/{code}", web::get().to(pages::dossier))
            .route("/reconciliation", web::get().to(pages::reconciliation))
            .route("/reconciliation/resend", web::post().to(pages::resend))
            .route("/sync/{code}", web::get().to(pages::sync_dossier))
            .route("/forms", web::get().to(pages::forms))
            .route("/forms", web::post().to(pages::register_form))
            .route("/forms/{id}", web::get().to(pages::form))
            .route("/elements", web::post().to(pages::register_element))
            .route("/flows", web::post().to(pages::register_flow))
            .route("/elements", web::get().to(pages::elements))
            .route("/credentials", web::get().to(pages::credentials))
            .route("/credentials", web::post().to(pages::set_credential))
            .route("/tokens", web::get().to(pages::tokens))
            .route("/tokens", web::post().to(pages::create_token))
            .route("/tokens/{id}/revoke", web::post().to(pages::revoke_token))
            .route("/audit", web::get().to(pages::audit))
            .route("/audit/verify", web::post().to(pages::verify))
            .route("/audit/{seq}", web::get().to(pages::audit_record)),
    );
}

/// Whether the state the console reaches is there (for the extractors).
fn app_state(req: &HttpRequest) -> Option<web::Data<AppState>> {
    req.app_data::<web::Data<AppState>>().cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses_and_every_word_has_both_languages() {
        let env = templates();
        for (name, _) in TEMPLATES {
            assert!(env.get_template(name).is_ok(), "{name}");
        }
        for (key, vi, en) in WORDS {
            assert!(!vi.is_empty() && !en.is_empty(), "{key}");
        }
    }
}
