//! Limits over real sockets: message and byte rates per connection,
//! handshakes per minute and connections per client address and per user,
//! the gateway's own bound on connections, and its bound on memory held for
//! assembling messages.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::ORIGIN;
use wsgate_testkit::client::{RawClient, encode};
use wsgate_testkit::gateway::TestGateway;
use wsgate_testkit::jwt::{self, claims};
use wsgate_testkit::upstream::Echo;

const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";

async fn open(gw: &TestGateway, headers: &[(&str, &str)]) -> RawClient {
    let mut c = RawClient::connect(gw.addr).await;
    let reply = c.handshake("/chat", headers).await;
    assert_eq!(reply.status, 101, "{}", reply.body);
    c
}

/// Refused with `status` and `reason` as the body; returns the reply for more checks.
async fn refused(
    gw: &mut TestGateway,
    headers: &[(&str, &str)],
    status: u16,
    reason: &str,
) -> wsgate_testkit::client::Reply {
    let mut c = RawClient::connect(gw.addr).await;
    let reply = c.handshake("/chat", headers).await;
    assert_eq!(reply.status, status);
    assert_eq!(reply.body.trim(), reason);
    let ev = gw.handshake_event().await;
    assert_eq!((ev.decision, ev.reason), (Some("refused"), Some(reason)));
    reply
}

#[tokio::test]
async fn a_burst_passes_and_the_message_after_it_closes_with_1008() {
    let echo = Echo::start().await;
    let mut gw = TestGateway::start(&common::config(
        echo.addr,
        "",
        "messages_per_sec = 1\nburst = 3",
    ))
    .await;
    let mut c = open(&gw, &[ORIGIN]).await;
    // Six messages in one write: the burst of three goes through, the fourth
    // is over the rate (a second's refill cannot happen within one write).
    let mut burst = Vec::new();
    for i in 0..6 {
        burst.extend(encode(0x81, format!("m{i}").as_bytes(), true));
    }
    c.send_raw(&burst).await;
    for i in 0..3 {
        assert_eq!(c.read_data().await.payload, format!("m{i}").as_bytes());
    }
    let close = c.read_close().await;
    assert_eq!(
        (close.close_code(), close.close_reason().as_str()),
        (Some(1008), "message_rate_exceeded")
    );
    let ev = gw.close_event().await;
    assert_eq!(ev.reason, Some("message_rate_exceeded"));
    assert_eq!(ev.messages_in, Some(3));
    let detail = ev.detail.as_deref().unwrap_or_default();
    assert!(
        detail.contains("1 messages per second (burst 3)"),
        "{detail}"
    );
}

#[tokio::test]
async fn more_bytes_than_a_second_allows_closes_with_1008() {
    let echo = Echo::start().await;
    let mut gw =
        TestGateway::start(&common::config(echo.addr, "", "bytes_per_sec = \"1KiB\"")).await;
    let mut c = open(&gw, &[ORIGIN]).await;
    c.send_text("small").await;
    assert_eq!(c.read_data().await.payload, b"small");
    c.send_frame(0x82, &[7u8; 2048], true).await;
    let close = c.read_close().await;
    assert_eq!(
        (close.close_code(), close.close_reason().as_str()),
        (Some(1008), "message_rate_exceeded")
    );
    let ev = gw.close_event().await;
    let detail = ev.detail.as_deref().unwrap_or_default();
    assert!(detail.contains("1024 bytes per second"), "{detail}");
}

#[tokio::test]
async fn handshakes_per_minute_are_counted_per_address_with_retry_after() {
    let echo = Echo::start().await;
    let mut gw = TestGateway::start(&common::config(
        echo.addr,
        "",
        "handshakes_per_ip_per_min = 2",
    ))
    .await;
    let _a = open(&gw, &[ORIGIN]).await;
    gw.handshake_event().await;
    // A refused handshake counts too: guessing costs the same as connecting.
    refused(
        &mut gw,
        &[("Origin", "https://evil.example")],
        403,
        "origin_not_allowed",
    )
    .await;
    let reply = refused(&mut gw, &[ORIGIN], 429, "rate_limited").await;
    // Two per minute: the next one is earned 30 s after the first.
    let after: u64 = reply.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=30).contains(&after), "Retry-After: {after}");
}

