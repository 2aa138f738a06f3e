//! Forward auth against a real HTTP service on loopback: the application's
//! own cookie sessions, the cross-site rule for them, caching, and failing
//! closed when the service is down or slow.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use wsgate_testkit::auth_server::AuthServer;
use wsgate_testkit::client::RawClient;
use wsgate_testkit::gateway::TestGateway;
use wsgate_testkit::upstream::Echo;

const ORIGIN: (&str, &str) = ("Origin", "https://app.example.com");

async fn gateway(echo: &Echo, auth: &AuthServer, extra: &str) -> TestGateway {
    let config = format!(
        r#"
[[listener]]
bind = "127.0.0.1:0"

[auth.forward]
url = "{url}"
user_header = "X-User"
timeout = "300ms"
{extra}

[[route]]
path = "/chat"
upstream = "ws://{echo}/chat"
origins = ["https://app.example.com"]
allow_missing_origin = true
auth = "forward"
identity_headers = {{ user = "X-Wsgate-User", method = "X-Wsgate-Auth" }}
"#,
        url = auth.url(),
        echo = echo.addr
    );
    TestGateway::start(&config).await
}

async fn status(gw: &mut TestGateway, headers: &[(&str, &str)]) -> (u16, Option<&'static str>) {
    let mut c = RawClient::connect(gw.addr).await;
    let status = c.handshake("/chat", headers).await.status;
    (status, gw.handshake_event().await.reason)
}

#[tokio::test]
async fn the_applications_cookie_session_admits_and_names_the_user() {
    let (mut echo, auth) = (Echo::start().await, AuthServer::start().await);
    let mut gw = gateway(&echo, &auth, "").await;
    assert_eq!(
        status(&mut gw, &[ORIGIN, ("Cookie", "session=alice-session")]).await,
        (101, None)
    );
    let seen = echo.requests.recv().await.unwrap();
    assert_eq!(
        (&seen["x-wsgate-user"], &seen["x-wsgate-auth"]),
        (&"alice".parse().unwrap(), &"forward".parse().unwrap())
    );
    assert_eq!(
        status(&mut gw, &[ORIGIN, ("Cookie", "session=nobody")]).await,
        (401, Some("auth_invalid"))
    );
    assert_eq!(
        status(&mut gw, &[ORIGIN]).await,
        (401, Some("auth_missing"))
    );
}

#[tokio::test]
async fn a_cookie_session_needs_a_listed_origin_and_a_bearer_does_not() {
    let (echo, auth) = (Echo::start().await, AuthServer::start().await);
    let mut gw = gateway(&echo, &auth, "").await;
    assert_eq!(
        status(&mut gw, &[("Cookie", "session=alice-session")])
            .await
            .1,
        Some("cross_site_credentials")
    );
    assert_eq!(
        status(&mut gw, &[("Authorization", "Bearer letmein")]).await,
        (101, None)
    );
}

#[tokio::test]
async fn verdicts_are_reused_for_a_few_seconds() {
    let (echo, auth) = (Echo::start().await, AuthServer::start().await);
    let mut gw = gateway(&echo, &auth, "").await;
    for _ in 0..3 {
        assert_eq!(
            status(&mut gw, &[ORIGIN, ("Cookie", "session=bob-session")])
                .await
                .0,
            101
        );
    }
    assert_eq!(auth.asked(), 1);
    let mut gw = gateway(&echo, &auth, r#"cache_ttl = "off""#).await;
    for _ in 0..2 {
        assert_eq!(
            status(&mut gw, &[ORIGIN, ("Cookie", "session=bob-session")])
                .await
                .0,
            101
        );
    }
    assert_eq!(auth.asked(), 3);
}

#[tokio::test]
async fn a_broken_or_silent_service_fails_closed() {
    let (echo, auth) = (Echo::start().await, AuthServer::start().await);
    let mut gw = gateway(&echo, &auth, "").await;
    assert_eq!(
        status(&mut gw, &[ORIGIN, ("Cookie", "session=broken")]).await,
        (503, Some("auth_unavailable"))
    );
    assert_eq!(
        status(&mut gw, &[ORIGIN, ("Cookie", "session=silent")]).await,
        (503, Some("auth_unavailable"))
    );
    // A failure is not remembered: the service is asked again.
    let before = auth.asked();
    status(&mut gw, &[ORIGIN, ("Cookie", "session=broken")]).await;
    assert_eq!(auth.asked(), before + 1);
}

#[tokio::test]
async fn a_session_is_closed_after_its_max_age() {
    let (echo, auth) = (Echo::start().await, AuthServer::start().await);
    let mut gw = gateway(&echo, &auth, r#"max_age = "300ms""#).await;
    let mut c = RawClient::connect(gw.addr).await;
    assert_eq!(
        c.handshake("/chat", &[ORIGIN, ("Cookie", "session=carol-session")])
            .await
            .status,
        101
    );
    let close = c.read_close().await;
    assert_eq!(
        (close.close_code(), close.close_reason().as_str()),
        (Some(1008), "session_expired")
    );
    c.send_frame(0x88, &1008u16.to_be_bytes(), true).await;
    assert_eq!(gw.close_event().await.reason, Some("session_expired"));
}

/// A forward-auth service inside the operator's PKI: `ca` names the CA its
/// certificate chains to (not one of the system's roots).
#[tokio::test]
async fn an_https_service_is_trusted_through_ca() {
    let pki = wsgate_testkit::pki::Pki::new();
    let leaf = pki.server("auth", &["localhost"]);
    let auth = AuthServer::start_tls(pki.server_config(&leaf)).await;
    assert!(auth.url().starts_with("https://localhost:"));
    let echo = Echo::start().await;
    let ca = format!("ca = {:?}", pki.ca_path());
    let mut gw = gateway(&echo, &auth, &ca).await;
    assert_eq!(
        status(&mut gw, &[ORIGIN, ("Cookie", "session=alice-session")]).await,
        (101, None)
    );
    assert_eq!(auth.asked(), 1);
}
