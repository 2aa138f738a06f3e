//! `kind = "http"` routes: the application's pages and API proxied through
//! the gateway, with the Host allow-list, the gateway's own forwarding
//! headers, an added Content-Security-Policy, and CSP reports in the audit
//! log.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::net::SocketAddr;

use common::ORIGIN;
use wsgate_testkit::client::{RawClient, Reply};
use wsgate_testkit::gateway::TestGateway;
use wsgate_testkit::http_upstream::{HttpUpstream, OWN_CSP};
use wsgate_testkit::upstream::Echo;

/// A WebSocket route at /chat and the application at /app.
async fn gateway(app: &HttpUpstream, echo: &Echo, csp: &str) -> TestGateway {
    let config = common::config(echo.addr, "", "")
        + &format!(
            r#"
[[route]]
path = "/app"
kind = "http"
upstream = "{}"
auth = "none"
identity_headers = {{ user = "X-Wsgate-User", method = "X-Wsgate-Auth" }}
{csp}

# Signed for WebSocket routes only; a client's copy must not reach the app.
[assertion]
"#,
            app.url("/base")
        );
    TestGateway::start(&config).await
}

const CSP: &str = r#"csp = { connect_src = ["'self'", "ws://localhost"] }"#;

fn seen(reply: &Reply) -> serde_json::Value {
    assert_eq!(reply.status, 200, "{}", reply.body);
    serde_json::from_str(&reply.body).unwrap()
}

#[tokio::test]
async fn requests_go_through_with_the_gateways_own_forwarding_headers() {
    let (app, echo) = (HttpUpstream::start().await, Echo::start().await);
    let mut gw = gateway(&app, &echo, "").await;
    let mut c = RawClient::connect(gw.addr).await;
    let reply = c
        .request(
            "GET",
            "/app/page?x=1",
            &[
                ("X-Forwarded-For", "6.6.6.6"),
                ("X-Wsgate-User", "admin"),
                ("X-Wsgate-Assertion", "eyJhbGciOiJFUzI1NiJ9.forged.sig"),
                ("Cookie", "session=s"),
            ],
        )
        .await;
    let up = seen(&reply);
    assert_eq!(up["method"], "GET");
    assert_eq!(up["uri"], "/base/page?x=1");
    let h = &up["headers"];
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-host"], "127.0.0.1");
    assert_eq!(h["host"], app.addr.to_string());
    assert_eq!(h["cookie"], "session=s");
    assert_eq!(h["x-wsgate-auth"], "none");
    assert!(h.get("x-wsgate-user").is_none(), "{h}");
    assert!(h.get("x-wsgate-assertion").is_none(), "{h}");
    // A field the upstream's `Connection` names is for its hop only.
    let reply = c.request("GET", "/app/hop", &[]).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("x-hop-detail"), None, "{reply:?}");
    assert_eq!(reply.header("content-type"), Some("application/json"));
    // Keep-alive: a second request on the same connection, with a body.
    c.send_raw(b"POST /app/form HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello")
        .await;
    let up = seen(&c.read_reply().await);
    assert_eq!(
        (&up["method"], &up["body"]),
        (&"POST".into(), &"hello".into())
    );
    // The WebSocket route beside it is unchanged.
    let mut ws = RawClient::connect(gw.addr).await;
    assert_eq!(ws.handshake("/chat", &[ORIGIN]).await.status, 101);
    assert_eq!(gw.handshake_event().await.decision, Some("admitted"));
}

