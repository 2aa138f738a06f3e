//! Reloading the config under live connections: who is closed with 1008
//! `policy_changed` and who stays, limits that apply from the reload on,
//! an invalid reload that changes nothing, and a certificate rotated under
//! a live wss connection.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::ORIGIN;
use wsgate_testkit::client::{RawClient, encode};
use wsgate_testkit::gateway::TestGateway;
use wsgate_testkit::pki::Pki;
use wsgate_testkit::upstream::Echo;

const OTHER: (&str, &str) = ("Origin", "https://a.example.org");

async fn open(gw: &mut TestGateway, origin: (&str, &str)) -> RawClient {
    let mut c = RawClient::connect(gw.addr).await;
    let reply = c.handshake("/chat", &[origin]).await;
    assert_eq!(reply.status, 101, "{}", reply.body);
    gw.handshake_event().await;
    c
}

async fn echoes(c: &mut RawClient, text: &str) {
    c.send_text(text).await;
    assert_eq!(c.read_data().await.payload, text.as_bytes());
}

async fn metrics(gw: &TestGateway) -> String {
    let mut c = RawClient::connect(gw.metrics_addr().unwrap()).await;
    c.request("GET", "/metrics", &[]).await.body
}

fn with_metrics(config: String) -> String {
    config + "\n[metrics]\nbind = \"127.0.0.1:0\"\n"
}