#[tokio::test]
async fn connections_per_address_are_bounded_and_given_back_on_close() {
    let echo = Echo::start().await;
    let mut gw = TestGateway::start(&common::config(echo.addr, "", "max_conns_per_ip = 2")).await;
    let mut a = open(&gw, &[ORIGIN]).await;
    gw.handshake_event().await;
    let _b = open(&gw, &[ORIGIN]).await;
    gw.handshake_event().await;
    let reply = refused(&mut gw, &[ORIGIN], 429, "too_many_connections").await;
    assert!(reply.header("retry-after").is_none());
    let ev = gw.audit_text();
    assert!(ev.contains("127.0.0.1 already holds 2 connections"), "{ev}");
    a.send_frame(0x88, &1000u16.to_be_bytes(), true).await;
    a.read_close().await;
    gw.close_event().await;
    let _c = open(&gw, &[ORIGIN]).await;
}

#[tokio::test]
async fn connections_per_user_are_bounded_across_addresses() {
    let echo = Echo::start().await;
    let config = common::config(echo.addr, "", "max_conns_per_user = 1")
        .replace("auth = \"none\"", "auth = [\"jwt\"]")
        + r#"
[auth.jwt]
hs256_secret_env = "JWT_SECRET"
algorithms = ["HS256"]
"#;
    let mut gw = TestGateway::start_with_env(&config, None, &[("JWT_SECRET", SECRET)]).await;
    let alice = format!("Bearer {}", jwt::hs256(SECRET, &claims("alice", 300)));
    let bob = format!("Bearer {}", jwt::hs256(SECRET, &claims("bob", 300)));
    let _a = open(&gw, &[ORIGIN, ("Authorization", &alice)]).await;
    gw.handshake_event().await;
    refused(
        &mut gw,
        &[ORIGIN, ("Authorization", &alice)],
        429,
        "too_many_connections",
    )
    .await;
    assert!(
        gw.audit_text()
            .contains("user \\\"alice\\\" already holds 1")
    );
    let _b = open(&gw, &[ORIGIN, ("Authorization", &bob)]).await;
}

#[tokio::test]
async fn the_gateway_holds_at_most_max_connections() {
    let echo = Echo::start().await;
    let config = common::config(echo.addr, "", "") + "\n[limits]\nmax_connections = 2\n";
    let mut gw = TestGateway::start(&config).await;
    let mut a = open(&gw, &[ORIGIN]).await;
    gw.handshake_event().await;
    let _b = open(&gw, &[ORIGIN]).await;
    gw.handshake_event().await;
    refused(&mut gw, &[ORIGIN], 429, "too_many_connections").await;
    assert!(gw.audit_text().contains("max_connections (2)"));
    a.send_frame(0x88, &1000u16.to_be_bytes(), true).await;
    a.read_close().await;
    gw.close_event().await;
    let _c = open(&gw, &[ORIGIN]).await;
}

#[tokio::test]
async fn connections_still_at_http_are_bounded_too() {
    use tokio::io::AsyncReadExt as _;
    let echo = Echo::start().await;
    let config = common::config(echo.addr, "", "") + "\n[limits]\nmax_connections = 2\n";
    let mut gw = TestGateway::start(&config).await;
    // Two connections that say nothing hold both places at HTTP
    // (accepted in order, each place taken as it is accepted).
    let mut a = RawClient::connect(gw.addr).await;
    let _b = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    // The third is closed unread, at once, not after its handshake_timeout.
    let mut c = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let ev = gw.handshake_event().await;
    assert_eq!(
        (ev.decision, ev.reason),
        (Some("refused"), Some("too_many_connections"))
    );
    let detail = ev.detail.as_deref().unwrap();
    assert!(
        detail.contains("2 connections are already at HTTP"),
        "{detail}"
    );
    assert_eq!(
        c.read(&mut [0u8; 16]).await.unwrap(),
        0,
        "closed, unanswered"
    );
    // Once a is upgraded, its place is given back (the relay echoing is the
    // sign: the upgrade and the release happen in one poll of a's task): a
    // new connection is admitted (a and d then hold both WebSocket slots).
    let reply = a.handshake("/chat", &[ORIGIN]).await;
    assert_eq!(reply.status, 101, "{}", reply.body);
    gw.handshake_event().await;
    a.send_text("up").await;
    assert_eq!(a.read_data().await.payload, b"up");
    let _d = open(&gw, &[ORIGIN]).await;
    let ev = gw.handshake_event().await;
    assert_eq!(ev.decision, Some("admitted"));
}