#[tokio::test]
async fn the_host_allow_list_upgrades_and_a_dead_upstream_are_refused_and_logged() {
    let (app, echo) = (HttpUpstream::start().await, Echo::start().await);
    let mut gw = gateway(&app, &echo, "").await;
    let mut c = RawClient::connect(gw.addr).await;
    let reply = c.request("GET", "/app/", &[("Host", "evil.example")]).await;
    assert_eq!((reply.status, reply.body.trim()), (421, "host_not_allowed"));
    let ev = gw.event(|e| e.event == "http").await;
    assert_eq!(
        (ev.decision, ev.reason, ev.route.as_deref()),
        (Some("refused"), Some("host_not_allowed"), Some("/app"))
    );

    // A WebSocket handshake must not reach an HTTP upstream unchecked.
    let mut c = RawClient::connect(gw.addr).await;
    let reply = c.handshake("/app/socket", &[ORIGIN]).await;
    assert_eq!((reply.status, reply.body.trim()), (400, "bad_handshake"));
    let ev = gw.event(|e| e.event == "http").await;
    assert!(ev.detail.as_deref().unwrap().contains("Upgrade"), "{ev:?}");
}

/// `/app/../secret` would reach the upstream as `/base/../secret`, which a
/// server that resolves dot-segments serves as `/secret`: outside what the
/// route maps. Such paths, and their encoded forms, never leave the gateway.
#[tokio::test]
async fn a_path_that_could_climb_out_of_the_route_is_refused() {
    let (app, echo) = (HttpUpstream::start().await, Echo::start().await);
    let mut gw = gateway(&app, &echo, "").await;
    for path in ["/app/../secret", "/app/%2e%2e/secret", "/app/..%2fsecret"] {
        let mut c = RawClient::connect(gw.addr).await;
        let reply = c.request("GET", path, &[]).await;
        assert_eq!(
            (reply.status, reply.body.trim()),
            (400, "bad_handshake"),
            "{path}"
        );
        let ev = gw.event(|e| e.event == "http").await;
        assert_eq!(ev.reason, Some("bad_handshake"));
        assert!(
            ev.detail.as_deref().unwrap().contains("another resource"),
            "{ev:?}"
        );
    }
    assert_eq!(app.requests(), 0, "nothing reached the upstream");
}

#[tokio::test]
async fn an_upstream_that_is_down_is_a_502() {
    let echo = Echo::start().await;
    let dead = HttpUpstream::dead();
    let mut gw = gateway(&dead, &echo, "").await;
    let mut c = RawClient::connect(gw.addr).await;
    let reply = c.request("GET", "/app/", &[]).await;
    assert_eq!(
        (reply.status, reply.body.trim()),
        (502, "upstream_unavailable")
    );
    let ev = gw.event(|e| e.event == "http").await;
    assert_eq!(ev.reason, Some("upstream_unavailable"));
}

#[tokio::test]
async fn a_csp_is_added_beside_the_upstreams_own_which_stays() {
    let (app, echo) = (HttpUpstream::start().await, Echo::start().await);
    let gw = gateway(&app, &echo, CSP).await;
    let mut c = RawClient::connect(gw.addr).await;
    let reply = c.request("GET", "/app/csp/page", &[]).await;
    assert_eq!(reply.status, 200);
    let policies: Vec<&str> = reply
        .headers
        .iter()
        .filter(|(k, _)| k == "content-security-policy")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(
        policies,
        [
            OWN_CSP,
            "connect-src 'self' ws://localhost; report-uri /.wsgate/csp-report"
        ]
    );
    let reply = c.request("GET", "/app/plain", &[]).await;
    assert_eq!(
        reply.header("content-security-policy"),
        Some("connect-src 'self' ws://localhost; report-uri /.wsgate/csp-report")
    );
}

/// A browser's `report-uri` post of `report`, as raw HTTP.
fn csp_post(report: &serde_json::Value) -> String {
    let report = serde_json::json!({ "csp-report": report }).to_string();
    format!(
        "POST /.wsgate/csp-report HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/csp-report\r\nContent-Length: {}\r\n\r\n{report}",
        report.len()
    )
}

