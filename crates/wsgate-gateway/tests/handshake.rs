//! Every handshake refusal this stage owns, over real sockets: the status,
//! the body, the headers, and the audit line.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::ORIGIN;
use tokio::task::JoinHandle;
use wsgate_testkit::client::{RawClient, Reply};
use wsgate_testkit::gateway::TestGateway;
use wsgate_testkit::upstream::{Echo, Raw};

async fn refused(
    gw: &mut TestGateway,
    path: &str,
    extra: &[(&str, &str)],
    status: u16,
    reason: &str,
) {
    let mut c = RawClient::connect(gw.addr).await;
    let reply = c.handshake(path, extra).await;
    assert_eq!(reply.status, status, "{path} {extra:?}: {reply:?}");
    assert_eq!(reply.body, format!("{reason}\n"));
    assert_eq!(reply.header("connection"), Some("close"));
    assert!(c.ends().await, "the connection stays open after a refusal");
    let ev = gw.handshake_event().await;
    assert_eq!(
        (ev.decision, ev.reason, ev.status),
        (Some("refused"), Some(reason), Some(status))
    );
}

async fn gateway() -> (Echo, TestGateway) {
    let echo = Echo::start().await;
    let gw = TestGateway::start(&common::config(echo.addr, "", "")).await;
    (echo, gw)
}

#[tokio::test]
async fn rfc_6455_rules_are_checked_before_anything_else() {
    let (_echo, mut gw) = gateway().await;
    refused(
        &mut gw,
        "/chat",
        &[ORIGIN, ("Upgrade", "")],
        400,
        "bad_handshake",
    )
    .await;
    refused(
        &mut gw,
        "/chat",
        &[ORIGIN, ("Connection", "keep-alive")],
        400,
        "bad_handshake",
    )
    .await;
    refused(
        &mut gw,
        "/chat",
        &[ORIGIN, ("Sec-WebSocket-Key", "")],
        400,
        "bad_handshake",
    )
    .await;
    refused(
        &mut gw,
        "/chat",
        &[ORIGIN, ("Sec-WebSocket-Key", "c2hvcnQ=")],
        400,
        "bad_handshake",
    )
    .await;
    refused(
        &mut gw,
        "/chat",
        &[ORIGIN, ("Sec-WebSocket-Protocol", "a b")],
        400,
        "bad_handshake",
    )
    .await;
    // Unknown paths that are not WebSocket requests at all are a missing route.
    refused(
        &mut gw,
        "/nowhere",
        &[ORIGIN, ("Upgrade", "")],
        404,
        "route_not_found",
    )
    .await;
}

#[tokio::test]
async fn an_unsupported_version_gets_426_naming_13() {
    let (_echo, mut gw) = gateway().await;
    for version in ["8", "", "13, 8", "14"] {
        let mut c = RawClient::connect(gw.addr).await;
        let reply = c
            .handshake("/chat", &[ORIGIN, ("Sec-WebSocket-Version", version)])
            .await;
        assert_eq!(reply.status, 426, "version {version:?}");
        assert_eq!(reply.header("sec-websocket-version"), Some("13"));
        assert_eq!(reply.body, "version_unsupported\n");
        assert_eq!(
            gw.handshake_event().await.reason,
            Some("version_unsupported")
        );
    }
}

/// A handshake names its resource by a path every hop reads alike, and has
/// no body: bytes after its head are frames. An absolute URI's authority
/// would outrank the `Host` the gateway checked; `/chat/../admin` would
/// reach an upstream that resolves it as `/admin`, past that route's
/// policy; a declared body leaves each hop to decide where it ends and the
/// frames begin. All are refused, whatever follows.
#[tokio::test]
async fn an_absolute_target_or_a_body_is_a_bad_handshake() {
    let (_echo, mut gw) = gateway().await;
    let head = |target: &str, extra: &str| {
        format!(
            "GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: {key}\r\nOrigin: https://app.example.com\r\n{extra}\r\n",
            key = wsgate_testkit::client::KEY
        )
    };
    let cases = [
        (head("https://evil.example/chat", ""), "not a path"),
        (head("/chat/../admin", ""), "dot-segment"),
        (head("/chat/%2E%2e/admin", ""), "dot-segment"),
        (head("/chat/..%2Fadmin", ""), "encoded slash"),
        (head("/chat;x", ""), "parameter"),
        (head("//chat", ""), "empty segment"),
        (head("/%63hat", ""), "escaped letter"),
        (
            head("/chat", "Content-Length: 6\r\n") + "abcdef",
            "Content-Length",
        ),
        (
            head("/chat", "Transfer-Encoding: chunked\r\n") + "5\r\nhello\r\n0\r\n\r\n",
            "Transfer-Encoding",
        ),
    ];
    for (request, why) in cases {
        let mut c = RawClient::connect(gw.addr).await;
        c.send_raw(request.as_bytes()).await;
        let reply = c.read_reply().await;
        assert_eq!(reply.status, 400, "{why}: {reply:?}");
        assert_eq!(reply.body, "bad_handshake\n");
        let ev = gw.handshake_event().await;
        assert_eq!(ev.reason, Some("bad_handshake"));
        assert!(ev.detail.as_deref().unwrap().contains(why), "{ev:?}");
    }
}

