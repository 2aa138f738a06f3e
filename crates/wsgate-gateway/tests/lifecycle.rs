//! Slow clients, TLS on both legs and its session resumption, and graceful
//! shutdown.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::ORIGIN;
use wsgate_testkit::client::RawClient;
use wsgate_testkit::gateway::TestGateway;
use wsgate_testkit::pki::Pki;
use wsgate_testkit::upstream::{Echo, EchoOptions};

#[tokio::test]
async fn a_client_that_dribbles_its_handshake_is_dropped() {
    let echo = Echo::start().await;
    let config = common::config(echo.addr, "", "").replace(
        r#"handshake_timeout = "2s""#,
        r#"handshake_timeout = "300ms""#,
    );
    let mut gw = TestGateway::start(&config).await;
    // Slowloris: a request head that never ends.
    let mut c = RawClient::connect(gw.addr).await;
    c.send_raw(b"GET /chat HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await;
    let started = tokio::time::Instant::now();
    assert!(
        c.ends().await,
        "the gateway kept a half-sent handshake open"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let ev = gw.handshake_event().await;
    assert_eq!(
        (ev.decision, ev.reason),
        (Some("refused"), Some("handshake_timeout"))
    );
    // A client that connects and says nothing at all.
    let mut silent = RawClient::connect(gw.addr).await;
    assert!(silent.ends().await);
    assert_eq!(gw.handshake_event().await.reason, Some("handshake_timeout"));
}

#[tokio::test]
async fn a_client_that_never_starts_tls_is_dropped() {
    let pki = Pki::new();
    let leaf = pki.server("gate", &["localhost", "127.0.0.1"]);
    let echo = Echo::start().await;
    let config = common::config(echo.addr, "", "").replace(
        r#"handshake_timeout = "2s""#,
        &format!(
            "handshake_timeout = \"300ms\"\ntls = {{ cert = {:?}, key = {:?} }}",
            leaf.cert, leaf.key
        ),
    );
    let mut gw = TestGateway::start(&config).await;
    let mut c = RawClient::connect(gw.addr).await;
    assert!(c.ends().await);
    let ev = gw.handshake_event().await;
    assert_eq!(ev.reason, Some("handshake_timeout"));
}

#[tokio::test]
async fn wss_to_the_gateway_and_wss_to_the_upstream() {
    let pki = Pki::new();
    let gate = pki.server("gate", &["localhost"]);
    let up = pki.server("upstream", &["localhost"]);
    let echo = Echo::start_with(EchoOptions {
        tls: Some(pki.server_config(&up)),
        ..Default::default()
    })
    .await;
    let config = format!(
        r#"
[[listener]]
bind = "127.0.0.1:0"
tls = {{ cert = {cert:?}, key = {key:?} }}

[[route]]
path = "/chat"
upstream = "wss://localhost:{port}/chat"
upstream_ca = "ca.pem"
origins = ["https://app.example.com"]
auth = "none"
"#,
        port = echo.addr.port(),
        cert = gate.cert,
        key = gate.key,
    );
    pki.ca_path();
    let mut gw = TestGateway::start_in(&config, Some(pki.dir())).await;
    let mut c = RawClient::connect_tls(gw.addr, pki.client_config(), "localhost").await;
    let reply = c.handshake("/chat", &[ORIGIN, ("Host", "localhost")]).await;
    assert_eq!(reply.status, 101, "{reply:?}");
    c.send_text("over tls twice").await;
    assert_eq!(c.read_data().await.payload, b"over tls twice");
    assert_eq!(gw.handshake_event().await.decision, Some("admitted"));
    // A TLS leg ends with its close_notify, not just a FIN.
    c.send_frame(0x88, &1000u16.to_be_bytes(), true).await;
    assert_eq!(c.read_close().await.close_code(), Some(1000));
    assert!(c.ends_cleanly().await, "no close_notify before the FIN");
}

/// Over TLS too, a client still sending when its message is refused gets
/// the close frame, then the gateway's close_notify, not a reset.
#[tokio::test]
async fn over_tls_a_client_still_sending_gets_its_close_frame_and_a_close_notify() {
    let pki = Pki::new();
    let gate = pki.server("gate", &["localhost"]);
    let echo = Echo::start().await;
    let tls = format!(
        "handshake_timeout = \"2s\"\ntls = {{ cert = {:?}, key = {:?} }}",
        gate.cert, gate.key
    );
    let config = common::config(echo.addr, "", r#"max_frame = "1KiB""#)
        .replace(r#"handshake_timeout = "2s""#, &tls);
    let mut gw = TestGateway::start(&config).await;
    let mut c = RawClient::connect_tls(gw.addr, pki.client_config(), "localhost").await;
    let reply = c.handshake("/chat", &[ORIGIN, ("Host", "localhost")]).await;
    assert_eq!(reply.status, 101, "{reply:?}");
    // Refused at its header, long before its last byte is written.
    c.send_frame(0x82, &vec![0u8; 32 << 20], true).await;
    assert_eq!(c.read_close().await.close_code(), Some(1009));
    assert!(
        c.ends_cleanly().await,
        "a close_notify and a FIN after the close"
    );
    drop(c);
    let ev = gw.close_event().await;
    assert_eq!(ev.reason, Some("message_too_big"));
    assert!(ev.bytes_in.is_some_and(|n| n >= 32 << 20), "{ev:?}");
}

#[tokio::test]
async fn an_upstream_certificate_from_an_unknown_ca_is_refused() {
    let pki = Pki::new();
    let other = Pki::new();
    let up = other.server("upstream", &["localhost"]);
    let echo = Echo::start_with(EchoOptions {
        tls: Some(other.server_config(&up)),
        ..Default::default()
    })
    .await;
    let config = common::config(echo.addr, "", "")
        .replace(
            &format!("ws://{}/chat", echo.addr),
            &format!("wss://localhost:{}/chat", echo.addr.port()),
        )
        .replace(
            "auth = \"none\"",
            "auth = \"none\"\nupstream_ca = \"ca.pem\"",
        );
    pki.ca_path();
    let mut gw = TestGateway::start_in(&config, Some(pki.dir())).await;
    let mut c = RawClient::connect(gw.addr).await;
    assert_eq!(c.handshake("/chat", &[ORIGIN]).await.status, 502);
    let ev = gw.handshake_event().await;
    assert_eq!(ev.reason, Some("upstream_unavailable"));
    assert!(ev.detail.as_deref().unwrap_or("").contains("TLS"), "{ev:?}");
}

#[tokio::test]
async fn a_self_signed_listener_serves_wss_and_prints_its_fingerprint() {
    let echo = Echo::start().await;
    let config = common::config(echo.addr, "", "").replace(
        r#"handshake_timeout = "2s""#,
        "tls = { self_signed = true }",
    );
    let config = wsgate_config::parse(&config, std::path::Path::new(".")).unwrap();
    let audit = wsgate_gateway::AuditLog::new(Box::new(std::io::sink()));
    let prepared = wsgate_gateway::prepare(config, audit).unwrap();
    let note = prepared.notes[0].clone();
    let gw = prepared.start().await.unwrap();
    let tcp = tokio::net::TcpStream::connect(gw.local_addrs()[0])
        .await
        .unwrap();
    // Pin the certificate by the fingerprint printed, as a developer would.
    let (tls, cert) = wsgate_testkit::pki::connect_pinned(tcp, "localhost").await;
    assert!(
        note.contains(&wsgate_testkit::pki::fingerprint(&cert)),
        "{note}"
    );
    let version = tls.get_ref().1.protocol_version().unwrap();
    assert!(matches!(
        version,
        rustls::ProtocolVersion::TLSv1_3 | rustls::ProtocolVersion::TLSv1_2
    ));
    drop(tls);
    gw.shutdown().await;
}

#[tokio::test]
async fn shutdown_sends_1001_to_every_client_and_finishes() {
    let echo = Echo::start().await;
    let mut gw = TestGateway::start(&common::config(echo.addr, "", "")).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut c = RawClient::connect(gw.addr).await;
        assert_eq!(c.handshake("/chat", &[ORIGIN]).await.status, 101);
        clients.push(c);
    }
    for _ in 0..3 {
        gw.handshake_event().await;
    }
    let token = gw.shutdown_token();
    token.cancel();
    for c in &mut clients {
        let close = c.read_close().await;
        assert_eq!(
            (close.close_code(), close.close_reason().as_str()),
            (Some(1001), "shutting_down")
        );
        c.send_frame(0x88, &1001u16.to_be_bytes(), true).await;
        assert!(c.ends().await);
    }
    for _ in 0..3 {
        assert_eq!(gw.close_event().await.reason, Some("shutting_down"));
    }
    assert!(
        gw.shutdown().await,
        "connections were still open after the grace period"
    );
}

/// `common::config` with `[shutdown] drain`.
fn draining(echo: &Echo, drain: &str) -> String {
    common::config(echo.addr, "", "").replace(
        "[shutdown]\ngrace = \"5s\"",
        &format!("[shutdown]\ngrace = \"5s\"\ndrain = \"{drain}\""),
    )
}

#[tokio::test]
async fn while_draining_the_listener_is_closed_and_open_connections_go_on_to_their_end() {
    let echo = Echo::start().await;
    let config = draining(&echo, "60s");
    assert!(config.contains("drain = \"60s\""));
    let mut gw = TestGateway::start(&config).await;
    let mut c = RawClient::connect(gw.addr).await;
    assert_eq!(c.handshake("/chat", &[ORIGIN]).await.status, 101);
    gw.handshake_event().await;
    gw.shutdown_token().cancel();
    gw.stopped_accepting().await;
    // The listening socket is closed: nothing accepts on its address any more.
    assert!(tokio::net::TcpStream::connect(gw.addr).await.is_err());
    // The open connection is not told anything and still relays.
    c.send_text("during the drain").await;
    assert_eq!(c.read_data().await.payload, b"during the drain");
    // It ends by itself, long before the drain is over: the gateway is done.
    c.send_frame(0x88, &1000u16.to_be_bytes(), true).await;
    assert_eq!(c.read_close().await.close_code(), Some(1000));
    assert_eq!(gw.close_event().await.reason, Some("client_closed"));
    assert!(gw.shutdown().await, "a connection was left open");
}

#[tokio::test]
async fn when_the_drain_is_over_open_connections_get_1001() {
    let echo = Echo::start().await;
    let gw = TestGateway::start(&draining(&echo, "100ms")).await;
    let mut c = RawClient::connect(gw.addr).await;
    assert_eq!(c.handshake("/chat", &[ORIGIN]).await.status, 101);
    let stopped = tokio::spawn(gw.shutdown());
    let close = c.read_close().await;
    assert_eq!(
        (close.close_code(), close.close_reason().as_str()),
        (Some(1001), "shutting_down")
    );
    c.send_frame(0x88, &1001u16.to_be_bytes(), true).await;
    assert!(stopped.await.unwrap());
}

/// Opens a TLS connection with `config` and completes a WebSocket handshake
/// (so the session tickets sent after the TLS handshake are read); whether
/// the TLS session was resumed.
async fn resumed(addr: std::net::SocketAddr, config: Arc<rustls::ClientConfig>) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .unwrap();
    let kind = tls.get_ref().1.handshake_kind();
    tls.write_all(
        b"GET /chat HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
          Origin: https://app.example.com\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{head:?}");
    kind == Some(rustls::HandshakeKind::Resumed)
}

#[tokio::test]
async fn sessions_resume_for_more_clients_than_a_session_cache_holds_until_a_reload() {
    let pki = Pki::new();
    let gate = pki.server("gate", &["localhost"]);
    let echo = Echo::start().await;
    let config = format!(
        r#"
[[listener]]
bind = "127.0.0.1:0"
tls = {{ cert = {cert:?}, key = {key:?} }}

[[route]]
path = "/chat"
upstream = "ws://{echo}/chat"
origins = ["https://app.example.com"]
auth = "none"
"#,
        cert = gate.cert,
        key = gate.key,
        echo = echo.addr,
    );
    let gw = TestGateway::start_in(&config, Some(pki.dir())).await;
    // Each client has a session cache of its own, as browsers on different
    // machines do; 300 of them hold 600 tickets, more than rustls's default
    // server-side cache of 256 sessions.
    let clients: Vec<_> = (0..300).map(|_| pki.client_config()).collect();
    for c in &clients {
        assert!(!resumed(gw.addr, Arc::clone(c)).await, "a first connection");
    }
    let mut again = 0;
    for c in &clients {
        again += usize::from(resumed(gw.addr, Arc::clone(c)).await);
    }
    assert_eq!(
        again,
        clients.len(),
        "clients whose second connection resumed"
    );
    // After a reload, sessions from before it do not resume: a client
    // certificate would meet the reloaded CAs and CRLs in a full handshake.
    assert_eq!(gw.reload(&config).await, Ok(2));
    assert!(!resumed(gw.addr, Arc::clone(&clients[0])).await);
    assert!(resumed(gw.addr, Arc::clone(&clients[0])).await);
}
