//! Partners and who may do what: partner agencies (keyed by their agency
//! electronic identifier) with their access policy, the roles of admin
//! tokens, and the secrets both present. Only SHA-256 hashes of keys and
//! tokens are stored; a key is shown once, when it is made. How a request
//! proves who it is lives in `http::caller`.

use crate::error::FieldError;
use rand::TryRngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

/// Prefix of every partner API key.
pub const KEY_PREFIX: &str = "lgsp_pk_";
/// Admin tokens made through lgsp (bootstrap tokens may be any string of 16+ characters).
pub const ADMIN_TOKEN_PREFIX: &str = "lgsp_at_";

/// A new random secret with its prefix: 32 bytes from the OS generator.
#[allow(clippy::expect_used, reason = "a node without the OS random generator must not issue credentials")]
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

/// Which elements are sensitive personal data: the catalogue's elements say.
pub trait Sensitivity {
    fn is_sensitive(&self, element: &str) -> bool;
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
    pub fn may_receive(&self, element: &str, elements: &dyn Sensitivity) -> bool {
        if self.elements.contains("*") && !elements.is_sensitive(element) {
            return true;
        }
        self.elements.contains(element)
    }

    /// Problems with the policy's size: how many entries, how long each.
    pub fn check_bounds(&self) -> Vec<FieldError> {
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

    /// Ethnicity and religion, as the shipped elements class them.
    struct Shipped;

    impl Sensitivity for Shipped {
        fn is_sensitive(&self, element: &str) -> bool {
            element == "ethnicity" || element == "religion"
        }
    }

    #[test]
    fn policy_wildcards() {
        let p: Policy = serde_json::from_value(serde_json::json!({
            "operations": ["population.*", "insurance.card"], "elements": ["full_name"], "forms": ["*"]
        }))
        .unwrap();
        assert!(p.may_call("population", "household") && p.may_call("insurance", "card"));
        assert!(!p.may_call("civil_status", "birth"));
        assert!(p.may_receive("full_name", &Shipped) && !p.may_receive("phone", &Shipped));
        assert!(p.may_use_form("ct01"));
    }

    #[test]
    fn a_wildcard_grants_basic_elements_and_sensitive_ones_only_by_name() {
        let policy = |elements: serde_json::Value| -> Policy {
            serde_json::from_value(serde_json::json!({ "elements": elements })).unwrap()
        };
        let all = policy(serde_json::json!(["*"]));
        let may = |p: &Policy, e: &str| p.may_receive(e, &Shipped);
        assert!(may(&all, "full_name") && may(&all, "permanent_residence"));
        assert!(!may(&all, "ethnicity") && !may(&all, "religion"));
        let named = policy(serde_json::json!(["*", "ethnicity"]));
        assert!(may(&named, "full_name") && may(&named, "ethnicity"));
        assert!(!may(&named, "religion"));
        let only = policy(serde_json::json!(["religion"]));
        assert!(may(&only, "religion") && !may(&only, "full_name"));
    }
}
