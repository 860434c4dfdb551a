//! Who is calling: partner agencies with API keys (`/v1`), stewards and
//! auditors with admin tokens (`/admin`). The two kinds of credential live in
//! separate tables and look different, so a partner key can never open
//! `/admin`. Only SHA-256 hashes of keys and tokens are stored; a key is shown
//! once, when it is made.

use crate::catalog::Catalog;
use crate::error::{ApiError, ErrorCode, FieldError};
use actix_web::HttpRequest;
use rand::TryRngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::sync::Arc;

/// Prefix of every partner API key.
pub const KEY_PREFIX: &str = "lgsp_pk_";
/// Admin tokens made through lgsp (bootstrap tokens may be any string of 16+ characters).
pub const ADMIN_TOKEN_PREFIX: &str = "lgsp_at_";

/// A new random secret with its prefix: 32 bytes from the OS generator.
pub fn new_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.try_fill_bytes(&mut bytes).expect("the OS random generator works");
    format!("{prefix}{}", hex::encode(bytes))
}

pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Agency electronic identifier (mã định danh điện tử, Decision 20/2020/QĐ-TTg):
/// four groups `NNN.NN.NN.XNN`, for example `000.00.15.H29`: a level-4,
/// level-3 and level-2 unit number and the level-1 code (a letter and two digits).
pub fn check_agency_code(code: &str) -> Result<(), String> {
    let parts: Vec<&str> = code.split('.').collect();
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let ok = parts.len() == 4
        && digits(parts[0], 3)
        && digits(parts[1], 2)
        && digits(parts[2], 2)
        && parts[3].len() == 3
        && parts[3].as_bytes()[0].is_ascii_uppercase()
        && digits(&parts[3][1..], 2);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "\"{code}\" is not an agency electronic identifier; expected the form NNN.NN.NN.XNN, for example 000.00.15.H29"
        ))
    }
}

/// Under what legal ground a partner receives personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PartnerKind {
    /// A state agency acting under law.
    StateAgency,
    /// Any other body: each call must cite the citizen's consent.
    ConsentRequired,
}

impl PartnerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PartnerKind::StateAgency => "state_agency",
            PartnerKind::ConsentRequired => "consent_required",
        }
    }

    pub fn parse(s: &str) -> Option<PartnerKind> {
        match s {
            "state_agency" => Some(PartnerKind::StateAgency),
            "consent_required" => Some(PartnerKind::ConsentRequired),
            _ => None,
        }
    }
}

/// What a partner may receive. `"*"` in a list grants everything of that kind,
/// except in `elements`: there it grants the basic personal data, and each
/// element of sensitive personal data (Decree 13/2023/NĐ-CP: ethnic origin,
/// religious views) is granted only by its name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Forms it may prefill.
    #[serde(default)]
    #[schema(value_type = Vec<crate::schema::openapi::PolicyEntry>, max_items = 1000)]
    pub forms: BTreeSet<String>,
    /// Purposes (procedure codes) it may state.
    #[serde(default)]
    #[schema(value_type = Vec<crate::schema::openapi::PolicyEntry>, max_items = 1000)]
    pub purposes: BTreeSet<String>,
    /// Operations it may call directly: `adapter.operation` or `adapter.*`.
    #[serde(default)]
    #[schema(value_type = Vec<crate::schema::openapi::PolicyEntry>, max_items = 1000)]
    pub operations: BTreeSet<String>,
    /// Canonical data elements it may receive. `"*"` grants every basic
    /// element; sensitive elements must be named.
    #[serde(default)]
    #[schema(value_type = Vec<crate::schema::openapi::PolicyEntry>, max_items = 1000)]
    pub elements: BTreeSet<String>,
    /// Whether it may show citizens their access log (the portal).
    #[serde(default)]
    pub access_log: bool,
    /// Networks (CIDR: `203.0.113.0/24`, `/32` for one address) its calls must come from; empty:
    /// any. A key copied out of the partner's systems is then refused
    /// elsewhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "networks")]
    #[schema(value_type = Vec<String>, example = json!(["203.0.113.0/24"]))]
    pub networks: Vec<ipnet::IpNet>,
}

