//! TLS termination with rustls: HTTPS served with the configured certificate,
//! no plain HTTP on that port, and a half-configured TLS refused at start.

use crate::helpers::{fresh_database_url, test_settings};
use lgsp::startup::Application;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

#[tokio::test]
async fn https_is_served_with_the_configured_certificate_and_plain_http_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, signing_key.serialize_pem()).unwrap();

    let mut settings = test_settings(&fresh_database_url(dir.path()));
    settings.tls.cert_path = Some(cert_path.display().to_string());
    settings.tls.key_path = Some(key_path.display().to_string());
    let app = Application::build(settings).await.expect("builds with TLS");
    let addr = format!("127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());

    // A client that trusts only this certificate.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"status\":\"ok\""), "{answer}");

    // Under TLS, the console's cookies are Secure.
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
    tls.write_all(b"GET /console/login HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    let cookie =
        answer.lines().find(|l| l.to_ascii_lowercase().starts_with("set-cookie: lgsp_console_login=")).unwrap_or("");
    assert!(cookie.contains("Secure") && cookie.contains("HttpOnly"), "{answer}");

    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = reqwest::Client::new().get(format!("http://{addr}/healthz")).send().await;
    assert!(plain.is_err(), "{plain:?}");
}

#[tokio::test]
async fn a_certificate_without_its_key_or_an_unreadable_one_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(&fresh_database_url(dir.path()));
    settings.tls.cert_path = Some(dir.path().join("cert.pem").display().to_string());
    let err = Application::build(settings.clone()).await.err().expect("refused").to_string();
    assert!(err.contains("tls.cert_path and tls.key_path go together"), "{err}");
    settings.tls.key_path = Some(dir.path().join("key.pem").display().to_string());
    let err = Application::build(settings).await.err().expect("refused");
    assert!(format!("{err:#}").contains("tls.cert_path"), "{err:#}");
}
