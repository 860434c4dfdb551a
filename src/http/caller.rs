//! Who is calling: partner agencies with API keys (`/v1`), stewards and
//! auditors with admin tokens (`/admin`). The two kinds of credential live in
//! separate tables and look different, so a partner key can never open
//! `/admin`.

use crate::catalog::{AdminCaller, Catalog};
use crate::domain::partner::{hash_secret, Partner, Role, KEY_PREFIX};
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;
use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use std::sync::Arc;

/// A partner call that presented a live key.
#[derive(Clone)]
pub struct PartnerCaller {
    pub partner: Arc<Partner>,
    pub key_id: String,
}

fn bearer(req: &HttpRequest) -> Option<&str> {
    let v = req.headers().get(actix_web::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

fn unauthorized(detail: &str) -> ApiError {
    ApiError::new(ErrorCode::Unauthorized, detail).with_header("WWW-Authenticate", "Bearer realm=\"lgsp\"")
}

/// The address of the client: the connection's peer, or, when the peer is a
/// trusted proxy, the last address in `X-Forwarded-For` that is not one (the
/// addresses before it are the client's own claims, which anyone can send).
pub fn client_ip(req: &HttpRequest, trusted: &[ipnet::IpNet]) -> Option<std::net::IpAddr> {
    let peer = req.peer_addr()?.ip();
    let is_trusted = |ip: &std::net::IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let mut last = peer;
    for value in req.headers().get_all("x-forwarded-for").collect::<Vec<_>>().into_iter().rev() {
        let Ok(text) = value.to_str() else { return None };
        for hop in text.rsplit(',') {
            let Ok(ip) = hop.trim().parse::<std::net::IpAddr>() else { return None };
            if !is_trusted(&ip) {
                return Some(ip);
            }
            last = ip;
        }
    }
    Some(last)
}

/// Refuses a credential past its expiry, saying when it expired and whom to ask.
fn refuse_expired(expires_at: Option<i64>, what: &str, ask: &str) -> Result<(), ApiError> {
    match expires_at.filter(|at| *at <= crate::db::now_micros()) {
        Some(at) => Err(unauthorized(&format!(
            "{what} expired at {}; ask {ask} for a new one.",
            crate::db::micros_to_rfc3339(at)
        ))),
        None => Ok(()),
    }
}

/// The partner behind `Authorization: Bearer <api key>`.
pub fn partner_caller(req: &HttpRequest, catalog: &Catalog) -> Result<PartnerCaller, ApiError> {
    let Some(key) = bearer(req) else {
        return Err(unauthorized("Send the partner's API key as `Authorization: Bearer <key>`."));
    };
    let found = key.starts_with(KEY_PREFIX).then(|| catalog.keys.get(&hash_secret(key))).flatten();
    let Some(k) = found else {
        return Err(unauthorized("The API key is unknown or has been revoked."));
    };
    refuse_expired(k.expires_at, "The API key", "the data steward")?;
    k.used.used_now();
    let Some(partner) = catalog.partners.get(&k.partner_id) else {
        return Err(unauthorized("The API key is unknown or has been revoked."));
    };
    if !partner.enabled {
        return Err(ApiError::new(ErrorCode::Forbidden, "This partner is disabled; ask the data steward."));
    }
    Ok(PartnerCaller { partner: partner.clone(), key_id: k.key_id.clone() })
}

/// Whether `client` is in one of `networks`; no networks: any client is.
pub fn within(networks: &[ipnet::IpNet], client: Option<std::net::IpAddr>) -> bool {
    networks.is_empty() || client.is_some_and(|ip| networks.iter().any(|n| n.contains(&ip)))
}

/// Refuses a call from outside `networks` with a 403 that `refusal` words
/// from the address the call came from (see [`client_ip`]). With no
/// networks named, nothing is looked at: partners without the limit pay
/// nothing for it.
pub fn require_network(
    req: &HttpRequest,
    trusted: &[ipnet::IpNet],
    networks: &[ipnet::IpNet],
    refusal: impl FnOnce(&str) -> String,
) -> Result<(), ApiError> {
    if networks.is_empty() {
        return Ok(());
    }
    let client = client_ip(req, trusted);
    if within(networks, client) {
        return Ok(());
    }
    let from = client.map_or("an unknown address".to_string(), |ip| ip.to_string());
    Err(ApiError::new(ErrorCode::Forbidden, refusal(&from)))
}

/// Refuses a partner's call from outside the networks its policy names.
pub fn check_network(req: &HttpRequest, trusted: &[ipnet::IpNet], partner: &Partner) -> Result<(), ApiError> {
    require_network(req, trusted, &partner.policy.networks, |from| {
        format!(
            "This partner's key is not accepted from {from}: calls must come from the networks its policy names. \
             Call from there, or ask the data steward."
        )
    })
}

/// Refuses an admin token past its expiry, or without `role`: the check the
/// admin API and the console make alike.
pub fn admit_admin(t: &AdminCaller, role: Role) -> Result<(), ApiError> {
    refuse_expired(t.expires_at, "The admin token", "a steward")?;
    if t.role != role {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("This needs the {} role; the token has the {} role.", role.as_str(), t.role.as_str()),
        ));
    }
    Ok(())
}