#[tokio::test]
async fn an_origin_taken_off_the_list_closes_its_connections_and_only_those() {
    let echo = Echo::start().await;
    let before = with_metrics(common::config(echo.addr, "", ""));
    let mut gw = TestGateway::start(&before).await;
    let mut app = open(&mut gw, ORIGIN).await;
    let mut other = open(&mut gw, OTHER).await;
    echoes(&mut app, "before").await;
    echoes(&mut other, "before").await;

    let after = before.replace(
        r#"origins = ["https://app.example.com", "https://*.example.org"]"#,
        r#"origins = ["https://*.example.org"]"#,
    );
    assert_ne!(after, before);
    assert_eq!(gw.reload(&after).await, Ok(2));
    let ev = gw.event(|e| e.event == "reload").await;
    assert_eq!((ev.decision, ev.generation), (Some("applied"), Some(2)));

    // The connection from the origin no longer listed is closed, idle as it is.
    let close = app.read_close().await;
    assert_eq!(
        (close.close_code(), close.close_reason().as_str()),
        (Some(1008), "policy_changed")
    );
    app.send_frame(0x88, &1008u16.to_be_bytes(), true).await;
    let ev = gw.close_event().await;
    assert_eq!(ev.reason, Some("policy_changed"));
    assert_eq!(ev.origin.as_deref(), Some("https://app.example.com"));
    let detail = ev.detail.as_deref().unwrap_or_default();
    assert!(detail.starts_with("origin_not_allowed: "), "{detail}");
    // The other stays, and new handshakes meet the new list.
    echoes(&mut other, "after").await;
    let mut again = RawClient::connect(gw.addr).await;
    let reply = again.handshake("/chat", &[ORIGIN]).await;
    assert_eq!(
        (reply.status, reply.body.trim()),
        (403, "origin_not_allowed")
    );
    let text = metrics(&gw).await;
    for line in [
        "wsgate_config_generation 2",
        "wsgate_config_last_reload_successful 1",
        r#"wsgate_config_reloads_total{result="applied"} 1"#,
        r#"wsgate_closes_total{route="/chat",reason="policy_changed",code="1008"} 1"#,
        r#"wsgate_connections_open{route="/chat"} 1"#,
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
}

#[tokio::test]
async fn a_route_that_goes_away_closes_its_connections() {
    let echo = Echo::start().await;
    let before = common::config(echo.addr, "", "");
    let mut gw = TestGateway::start(&before).await;
    let mut c = open(&mut gw, ORIGIN).await;
    let after = before.replace(r#"path = "/chat""#, r#"path = "/talk""#);
    assert_eq!(gw.reload(&after).await, Ok(2));
    assert_eq!(c.read_close().await.close_code(), Some(1008));
    c.send_frame(0x88, &1008u16.to_be_bytes(), true).await;
    let ev = gw.close_event().await;
    let detail = ev.detail.as_deref().unwrap_or_default();
    assert!(detail.starts_with("route_not_found: "), "{detail}");
}

#[tokio::test]
async fn new_limits_apply_to_open_connections_from_the_reload_on() {
    let echo = Echo::start().await;
    let before = common::config(echo.addr, "", "");
    let mut gw = TestGateway::start(&before).await;
    let mut c = open(&mut gw, ORIGIN).await;
    let big = "x".repeat(2048);
    echoes(&mut c, &big).await;

    let after = before.replace(r#"max_message = "1MiB""#, r#"max_message = "1KiB""#);
    assert_eq!(gw.reload(&after).await, Ok(2));
    // Still admitted: only its limits changed.
    echoes(&mut c, "small").await;
    c.send_raw(&encode(0x81, big.as_bytes(), true)).await;
    let close = c.read_close().await;
    assert_eq!(
        (close.close_code(), close.close_reason().as_str()),
        (Some(1009), "message_too_big")
    );
}

#[tokio::test]
async fn message_rules_added_by_a_reload_apply_to_open_connections() {
    let echo = Echo::start().await;
    let before = common::config(echo.addr, "", "");
    let mut gw = TestGateway::start(&before).await;
    let mut c = open(&mut gw, ORIGIN).await;
    echoes(&mut c, "not json").await;
    let after = before.replace(
        "[route.limits]",
        "[route.messages]\njson = true\n\n[route.limits]",
    );
    assert_eq!(gw.reload(&after).await, Ok(2));
    echoes(&mut c, r#"{"ok":true}"#).await;
    c.send_text("not json").await;
    let close = c.read_close().await;
    assert_eq!(
        (close.close_code(), close.close_reason().as_str()),
        (Some(1008), "invalid_json")
    );
}

#[tokio::test]
async fn an_invalid_reload_changes_nothing_and_reports_every_error() {
    let echo = Echo::start().await;
    let before = with_metrics(common::config(echo.addr, "", ""));
    let mut gw = TestGateway::start(&before).await;
    let mut c = open(&mut gw, ORIGIN).await;

    // Two errors the gateway finds (a certificate file that holds no
    // certificate, a bind only a restart can change) and a narrower origin
    // list that must not take effect.
    let files = tempfile::tempdir().unwrap();
    let junk = files.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let invalid = before
        .replace(
            r#"origins = ["https://app.example.com", "https://*.example.org"]"#,
            r#"origins = ["https://*.example.org"]"#,
        )
        .replace(
            r#"bind = "127.0.0.1:0"
handshake_timeout"#,
            r#"bind = "127.0.0.2:0"
tls = { cert = "JUNK", key = "JUNK" }
handshake_timeout"#
                .replace("JUNK", junk.to_str().unwrap())
                .as_str(),
        );
    let errors = gw.reload(&invalid).await.unwrap_err();
    assert!(
        errors.iter().any(|e| e.starts_with("listener[0].bind: ")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.starts_with("listener[0].tls: ")),
        "{errors:?}"
    );
    let ev = gw.event(|e| e.event == "reload").await;
    assert_eq!((ev.decision, ev.generation), (Some("refused"), Some(1)));
    assert!(
        ev.detail
            .as_deref()
            .unwrap_or_default()
            .contains("junk.pem"),
        "{ev:?}"
    );

    // A config the parser refuses does not reach the gateway either.
    let unparsable = before.replace(r#"auth = "none""#, r#"auth = "sometimes""#);
    assert!(gw.reload(&unparsable).await.is_err());

    // The connection stays, and the old origin list still admits.
    echoes(&mut c, "still here").await;
    let _second = open(&mut gw, ORIGIN).await;
    let text = metrics(&gw).await;
    for line in [
        "wsgate_config_generation 1",
        "wsgate_config_last_reload_successful 0",
        r#"wsgate_config_reloads_total{result="refused"} 1"#,
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
}

#[tokio::test]
async fn a_rotated_certificate_serves_new_connections_and_live_ones_stay() {
    let echo = Echo::start().await;
    let (old_ca, new_ca) = (Pki::new(), Pki::new());
    let old = old_ca.server("gate", &["localhost"]);
    let new = new_ca.server("gate", &["localhost"]);
    let config = |leaf: &wsgate_testkit::pki::Leaf| {
        common::config(echo.addr, "", "").replace(
            "handshake_timeout = \"2s\"",
            &format!(
                "handshake_timeout = \"2s\"\ntls = {{ cert = {:?}, key = {:?} }}",
                leaf.cert, leaf.key
            ),
        )
    };
    let mut gw = TestGateway::start(&config(&old)).await;
    let mut live = RawClient::connect_tls(gw.addr, old_ca.client_config(), "localhost").await;
    assert_eq!(live.handshake("/chat", &[ORIGIN]).await.status, 101);
    gw.handshake_event().await;
    echoes(&mut live, "under the old certificate").await;

    assert_eq!(gw.reload(&config(&new)).await, Ok(2));
    // New connections get the new certificate: a client that trusts only
    // the old CA fails, one that trusts the new CA gets through.
    let stale = RawClient::try_connect_tls(gw.addr, old_ca.client_config(), "localhost").await;
    assert!(stale.is_err(), "the old certificate is still served");
    let mut fresh = RawClient::connect_tls(gw.addr, new_ca.client_config(), "localhost").await;
    assert_eq!(fresh.handshake("/chat", &[ORIGIN]).await.status, 101);
    echoes(&mut fresh, "under the new certificate").await;
    // The connection made before the rotation is untouched.
    echoes(&mut live, "still under the old one").await;
}

#[tokio::test]
async fn a_basic_user_taken_out_of_the_htpasswd_file_is_closed_and_the_others_stay() {
    use base64::Engine as _;
    let echo = Echo::start().await;
    let dir = tempfile::tempdir().unwrap();
    let users = |names: &[&str]| {
        let lines: Vec<String> = names
            .iter()
            .map(|n| wsgate_testkit::jwt::htpasswd_line(n, "pw"))
            .collect();
        std::fs::write(dir.path().join("users.htpasswd"), lines.join("\n")).unwrap();
    };
    users(&["alice", "bob"]);
    let config = common::config(echo.addr, r#"auth = ["basic"]"#, "")
        .replace(r#"auth = "none""#, "")
        + "\n[auth.basic]\nhtpasswd = \"users.htpasswd\"\n";
    let mut gw = TestGateway::start_in(&config, Some(dir.path())).await;
    let basic = |user: &str| {
        let pair = format!("{user}:pw");
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    };
    let (alice, bob) = (basic("alice"), basic("bob"));
    let mut a = RawClient::connect(gw.addr).await;
    assert_eq!(
        a.handshake("/chat", &[ORIGIN, ("Authorization", &alice)])
            .await
            .status,
        101
    );
    let mut b = RawClient::connect(gw.addr).await;
    assert_eq!(
        b.handshake("/chat", &[ORIGIN, ("Authorization", &bob)])
            .await
            .status,
        101
    );

    users(&["bob"]);
    assert_eq!(gw.reload(&config).await, Ok(2));
    let close = a.read_close().await;
    assert_eq!(
        (close.close_code(), close.close_reason().as_str()),
        (Some(1008), "policy_changed")
    );
    a.send_frame(0x88, &1008u16.to_be_bytes(), true).await;
    let ev = gw.close_event().await;
    assert_eq!(ev.user.as_deref(), Some("alice"));
    let detail = ev.detail.as_deref().unwrap_or_default();
    assert!(
        detail.contains("no longer in [auth.basic] htpasswd"),
        "{detail}"
    );
    echoes(&mut b, "bob stays").await;
}

#[tokio::test]
async fn a_self_signed_certificate_survives_a_reload_that_leaves_its_listener_alone() {
    let echo = Echo::start().await;
    let config = common::config(echo.addr, "", "").replace(
        r#"handshake_timeout = "2s""#,
        "tls = { self_signed = true }",
    );
    let gw = TestGateway::start(&config).await;
    let cert = || async {
        let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        wsgate_testkit::pki::connect_pinned(tcp, "localhost")
            .await
            .1
    };
    let before = cert().await;
    // Another origin list: the listener's TLS is as it was.
    let other = config.replace("https://*.example.org", "https://*.example.net");
    assert_eq!(gw.reload(&other).await, Ok(2));
    assert_eq!(cert().await, before, "the fingerprint changed on reload");
}