#[tokio::test]
async fn a_csp_report_becomes_an_audit_event_with_the_blocked_url() {
    let (app, echo) = (HttpUpstream::start().await, Echo::start().await);
    let mut gw = gateway(&app, &echo, CSP).await;
    let post = csp_post(&serde_json::json!({
        "document-uri": "http://localhost/app/chat?room=7",
        "blocked-uri": "wss://evil.example:9999/bot?victim=alice",
        "effective-directive": "connect-src",
        "disposition": "enforce"
    }));
    let mut c = RawClient::connect(gw.addr).await;
    c.send_raw(post.as_bytes()).await;
    assert_eq!(c.read_reply().await.status, 204);
    let ev = gw.event(|e| e.event == "csp_violation").await;
    assert_eq!(
        ev.blocked.as_deref(),
        Some("wss://evil.example:9999/bot?[query omitted]")
    );
    assert_eq!(ev.path.as_deref(), Some("/app/chat"));
    assert_eq!(ev.decision, Some("blocked"));
    assert!(!gw.audit_text().contains("victim=alice"));
    // Not a report: refused, and nothing logged.
    let reply = c.request("POST", "/.wsgate/csp-report", &[]).await;
    assert_eq!(reply.status, 400);
}

/// Any page can make browsers post reports, so they are logged within a
/// budget (a burst of 100, then 20 a second); those over it are answered
/// 429, and the next line logged counts them.
#[tokio::test]
async fn csp_reports_over_the_budget_are_refused_and_counted_in_the_next_line() {
    let (app, echo) = (HttpUpstream::start().await, Echo::start().await);
    let mut gw = gateway(&app, &echo, CSP).await;
    let post = csp_post(&serde_json::json!({
        "document-uri": "http://localhost/app/chat",
        "blocked-uri": "wss://evil.example/bot",
        "effective-directive": "connect-src"
    }));
    let mut c = RawClient::connect(gw.addr).await;
    async fn status(c: &mut RawClient, post: &str) -> u16 {
        c.send_raw(post.as_bytes()).await;
        c.read_reply().await.status
    }
    // The burst, then a refusal: the budget refills at one report in 50 ms,
    // far slower than these posts come.
    let mut taken = 0;
    while status(&mut c, &post).await == 204 {
        taken += 1;
        assert!(taken < 200, "no report refused after {taken}");
    }
    assert!(
        (100..110).contains(&taken),
        "{taken} taken before the first 429"
    );
    // Refused until the budget has room again (bounded: 20 a second).
    let mut refused = 1;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        match status(&mut c, &post).await {
            204 => break,
            429 => refused += 1,
            other => panic!("answered {other}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no report taken again within 3 s"
        );
    }
    let counted = format!("({refused} more reports refused since the last one logged");
    let ev = gw
        .event(|e| {
            e.detail
                .as_deref()
                .is_some_and(|d| d.contains("more reports refused"))
        })
        .await;
    let detail = ev.detail.as_deref().unwrap_or_default();
    assert!(detail.starts_with("connect-src violated "), "{detail}");
    assert!(detail.contains(&counted), "{detail}, expected {counted}");
    assert_eq!(gw.audit_text().matches("more reports refused").count(), 1);
}

#[tokio::test]
async fn report_only_sends_the_policy_without_enforcing_it() {
    let (app, echo) = (HttpUpstream::start().await, Echo::start().await);
    let csp = r#"csp = { connect_src = ["'self'"], report_only = true }"#;
    let gw = gateway(&app, &echo, csp).await;
    let mut c = RawClient::connect(gw.addr).await;
    let reply = c.request("GET", "/app/plain", &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-security-policy-report-only"),
        Some("connect-src 'self'; report-uri /.wsgate/csp-report")
    );
    assert_eq!(reply.header("content-security-policy"), None);
}