/// The admin behind `Authorization: Bearer <admin token>`, if it has `role`.
pub fn admin_caller(req: &HttpRequest, catalog: &Catalog, role: Role) -> Result<AdminCaller, ApiError> {
    let Some(token) = bearer(req) else {
        return Err(unauthorized("Send an admin token as `Authorization: Bearer <token>`."));
    };
    let Some(t) = catalog.admins.get(&hash_secret(token)) else {
        return Err(unauthorized("The admin token is unknown or has been revoked (partner keys do not open /admin)."));
    };
    refuse_expired(t.expires_at, "The admin token", "a steward")?;
    t.used.used_now();
    admit_admin(t, role)?;
    Ok(t.clone())
}

/// A partner's call with a live key, from the partner's networks: a handler
/// that takes one answers partners only. (Calls that count against the quota
/// and are audited, refusals included, take `admission::Admitted` instead.)
impl FromRequest for PartnerCaller {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(partner_of(req))
    }
}

fn partner_of(req: &HttpRequest) -> Result<PartnerCaller, ApiError> {
    let state = req.app_data::<web::Data<AppState>>().ok_or_else(|| ApiError::internal("no application state"))?;
    let caller = partner_caller(req, &state.catalog.get())?;
    check_network(req, &state.settings.trusted_proxies, &caller.partner)?;
    Ok(caller)
}

/// A request made with a live steward token from the admin networks. A
/// handler that takes one runs for stewards only: the check cannot be left out.
pub struct Steward(pub AdminCaller);

/// A request made with a live auditor token from the admin networks.
pub struct Auditor(pub AdminCaller);

/// The admin behind the request, if it calls from `admin_networks` and its
/// token has `role`. The network is checked first, so a caller from
/// elsewhere learns nothing about tokens. The caller is kept in the
/// request's extensions for its audit record.
fn admin_of(req: &HttpRequest, role: Role) -> Result<AdminCaller, ApiError> {
    let state = req.app_data::<web::Data<AppState>>().ok_or_else(|| ApiError::internal("no application state"))?;
    require_network(req, &state.settings.trusted_proxies, &state.settings.admin_networks, |from| {
        format!("The admin API does not answer {from}; call it from a network in admin_networks.")
    })?;
    let caller = admin_caller(req, &state.catalog.get(), role)?;
    req.extensions_mut().insert(caller.clone());
    Ok(caller)
}

impl FromRequest for Steward {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(admin_of(req, Role::Steward).map(Steward))
    }
}

impl FromRequest for Auditor {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(admin_of(req, Role::Auditor).map(Auditor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::partner::Policy;

    #[test]
    fn the_client_is_the_peer_unless_a_trusted_proxy_forwards_for_it() {
        use actix_web::test::TestRequest;
        let nets = |v: &[&str]| -> Vec<ipnet::IpNet> { v.iter().map(|n| n.parse().unwrap()).collect() };
        let trusted = nets(&["10.0.0.0/24", "192.0.2.7/32"]);
        let ip = |s: &str| Some(s.parse::<std::net::IpAddr>().unwrap());
        let from = |peer: &str, forwarded: &[&str]| {
            let mut r = TestRequest::default().peer_addr(format!("{peer}:40000").parse().unwrap());
            for f in forwarded {
                r = r.append_header(("X-Forwarded-For", *f));
            }
            client_ip(&r.to_http_request(), &trusted)
        };
        // An untrusted peer's own header is not believed.
        assert_eq!(from("198.51.100.1", &["203.0.113.5"]), ip("198.51.100.1"));
        // Through trusted proxies: the last address they did not add.
        assert_eq!(from("10.0.0.1", &["203.0.113.5"]), ip("203.0.113.5"));
        assert_eq!(from("10.0.0.1", &["6.6.6.6, 203.0.113.5, 192.0.2.7"]), ip("203.0.113.5"));
        assert_eq!(from("10.0.0.1", &["6.6.6.6", "203.0.113.5, 10.0.0.9"]), ip("203.0.113.5"));
        // A trusted proxy that forwards nothing is the client; a garbled header is no address.
        assert_eq!(from("10.0.0.1", &[]), ip("10.0.0.1"));
        assert_eq!(from("10.0.0.1", &["203.0.113.5, nonsense"]), None);
        assert_eq!(client_ip(&TestRequest::default().to_http_request(), &trusted), None);

        let p: Policy =
            serde_json::from_value(serde_json::json!({"networks": ["203.0.113.0/24", "2001:db8::1/128"]})).unwrap();
        let admits = |p: &Policy, client| within(&p.networks, client);
        assert!(admits(&p, ip("203.0.113.5")) && admits(&p, ip("2001:db8::1")));
        assert!(!admits(&p, ip("203.0.114.5")) && !admits(&p, None));
        assert!(admits(&Policy::default(), None), "no networks: any address");
        assert!(serde_json::from_value::<Policy>(serde_json::json!({"networks": ["203.0.113.0/33"]})).is_err());
    }
}