#[tokio::test]
async fn duplicate_security_headers_are_a_bad_handshake_not_first_wins() {
    let (_echo, mut gw) = gateway().await;
    let base = [
        ("Host", "127.0.0.1"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", wsgate_testkit::client::KEY),
        ("Sec-WebSocket-Version", "13"),
        ORIGIN,
    ];
    for dup in [
        ("Origin", "https://evil.example"),
        ("Host", "evil.example"),
        ("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAA=="),
    ] {
        let mut headers = base.to_vec();
        headers.push(dup);
        let mut c = RawClient::connect(gw.addr).await;
        let reply = c.handshake_exact("/chat", &headers).await;
        assert_eq!(reply.status, 400, "duplicate {}", dup.0);
        let ev = gw.handshake_event().await;
        assert_eq!(ev.reason, Some("bad_handshake"));
        assert!(
            ev.detail.as_deref().unwrap().contains("more than once"),
            "{ev:?}"
        );
    }
}

#[tokio::test]
async fn admission_refusals_and_their_statuses() {
    let (_echo, mut gw) = gateway().await;
    refused(&mut gw, "/other", &[ORIGIN], 404, "route_not_found").await;
    refused(&mut gw, "/chatroom", &[ORIGIN], 404, "route_not_found").await;
    refused(&mut gw, "/chat", &[], 403, "origin_missing").await;
    refused(
        &mut gw,
        "/chat",
        &[("Origin", "https://evil.example")],
        403,
        "origin_not_allowed",
    )
    .await;
    // DNS rebinding: the attacker's name in Host, its own page as Origin.
    refused(
        &mut gw,
        "/chat",
        &[("Host", "evil.example"), ("Origin", "http://evil.example")],
        421,
        "host_not_allowed",
    )
    .await;
}

#[tokio::test]
async fn a_head_larger_than_the_limit_gets_431() {
    let (_echo, mut gw) = gateway().await;
    let big = "a".repeat(40 * 1024);
    let mut c = RawClient::connect(gw.addr).await;
    let reply = c.handshake("/chat", &[ORIGIN, ("Cookie", &big)]).await;
    assert_eq!(reply.status, 431);
    let ev = gw.handshake_event().await;
    assert_eq!(
        (ev.reason, ev.status),
        (Some("headers_too_large"), Some(431))
    );
}

#[tokio::test]
async fn an_upstream_that_is_down_is_502() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut gw = TestGateway::start(&common::config(closed, "", "")).await;
    refused(&mut gw, "/chat", &[ORIGIN], 502, "upstream_unavailable").await;
}

/// A gateway in front of an upstream the test answers by hand, with
/// `limits` for the route, and a client's handshake through it in flight.
async fn handshake_to_raw(limits: &str) -> (Raw, TestGateway, JoinHandle<Reply>) {
    let raw = Raw::start().await;
    let gw = TestGateway::start(&common::config(raw.addr, "", limits)).await;
    let mut c = RawClient::connect(gw.addr).await;
    let reply = tokio::spawn(async move { c.handshake("/chat", &[ORIGIN]).await });
    (raw, gw, reply)
}

