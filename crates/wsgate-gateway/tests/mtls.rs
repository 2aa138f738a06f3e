//! TLS client certificates: verified at the listener (chain, expiry,
//! revocation), naming the user on `auth = "mtls"` routes, ambient for the
//! cross-site rule, passed to the upstream as RFC 9440 `Client-Cert`, and
//! verified again, for open connections too, when a reload changes the
//! listener's CAs or CRLs.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use wsgate_testkit::client::RawClient;
use wsgate_testkit::gateway::TestGateway;
use wsgate_testkit::pki::{Leaf, Pki};
use wsgate_testkit::upstream::Echo;

const ORIGIN: (&str, &str) = ("Origin", "https://app.example.com");

struct Setup {
    pki: Pki,
    /// The config the gateway started with, for a reload.
    config: String,
    gw: TestGateway,
    echo: Echo,
    alice: Leaf,
}

/// A CA (its file written), Alice's certificate (serial 1001) and a CRL
/// that revokes serial 1003.
fn pki_with_alice() -> (Pki, Leaf) {
    let pki = Pki::new();
    let alice = pki.client("alice", "alice@example.com", "Alice", 1001, false);
    pki.ca_path();
    pki.crl(&[1003]);
    (pki, alice)
}

/// A route to `echo` without authentication.
fn open_route(echo: &Echo) -> String {
    format!(
        r#"[[route]]
path = "/open"
upstream = "ws://{}/open"
origins = ["https://app.example.com"]
auth = "none"
"#,
        echo.addr
    )
}

async fn setup(mode: &str) -> Setup {
    setup_with(mode, "").await
}

/// [`setup`], with `extra` appended to the config.
async fn setup_with(mode: &str, extra: &str) -> Setup {
    let (pki, alice) = pki_with_alice();
    let server = pki.server("gate", &["localhost"]);
    let echo = Echo::start().await;
    let config = format!(
        r#"
[[listener]]
bind = "127.0.0.1:0"
tls = {{ cert = {cert:?}, key = {key:?} }}
hosts = ["localhost"]
client_ca = "ca.pem"
client_cert = "{mode}"
client_crl = "clients.crl.pem"

[auth.mtls]
user_from = "san_email"

[[route]]
path = "/chat"
upstream = "ws://{echo}/chat"
origins = ["https://app.example.com"]
allow_missing_origin = true
auth = "mtls"
identity_headers = {{ user = "X-Wsgate-User", method = "X-Wsgate-Auth", client_cert = "X-Wsgate-Cert-Subject" }}

{open}{extra}"#,
        cert = server.cert,
        key = server.key,
        echo = echo.addr,
        open = open_route(&echo),
    );
    let gw = TestGateway::start_in(&config, Some(pki.dir())).await;
    Setup {
        pki,
        config,
        gw,
        echo,
        alice,
    }
}

/// Connects with `leaf` (or no certificate) and sends a handshake; `None`
/// when the TLS layer refused.
async fn attempt(
    s: &Setup,
    leaf: Option<&Leaf>,
    path: &str,
    headers: &[(&str, &str)],
) -> Option<u16> {
    let config = match leaf {
        Some(l) => s.pki.client_config_with_cert(l),
        None => s.pki.client_config(),
    };
    let mut c = RawClient::try_connect_tls(s.gw.addr, config, "localhost")
        .await
        .ok()?;
    c.try_handshake(path, headers).await.map(|r| r.status)
}

#[tokio::test]
async fn a_valid_certificate_names_the_user_and_reaches_the_upstream_as_client_cert() {
    let mut s = setup("optional").await;
    assert_eq!(
        attempt(&s, Some(&s.alice), "/chat", &[ORIGIN]).await,
        Some(101)
    );
    let seen = s.echo.requests.recv().await.unwrap();
    assert_eq!(seen["x-wsgate-user"], "alice@example.com");
    assert_eq!(seen["x-wsgate-auth"], "mtls");
    assert_eq!(seen["x-wsgate-cert-subject"], "CN=Alice");
    let der = {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::from_pem_file(&s.alice.cert).unwrap()
    };
    use base64::Engine as _;
    let expected = format!(
        ":{}:",
        base64::engine::general_purpose::STANDARD.encode(der.as_ref())
    );
    assert_eq!(seen["client-cert"], expected.as_str());
    let ev = s.gw.handshake_event().await;
    assert_eq!(
        (ev.user.as_deref(), ev.auth),
        (Some("alice@example.com"), Some("mtls"))
    );
}

#[tokio::test]
async fn without_a_certificate_the_route_answers_client_cert_required() {
    let mut s = setup("optional").await;
    assert_eq!(attempt(&s, None, "/chat", &[ORIGIN]).await, Some(401));
    assert_eq!(
        s.gw.handshake_event().await.reason,
        Some("client_cert_required")
    );
    // A client's own Client-Cert header never reaches an upstream.
    let forged = [ORIGIN, ("Client-Cert", ":AAAA:")];
    assert_eq!(attempt(&s, None, "/open", &forged).await, Some(101));
    let seen = s.echo.requests.recv().await.unwrap();
    assert!(seen.get("client-cert").is_none(), "{seen:?}");
}