/// Networks in CIDR notation, each refused with what to write instead.
pub fn networks<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<ipnet::IpNet>, D::Error> {
    let texts = Vec::<String>::deserialize(d)?;
    texts
        .iter()
        .map(|t| {
            t.trim().parse().map_err(|_| {
                serde::de::Error::custom(format!(
                    "\"{t}\" is not a network: write networks in CIDR notation, such as 203.0.113.0/24 (/32 for one \
                     address)"
                ))
            })
        })
        .collect()
}

fn grants(set: &BTreeSet<String>, item: &str) -> bool {
    set.contains("*") || set.contains(item)
}

impl Policy {
    /// Most entries in one list of a policy.
    pub const MOST_ENTRIES: usize = 1_000;
    /// Longest entry of a policy's list, in characters.
    pub const LONGEST_ENTRY: usize = 100;

    pub fn may_use_form(&self, form: &str) -> bool {
        grants(&self.forms, form)
    }
    pub fn may_call(&self, adapter: &str, operation: &str) -> bool {
        self.operations.contains("*")
            || self.operations.contains(&format!("{adapter}.*"))
            || self.operations.contains(&format!("{adapter}.{operation}"))
    }
    /// Whether the partner may receive an element. A wildcard never covers
    /// sensitive personal data: a steward grants it by name, for the partners
    /// whose procedures need it.
    pub fn may_receive(&self, element: &str) -> bool {
        if self.elements.contains("*") && !crate::schema::is_sensitive_element(element) {
            return true;
        }
        self.elements.contains(element)
    }

    /// Problems with the policy's references, given what the catalogue holds.
    pub fn check(&self, catalog: &Catalog) -> Vec<FieldError> {
        let mut errors = Vec::new();
        for (name, list) in [
            ("forms", &self.forms),
            ("purposes", &self.purposes),
            ("operations", &self.operations),
            ("elements", &self.elements),
        ] {
            if list.len() > Self::MOST_ENTRIES {
                errors.push(FieldError::new(
                    format!("/policy/{name}"),
                    format!("at most {} entries", Self::MOST_ENTRIES),
                ));
            }
            if let Some(long) = list.iter().find(|e| e.is_empty() || e.chars().count() > Self::LONGEST_ENTRY) {
                errors.push(FieldError::new(
                    format!("/policy/{name}"),
                    format!(
                        "\"{}\": each entry is 1 to {} characters",
                        long.chars().take(40).collect::<String>(),
                        Self::LONGEST_ENTRY
                    ),
                ));
            }
        }
        if self.networks.len() > Self::MOST_ENTRIES {
            errors.push(FieldError::new("/policy/networks", format!("at most {} networks", Self::MOST_ENTRIES)));
        }
        for e in &self.elements {
            if e != "*" && !crate::schema::is_element(e) {
                errors.push(FieldError::new("/policy/elements", format!("unknown data element \"{e}\"")));
            }
        }
        for f in &self.forms {
            if f != "*" && !catalog.forms.contains_key(f) {
                errors.push(FieldError::new("/policy/forms", format!("unknown form \"{f}\"")));
            }
        }
        for o in &self.operations {
            if o == "*" {
                continue;
            }
            let known = o.split_once('.').is_some_and(|(a, op)| {
                catalog.adapters.get(a).is_some_and(|e| op == "*" || e.adapter.operations.contains_key(op))
            });
            if !known {
                errors.push(FieldError::new(
                    "/policy/operations",
                    format!("unknown operation \"{o}\"; use adapter.operation or adapter.*"),
                ));
            }
        }
        errors
    }
}

/// A partner as the gateway holds it in memory.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Partner {
    /// Agency electronic identifier.
    pub id: String,
    pub name: String,
    pub kind: PartnerKind,
    pub policy: Policy,
    pub rate_per_minute: u32,
    pub burst: u32,
    pub enabled: bool,
}

/// A partner call that presented a live key.
#[derive(Clone)]
pub struct PartnerCaller {
    pub partner: Arc<Partner>,
    pub key_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Registers adapters, forms and partners.
    Steward,
    /// Reads the audit trail.
    Auditor,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "steward" => Some(Role::Steward),
            "auditor" => Some(Role::Auditor),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Steward => "steward",
            Role::Auditor => "auditor",
        }
    }
}

