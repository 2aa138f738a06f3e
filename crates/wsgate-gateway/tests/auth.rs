//! Authentication at the handshake, over real sockets: JWTs signed in the
//! test (HS256 from an environment secret; ES256 and RS256 from a JWKS file),
//! Basic against a real htpasswd file, the cross-site credentials rule, the
//! identity the upstream receives, and expiry while connected.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use wsgate_testkit::client::RawClient;
use wsgate_testkit::gateway::TestGateway;
use wsgate_testkit::jwt::{self, Signer, claims};
use wsgate_testkit::upstream::{Echo, EchoOptions};

const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";
const ORIGIN: (&str, &str) = ("Origin", "https://app.example.com");

async fn gateway(echo: &Echo, route_extra: &str) -> (TestGateway, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = format!(
        "{}\n{}\n",
        jwt::htpasswd_line("alice", "correct horse"),
        jwt::htpasswd_line("bob", "battery")
    );
    std::fs::write(dir.path().join("users.htpasswd"), htpasswd).unwrap();
    let config = format!(
        r#"
[[listener]]
bind = "127.0.0.1:0"

[auth]
session_grace = "1ms"

[auth.jwt]
hs256_secret_env = "JWT_SECRET"
algorithms = ["HS256"]
from = ["header", "cookie:session", "subprotocol"]
audience = "chat"
issuer = "https://id.example.com"

[auth.basic]
htpasswd = "users.htpasswd"
realm = "chat"

[[route]]
path = "/chat"
upstream = "ws://{}/chat"
origins = ["https://app.example.com", "null"]
allow_missing_origin = true
auth = ["jwt", "basic"]
subprotocols = ["chat.v1"]
identity_headers = {{ user = "X-Wsgate-User", method = "X-Wsgate-Auth" }}
{route_extra}
"#,
        echo.addr
    );
    let gw =
        TestGateway::start_with_env(&config, Some(dir.path()), &[("JWT_SECRET", SECRET)]).await;
    (gw, dir)
}

async fn status(
    gw: &mut TestGateway,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Option<&'static str>, Vec<String>) {
    let mut c = RawClient::connect(gw.addr).await;
    let reply = c.handshake(path, headers).await;
    let ev = gw.handshake_event().await;
    let challenges = reply
        .headers
        .iter()
        .filter(|(k, _)| k == "www-authenticate")
        .map(|(_, v)| v.clone())
        .collect();
    (reply.status, ev.reason, challenges)
}

#[tokio::test]
async fn a_valid_token_admits_and_the_upstream_learns_who_from_the_gateway_only() {
    let mut echo = Echo::start().await;
    let (mut gw, _dir) = gateway(&echo, "").await;
    let token = jwt::hs256(SECRET, &claims("alice", 300));
    let bearer = format!("Bearer {token}");
    let mut c = RawClient::connect(gw.addr).await;
    let forged = ("X-Wsgate-User", "admin");
    let reply = c
        .handshake("/chat", &[ORIGIN, ("Authorization", &bearer), forged])
        .await;
    assert_eq!(reply.status, 101);
    let seen = echo.requests.recv().await.unwrap();
    let users: Vec<_> = seen.get_all("x-wsgate-user").iter().collect();
    assert_eq!(
        users,
        ["alice"],
        "the client's forged identity header reached the upstream"
    );
    assert_eq!(seen["x-wsgate-auth"], "jwt");
    let ev = gw.handshake_event().await;
    assert_eq!((ev.user.as_deref(), ev.auth), (Some("alice"), Some("jwt")));
    c.send_text("hi").await;
    assert_eq!(c.read_data().await.payload, b"hi");
}

#[tokio::test]
async fn no_credentials_is_401_with_a_challenge_per_method() {
    let echo = Echo::start().await;
    let (mut gw, _dir) = gateway(&echo, "").await;
    let (code, reason, challenges) = status(&mut gw, "/chat", &[ORIGIN]).await;
    assert_eq!((code, reason), (401, Some("auth_missing")));
    assert_eq!(
        challenges,
        [
            r#"Bearer realm="wsgate""#,
            r#"Basic realm="chat", charset="UTF-8""#
        ]
    );
}

