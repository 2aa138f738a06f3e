//! No credential ever reaches a log: a gateway process is put through every
//! way a token, password, cookie or ticket can arrive (valid and invalid,
//! admitted and refused), then everything it wrote, the audit log on stdout
//! and the operational log on stderr, is searched for each secret.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::Path;

use base64::Engine as _;
use wsgate_testkit::client::RawClient;
use wsgate_testkit::jwt::{self, claims};
use wsgate_testkit::process::GatewayProcess;
use wsgate_testkit::upstream::Echo;

const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";
const APP: (&str, &str) = ("Origin", "https://app.example.com");
const ADMIN_TOKEN: &str = "an-admin-token-of-at-least-32-bytes!";

#[tokio::test]
async fn no_token_password_cookie_or_ticket_appears_in_any_log() {
    let echo = Echo::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("users.htpasswd"),
        jwt::htpasswd_line("alice", "correct-horse-battery") + "\n",
    )
    .unwrap();
    let config = dir.path().join("gw.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[listener]]
bind = "127.0.0.1:0"

[metrics]
bind = "127.0.0.1:0"
admin_token_env = "ADMIN_TOKEN"

[auth.jwt]
hs256_secret_env = "JWT_SECRET"
algorithms = ["HS256"]
from = ["header", "cookie:session", "subprotocol"]

[auth.basic]
htpasswd = "users.htpasswd"

[auth.ticket]
ttl = "30s"

[[route]]
path = "/chat"
upstream = "ws://{}/chat"
origins = ["https://app.example.com"]
auth = ["jwt", "basic", "ticket"]
jwt_query_param = "access_token"
subprotocols = ["chat.v1"]
"#,
            echo.addr
        ),
    )
    .unwrap();
    let gw = GatewayProcess::spawn(
        Path::new(env!("CARGO_BIN_EXE_wsgate")),
        &config,
        &[("JWT_SECRET", SECRET), ("ADMIN_TOKEN", ADMIN_TOKEN)],
    )
    .await;
    let good = jwt::hs256(SECRET, &claims("alice", 300));
    let forged = jwt::hs256(
        "another-secret-of-at-least-32-bytes!!",
        &claims("mallory", 300),
    );
    let expired = jwt::hs256(SECRET, &claims("alice", -600));
    let basic_good =
        base64::engine::general_purpose::STANDARD.encode("alice:correct-horse-battery");
    let basic_bad = base64::engine::general_purpose::STANDARD.encode("alice:wrong-guess-password");
    let wrong_admin_token = "a-wrong-admin-token-of-32-bytes-or-more";
    let mut secrets = vec![
        SECRET.to_owned(),
        ADMIN_TOKEN.to_owned(),
        wrong_admin_token.to_owned(),
        good.clone(),
        forged.clone(),
        expired.clone(),
        basic_good.clone(),
        basic_bad.clone(),
        "correct-horse-battery".to_owned(),
        "wrong-guess-password".to_owned(),
    ];
    let attempts: Vec<(String, Vec<(String, String)>)> = vec![
        (
            "/chat".into(),
            vec![("Authorization".into(), format!("Bearer {good}"))],
        ),
        (
            "/chat".into(),
            vec![("Authorization".into(), format!("Bearer {forged}"))],
        ),
        (
            "/chat".into(),
            vec![("Authorization".into(), format!("Bearer {expired}"))],
        ),
        (
            "/chat".into(),
            vec![("Cookie".into(), format!("session={good}; theme=dark"))],
        ),
        (
            "/chat".into(),
            vec![(
                "Sec-WebSocket-Protocol".into(),
                format!("chat.v1, bearer.{forged}"),
            )],
        ),
        (format!("/chat?access_token={good}"), vec![]),
        (format!("/chat?access_token={forged}"), vec![]),
        (
            "/chat".into(),
            vec![("Authorization".into(), format!("Basic {basic_good}"))],
        ),
        (
            "/chat".into(),
            vec![("Authorization".into(), format!("Basic {basic_bad}"))],
        ),
    ];
    for (target, headers) in &attempts {
        let mut c = RawClient::connect(gw.addr).await;
        let mut all: Vec<(&str, &str)> = vec![APP];
        all.extend(headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        c.handshake(target, &all).await;
    }
    // A ticket: bought, redeemed once, then replayed.
    let mut c = RawClient::connect(gw.addr).await;
    let bearer = format!("Bearer {good}");
    let reply = c
        .request(
            "POST",
            "/.wsgate/ticket?path=/chat",
            &[APP, ("Authorization", &bearer)],
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    let ticket = body["ticket"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        let mut c = RawClient::connect(gw.addr).await;
        c.handshake(&format!("/chat?ticket={ticket}"), &[APP]).await;
    }
    secrets.push(ticket);
    // The admin token: refused when wrong, taken when right.
    for (token, want) in [(wrong_admin_token, 401), (ADMIN_TOKEN, 200)] {
        let mut c = RawClient::connect(gw.admin.unwrap()).await;
        let bearer = format!("Bearer {token}");
        let body = r#"{"user": "mallory"}"#;
        let len = body.len().to_string();
        let head = [
            ("Content-Type", "application/json"),
            ("Authorization", bearer.as_str()),
            ("Content-Length", len.as_str()),
        ];
        let mut raw = "POST /revoke HTTP/1.1\r\nHost: 127.0.0.1\r\n".to_owned();
        for (k, v) in head {
            raw.push_str(&format!("{k}: {v}\r\n"));
        }
        raw.push_str("\r\n");
        raw.push_str(body);
        c.send_raw(raw.as_bytes()).await;
        assert_eq!(c.read_reply().await.status, want);
    }

    // Every attempt was decided and logged: 9 handshakes, a ticket, 2
    // redemptions, a revocation.
    let mut gw = gw;
    for _ in 0..13 {
        gw.event(|_| true).await;
    }
    let logs = format!("{}\n{}", gw.stdout(), gw.log());
    assert!(
        logs.contains("\"decision\":\"admitted\"") && logs.contains("auth_invalid"),
        "{logs}"
    );
    for s in &secrets {
        assert!(
            !logs.contains(s.as_str()),
            "a secret reached the logs: {s}\n{logs}"
        );
    }
}