#[derive(Debug, Clone)]
pub struct AdminCaller {
    pub token_id: String,
    pub role: Role,
    /// When the token stops working (microseconds since the epoch).
    pub expires_at: Option<i64>,
    /// When the token was last used; kept across reloads.
    pub used: std::sync::Arc<crate::catalog::KeyUse>,
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

/// The partner behind `Authorization: Bearer <api key>`.
pub fn partner_caller(req: &HttpRequest, catalog: &Catalog) -> Result<PartnerCaller, ApiError> {
    let Some(key) = bearer(req) else {
        return Err(unauthorized("Send the partner's API key as `Authorization: Bearer <key>`."));
    };
    let found = key.starts_with(KEY_PREFIX).then(|| catalog.keys.get(&hash_secret(key))).flatten();
    let Some(k) = found else {
        return Err(unauthorized("The API key is unknown or has been revoked."));
    };
    if let Some(at) = k.expires_at.filter(|at| *at <= crate::db::now_micros()) {
        return Err(unauthorized(&format!(
            "The API key expired at {}; ask the data steward for a new one.",
            crate::db::micros_to_rfc3339(at)
        )));
    }
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

/// The admin behind `Authorization: Bearer <admin token>`, if it has `role`.
pub fn admin_caller(req: &HttpRequest, catalog: &Catalog, role: Role) -> Result<AdminCaller, ApiError> {
    let Some(token) = bearer(req) else {
        return Err(unauthorized("Send an admin token as `Authorization: Bearer <token>`."));
    };
    let Some(t) = catalog.admins.get(&hash_secret(token)) else {
        return Err(unauthorized("The admin token is unknown or has been revoked (partner keys do not open /admin)."));
    };
    if let Some(at) = t.expires_at.filter(|at| *at <= crate::db::now_micros()) {
        return Err(unauthorized(&format!(
            "The admin token expired at {}; ask a steward for a new one.",
            crate::db::micros_to_rfc3339(at)
        )));
    }
    t.used.used_now();
    if t.role != role {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("This needs the {} role; the token has the {} role.", role.as_str(), t.role.as_str()),
        ));
    }
    Ok(t.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agency_codes_follow_decision_20_2020() {
        assert!(check_agency_code("000.00.15.H29").is_ok());
        assert!(check_agency_code("000.00.00.G22").is_ok());
        for bad in ["", "000.00.15", "000.00.15.h29", "00.000.15.H29", "000.00.15.H2X", "000.00.15.H29.1"] {
            assert!(check_agency_code(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_are_random_and_only_their_hash_is_kept() {
        let a = new_secret(KEY_PREFIX);
        let b = new_secret(KEY_PREFIX);
        assert_ne!(a, b);
        assert!(a.starts_with(KEY_PREFIX) && a.len() == KEY_PREFIX.len() + 64);
        assert_eq!(hash_secret(&a).len(), 64);
        assert_ne!(hash_secret(&a), a);
    }

    #[test]
    fn policy_wildcards() {
        let p: Policy = serde_json::from_value(serde_json::json!({
            "operations": ["population.*", "insurance.card"], "elements": ["full_name"], "forms": ["*"]
        }))
        .unwrap();
        assert!(p.may_call("population", "household") && p.may_call("insurance", "card"));
        assert!(!p.may_call("civil_status", "birth"));
        assert!(p.may_receive("full_name") && !p.may_receive("phone"));
        assert!(p.may_use_form("ct01"));
    }

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

    #[test]
    fn a_wildcard_grants_basic_elements_and_sensitive_ones_only_by_name() {
        let policy = |elements: serde_json::Value| -> Policy {
            serde_json::from_value(serde_json::json!({ "elements": elements })).unwrap()
        };
        let all = policy(serde_json::json!(["*"]));
        assert!(all.may_receive("full_name") && all.may_receive("permanent_residence"));
        assert!(!all.may_receive("ethnicity") && !all.may_receive("religion"));
        let named = policy(serde_json::json!(["*", "ethnicity"]));
        assert!(named.may_receive("full_name") && named.may_receive("ethnicity"));
        assert!(!named.may_receive("religion"));
        let only = policy(serde_json::json!(["religion"]));
        assert!(only.may_receive("religion") && !only.may_receive("full_name"));
    }
}
