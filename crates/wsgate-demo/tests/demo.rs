//! The demo's servers over real sockets, with a client that sends what a
//! browser sends (the browser itself drives them in the e2e tests): the
//! chat works through the gateway, the hijack is refused there and
//! succeeds against the application alone.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::sync::Arc;

use wsgate_demo::{Demo, Options};
use wsgate_testkit::client::RawClient;

/// Logs in through the gateway; the session cookie (`session=...`).
async fn login(demo: &Demo) -> String {
    let mut c = RawClient::connect(demo.gateway).await;
    let host = format!("localhost:{}", demo.gateway.port());
    c.send_raw(
        format!(
            "POST /login HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 10\r\n\r\nuser=alice"
        )
        .as_bytes(),
    )
    .await;
    let reply = c.read_reply().await;
    assert_eq!(reply.status, 303, "{}", reply.body);
    let cookie = reply.header("set-cookie").unwrap();
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    cookie.split(';').next().unwrap().to_owned()
}

async fn handshake(
    addr: std::net::SocketAddr,
    origin: &str,
    cookie: &str,
) -> (u16, RawClient, String) {
    let mut c = RawClient::connect(addr).await;
    let host = format!("localhost:{}", addr.port());
    let reply = c
        .handshake(
            "/chat",
            &[("Host", &host), ("Origin", origin), ("Cookie", cookie)],
        )
        .await;
    (reply.status, c, reply.body)
}

async fn next_event(
    events: &mut tokio::sync::broadcast::Receiver<Arc<wsgate_gateway::AuditEvent>>,
    kind: &str,
) -> Arc<wsgate_gateway::AuditEvent> {
    tokio::time::timeout(wsgate_testkit::WAIT, async {
        loop {
            let ev = events.recv().await.unwrap();
            if ev.event == kind {
                return ev;
            }
        }
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn the_chat_works_through_the_gateway_and_the_hijack_is_refused_there_only() {
    let demo = Demo::start(Options::default()).await.unwrap();
    let mut events = demo.audit().subscribe();
    let cookie = login(&demo).await;
    let app = wsgate_demo::url("http", demo.gateway, "");
    let attacker = wsgate_demo::url("http", demo.attacker, "");

    // The chat's own page: admitted as alice, and the chat answers.
    let (status, mut c, body) = handshake(demo.gateway, &app, &cookie).await;
    assert_eq!(status, 101, "{body}");
    let ev = next_event(&mut events, "handshake").await;
    assert_eq!(
        (ev.decision, ev.user.as_deref()),
        (Some("admitted"), Some("alice"))
    );
    let history = c.read_data().await;
    assert!(String::from_utf8_lossy(&history.payload).contains("launch code"));

    // The attacker's page, with the same cookie: refused by the gateway.
    let (status, _, body) = handshake(demo.gateway, &attacker, &cookie).await;
    assert_eq!((status, body.trim()), (403, "origin_not_allowed"));
    let ev = next_event(&mut events, "handshake").await;
    assert_eq!(ev.origin.as_deref(), Some(attacker.as_str()));
    // A sandboxed frame: Origin null.
    let (status, _, body) = handshake(demo.gateway, "null", &cookie).await;
    assert_eq!((status, body.trim()), (403, "origin_not_allowed"));

    // The same attack on the application alone succeeds and reads the chat.
    let (status, mut stolen, _) = handshake(demo.backend, &attacker, &cookie).await;
    assert_eq!(status, 101);
    let history = stolen.read_data().await;
    assert!(String::from_utf8_lossy(&history.payload).contains("launch code"));
}

#[tokio::test]
async fn pages_through_the_gateway_carry_the_csp_and_the_console_answers() {
    let demo = Demo::start(Options::default()).await.unwrap();
    let mut c = RawClient::connect(demo.gateway).await;
    let host = format!("localhost:{}", demo.gateway.port());
    let reply = c.request("GET", "/", &[("Host", &host)]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-security-policy"),
        Some("connect-src 'self'; report-uri /.wsgate/csp-report")
    );
    assert!(
        reply
            .body
            .contains(&wsgate_demo::url("ws", demo.c2, "/bot"))
    );
    let mut c = RawClient::connect(demo.console).await;
    let reply = c.request("GET", "/", &[("Host", "localhost")]).await;
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .body
            .contains(&wsgate_demo::url("http", demo.attacker, "/"))
    );
    assert_eq!(demo.c2_hits(), 0);
}

#[tokio::test]
async fn the_console_streams_the_gateways_decisions_as_they_happen() {
    let demo = Demo::start(Options::default()).await.unwrap();
    let mut events = demo.audit().subscribe();
    let mut console = RawClient::connect(demo.console).await;
    console
        .send_raw(b"GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    let head = console.read_reply().await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    // The stream is open: a decision made now is on it.
    let attacker = wsgate_demo::url("http", demo.attacker, "");
    let (status, _, _) = handshake(demo.gateway, &attacker, "session=none").await;
    assert_eq!(status, 403);
    next_event(&mut events, "handshake").await;
    let line = console.read_until(b"\n\n").await;
    let line = String::from_utf8_lossy(&line);
    let json = line
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap_or_else(|| panic!("not an event: {line:?}"));
    let ev: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(
        (&ev["event"], &ev["reason"], &ev["origin"]),
        (
            &"handshake".into(),
            &"origin_not_allowed".into(),
            &attacker.as_str().into()
        )
    );
}
