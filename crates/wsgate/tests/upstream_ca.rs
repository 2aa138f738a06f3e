//! Which CAs a `wss://` upstream's certificate may chain to: the system's
//! roots, or, when the route names `upstream_ca`, that file alone. The
//! gateway runs as a process so that its "system roots" can be set for it
//! alone, with `SSL_CERT_FILE`, which rustls-native-certs reads first.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::Path;

use wsgate_testkit::client::RawClient;
use wsgate_testkit::pki::Pki;
use wsgate_testkit::process::GatewayProcess;
use wsgate_testkit::upstream::{Echo, EchoOptions};

const BIN: &str = env!("CARGO_BIN_EXE_wsgate");

/// A route's `upstream_ca` replaces the system's roots: an upstream whose
/// certificate a "public" CA (here, the one `SSL_CERT_FILE` names) issued
/// is refused on a route that names a private CA, and admitted on one that
/// names none.
#[tokio::test]
async fn a_routes_upstream_ca_replaces_the_system_roots() {
    let public = Pki::new();
    let private = Pki::new();
    let up = public.server("upstream", &["localhost"]);
    let echo = Echo::start_with(EchoOptions {
        tls: Some(public.server_config(&up)),
        ..Default::default()
    })
    .await;
    let private_ca = private.ca_path();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gw.toml");
    let port = echo.addr.port();
    std::fs::write(
        &config,
        format!(
            r#"
[[listener]]
bind = "127.0.0.1:0"

[[route]]
path = "/public"
upstream = "wss://localhost:{port}/chat"
allow_missing_origin = true
auth = "none"

[[route]]
path = "/private"
upstream = "wss://localhost:{port}/chat"
upstream_ca = {private_ca:?}
allow_missing_origin = true
auth = "none"
"#
        ),
    )
    .unwrap();
    let roots = public.ca_path();
    let mut gw = GatewayProcess::spawn(
        Path::new(BIN),
        &config,
        &[("SSL_CERT_FILE", roots.to_str().unwrap())],
    )
    .await;
    let mut c = RawClient::connect(gw.addr).await;
    assert_eq!(c.handshake("/public", &[]).await.status, 101);
    let mut c = RawClient::connect(gw.addr).await;
    let reply = c.handshake("/private", &[]).await;
    assert_eq!(
        (reply.status, reply.body.trim()),
        (502, "upstream_unavailable")
    );
    let ev = gw
        .event(|e| e["event"] == "handshake" && e["route"] == "/private")
        .await;
    let detail = ev["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("TLS with localhost"), "{ev}");
}
