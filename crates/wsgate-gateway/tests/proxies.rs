//! Behind a trusted proxy: a listener's `trusted_proxies` make the gateway
//! take the client from `X-Forwarded-For` (its right-most untrusted
//! address), for the limits, the audit log and what the upstream is told;
//! from anyone else the header is still dropped. With `proxy_protocol`, a
//! balancer that relays TCP names the client in a PROXY protocol header
//! instead, and every connection must start with one from a trusted peer.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::ORIGIN;
use wsgate_testkit::client::RawClient;
use wsgate_testkit::gateway::TestGateway;
use wsgate_testkit::http_upstream::HttpUpstream;
use wsgate_testkit::upstream::Echo;

/// The shared config with `trusted` on the listener and `limits` on /chat;
/// an HTTP route at /app when `app` is given.
fn config(echo: &Echo, trusted: &str, limits: &str, app: Option<&HttpUpstream>) -> String {
    let mut config = common::config(echo.addr, "", limits).replacen(
        "handshake_timeout = \"2s\"",
        &format!("handshake_timeout = \"2s\"\ntrusted_proxies = {trusted}"),
        1,
    );
    if let Some(app) = app {
        config += &format!(
            "\n[[route]]\npath = \"/app\"\nkind = \"http\"\nupstream = \"{}\"\nauth = \"none\"\n",
            app.url("/")
        );
    }
    config
}