#[tokio::test]
async fn one_address_holds_at_most_max_http_conns_per_ip_unless_it_is_a_trusted_proxy() {
    use tokio::io::AsyncReadExt as _;
    let echo = Echo::start().await;
    let config = common::config(echo.addr, "", "") + "\n[limits]\nmax_http_conns_per_ip = 2\n";
    let mut gw = TestGateway::start(&config).await;
    let _a = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let mut b = RawClient::connect(gw.addr).await;
    let mut c = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let ev = gw.handshake_event().await;
    assert_eq!(ev.reason, Some("too_many_connections"));
    let detail = ev.detail.as_deref().unwrap();
    assert!(
        detail.contains(
            "127.0.0.1 already holds 2 connections at HTTP ([limits] max_http_conns_per_ip)"
        ),
        "{detail}"
    );
    assert_eq!(c.read(&mut [0u8; 16]).await.unwrap(), 0, "closed unread");
    // Upgraded, b is no longer at HTTP: its address has room again.
    assert_eq!(b.handshake("/chat", &[ORIGIN]).await.status, 101);
    gw.handshake_event().await;
    b.send_text("up").await;
    assert_eq!(b.read_data().await.payload, b"up");
    let _d = open(&gw, &[ORIGIN]).await;
    assert_eq!(gw.handshake_event().await.decision, Some("admitted"));

    // A balancer brings every client from its own address.
    let behind = config.replace(
        "handshake_timeout = \"2s\"",
        "handshake_timeout = \"2s\"\ntrusted_proxies = [\"127.0.0.1\"]",
    );
    let mut gw = TestGateway::start(&behind).await;
    let _idle: Vec<_> =
        futures_util::future::join_all((0..3).map(|_| tokio::net::TcpStream::connect(gw.addr)))
            .await;
    // Refusing any of the three would have been logged before this.
    let _e = open(&gw, &[ORIGIN, ("X-Forwarded-For", "198.51.100.7")]).await;
    let ev = gw.handshake_event().await;
    assert_eq!(ev.decision, Some("admitted"), "{ev:?}");
}

#[tokio::test]
async fn a_flood_of_sockets_closed_at_accept_is_counted_in_full_and_logged_within_a_budget() {
    use tokio::io::AsyncReadExt as _;
    const FLOOD: usize = 400;
    let echo = Echo::start().await;
    let config = common::config(echo.addr, "", "")
        + "\n[limits]\nmax_connections = 1\n\n[metrics]\nbind = \"127.0.0.1:0\"\n";
    let gw = TestGateway::start(&config).await;
    let _holds_the_place = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    for _ in 0..FLOOD {
        let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        // Closed unread (end of stream, or a reset): refused and decided.
        assert!(matches!(s.read(&mut [0u8; 16]).await, Ok(0) | Err(_)));
    }
    let mut c = RawClient::connect(gw.metrics_addr().unwrap()).await;
    let metrics = c.request("GET", "/metrics", &[]).await.body;
    // Every one counted, logged or not.
    for counted in [
        format!("wsgate_limit_hits_total{{kind=\"max_connections\"}} {FLOOD}"),
        format!(
            "wsgate_handshakes_total{{route=\"none\",decision=\"refused\",reason=\"too_many_connections\"}} {FLOOD}"
        ),
    ] {
        assert!(metrics.contains(&counted), "{counted} in {metrics}");
    }
    // 200 at once and 50 a second after: however slow this machine, far
    // fewer lines than sockets.
    let lines = gw.audit_text().matches("closed unread").count();
    assert!((200..FLOOD).contains(&lines), "{lines} lines");
}