/// A keep-alive connection left idle after its requests is closed at the
/// listener's `handshake_timeout` without a word in the audit log or the
/// handshake metrics: it refused nothing. A connection that never sends a
/// request is still a refused `handshake_timeout`.
#[tokio::test]
async fn an_idle_keep_alive_connection_closes_without_a_refusal() {
    let (app, echo) = (HttpUpstream::start().await, Echo::start().await);
    let config = common::config(echo.addr, "", "").replace(
        r#"handshake_timeout = "2s""#,
        r#"handshake_timeout = "300ms""#,
    ) + &format!(
        "\n[[route]]\npath = \"/app\"\nkind = \"http\"\nupstream = \"{}\"\nauth = \"none\"\n",
        app.url("/base")
    );
    let mut gw = TestGateway::start(&config).await;
    let mut c = RawClient::connect(gw.addr).await;
    seen(&c.request("GET", "/app/page", &[]).await);
    assert!(c.ends_cleanly().await, "the idle connection was not closed");
    // Opened after the idle one closed, so its refusal comes after any
    // line the idle one could have caused.
    let silent = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let ev = gw.handshake_event().await;
    assert_eq!(
        (ev.client.as_str(), ev.reason),
        (
            silent.local_addr().unwrap().to_string().as_str(),
            Some("handshake_timeout")
        )
    );
}

/// The gateway answers in its own HTTP version: an HTTP/1.0 upstream's
/// answer reaches an HTTP/1.1 client as 1.1, and the client's connection
/// stays open for its next request.
#[tokio::test]
async fn an_http_1_0_upstream_does_not_end_the_clients_keep_alive() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let old = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let old_addr = old.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = old.accept().await {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && tcp.read(&mut byte).await.unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let _ = tcp
                .write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .await;
        }
    });
    let echo = Echo::start().await;
    let config = common::config(echo.addr, "", "")
        + &format!(
            "\n[[route]]\npath = \"/old\"\nkind = \"http\"\nupstream = \"http://{old_addr}/\"\nauth = \"none\"\n"
        );
    let gw = TestGateway::start(&config).await;
    let mut c = RawClient::connect(gw.addr).await;
    for _ in 0..2 {
        c.send_raw(b"GET /old/ HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await;
        let head = c.read_until(b"\r\n\r\n").await;
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert_eq!(c.read_until(b"ok").await, b"ok");
    }
}

#[tokio::test]
async fn a_keep_alive_connection_on_an_http_route_holds_its_place_at_http() {
    use tokio::io::AsyncReadExt as _;
    let (app, echo) = (HttpUpstream::start().await, Echo::start().await);
    let config = common::config(echo.addr, "", "")
        + &format!(
            "\n[[route]]\npath = \"/app\"\nkind = \"http\"\nupstream = \"{}\"\nauth = \"none\"\n\n[limits]\nmax_connections = 1\n",
            app.url("/base")
        );
    let mut gw = TestGateway::start(&config).await;
    let mut c = RawClient::connect(gw.addr).await;
    seen(&c.request("GET", "/app/page", &[]).await);
    // Answered and idle, it still holds the one place: a second connection
    // is closed unread.
    let mut other = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let ev = gw.event(|e| e.reason == Some("too_many_connections")).await;
    assert!(
        ev.detail
            .as_deref()
            .unwrap()
            .contains("1 connections are already at HTTP")
    );
    assert_eq!(other.read(&mut [0u8; 16]).await.unwrap(), 0);
    // The first goes on with its keep-alive.
    seen(&c.request("GET", "/app/again", &[]).await);
}

/// A gateway with only an HTTP route at /app to `upstream`, with `limits`.
async fn http_only(upstream: &str, limits: &str) -> TestGateway {
    // The common config's WebSocket route, never used here: to nowhere.
    let config = common::config(HttpUpstream::dead().addr, "", "")
        + &format!(
            "\n[[route]]\npath = \"/app\"\nkind = \"http\"\nupstream = \"{upstream}\"\nauth = \"none\"\n\n[route.limits]\n{limits}\n"
        );
    TestGateway::start(&config).await
}

/// A request head for /app with a body of `len` bytes to come.
fn post_head(len: usize) -> String {
    format!("POST /app/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len}\r\n\r\n")
}