#[tokio::test]
async fn bad_tokens_are_refused_with_their_reason() {
    let echo = Echo::start().await;
    let (mut gw, _dir) = gateway(&echo, "").await;
    let mut wrong_aud = claims("alice", 300);
    wrong_aud["aud"] = "other".into();
    let mut no_exp = claims("alice", 300);
    no_exp.as_object_mut().unwrap().remove("exp");
    let mut string_exp = claims("alice", 300);
    string_exp["exp"] = "9999999999".into();
    // The route names an audience and an issuer: a token must carry both.
    let without = |claim: &str| {
        let mut c = claims("alice", 300);
        c.as_object_mut().unwrap().remove(claim);
        c
    };
    let mut number_aud = claims("alice", 300);
    number_aud["aud"] = 5.into();
    // No header could name this user to the upstream.
    let mut control_sub = claims("alice", 300);
    control_sub["sub"] = "alice\r\nX-Wsgate-User: root".into();
    let cases = [
        (
            jwt::hs256(
                "another-secret-that-is-32-bytes-long",
                &claims("alice", 300),
            ),
            "auth_invalid",
        ),
        (jwt::hs256(SECRET, &claims("alice", -120)), "auth_expired"),
        (jwt::unsigned(&claims("alice", 300)), "auth_invalid"),
        (jwt::hs256(SECRET, &wrong_aud), "auth_invalid"),
        (jwt::hs256(SECRET, &no_exp), "auth_invalid"),
        (jwt::hs256(SECRET, &string_exp), "auth_invalid"),
        (jwt::hs256(SECRET, &without("aud")), "auth_invalid"),
        (jwt::hs256(SECRET, &without("iss")), "auth_invalid"),
        (jwt::hs256(SECRET, &number_aud), "auth_invalid"),
        (jwt::hs256(SECRET, &control_sub), "auth_invalid"),
        (
            Signer::es256("k1").sign(&claims("alice", 300)),
            "auth_invalid",
        ),
        ("not.a.token".to_owned(), "auth_invalid"),
    ];
    for (token, want) in cases {
        let bearer = format!("Bearer {token}");
        let (code, reason, challenges) =
            status(&mut gw, "/chat", &[ORIGIN, ("Authorization", &bearer)]).await;
        assert_eq!((code, reason), (401, Some(want)), "token {token}");
        assert!(
            challenges[0].contains(r#"error="invalid_token""#),
            "{challenges:?}"
        );
    }
}

/// Only the first `Authorization` of a scheme counts: a good token after a
/// bad one does not admit, so no handshake buys a verification per header.
#[tokio::test]
async fn a_second_authorization_header_is_not_tried() {
    let echo = Echo::start().await;
    let (mut gw, _dir) = gateway(&echo, "").await;
    let good = format!("Bearer {}", jwt::hs256(SECRET, &claims("alice", 300)));
    let base = [
        ("Host", "127.0.0.1"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
        ORIGIN,
    ];
    for (first, second, want) in [
        ("Bearer not.a.token", good.as_str(), 401),
        (good.as_str(), "Bearer not.a.token", 101),
    ] {
        let mut headers = base.to_vec();
        headers.extend([("Authorization", first), ("Authorization", second)]);
        let mut c = RawClient::connect(gw.addr).await;
        let reply = c.handshake_exact("/chat", &headers).await;
        let event = gw.handshake_event().await;
        assert_eq!(reply.status, want, "{first} then {second}");
        if want == 401 {
            assert_eq!(event.reason, Some("auth_invalid"));
        } else {
            assert_eq!(event.user.as_deref(), Some("alice"));
        }
    }
}

#[tokio::test]
async fn ambient_credentials_need_a_listed_origin() {
    let echo = Echo::start().await;
    let (mut gw, _dir) = gateway(&echo, "").await;
    let token = jwt::hs256(SECRET, &claims("alice", 300));
    let cookie = format!("theme=dark; session={token}");
    let bearer = format!("Bearer {token}");
    use base64::Engine as _;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:correct horse")
    );
    // A cookie from the application's own page: fine.
    assert_eq!(
        status(&mut gw, "/chat", &[ORIGIN, ("Cookie", &cookie)])
            .await
            .0,
        101
    );
    // The same cookie attached by the browser to a handshake without Origin,
    // or from a sandboxed (null) page: the hijacking pattern.
    for origin in [None, Some("null")] {
        let mut headers = vec![("Cookie", cookie.as_str())];
        headers.extend(origin.map(|o| ("Origin", o)));
        assert_eq!(
            status(&mut gw, "/chat", &headers).await.1,
            Some("cross_site_credentials"),
            "{origin:?}"
        );
        let mut headers = vec![("Authorization", basic.as_str())];
        headers.extend(origin.map(|o| ("Origin", o)));
        assert_eq!(
            status(&mut gw, "/chat", &headers).await.1,
            Some("cross_site_credentials"),
            "basic {origin:?}"
        );
        // A header token is put there by a script that has it: not ambient.
        let mut headers = vec![("Authorization", bearer.as_str())];
        headers.extend(origin.map(|o| ("Origin", o)));
        assert_eq!(
            status(&mut gw, "/chat", &headers).await.0,
            101,
            "bearer {origin:?}"
        );
    }
    // A foreign origin never gets this far.
    let foreign = [
        ("Origin", "https://evil.example"),
        ("Cookie", cookie.as_str()),
    ];
    assert_eq!(
        status(&mut gw, "/chat", &foreign).await.1,
        Some("origin_not_allowed")
    );
}

#[tokio::test]
async fn basic_credentials_are_checked_against_the_htpasswd_file() {
    let mut echo = Echo::start().await;
    let (mut gw, _dir) = gateway(&echo, "").await;
    use base64::Engine as _;
    let encode = |s: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
    };
    let good = encode("alice:correct horse");
    assert_eq!(
        status(&mut gw, "/chat", &[ORIGIN, ("Authorization", &good)])
            .await
            .0,
        101
    );
    assert_eq!(
        echo.requests.recv().await.unwrap()["x-wsgate-auth"],
        "basic"
    );
    for bad in ["alice:wrong", "mallory:correct horse", "alice"] {
        let (code, reason, challenges) =
            status(&mut gw, "/chat", &[ORIGIN, ("Authorization", &encode(bad))]).await;
        let want = if bad == "alice" {
            "auth_missing"
        } else {
            "auth_invalid"
        };
        assert_eq!((code, reason), (401, Some(want)), "{bad}");
        assert!(
            challenges
                .iter()
                .any(|c| c.starts_with("Basic realm=\"chat\"")),
            "{challenges:?}"
        );
    }
}