#[tokio::test]
async fn assembly_memory_is_shared_and_the_message_over_it_closes_with_1013() {
    let echo = Echo::start().await;
    let config = common::config(echo.addr, "", "")
        + "\n[route.messages]\njson = true\n\n[limits]\nassembly_memory = \"1KiB\"\n";
    let mut gw = TestGateway::start(&config).await;
    let mut a = open(&gw, &[ORIGIN]).await;
    let mut b = open(&gw, &[ORIGIN]).await;
    // A holds 800 bytes of an unfinished message. The ping behind it is
    // answered only after the fragment was taken in: the readiness signal.
    let body = format!("\"{}\"", "a".repeat(798));
    a.send_frame(0x01, body.as_bytes(), true).await;
    a.send_frame(0x89, b"sync", true).await;
    assert_eq!(a.read_frame().await.unwrap().opcode(), 0xA);
    // B's 400 bytes do not fit in what is left.
    b.send_frame(0x01, format!("\"{}", "b".repeat(399)).as_bytes(), true)
        .await;
    let close = b.read_close().await;
    assert_eq!(
        (close.close_code(), close.close_reason().as_str()),
        (Some(1013), "overloaded")
    );
    let ev = gw.close_event().await;
    assert_eq!(ev.reason, Some("overloaded"));
    // A is not disturbed: it finishes its message and gets it back whole.
    a.send_frame(0x80, b"", true).await;
    assert_eq!(a.read_data().await.payload, body.as_bytes());
    // And the memory came back: a new message of the same size fits.
    let mut c = open(&gw, &[ORIGIN]).await;
    c.send_text(&body).await;
    assert_eq!(c.read_data().await.payload, body.as_bytes());
}

/// A gateway with JWT auth and an admin endpoint.
async fn jwt_gateway(echo: &Echo) -> TestGateway {
    let config = common::config(echo.addr, "", "").replace("auth = \"none\"", "auth = [\"jwt\"]")
        + r#"
[metrics]
bind = "127.0.0.1:0"

[auth.jwt]
hs256_secret_env = "JWT_SECRET"
algorithms = ["HS256"]
"#;
    TestGateway::start_with_env(&config, None, &[("JWT_SECRET", SECRET)]).await
}