#[tokio::test]
async fn an_upload_may_take_longer_than_connect_timeout_while_it_moves() {
    let app = HttpUpstream::start().await;
    let gw = http_only(
        &app.url("/base"),
        "connect_timeout = \"200ms\"\nidle_timeout = \"5s\"",
    )
    .await;
    let mut c = RawClient::connect(gw.addr).await;
    c.send_raw(format!("{}abc", post_head(6)).as_bytes()).await;
    // A slow client, not a synchronisation: the body's second half comes
    // after connect_timeout has passed (it bounded the whole exchange once).
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    c.send_raw(b"def").await;
    let up = seen(&c.read_reply().await);
    assert_eq!(up["body"], "abcdef");
}

#[tokio::test]
async fn a_request_body_that_stops_is_refused_with_408_after_idle_timeout() {
    let app = HttpUpstream::start().await;
    let mut gw = http_only(&app.url("/base"), "idle_timeout = \"300ms\"").await;
    let mut c = RawClient::connect(gw.addr).await;
    c.send_raw(format!("{}abc", post_head(6)).as_bytes()).await;
    let reply = c.read_reply().await;
    assert_eq!((reply.status, reply.body.trim()), (408, "request_timeout"));
    let ev = gw.event(|e| e.event == "http").await;
    assert_eq!(ev.reason, Some("request_timeout"));
    assert!(
        ev.detail
            .as_deref()
            .unwrap()
            .contains("the request body stopped for 300ms"),
        "{:?}",
        ev.detail
    );
}

/// An upstream that reads requests and answers with `answer` (maybe
/// nothing, maybe half a response), then holds the connection open.
async fn stalling_upstream(answer: &'static [u8]) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut tcp, _)) = listener.accept().await {
            let mut buf = vec![0u8; 4096];
            let _ = tcp.read(&mut buf).await;
            let _ = tcp.write_all(answer).await;
            held.push(tcp);
        }
    });
    addr
}

#[tokio::test]
async fn an_upstream_that_never_answers_is_502_after_idle_timeout() {
    let up = stalling_upstream(b"").await;
    let mut gw = http_only(&format!("http://{up}"), "idle_timeout = \"300ms\"").await;
    let mut c = RawClient::connect(gw.addr).await;
    let reply = c.request("GET", "/app/x", &[]).await;
    assert_eq!(
        (reply.status, reply.body.trim()),
        (502, "upstream_unavailable")
    );
    let ev = gw.event(|e| e.event == "http").await;
    assert!(
        ev.detail
            .as_deref()
            .unwrap()
            .contains("no response head from the upstream within 300ms"),
        "{:?}",
        ev.detail
    );
}

#[tokio::test]
async fn an_upstream_that_stops_mid_body_ends_the_clients_connection_after_idle_timeout() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let up = stalling_upstream(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc").await;
    let gw = http_only(&format!("http://{up}"), "idle_timeout = \"300ms\"").await;
    let mut c = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    c.write_all(b"GET /app/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    // Without the bound the read below would wait for the other 97 bytes
    // for ever; the outer timeout only keeps a failure from hanging.
    let mut got = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), c.read_to_end(&mut got))
        .await
        .expect("the gateway ends the connection");
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    assert!(got.ends_with("\r\n\r\nabc"), "{got} {read:?}");
}

/// An upstream that answers one request with a page of `len` bytes, written
/// as fast as the gateway takes them; it tells how many it wrote once the
/// page is sent or the gateway has closed the connection.
async fn big_page_upstream(len: usize) -> (SocketAddr, tokio::sync::oneshot::Receiver<usize>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (done, written) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let _ = tcp.read(&mut [0u8; 4096]).await;
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n");
        tcp.write_all(head.as_bytes()).await.unwrap();
        let chunk = vec![b'x'; 64 * 1024];
        let mut sent = 0;
        while sent < len {
            let n = chunk.len().min(len - sent);
            if tcp.write_all(&chunk[..n]).await.is_err() {
                break;
            }
            sent += n;
        }
        let _ = done.send(sent);
    });
    (addr, written)
}