#[tokio::test]
async fn a_certificate_is_an_ambient_credential() {
    let mut s = setup("optional").await;
    // The browser presents the certificate to any page's handshake.
    assert_eq!(attempt(&s, Some(&s.alice), "/chat", &[]).await, Some(403));
    assert_eq!(
        s.gw.handshake_event().await.reason,
        Some("cross_site_credentials")
    );
}

#[tokio::test]
async fn expired_revoked_and_foreign_certificates_fail_the_tls_handshake() {
    let mut s = setup("optional").await;
    let expired = s.pki.client("old", "old@example.com", "Old", 1002, true);
    let revoked = s
        .pki
        .client("gone", "gone@example.com", "Gone", 1003, false);
    let other = Pki::new();
    let foreign = other.client("eve", "eve@example.com", "Eve", 1004, false);
    let foreign_config = {
        // Eve trusts the gateway CA, but her certificate is from another.
        s.pki.client_config_with_cert_from(&foreign)
    };
    for (leaf, why) in [(&expired, "expired"), (&revoked, "revoked")] {
        assert_eq!(
            attempt(&s, Some(leaf), "/chat", &[ORIGIN]).await,
            None,
            "{why}"
        );
        let ev = s.gw.handshake_event().await;
        assert_eq!(ev.reason, Some("tls_failed"));
        assert!(
            ev.detail.as_deref().unwrap().to_lowercase().contains(why),
            "{ev:?}"
        );
    }
    let mut c = RawClient::try_connect_tls(s.gw.addr, foreign_config, "localhost")
        .await
        .ok();
    let status = match c.as_mut() {
        Some(c) => c.try_handshake("/chat", &[ORIGIN]).await.map(|r| r.status),
        None => None,
    };
    assert_eq!(status, None);
    let ev = s.gw.handshake_event().await;
    assert_eq!(ev.reason, Some("tls_failed"));
    let detail = ev.detail.as_deref().unwrap();
    assert!(detail.contains("invalid peer certificate"), "{detail}");
}

#[tokio::test]
async fn a_listener_that_requires_certificates_refuses_clients_without_one() {
    let mut s = setup("required").await;
    assert_eq!(attempt(&s, None, "/open", &[ORIGIN]).await, None);
    assert_eq!(s.gw.handshake_event().await.reason, Some("tls_failed"));
    assert_eq!(
        attempt(&s, Some(&s.alice), "/open", &[ORIGIN]).await,
        Some(101)
    );
}

/// A reload applies a changed CRL on a listener with a self-signed
/// certificate too: the listener keeps its certificate (the fingerprint
/// operators were told to trust) and checks clients against the new list.
#[tokio::test]
async fn a_self_signed_listener_applies_a_reloaded_crl() {
    let (pki, alice) = pki_with_alice();
    let echo = Echo::start().await;
    let config = format!(
        r#"
[[listener]]
bind = "127.0.0.1:0"
tls = {{ self_signed = true }}
client_ca = "ca.pem"
client_cert = "required"
client_crl = "clients.crl.pem"

{open}"#,
        open = open_route(&echo),
    );
    let gw = TestGateway::start_in(&config, Some(pki.dir())).await;
    let as_alice = pki.pinned_client_config_with_cert(&alice);
    let opens = || async {
        let mut c = RawClient::try_connect_tls(gw.addr, as_alice.clone(), "localhost")
            .await
            .ok()?;
        c.try_handshake("/open", &[ORIGIN]).await.map(|r| r.status)
    };
    assert_eq!(opens().await, Some(101));
    pki.crl(&[1001, 1003]);
    assert_eq!(gw.reload(&config).await, Ok(2));
    assert_eq!(
        opens().await,
        None,
        "alice's certificate, revoked before the reload, was accepted after it"
    );
}

/// Opens a WebSocket on `path` with `leaf`'s certificate; the handshake
/// event is taken so the next event read is the one that matters.
async fn open_with(s: &mut Setup, leaf: &Leaf, path: &str) -> RawClient {
    let config = s.pki.client_config_with_cert(leaf);
    let mut c = RawClient::try_connect_tls(s.gw.addr, config, "localhost")
        .await
        .unwrap();
    let reply = c.try_handshake(path, &[ORIGIN]).await.unwrap();
    assert_eq!(reply.status, 101, "{}", reply.body);
    s.gw.handshake_event().await;
    c
}

/// Reads the 1008 `policy_changed` a reload sends `c`, answers it, and
/// returns the detail of the connection's `close` audit line.
async fn closed_by_reload(s: &mut Setup, c: &mut RawClient) -> String {
    let close = c.read_close().await;
    assert_eq!(
        (close.close_code(), close.close_reason().as_str()),
        (Some(1008), "policy_changed")
    );
    c.send_frame(0x88, &1008u16.to_be_bytes(), true).await;
    let ev = s.gw.close_event().await;
    assert_eq!(ev.reason, Some("policy_changed"));
    ev.detail.clone().unwrap_or_default()
}