#[tokio::test]
async fn a_token_in_a_subprotocol_entry_is_used_and_never_echoed() {
    let mut echo = Echo::start_with(EchoOptions {
        protocol: Some("chat.v1".into()),
        ..Default::default()
    })
    .await;
    let (mut gw, _dir) = gateway(&echo, "").await;
    let token = jwt::hs256(SECRET, &claims("carol", 300));
    let offer = format!("bearer.{token}, chat.v1");
    let mut c = RawClient::connect(gw.addr).await;
    let reply = c
        .handshake("/chat", &[ORIGIN, ("Sec-WebSocket-Protocol", &offer)])
        .await;
    assert_eq!(reply.status, 101);
    assert_eq!(reply.header("sec-websocket-protocol"), Some("chat.v1"));
    let seen = echo.requests.recv().await.unwrap();
    assert_eq!(seen["sec-websocket-protocol"], "chat.v1");
    assert_eq!(gw.handshake_event().await.user.as_deref(), Some("carol"));
}

#[tokio::test]
async fn a_query_token_works_only_where_a_route_opts_in_and_never_reaches_the_log() {
    let echo = Echo::start().await;
    let token = jwt::hs256(SECRET, &claims("dave", 300));
    let path = format!("/chat?access_token={token}");
    let (mut gw, _dir) = gateway(&echo, "").await;
    assert_eq!(
        status(&mut gw, &path, &[ORIGIN]).await.1,
        Some("auth_missing")
    );
    let (mut gw, _dir) = gateway(&echo, r#"jwt_query_param = "access_token""#).await;
    assert_eq!(status(&mut gw, &path, &[ORIGIN]).await.0, 101);
    assert!(!gw.audit_text().contains(&token));
}

#[tokio::test]
async fn a_connection_is_closed_when_its_token_expires() {
    let echo = Echo::start().await;
    let (mut gw, _dir) = gateway(&echo, "").await;
    let token = jwt::hs256(SECRET, &claims("erin", 1));
    let bearer = format!("Bearer {token}");
    let mut c = RawClient::connect(gw.addr).await;
    assert_eq!(
        c.handshake("/chat", &[ORIGIN, ("Authorization", &bearer)])
            .await
            .status,
        101
    );
    c.send_text("still valid").await;
    assert_eq!(c.read_data().await.payload, b"still valid");
    let close = c.read_close().await;
    assert_eq!(
        (close.close_code(), close.close_reason().as_str()),
        (Some(1008), "session_expired")
    );
    c.send_frame(0x88, &1008u16.to_be_bytes(), true).await;
    assert!(c.ends().await);
    let hs = gw.handshake_event().await;
    let ev = gw.close_event().await;
    assert_eq!(
        (ev.reason, ev.user.as_deref(), ev.auth),
        (Some("session_expired"), Some("erin"), Some("jwt"))
    );
    TestGateway::assert_close_repeats(&hs, &ev);
}

#[tokio::test]
async fn jwks_keys_by_kid_and_no_algorithm_confusion() {
    let echo = Echo::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (es, rs, stranger) = (
        Signer::es256("ec-1"),
        Signer::rs256("rsa-1"),
        Signer::es256("ec-1"),
    );
    std::fs::write(dir.path().join("jwks.json"), jwt::jwks(&[&es, &rs])).unwrap();
    let config = format!(
        r#"
[[listener]]
bind = "127.0.0.1:0"

[auth.jwt]
keys = "jwks.json"
algorithms = ["ES256", "RS256"]
audience = "chat"

[[route]]
path = "/chat"
upstream = "ws://{}/chat"
origins = ["https://app.example.com"]
auth = "jwt"
"#,
        echo.addr
    );
    let mut gw = TestGateway::start_in(&config, Some(dir.path())).await;
    for (token, want) in [
        (es.sign(&claims("frank", 300)), None),
        (rs.sign(&claims("grace", 300)), None),
        // Same kid, another key: the signature does not verify.
        (stranger.sign(&claims("mallory", 300)), Some("auth_invalid")),
        // An HS256 token, as the key-confusion attack forges with a public key.
        (
            jwt::hs256(&jwt::jwks(&[&rs]), &claims("mallory", 300)),
            Some("auth_invalid"),
        ),
    ] {
        let bearer = format!("Bearer {token}");
        let (code, reason, _) =
            status(&mut gw, "/chat", &[ORIGIN, ("Authorization", &bearer)]).await;
        assert_eq!((code == 101, reason), (want.is_none(), want), "{token}");
    }
}

#[tokio::test]
async fn no_token_or_password_ever_reaches_the_audit_log() {
    let echo = Echo::start().await;
    let (mut gw, _dir) = gateway(&echo, r#"jwt_query_param = "access_token""#).await;
    let good = jwt::hs256(SECRET, &claims("alice", 300));
    let bad = jwt::hs256(
        "another-secret-that-is-32-bytes-long",
        &claims("alice", 300),
    );
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode("alice:wrong password");
    for headers in [
        vec![ORIGIN, ("Authorization", &*format!("Bearer {good}"))],
        vec![ORIGIN, ("Authorization", &*format!("Bearer {bad}"))],
        vec![ORIGIN, ("Cookie", &*format!("session={bad}"))],
        vec![("Authorization", &*format!("Basic {basic}"))],
    ] {
        status(&mut gw, &format!("/chat?access_token={bad}"), &headers).await;
    }
    let log = gw.audit_text();
    for secret in [
        good.as_str(),
        bad.as_str(),
        basic.as_str(),
        "wrong password",
        SECRET,
    ] {
        assert!(!log.contains(secret), "{secret} in the audit log:\n{log}");
    }
}

/// With no verified user (here `auth = "none"`), a client's own copy of the
/// identity header must still never reach the upstream.
#[tokio::test]
async fn a_forged_identity_header_is_removed_even_without_authentication() {
    let mut echo = Echo::start().await;
    let config = format!(
        r#"
[[listener]]
bind = "127.0.0.1:0"

[[route]]
path = "/open"
upstream = "ws://{}/"
origins = ["https://app.example.com"]
auth = "none"
identity_headers = {{ user = "X-Wsgate-User", method = "X-Wsgate-Auth" }}
"#,
        echo.addr
    );
    let gw = TestGateway::start(&config).await;
    let mut c = RawClient::connect(gw.addr).await;
    let forged = [ORIGIN, ("X-Wsgate-User", "admin"), ("X-Wsgate-Auth", "jwt")];
    assert_eq!(c.handshake("/open", &forged).await.status, 101);
    let seen = echo.requests.recv().await.unwrap();
    assert!(seen.get("x-wsgate-user").is_none(), "{seen:?}");
    assert_eq!(seen["x-wsgate-auth"], "none");
}

/// The upstream can check who the gateway vouched for, with the key the
/// gateway publishes; a client's own assertion header never gets through.
#[tokio::test]
async fn the_signed_identity_assertion_verifies_with_the_published_key() {
    let mut echo = Echo::start().await;
    let config = format!(
        r#"
[[listener]]
bind = "127.0.0.1:0"

[assertion]
ttl = "60s"

[auth.jwt]
hs256_secret_env = "JWT_SECRET"
algorithms = ["HS256"]

[[route]]
path = "/chat"
upstream = "ws://{}/chat"
origins = ["https://app.example.com"]
auth = "jwt"
"#,
        echo.addr
    );
    let mut gw = TestGateway::start_with_env(&config, None, &[("JWT_SECRET", SECRET)]).await;
    let bearer = format!("Bearer {}", jwt::hs256(SECRET, &claims("alice", 300)));
    let mut c = RawClient::connect(gw.addr).await;
    let forged = ("X-Wsgate-Assertion", "eyJhbGciOiJub25lIn0.e30.");
    assert_eq!(
        c.handshake("/chat", &[ORIGIN, ("Authorization", &bearer), forged])
            .await
            .status,
        101
    );
    gw.handshake_event().await;
    let seen = echo.requests.recv().await.unwrap();
    let assertions: Vec<_> = seen.get_all("x-wsgate-assertion").iter().collect();
    assert_eq!(assertions.len(), 1);
    let assertion = assertions[0].to_str().unwrap();
    assert_ne!(assertion, forged.1);
    // The upstream fetches the gateway's JWKS and verifies.
    let mut admin = RawClient::connect(gw.addr).await;
    let reply = admin.request("GET", "/.wsgate/jwks.json", &[]).await;
    assert_eq!(reply.status, 200);
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&reply.body).unwrap();
    let kid = jsonwebtoken::decode_header(assertion).unwrap().kid.unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(set.find(&kid).unwrap()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_issuer(&["wsgate"]);
    validation.validate_aud = false;
    let claims = jsonwebtoken::decode::<serde_json::Value>(assertion, &key, &validation)
        .unwrap()
        .claims;
    assert_eq!(
        (claims["sub"].as_str(), claims["auth"].as_str()),
        (Some("alice"), Some("jwt"))
    );
    assert_eq!(
        (claims["route"].as_str(), claims["client_ip"].as_str()),
        (Some("/chat"), Some("127.0.0.1"))
    );
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        60
    );
}
