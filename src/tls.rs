//! TLS termination with rustls, for deployments without a front proxy:
//! `tls.cert_path` (PEM certificate chain, leaf first) and `tls.key_path`
//! (PEM private key: PKCS#8, PKCS#1 or SEC1).

use anyhow::{bail, Context};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;

/// The server's TLS configuration when `tls` asks for HTTPS; an incomplete
/// or unreadable one stops the start.
pub fn from_settings(tls: &crate::config::TlsSettings) -> anyhow::Result<Option<rustls::ServerConfig>> {
    match (&tls.cert_path, &tls.key_path) {
        (Some(cert), Some(key)) => Ok(Some(server_config(cert, key)?)),
        (None, None) => Ok(None),
        _ => bail!("tls.cert_path and tls.key_path go together: set both to serve HTTPS, or neither"),
    }
}

/// A server configuration for TLS 1.2 and 1.3 with the ring provider.
pub fn server_config(cert_path: &str, key_path: &str) -> anyhow::Result<rustls::ServerConfig> {
    let certs = CertificateDer::pem_file_iter(cert_path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("tls.cert_path: cannot read a PEM certificate chain from {cert_path}"))?;
    if certs.is_empty() {
        bail!("tls.cert_path: {cert_path} holds no certificate");
    }
    let key = PrivateKeyDer::from_pem_file(key_path)
        .with_context(|| format!("tls.key_path: cannot read a PEM private key from {key_path}"))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("tls.key_path does not match the certificate in tls.cert_path")?;
    Ok(config)
}