#[tokio::test]
async fn a_reload_that_revokes_a_certificate_closes_the_connections_that_use_it() {
    let mut s = setup("optional").await;
    let bob = s.pki.client("bob", "bob@example.com", "Bob", 1002, false);
    let alice = s.alice.clone();
    // Alice on a route without authentication: the certificate is the
    // listener's business all the same, as it would be in a new handshake.
    let mut a = open_with(&mut s, &alice, "/open").await;
    let mut b = open_with(&mut s, &bob, "/chat").await;

    s.pki.crl(&[1001, 1003]);
    assert_eq!(s.gw.reload(&s.config).await, Ok(2));
    let detail = closed_by_reload(&mut s, &mut a).await;
    assert!(
        detail.starts_with("tls_failed: the client certificate is refused now: "),
        "{detail}"
    );
    assert!(detail.contains("Revoked"), "{detail}");
    // Bob's certificate is not on the list: his connection stays.
    b.send_text("bob stays").await;
    assert_eq!(b.read_data().await.payload, b"bob stays");
}

#[tokio::test]
async fn a_reload_that_drops_client_certificates_closes_mtls_connections_only() {
    // A second listener asks for certificates too, so `auth = "mtls"`
    // stays valid when the first stops asking.
    let second = "\n[[listener]]\nbind = \"127.0.0.1:0\"\ntls = { self_signed = true }\nclient_ca = \"ca.pem\"\n";
    let mut s = setup_with("optional", second).await;
    let alice = s.alice.clone();
    let mut by_cert = open_with(&mut s, &alice, "/chat").await;
    let mut open = open_with(&mut s, &alice, "/open").await;

    // The first listener stops asking for certificates; /chat still wants
    // one, so a new handshake there would be refused, and so is the open one.
    let after = s
        .config
        .replacen("client_ca = \"ca.pem\"\n", "", 1)
        .replacen("client_cert = \"optional\"\n", "", 1)
        .replacen("client_crl = \"clients.crl.pem\"\n", "", 1);
    assert_ne!(after, s.config);
    assert_eq!(s.gw.reload(&after).await, Ok(2));
    let detail = closed_by_reload(&mut s, &mut by_cert).await;
    assert!(detail.starts_with("client_cert_required: "), "{detail}");
    // The route without authentication does not depend on the certificate.
    open.send_text("still here").await;
    assert_eq!(open.read_data().await.payload, b"still here");
}

#[tokio::test]
async fn a_revoked_certificate_closes_its_connection_on_a_report_mode_route_too() {
    // Report mode lets through what the route's rules would refuse; a
    // certificate the listener refuses is refused at TLS, before any route.
    let mut s = setup_with("optional", "").await;
    let config = format!(
        r#"{}
[[route]]
path = "/watch"
upstream = "ws://{}/watch"
origins = ["https://app.example.com"]
auth = "none"
mode = "report"
"#,
        s.config, s.echo.addr
    );
    assert_eq!(s.gw.reload(&config).await, Ok(2));
    let alice = s.alice.clone();
    let mut c = open_with(&mut s, &alice, "/watch").await;

    s.pki.crl(&[1001]);
    assert_eq!(s.gw.reload(&config).await, Ok(3));
    let detail = closed_by_reload(&mut s, &mut c).await;
    assert!(detail.starts_with("tls_failed: "), "{detail}");
}

#[tokio::test]
async fn a_resumed_session_whose_certificate_expired_since_is_refused() {
    let mut s = setup("optional").await;
    // Valid for two more seconds (certificates count whole seconds).
    let until = std::time::SystemTime::now() + std::time::Duration::from_secs(2);
    let brief = s
        .pki
        .client_until("brief", "brief@example.com", "Brief", 1005, until);
    // One config, so one session cache: the second connection resumes.
    let config = s.pki.client_config_with_cert(&brief);
    let mut first = RawClient::try_connect_tls(s.gw.addr, config.clone(), "localhost")
        .await
        .unwrap();
    // Reading the 101 reads the session tickets sent before it.
    let reply = first.try_handshake("/open", &[ORIGIN]).await.unwrap();
    assert_eq!(reply.status, 101);
    assert_eq!(s.gw.handshake_event().await.decision, Some("admitted"));
    // What is under test is what time does to the certificate, and webpki
    // reads the system clock: this waits for the expiry itself.
    let expired = until + std::time::Duration::from_secs(1);
    if let Ok(left) = expired.duration_since(std::time::SystemTime::now()) {
        tokio::time::sleep(left).await;
    }
    let status = match RawClient::try_connect_tls(s.gw.addr, config, "localhost").await {
        Ok(mut c) => c.try_handshake("/open", &[ORIGIN]).await.map(|r| r.status),
        Err(_) => None,
    };
    assert_eq!(status, None, "a resumed session outlived its certificate");
    let ev = s.gw.handshake_event().await;
    assert_eq!(ev.reason, Some("tls_failed"));
    let detail = ev.detail.as_deref().unwrap_or_default();
    assert!(
        detail.starts_with("the resumed TLS session's client certificate is refused now: "),
        "{detail}"
    );
    assert!(detail.to_lowercase().contains("expired"), "{detail}");
}