/// Waits for [`big_page_upstream`] to say the gateway closed its
/// connection before `page` bytes went through: it gave up on the client.
/// The outer timeout only keeps a failure from hanging.
async fn gave_up_before_the_end(written: tokio::sync::oneshot::Receiver<usize>, page: usize) {
    let written = tokio::time::timeout(std::time::Duration::from_secs(20), written)
        .await
        .expect("the gateway gives up on a client that reads nothing")
        .unwrap();
    assert!(written < page, "{written}");
}

/// A client whose receive buffer holds little, so that the gateway's
/// writes wait on it as soon as the sockets between them are full.
async fn small_window_client(gw: &TestGateway) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt as _;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    let mut c = socket.connect(gw.addr).await.unwrap();
    c.write_all(b"GET /app/page HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    c
}

#[tokio::test]
async fn a_client_that_stops_reading_an_answer_loses_its_connection_after_idle_timeout() {
    use tokio::io::AsyncReadExt as _;
    const PAGE: usize = 1 << 30;
    let (up, written) = big_page_upstream(PAGE).await;
    let gw = http_only(&format!("http://{up}"), "idle_timeout = \"300ms\"").await;
    let mut c = small_window_client(&gw).await;
    // The client reads nothing. Without the bound the gateway's write would
    // wait on it for ever, and the upstream's on the gateway.
    gave_up_before_the_end(written, PAGE).await;
    // The client's connection was closed too: what it can still read ends
    // long before the page would.
    let mut got = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), c.read_to_end(&mut got))
        .await
        .expect("the client's connection is closed");
    assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(got.len() < PAGE / 16, "{}", got.len());
}

#[tokio::test]
async fn over_tls_too_a_client_that_stops_reading_loses_its_connection() {
    const PAGE: usize = 1 << 30;
    let (up, written) = big_page_upstream(PAGE).await;
    let pki = wsgate_testkit::pki::Pki::new();
    let gate = pki.server("gate", &["localhost"]);
    let config = common::config(HttpUpstream::dead().addr, "", "").replace(
        r#"handshake_timeout = "2s""#,
        &format!(
            "handshake_timeout = \"2s\"\ntls = {{ cert = {:?}, key = {:?} }}",
            gate.cert, gate.key
        ),
    ) + &format!(
        "\n[[route]]\npath = \"/app\"\nkind = \"http\"\nupstream = \"http://{up}\"\nauth = \"none\"\n\n[route.limits]\nidle_timeout = \"300ms\"\n"
    );
    let gw = TestGateway::start(&config).await;
    let mut c = RawClient::connect_tls(gw.addr, pki.client_config(), "localhost").await;
    c.send_raw(b"GET /app/page HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    // Reads nothing.
    gave_up_before_the_end(written, PAGE).await;
}

#[tokio::test]
async fn a_client_reading_slowly_gets_the_whole_answer_within_the_routes_idle_timeout() {
    use tokio::io::AsyncReadExt as _;
    const PAGE: usize = 24 << 20;
    let (up, written) = big_page_upstream(PAGE).await;
    // Each pause below is longer than the listener's handshake_timeout
    // (2s: the bound for the gateway's own answers), shorter than the
    // route's idle_timeout, and the two together longer than it: the bound
    // is the route's, and it runs from the last progress.
    let gw = http_only(&format!("http://{up}"), "idle_timeout = \"3500ms\"").await;
    let mut c = small_window_client(&gw).await;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(c.read_u8().await.unwrap());
    }
    assert!(head.starts_with(b"HTTP/1.1 200 OK\r\n"));
    let mut third = vec![0u8; PAGE / 3];
    for pause in [true, true, false] {
        c.read_exact(&mut third).await.unwrap();
        assert!(third.iter().all(|&b| b == b'x'));
        if pause {
            // A slow client, not a synchronisation: the page is larger than
            // every buffer between the upstream and here, so the gateway's
            // write waits throughout.
            tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
        }
    }
    assert_eq!(written.await.unwrap(), PAGE);
}
