//! Upstream credentials: how lgsp proves who it is to a registry. Stewards
//! set them at run time; they are stored sealed and never shown again.

use crate::error::FieldError;
use serde::{Deserialize, Serialize};

/// A credential as a steward sets it (`PUT /admin/v1/credentials/{name}`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Credential {
    /// A token sent in the adapter manifest's auth header, after its prefix
    /// (as `upstreams.NAME.token` in a node's configuration is).
    Static { token: String },
    /// HTTP Basic: `Authorization: Basic base64(username:password)`.
    Basic { username: String, password: String },
    /// A user name and password (or client id and secret) that the
    /// registry's login operation, as the manifest's `upstream.auth.login`
    /// describes it, exchanges for an expiring token.
    Login { username: String, password: String },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential({}, ***)", self.kind())
    }
}

/// The longest secret or name a credential holds, in bytes.
pub const MOST_CREDENTIAL_BYTES: usize = 4096;

impl Credential {
    /// `static` or `basic`.
    pub fn kind(&self) -> &'static str {
        match self {
            Credential::Static { .. } => "static",
            Credential::Basic { .. } => "basic",
            Credential::Login { .. } => "login",
        }
    }

    /// Problems with the values: each must be present, fit in a header and
    /// hold no control characters.
    pub fn check(&self) -> Vec<FieldError> {
        let fields: Vec<(&str, &str)> = match self {
            Credential::Static { token } => vec![("token", token)],
            Credential::Basic { username, password } | Credential::Login { username, password } => {
                vec![("username", username), ("password", password)]
            }
        };
        let mut errors = Vec::new();
        for (name, value) in fields {
            if value.is_empty() || value.len() > MOST_CREDENTIAL_BYTES {
                errors.push(FieldError::new(format!("/{name}"), format!("1 to {MOST_CREDENTIAL_BYTES} bytes")));
            } else if value.chars().any(char::is_control) {
                errors.push(FieldError::new(format!("/{name}"), "no control characters (a header cannot carry them)"));
            } else if name == "username" && value.contains(':') && matches!(self, Credential::Basic { .. }) {
                errors.push(FieldError::new("/username", "HTTP Basic user names hold no colon"));
            }
        }
        errors
    }
}

/// A credential name, as adapter manifests name it (`upstream.credential`).
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!("\"{name}\" is not a credential name: lower case letters, digits and _, starting with a letter"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_read_their_kind_and_never_print_their_secret() {
        let c: Credential = serde_json::from_str(r#"{"kind": "basic", "username": "lgsp", "password": "pw"}"#).unwrap();
        assert_eq!(c.kind(), "basic");
        assert!(!format!("{c:?}").contains("pw"));
        assert!(serde_json::from_str::<Credential>(r#"{"kind": "kerberos", "ticket": "x"}"#).is_err());
        assert!(serde_json::from_str::<Credential>(r#"{"kind": "static", "token": "t", "extra": 1}"#).is_err());
        let bad = Credential::Basic { username: "a:b".into(), password: "x\ny".into() }.check();
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert!(check_name("business_registry").is_ok() && check_name("Bad-Name").is_err());
    }
}
