//! `/metrics`, `/healthz` and `/readyz`: exact counters after scripted traffic.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::ORIGIN;
use wsgate_testkit::client::RawClient;
use wsgate_testkit::gateway::TestGateway;
use wsgate_testkit::upstream::Echo;

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut c = RawClient::connect(addr).await;
    let reply = c.request("GET", path, &[]).await;
    (reply.status, reply.body)
}

#[tokio::test]
async fn counters_after_scripted_traffic() {
    let echo = Echo::start().await;
    let config = common::config(echo.addr, "", "") + "\n[metrics]\nbind = \"127.0.0.1:0\"\n";
    let mut gw = TestGateway::start(&config).await;
    let admin = gw.metrics_addr().unwrap();
    assert_eq!(get(admin, "/healthz").await, (200, "ok\n".into()));
    assert_eq!(get(admin, "/readyz").await.0, 200);

    // One connection: two messages in, two echoed, closed by the client.
    let mut c = RawClient::connect(gw.addr).await;
    assert_eq!(c.handshake("/chat", &[ORIGIN]).await.status, 101);
    for text in ["one", "two"] {
        c.send_text(text).await;
        c.read_data().await;
    }
    c.send_frame(0x88, &1000u16.to_be_bytes(), true).await;
    c.read_close().await;
    gw.close_event().await;
    // Two refusals.
    let mut c = RawClient::connect(gw.addr).await;
    assert_eq!(
        c.handshake("/chat", &[("Origin", "https://evil.example")])
            .await
            .status,
        403
    );
    let mut c = RawClient::connect(gw.addr).await;
    assert_eq!(c.handshake("/nowhere", &[ORIGIN]).await.status, 404);
    // (close_event() above already passed the admitted handshake's event.)
    for _ in 0..2 {
        gw.handshake_event().await;
    }

    let (status, text) = get(admin, "/metrics").await;
    assert_eq!(status, 200);
    for line in [
        r#"wsgate_handshakes_total{route="/chat",decision="admitted",reason="none"} 1"#,
        r#"wsgate_handshakes_total{route="/chat",decision="refused",reason="origin_not_allowed"} 1"#,
        r#"wsgate_handshakes_total{route="none",decision="refused",reason="route_not_found"} 1"#,
        r#"wsgate_closes_total{route="/chat",reason="client_closed",code="1000"} 1"#,
        r#"wsgate_connections_open{route="/chat"} 0"#,
        r#"wsgate_messages_total{route="/chat",direction="in"} 2"#,
        r#"wsgate_messages_total{route="/chat",direction="out"} 2"#,
        "wsgate_handshake_decision_seconds_count 3",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    // Labels never carry users, origins or addresses.
    assert!(
        !text.contains("evil.example") && !text.contains("127.0.0.1"),
        "{text}"
    );
    assert_eq!(get(admin, "/nope").await.0, 404);
}

#[tokio::test]
async fn upstream_failures_and_connect_time_are_counted() {
    // A port that was free a moment ago: nothing listens there.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = common::config(dead, "", "") + "\n[metrics]\nbind = \"127.0.0.1:0\"\n";
    let mut gw = TestGateway::start(&config).await;
    for _ in 0..2 {
        let mut c = RawClient::connect(gw.addr).await;
        assert_eq!(c.handshake("/chat", &[ORIGIN]).await.status, 502);
        let ev = gw.handshake_event().await;
        assert_eq!(ev.reason, Some("upstream_unavailable"));
    }
    let (_, text) = get(gw.metrics_addr().unwrap(), "/metrics").await;
    for line in [
        r#"wsgate_upstream_errors_total{route="/chat"} 2"#,
        "wsgate_upstream_connect_seconds_count 2",
        "wsgate_store_up 1",
        "wsgate_store_errors_total 0",
    ] {
        assert!(text.contains(line), "no {line:?} in\n{text}");
    }
}

#[tokio::test]
async fn limit_hits_are_counted_by_the_limit_that_was_hit() {
    let echo = Echo::start().await;
    let limits = "max_conns_per_ip = 1\nhandshakes_per_ip_per_min = 3\nmessages_per_sec = 1\nburst = 1\nmax_frame = \"1KiB\"";
    let config = common::config(echo.addr, "", limits) + "\n[metrics]\nbind = \"127.0.0.1:0\"\n";
    let mut gw = TestGateway::start(&config).await;
    let close_with = |code: u16| {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(b"bye");
        payload
    };

    // Handshake 1: admitted, then over the message rate (burst 1).
    let mut first = RawClient::connect(gw.addr).await;
    assert_eq!(first.handshake("/chat", &[ORIGIN]).await.status, 101);
    gw.handshake_event().await;
    // Handshake 2: this address already holds its one connection.
    let mut second = RawClient::connect(gw.addr).await;
    assert_eq!(second.handshake("/chat", &[ORIGIN]).await.status, 429);
    gw.handshake_event().await;
    let mut burst = wsgate_testkit::client::encode(0x81, b"a", true);
    burst.extend(wsgate_testkit::client::encode(0x81, b"b", true));
    first.send_raw(&burst).await;
    assert_eq!(first.read_data().await.payload, b"a");
    assert_eq!(first.read_close().await.close_code(), Some(1008));
    first.send_frame(0x88, &close_with(1008), true).await;
    assert_eq!(gw.close_event().await.reason, Some("message_rate_exceeded"));
    // Handshake 3: admitted, then a frame over max_frame.
    let mut third = RawClient::connect(gw.addr).await;
    assert_eq!(third.handshake("/chat", &[ORIGIN]).await.status, 101);
    gw.handshake_event().await;
    third
        .send_raw(&wsgate_testkit::client::encode(0x82, &[0; 2048], true))
        .await;
    assert_eq!(third.read_close().await.close_code(), Some(1009));
    third.send_frame(0x88, &close_with(1009), true).await;
    assert_eq!(gw.close_event().await.reason, Some("message_too_big"));
    // Handshake 4: over three a minute.
    let mut fourth = RawClient::connect(gw.addr).await;
    assert_eq!(fourth.handshake("/chat", &[ORIGIN]).await.status, 429);
    assert_eq!(gw.handshake_event().await.reason, Some("rate_limited"));

    let (_, text) = get(gw.metrics_addr().unwrap(), "/metrics").await;
    for line in [
        r#"wsgate_limit_hits_total{kind="max_conns_per_ip"} 1"#,
        r#"wsgate_limit_hits_total{kind="handshakes_per_ip_per_min"} 1"#,
        r#"wsgate_limit_hits_total{kind="message_rate"} 1"#,
        r#"wsgate_limit_hits_total{kind="message_size"} 1"#,
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    assert!(!text.contains(r#"kind="max_connections""#), "{text}");
}

#[tokio::test]
async fn the_admin_endpoint_answers_to_addresses_localhost_and_listed_names_only() {
    let echo = Echo::start().await;
    let config = common::config(echo.addr, "", "")
        + "\n[metrics]\nbind = \"127.0.0.1:0\"\nhosts = [\"metrics.internal\"]\n";
    let gw = TestGateway::start(&config).await;
    let admin = gw.metrics_addr().unwrap();
    let port = admin.port();
    let with_host = |host: String| async move {
        let mut c = RawClient::connect(admin).await;
        c.request("GET", "/healthz", &[("Host", &host)]).await
    };
    for host in [
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
        "localhost".to_owned(),
        format!("METRICS.internal.:{port}"),
    ] {
        let reply = with_host(host.clone()).await;
        assert_eq!((reply.status, reply.body.as_str()), (200, "ok\n"), "{host}");
    }
    // A name rebound to this address by a hostile page's DNS.
    let reply = with_host(format!("rebound.attacker.example:{port}")).await;
    assert_eq!(reply.status, 421);
    assert!(
        reply.body.contains("not in [metrics] hosts"),
        "{}",
        reply.body
    );
    // Before anything else: a rebound page's POST is refused the same way.
    let mut c = RawClient::connect(admin).await;
    let reply = c
        .request(
            "POST",
            "/revoke",
            &[
                ("Host", "rebound.attacker.example"),
                ("Content-Type", "application/json"),
            ],
        )
        .await;
    assert_eq!(reply.status, 421, "{}", reply.body);
    // No Host at all (HTTP/1.0) is no address either.
    let mut c = RawClient::connect(admin).await;
    c.send_raw(b"GET /metrics HTTP/1.0\r\n\r\n").await;
    let reply = c.read_reply().await;
    assert_eq!(reply.status, 421);
    assert!(reply.body.contains("no Host header"), "{}", reply.body);
}