async fn open(gw: &TestGateway, forwarded_for: &str) -> (RawClient, u16) {
    let mut c = RawClient::connect(gw.addr).await;
    let headers = [ORIGIN, ("X-Forwarded-For", forwarded_for)];
    let status = c.handshake("/chat", &headers).await.status;
    (c, status)
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_client_is_the_address_it_forwarded() {
    let mut echo = Echo::start().await;
    let mut gw = TestGateway::start(&config(&echo, r#"["127.0.0.1"]"#, "", None)).await;
    // What a client forged ("6.6.6.6") is left of what the proxy added.
    let (mut c, status) = open(&gw, "6.6.6.6, 203.0.113.7").await;
    assert_eq!(status, 101);
    let seen = echo.requests.recv().await.unwrap();
    assert_eq!(seen["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    let ev = gw.handshake_event().await;
    assert_eq!(ev.decision, Some("admitted"));
    assert_eq!(ev.client, "203.0.113.7");
    let via = ev.via.as_deref().unwrap();
    assert!(via.starts_with("127.0.0.1:"), "{via}");
    assert!(gw.audit_text().contains(r#""via":"127.0.0.1:"#));
    // The close line names the same client, through the same proxy.
    c.send_frame(0x88, &1000u16.to_be_bytes(), true).await;
    assert_eq!(c.read_close().await.close_code(), Some(1000));
    let close = gw.close_event().await;
    TestGateway::assert_close_repeats(&ev, &close);
}

#[tokio::test]
async fn from_an_address_not_trusted_forwarded_for_is_dropped() {
    let mut echo = Echo::start().await;
    let mut gw = TestGateway::start(&config(&echo, r#"["10.0.0.0/8"]"#, "", None)).await;
    let (_c, status) = open(&gw, "203.0.113.7").await;
    assert_eq!(status, 101);
    let seen = echo.requests.recv().await.unwrap();
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
    let ev = gw.handshake_event().await;
    assert!(ev.client.starts_with("127.0.0.1:"), "{}", ev.client);
    assert_eq!(ev.via, None);
}

#[tokio::test]
async fn per_address_limits_count_each_forwarded_client() {
    let echo = Echo::start().await;
    let config = config(&echo, r#"["127.0.0.0/8"]"#, "max_conns_per_ip = 1", None);
    let mut gw = TestGateway::start(&config).await;
    let (_a, status) = open(&gw, "203.0.113.7").await;
    assert_eq!(status, 101);
    gw.handshake_event().await;
    // Another client through the same proxy has a count of its own.
    let (_b, status) = open(&gw, "198.51.100.9").await;
    assert_eq!(status, 101);
    gw.handshake_event().await;
    let (_c, status) = open(&gw, "203.0.113.7").await;
    assert_eq!(status, 429);
    let ev = gw.handshake_event().await;
    assert_eq!(ev.reason, Some("too_many_connections"));
    assert_eq!(ev.client, "203.0.113.7");
    let detail = ev.detail.as_deref().unwrap();
    assert!(detail.contains("203.0.113.7 already holds 1"), "{detail}");
}

#[tokio::test]
async fn a_trusted_proxys_unreadable_forwarded_for_is_a_bad_handshake() {
    let echo = Echo::start().await;
    let config = config(&echo, r#"["127.0.0.1"]"#, "", None);
    let mut gw = TestGateway::start(&(config + "\n[metrics]\nbind = \"127.0.0.1:0\"\n")).await;
    let (_c, status) = open(&gw, "203.0.113.7, unknown").await;
    assert_eq!(status, 400);
    let ev = gw.handshake_event().await;
    assert_eq!(ev.reason, Some("bad_handshake"));
    assert_eq!(ev.route.as_deref(), Some("/chat"));
    let detail = ev.detail.as_deref().unwrap();
    assert!(
        detail
            .contains("X-Forwarded-For from trusted proxy 127.0.0.1: `unknown` is not an address"),
        "{detail}"
    );
    let mut admin = RawClient::connect(gw.metrics_addr().unwrap()).await;
    let metrics = admin.request("GET", "/metrics", &[]).await.body;
    let line =
        r#"wsgate_handshakes_total{route="/chat",decision="refused",reason="bad_handshake"} 1"#;
    assert!(metrics.contains(line), "no {line:?} in\n{metrics}");
}

#[tokio::test]
async fn http_routes_pass_the_chain_on_and_log_the_client() {
    let (app, echo) = (HttpUpstream::start().await, Echo::start().await);
    let mut gw = TestGateway::start(&config(&echo, r#"["127.0.0.1"]"#, "", Some(&app))).await;
    let mut c = RawClient::connect(gw.addr).await;
    let reply = c
        .request("GET", "/app/page", &[("X-Forwarded-For", "203.0.113.7")])
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let up: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(up["headers"]["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    // The next request on the same connection is another client's.
    let reply = c
        .request("GET", "/app/page", &[("X-Forwarded-For", "198.51.100.9")])
        .await;
    let up: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(up["headers"]["x-forwarded-for"], "198.51.100.9, 127.0.0.1");
    // A refusal (HTTP requests are logged when refused) names the client.
    let reply = c
        .request(
            "GET",
            "/app/page",
            &[("X-Forwarded-For", "192.0.2.1"), ("Host", "evil.example")],
        )
        .await;
    assert_eq!(reply.status, 421);
    let ev = gw.event(|e| e.event == "http").await;
    assert_eq!(
        (ev.client.as_str(), ev.reason),
        ("192.0.2.1", Some("host_not_allowed"))
    );
    assert!(ev.via.as_deref().unwrap().starts_with("127.0.0.1:"));
}

/// The shared config on a listener that takes the PROXY protocol from `trusted`.
fn proxy_protocol_config(echo: &Echo, trusted: &str) -> String {
    config(echo, trusted, "", None).replacen(
        "trusted_proxies =",
        "proxy_protocol = true\ntrusted_proxies =",
        1,
    )
}

/// A connection to the gateway that has sent `header` and nothing else.
async fn after_header(gw: &TestGateway, header: &[u8]) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(header).await.unwrap();
    tcp
}

/// A version 2 header for TCP over IPv4: PROXY (a client) or LOCAL (the balancer's own).
fn v2_header(proxy: bool, source: [u8; 4], port: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[if proxy { 0x21 } else { 0x20 }, 0x11, 0, 12]);
    h.extend_from_slice(&source);
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&port.to_be_bytes());
    h.extend_from_slice(&443u16.to_be_bytes());
    h
}

#[tokio::test]
async fn a_proxy_protocol_header_names_the_client_in_either_version() {
    let mut echo = Echo::start().await;
    let mut gw = TestGateway::start(&proxy_protocol_config(&echo, r#"["127.0.0.1"]"#)).await;
    let headers: [&[u8]; 2] = [
        b"PROXY TCP4 203.0.113.7 127.0.0.1 51234 443\r\n",
        &v2_header(true, [203, 0, 113, 7], 51234),
    ];
    for header in headers {
        let mut c = RawClient::over(after_header(&gw, header).await);
        let reply = c.handshake("/chat", &[ORIGIN]).await;
        assert_eq!(reply.status, 101, "{reply:?}");
        c.send_text("after the header").await;
        assert_eq!(c.read_data().await.payload, b"after the header");
        let seen = echo.requests.recv().await.unwrap();
        assert_eq!(seen["x-forwarded-for"], "203.0.113.7");
        let ev = gw.handshake_event().await;
        assert_eq!(ev.client, "203.0.113.7:51234");
        let via = ev.via.as_deref().unwrap();
        assert!(via.starts_with("127.0.0.1:"), "{via}");
    }
}

#[tokio::test]
async fn a_balancers_own_connection_is_its_own_client() {
    let mut echo = Echo::start().await;
    let mut gw = TestGateway::start(&proxy_protocol_config(&echo, r#"["127.0.0.1"]"#)).await;
    let mut c = RawClient::over(after_header(&gw, &v2_header(false, [10, 0, 0, 9], 1)).await);
    assert_eq!(c.handshake("/chat", &[ORIGIN]).await.status, 101);
    assert_eq!(
        echo.requests.recv().await.unwrap()["x-forwarded-for"],
        "127.0.0.1"
    );
    let ev = gw.handshake_event().await;
    assert!(ev.client.starts_with("127.0.0.1:"), "{}", ev.client);
    assert_eq!(ev.via, None);
}

#[tokio::test]
async fn without_a_header_or_from_an_untrusted_peer_the_connection_is_dropped() {
    let echo = Echo::start().await;
    let config =
        proxy_protocol_config(&echo, r#"["127.0.0.1"]"#) + "\n[metrics]\nbind = \"127.0.0.1:0\"\n";
    let mut gw = TestGateway::start(&config).await;
    // A plain request where the header should be: no answer at all.
    let mut c = RawClient::connect(gw.addr).await;
    c.send_raw(b"GET /chat HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    assert!(c.ends().await, "the connection was answered");
    let ev = gw.handshake_event().await;
    assert_eq!(ev.reason, Some("proxy_header_refused"));
    let detail = ev.detail.as_deref().unwrap();
    assert!(detail.contains("not a PROXY protocol header"), "{detail}");
    let mut admin = RawClient::connect(gw.metrics_addr().unwrap()).await;
    let metrics = admin.request("GET", "/metrics", &[]).await.body;
    let line = r#"wsgate_handshakes_total{route="none",decision="refused",reason="proxy_header_refused"} 1"#;
    assert!(metrics.contains(line), "no {line:?} in\n{metrics}");

    // From a peer that is not a trusted balancer, even a good header.
    let mut gw = TestGateway::start(&proxy_protocol_config(&echo, r#"["10.0.0.0/8"]"#)).await;
    let mut c = RawClient::over(after_header(&gw, &v2_header(true, [203, 0, 113, 7], 1)).await);
    assert!(c.ends().await, "an untrusted peer was answered");
    let ev = gw.handshake_event().await;
    assert_eq!(ev.reason, Some("proxy_header_refused"));
    let detail = ev.detail.as_deref().unwrap();
    assert!(
        detail.contains("127.0.0.1 is not in trusted_proxies"),
        "{detail}"
    );
}

#[tokio::test]
async fn the_header_comes_before_tls() {
    let pki = wsgate_testkit::pki::Pki::new();
    let gate = pki.server("gate", &["localhost"]);
    let mut echo = Echo::start().await;
    let tls = format!(
        "handshake_timeout = \"2s\"\ntls = {{ cert = {:?}, key = {:?} }}",
        gate.cert, gate.key
    );
    let config = proxy_protocol_config(&echo, r#"["127.0.0.1"]"#)
        .replace(r#"handshake_timeout = "2s""#, &tls);
    let mut gw = TestGateway::start(&config).await;
    let tcp = after_header(&gw, b"PROXY TCP6 2001:db8::7 ::1 51234 443\r\n").await;
    let mut c = RawClient::try_tls_over(tcp, pki.client_config(), "localhost")
        .await
        .unwrap();
    let reply = c.handshake("/chat", &[ORIGIN, ("Host", "localhost")]).await;
    assert_eq!(reply.status, 101, "{reply:?}");
    assert_eq!(
        echo.requests.recv().await.unwrap()["x-forwarded-for"],
        "2001:db8::7"
    );
    assert_eq!(gw.handshake_event().await.client, "[2001:db8::7]:51234");
}

#[tokio::test]
async fn a_reload_changes_who_is_trusted_for_new_connections_only() {
    let mut echo = Echo::start().await;
    let untrusted = config(&echo, "[]", "", None);
    let mut gw = TestGateway::start(&untrusted).await;
    // Before: a forwarded address is nobody's word; the peer is the client.
    let (mut before, status) = open(&gw, "203.0.113.7").await;
    assert_eq!(status, 101);
    assert_eq!(
        gw.handshake_event().await.client.split(':').next(),
        Some("127.0.0.1")
    );
    assert_eq!(
        echo.requests.recv().await.unwrap()["x-forwarded-for"],
        "127.0.0.1"
    );

    // Trusting the loopback balancer and asking for its PROXY header: the
    // next connection must start with one, and is the client it names.
    let proxied = proxy_protocol_config(&echo, r#"["127.0.0.1"]"#);
    assert_eq!(gw.reload(&proxied).await, Ok(2));
    let mut c = RawClient::connect(gw.addr).await;
    c.send_raw(b"GET /chat HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    assert!(
        c.ends().await,
        "a connection without the header was answered"
    );
    assert_eq!(
        gw.handshake_event().await.reason,
        Some("proxy_header_refused")
    );
    let header = b"PROXY TCP4 203.0.113.7 127.0.0.1 51234 443\r\n";
    let mut c = RawClient::over(after_header(&gw, header).await);
    assert_eq!(c.handshake("/chat", &[ORIGIN]).await.status, 101);
    assert_eq!(gw.handshake_event().await.client, "203.0.113.7:51234");
    assert_eq!(
        echo.requests.recv().await.unwrap()["x-forwarded-for"],
        "203.0.113.7"
    );
    // The connection opened before the reload goes on as it was.
    before.send_text("still here").await;
    assert_eq!(before.read_data().await.payload, b"still here");

    // And back: a header is no longer read, so it is not a request either.
    assert_eq!(gw.reload(&untrusted).await, Ok(3));
    let mut c = RawClient::over(after_header(&gw, header).await);
    let reply = c
        .handshake_exact("/chat", &[("Host", "localhost"), ORIGIN])
        .await;
    assert_eq!(reply.status, 400, "{reply:?}");
    let (_c, status) = open(&gw, "203.0.113.7").await;
    assert_eq!(status, 101);
    let ev = gw.event(|e| e.decision == Some("admitted")).await;
    assert!(ev.client.starts_with("127.0.0.1:"), "{}", ev.client);
    assert_eq!(ev.via, None);
}