async fn post_revoke(gw: &TestGateway, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let admin = gw.metrics_addr().unwrap();
    let mut c = RawClient::connect(admin).await;
    let len = body.len().to_string();
    let mut all = headers.to_vec();
    all.push(("Content-Length", &len));
    let mut head = "POST /revoke HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n".to_owned();
    for (k, v) in &all {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    head.push_str(body);
    c.send_raw(head.as_bytes()).await;
    let reply = c.read_reply().await;
    (reply.status, reply.body)
}

#[tokio::test]
async fn revoking_a_user_closes_their_connections_and_refuses_them() {
    let echo = Echo::start().await;
    let mut gw = jwt_gateway(&echo).await;
    let alice = format!("Bearer {}", jwt::hs256(SECRET, &claims("alice", 300)));
    let bob = format!("Bearer {}", jwt::hs256(SECRET, &claims("bob", 300)));
    let mut a = open(&gw, &[ORIGIN, ("Authorization", &alice)]).await;
    gw.handshake_event().await;
    let mut b = open(&gw, &[ORIGIN, ("Authorization", &bob)]).await;
    gw.handshake_event().await;
    let json = ("Content-Type", "application/json");
    let (status, body) = post_revoke(&gw, &[json], r#"{"user": "alice", "for": "10m"}"#).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"closed_here\":1"), "{body}");
    let close = a.read_close().await;
    assert_eq!(
        (close.close_code(), close.close_reason().as_str()),
        (Some(1008), "revoked")
    );
    a.send_frame(0x88, &1008u16.to_be_bytes(), true).await;
    let ev = gw.event(|e| e.event == "revoke").await;
    assert_eq!(ev.user.as_deref(), Some("alice"));
    let ev = gw.close_event().await;
    assert_eq!(ev.reason, Some("revoked"));
    refused(
        &mut gw,
        &[ORIGIN, ("Authorization", &alice)],
        403,
        "forbidden",
    )
    .await;
    b.send_text("bob stays").await;
    assert_eq!(b.read_data().await.payload, b"bob stays");
}

#[tokio::test]
async fn the_revoke_endpoint_refuses_what_a_browser_could_send() {
    let echo = Echo::start().await;
    let gw = jwt_gateway(&echo).await;
    let json = ("Content-Type", "application/json");
    let body = r#"{"user": "alice"}"#;
    for (headers, want) in [
        (vec![json, ("Origin", "https://evil.example")], 403),
        (vec![("Content-Type", "text/plain")], 415),
        (vec![], 415),
    ] {
        assert_eq!(
            post_revoke(&gw, &headers, body).await.0,
            want,
            "{headers:?}"
        );
    }
    for bad in [
        r#"{"for": "10m"}"#,
        r#"{"user": "alice", "for": "soon"}"#,
        r#"{"user": "alice", "for": "1m", "until": 1}"#,
        "not json",
        // Past the end of the system's clock: refused, not a panic.
        r#"{"user": "alice", "until": 18446744073709551615}"#,
        r#"{"user": "alice", "for": "300000000000y"}"#,
    ] {
        assert_eq!(post_revoke(&gw, &[json], bad).await.0, 400, "{bad}");
    }
    let (status, body) = post_revoke(&gw, &[json], r#"{"user": "alice", "for": "101y"}"#).await;
    assert_eq!(status, 400);
    assert!(
        body.contains("`for`: `101y` is longer than 100 years"),
        "{body}"
    );
    let (status, body) = post_revoke(
        &gw,
        &[json],
        r#"{"user": "alice", "until": 18446744073709551615}"#,
    )
    .await;
    assert_eq!(
        (status, body.as_str()),
        (
            400,
            "{\"error\":\"`until` is past the end of the system's clock\"}\n"
        )
    );
    let mut c = RawClient::connect(gw.metrics_addr().unwrap()).await;
    assert_eq!(c.request("GET", "/revoke", &[]).await.status, 405);
}

/// With `[metrics] admin_token_env`, `/revoke` needs the token as a bearer
/// credential; no other, and not without one.
#[tokio::test]
async fn the_revoke_endpoint_needs_the_admin_token_when_one_is_set() {
    const TOKEN: &str = "an-admin-token-of-at-least-32-bytes!";
    let echo = Echo::start().await;
    let config = common::config(echo.addr, "", "")
        + "\n[metrics]\nbind = \"127.0.0.1:0\"\nadmin_token_env = \"ADMIN_TOKEN\"\n";
    let mut gw = TestGateway::start_with_env(&config, None, &[("ADMIN_TOKEN", TOKEN)]).await;
    let json = ("Content-Type", "application/json");
    let body = r#"{"user": "alice"}"#;
    let wrong = format!("Bearer {}", TOKEN.replace('!', "?"));
    let right = format!("Bearer {TOKEN}");
    for (headers, want) in [
        (vec![json], 401),
        (vec![json, ("Authorization", wrong.as_str())], 401),
        (vec![json, ("Authorization", TOKEN)], 401),
        (vec![json, ("Authorization", right.as_str())], 200),
    ] {
        let (status, answer) = post_revoke(&gw, &headers, body).await;
        assert_eq!(status, want, "{headers:?}: {answer}");
    }
    let ev = gw.event(|e| e.event == "revoke").await;
    assert_eq!(ev.decision, Some("revoked"));
}
