//! Keys from the issuer's JWKS URL: fetched on first use, fetched again for
//! a rotated-in key, never more often than `jwks_refresh_min`, and no
//! admission at all until the issuer has answered once.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use wsgate_testkit::auth_server::JwksServer;
use wsgate_testkit::client::RawClient;
use wsgate_testkit::gateway::TestGateway;
use wsgate_testkit::jwt::{self, Signer, claims};
use wsgate_testkit::upstream::Echo;

async fn gateway(echo: &Echo, issuer: &JwksServer, refresh_min: &str) -> TestGateway {
    gateway_with(
        echo,
        issuer,
        &format!("jwks_refresh_min = \"{refresh_min}\""),
    )
    .await
}

/// The gateway, with `extra` in `[auth.jwt]`.
async fn gateway_with(echo: &Echo, issuer: &JwksServer, extra: &str) -> TestGateway {
    let config = format!(
        r#"
[[listener]]
bind = "127.0.0.1:0"

[auth.jwt]
jwks_url = "{url}"
{extra}
algorithms = ["ES256"]

[[route]]
path = "/chat"
upstream = "ws://{echo}/chat"
origins = ["https://app.example.com"]
auth = "jwt"
"#,
        url = issuer.url(),
        echo = echo.addr
    );
    TestGateway::start(&config).await
}

async fn status(gw: &mut TestGateway, token: &str) -> (u16, Option<&'static str>) {
    let bearer = format!("Bearer {token}");
    let mut c = RawClient::connect(gw.addr).await;
    let status = c
        .handshake(
            "/chat",
            &[
                ("Origin", "https://app.example.com"),
                ("Authorization", &bearer),
            ],
        )
        .await
        .status;
    (status, gw.handshake_event().await.reason)
}

#[tokio::test]
async fn keys_are_fetched_once_and_again_for_a_rotated_key() {
    let (k1, k2) = (Signer::es256("k1"), Signer::es256("k2"));
    let issuer = JwksServer::start(jwt::jwks(&[&k1])).await;
    let echo = Echo::start().await;
    let mut gw = gateway(&echo, &issuer, "1ns").await;
    assert_eq!(issuer.asked(), 0, "fetched before any token needed it");
    for _ in 0..3 {
        assert_eq!(
            status(&mut gw, &k1.sign(&claims("alice", 300))).await,
            (101, None)
        );
    }
    assert_eq!(issuer.asked(), 1);
    issuer.set(jwt::jwks(&[&k1, &k2]));
    assert_eq!(
        status(&mut gw, &k2.sign(&claims("bob", 300))).await,
        (101, None)
    );
    assert_eq!(issuer.asked(), 2);
}

#[tokio::test]
async fn made_up_key_ids_cannot_flood_the_issuer() {
    let k1 = Signer::es256("k1");
    let issuer = JwksServer::start(jwt::jwks(&[&k1])).await;
    let echo = Echo::start().await;
    let mut gw = gateway(&echo, &issuer, "1h").await;
    assert_eq!(
        status(&mut gw, &k1.sign(&claims("alice", 300))).await.0,
        101
    );
    for i in 0..5 {
        let stranger = Signer::es256(&format!("made-up-{i}"));
        assert_eq!(
            status(&mut gw, &stranger.sign(&claims("mallory", 300))).await,
            (401, Some("auth_invalid"))
        );
    }
    assert_eq!(issuer.asked(), 1);
}

#[tokio::test]
async fn an_issuer_that_is_down_refuses_until_it_answers() {
    let k1 = Signer::es256("k1");
    let issuer = JwksServer::start(jwt::jwks(&[&k1])).await;
    issuer.set_down(true);
    let echo = Echo::start().await;
    let mut gw = gateway(&echo, &issuer, "1ns").await;
    let token = k1.sign(&claims("alice", 300));
    assert_eq!(
        status(&mut gw, &token).await,
        (503, Some("auth_unavailable"))
    );
    issuer.set_down(false);
    let second = status(&mut gw, &token).await;
    assert_eq!(
        second,
        (101, None),
        "asked {} times; log: {}",
        issuer.asked(),
        gw.audit_text()
    );
    // Down again: the keys it had keep working.
    issuer.set_down(true);
    assert_eq!(status(&mut gw, &token).await, (101, None));
}

/// An issuer inside the operator's PKI: `jwks_ca` names the CA its
/// certificate chains to (not one of the system's roots).
#[tokio::test]
async fn an_https_jwks_url_is_trusted_through_jwks_ca() {
    let pki = wsgate_testkit::pki::Pki::new();
    let leaf = pki.server("issuer", &["localhost"]);
    let k1 = Signer::es256("k1");
    let issuer = JwksServer::start_tls(jwt::jwks(&[&k1]), pki.server_config(&leaf)).await;
    assert!(issuer.url().starts_with("https://localhost:"));
    let echo = Echo::start().await;
    let ca = format!("jwks_ca = {:?}", pki.ca_path());
    let mut gw = gateway_with(&echo, &issuer, &ca).await;
    assert_eq!(
        status(&mut gw, &k1.sign(&claims("alice", 300))).await,
        (101, None)
    );
    assert_eq!(issuer.asked(), 1);
}