#[tokio::test]
async fn an_upstream_that_accepts_but_never_answers_times_out_as_502() {
    let (mut raw, mut gw, reply) = handshake_to_raw(r#"connect_timeout = "300ms""#).await;
    // The upstream reads the request and says nothing.
    let _silent = raw.accept().await;
    assert_eq!(reply.await.unwrap().status, 502);
    let ev = gw.handshake_event().await;
    assert_eq!(ev.reason, Some("upstream_unavailable"));
    assert!(
        ev.detail.as_deref().unwrap().contains("timed out"),
        "{ev:?}"
    );
    assert_eq!(ev.listener, gw.addr.to_string());
}

#[tokio::test]
async fn an_upstream_that_hangs_up_without_answering_is_502_at_once() {
    let (mut raw, mut gw, reply) = handshake_to_raw(r#"connect_timeout = "60s""#).await;
    // The upstream reads the request and closes its socket.
    drop(raw.accept().await);
    // Well before the connect timeout: the client's wait would panic first.
    assert_eq!(reply.await.unwrap().status, 502);
    let ev = gw.handshake_event().await;
    assert_eq!(ev.reason, Some("upstream_unavailable"));
    let detail = ev.detail.as_deref().unwrap();
    assert!(!detail.contains("timed out"), "{ev:?}");
}

/// The upstream may send its first frame in the same write as its 101: the
/// gateway reads the head and no further, and the frame reaches the client
/// after the client's own 101, through the relay's checks.
#[tokio::test]
async fn a_frame_sent_with_the_upstreams_101_reaches_the_client() {
    let mut raw = Raw::start().await;
    let gw = TestGateway::start(&common::config(raw.addr, "", "")).await;
    let mut c = RawClient::connect(gw.addr).await;
    let client = tokio::spawn(async move {
        let reply = c.handshake("/chat", &[ORIGIN]).await;
        (reply, c)
    });
    let mut up = raw.accept().await;
    let mut answer = up.switching_protocols().into_bytes();
    answer.extend(wsgate_testkit::client::encode(0x81, b"first words", false));
    use tokio::io::AsyncWriteExt;
    up.stream.write_all(&answer).await.unwrap();
    let (reply, mut c) = client.await.unwrap();
    assert_eq!(reply.status, 101);
    let frame = c.read_data().await;
    assert_eq!(
        (frame.first, frame.payload.as_slice()),
        (0x81, &b"first words"[..])
    );
    // And the relay runs both ways: the gateway masks what it sends on.
    c.send_text("and back").await;
    let mut got = [0; 2 + 4 + 8];
    use tokio::io::AsyncReadExt;
    up.stream.read_exact(&mut got).await.unwrap();
    assert_eq!(got[..2], [0x81, 0x80 | 8]);
    let (mask, payload) = got[2..].split_at(4);
    let unmasked: Vec<u8> = payload
        .iter()
        .zip(mask.iter().cycle())
        .map(|(b, m)| b ^ m)
        .collect();
    assert_eq!(unmasked, b"and back");
}

/// An upstream that never ends its answer's head is refused once the head
/// passes 16 KiB, without waiting for the connect timeout.
#[tokio::test]
async fn an_upstream_answer_head_over_16_kib_is_502() {
    let (mut raw, mut gw, reply) = handshake_to_raw(r#"connect_timeout = "60s""#).await;
    let mut up = raw.accept().await;
    let endless = format!(
        "HTTP/1.1 101 Switching Protocols\r\nX-Padding: {}\r\n",
        "a".repeat(17 * 1024)
    );
    use tokio::io::AsyncWriteExt;
    up.stream.write_all(endless.as_bytes()).await.unwrap();
    assert_eq!(reply.await.unwrap().status, 502);
    let ev = gw.handshake_event().await;
    assert_eq!(ev.reason, Some("upstream_unavailable"));
    assert_eq!(
        ev.detail.as_deref(),
        Some("the upstream's answer head is larger than 16384 bytes")
    );
}

/// WebSocket smuggling: an upstream that answers anything but a correct 101
/// must not become a raw tunnel into its HTTP server.
#[tokio::test]
async fn only_a_correct_101_from_the_upstream_opens_the_relay() {
    let mut raw = Raw::start().await;
    let mut gw = TestGateway::start(&common::config(raw.addr, "", "")).await;
    let answers: [fn(&wsgate_testkit::upstream::RawConn) -> String; 4] = [
        |_| "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".into(),
        |_| {
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n".into()
        },
        |c| {
            c.switching_protocols()
                .replace("\r\n\r\n", "\r\nSec-WebSocket-Protocol: admin\r\n\r\n")
        },
        |c| {
            c.switching_protocols().replace(
                "\r\n\r\n",
                "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
            )
        },
    ];
    for answer in answers {
        let mut c = RawClient::connect(gw.addr).await;
        let client = tokio::spawn(async move {
            let reply = c.handshake("/chat", &[ORIGIN]).await;
            (reply, c)
        });
        let mut up = raw.accept().await;
        use tokio::io::AsyncWriteExt;
        up.stream.write_all(answer(&up).as_bytes()).await.unwrap();
        let (reply, mut c) = client.await.unwrap();
        assert_eq!(reply.status, 502);
        assert_eq!(reply.body, "upstream_unavailable\n");
        assert!(c.ends().await);
        let ev = gw.handshake_event().await;
        assert_eq!(ev.reason, Some("upstream_unavailable"));
        // The upstream socket is closed, not relayed into.
        use tokio::io::AsyncReadExt;
        let mut rest = Vec::new();
        let n = tokio::time::timeout(wsgate_testkit::WAIT, up.stream.read_to_end(&mut rest))
            .await
            .unwrap();
        assert!(n.is_err() || rest.is_empty(), "upstream received {rest:?}");
    }
}

#[tokio::test]
async fn subprotocols_are_filtered_and_the_upstreams_choice_returned() {
    use wsgate_testkit::upstream::EchoOptions;
    let mut echo = Echo::start_with(EchoOptions {
        protocol: Some("chat.v1".into()),
        ..Default::default()
    })
    .await;
    let mut gw = TestGateway::start(&common::config(
        echo.addr,
        r#"subprotocols = ["chat.v1"]"#,
        "",
    ))
    .await;
    let mut c = RawClient::connect(gw.addr).await;
    let reply = c
        .handshake(
            "/chat",
            &[ORIGIN, ("Sec-WebSocket-Protocol", "admin, chat.v1")],
        )
        .await;
    assert_eq!(reply.status, 101);
    assert_eq!(reply.header("sec-websocket-protocol"), Some("chat.v1"));
    assert_eq!(
        reply.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    assert_eq!(reply.header("sec-websocket-extensions"), None);
    let seen = echo.requests.recv().await.unwrap();
    assert_eq!(seen["sec-websocket-protocol"], "chat.v1");
    assert_eq!(gw.handshake_event().await.decision, Some("admitted"));
}

#[tokio::test]
async fn report_mode_admits_and_logs_what_it_would_refuse() {
    let echo = Echo::start().await;
    let mut gw = TestGateway::start(&common::config(echo.addr, r#"mode = "report""#, "")).await;
    let mut c = RawClient::connect(gw.addr).await;
    let reply = c
        .handshake("/chat", &[("Origin", "https://evil.example")])
        .await;
    assert_eq!(reply.status, 101);
    c.send_text("still works").await;
    assert_eq!(c.read_data().await.payload, b"still works");
    let ev = gw.handshake_event().await;
    assert_eq!(
        (ev.decision, ev.reason, ev.enforced),
        (Some("admitted"), Some("origin_not_allowed"), false)
    );
    assert!(gw.audit_text().contains(r#""enforced":false"#));
    // Route and RFC failures are not policy: report mode does not admit them.
    let mut c = RawClient::connect(gw.addr).await;
    assert_eq!(
        c.handshake("/chat", &[("Sec-WebSocket-Version", "8")])
            .await
            .status,
        426
    );
}

/// Routes `/` (open) and `/chat/admin` (JWT) in front of an upstream that
/// might ignore case: `/CHAT/Admin` must not reach it through `/`.
#[tokio::test]
async fn a_path_that_is_a_routes_in_another_letter_case_is_refused() {
    let echo = Echo::start().await;
    let config = common::config(echo.addr, "", "")
        + &format!(
            r#"
[[route]]
path = "/"
upstream = "ws://{up}/"
origins = ["https://app.example.com"]
auth = "none"

[[route]]
path = "/chat/admin"
upstream = "ws://{up}/admin"
origins = ["https://app.example.com"]
auth = ["jwt"]

[auth.jwt]
hs256_secret_env = "JWT_SECRET"
algorithms = ["HS256"]
"#,
            up = echo.addr
        );
    let mut gw = TestGateway::start_with_env(
        &config,
        None,
        &[("JWT_SECRET", "a-test-secret-of-at-least-32-bytes!!")],
    )
    .await;
    for path in ["/CHAT/ADMIN", "/chat/Admin/x", "/Chat"] {
        refused(&mut gw, path, &[ORIGIN], 400, "bad_handshake").await;
        assert!(gw.audit_text().contains("differs only in letter case"));
    }
    // The exact spellings go where they always went.
    refused(&mut gw, "/chat/admin", &[ORIGIN], 401, "auth_missing").await;
    let mut c = RawClient::connect(gw.addr).await;
    assert_eq!(c.handshake("/elsewhere", &[ORIGIN]).await.status, 101);
    let mut c = RawClient::connect(gw.addr).await;
    assert_eq!(c.handshake("/chat/room", &[ORIGIN]).await.status, 101);
}
