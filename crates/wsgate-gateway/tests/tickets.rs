//! One-time tickets over real sockets: bought with a credential from a
//! listed origin, readable cross-origin only by that origin (CORS), used once,
//! and only on the route and from the origin they were issued for.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use wsgate_testkit::client::RawClient;
use wsgate_testkit::gateway::TestGateway;
use wsgate_testkit::jwt::{self, claims};
use wsgate_testkit::upstream::Echo;

const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";
const APP: &str = "https://app.example.com";

async fn gateway(echo: &Echo) -> TestGateway {
    let config = format!(
        r#"
[[listener]]
bind = "127.0.0.1:0"

[auth.jwt]
hs256_secret_env = "JWT_SECRET"
algorithms = ["HS256"]
from = ["header", "cookie:session"]

[auth.ticket]
ttl = "30s"

[[route]]
path = "/chat"
upstream = "ws://{echo}/chat"
origins = ["https://app.example.com", "https://*.example.org"]
allow_missing_origin = true
auth = ["ticket", "jwt"]
identity_headers = {{ user = "X-Wsgate-User", method = "X-Wsgate-Auth" }}

[[route]]
path = "/other"
upstream = "ws://{echo}/other"
origins = ["https://app.example.com"]
auth = ["ticket", "jwt"]

[[route]]
path = "/plain"
upstream = "ws://{echo}/plain"
origins = ["https://app.example.com"]
auth = "jwt"
"#,
        echo = echo.addr
    );
    TestGateway::start_with_env(&config, None, &[("JWT_SECRET", SECRET)]).await
}

/// Buys a ticket for `path` from `origin` with a bearer token for `user`.
async fn buy(gw: &mut TestGateway, path: &str, origin: &str, user: &str) -> String {
    let bearer = format!("Bearer {}", jwt::hs256(SECRET, &claims(user, 300)));
    let mut c = RawClient::connect(gw.addr).await;
    let reply = c
        .request(
            "POST",
            &format!("/.wsgate/ticket?path={path}"),
            &[("Origin", origin), ("Authorization", &bearer)],
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("access-control-allow-origin"), Some(origin));
    assert_eq!(
        reply.header("access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let ev = gw.event(|e| e.event == "ticket").await;
    assert_eq!(
        (ev.decision, ev.user.as_deref()),
        (Some("issued"), Some(user))
    );
    let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(body["expires_in"], 30);
    body["ticket"].as_str().unwrap().to_owned()
}

async fn open(
    gw: &mut TestGateway,
    path: &str,
    origin: Option<&str>,
) -> (u16, Option<&'static str>) {
    let mut c = RawClient::connect(gw.addr).await;
    let headers: Vec<_> = origin.map(|o| ("Origin", o)).into_iter().collect();
    let status = c.handshake(path, &headers).await.status;
    (status, gw.handshake_event().await.reason)
}

#[tokio::test]
async fn a_ticket_opens_one_socket_for_its_buyer() {
    let mut echo = Echo::start().await;
    let mut gw = gateway(&echo).await;
    let ticket = buy(&mut gw, "/chat", APP, "alice").await;
    let path = format!("/chat?ticket={ticket}");
    assert_eq!(open(&mut gw, &path, Some(APP)).await, (101, None));
    let seen = echo.requests.recv().await.unwrap();
    assert_eq!(
        (&seen["x-wsgate-user"], &seen["x-wsgate-auth"]),
        (&"alice".parse().unwrap(), &"ticket".parse().unwrap())
    );
    // Single use.
    assert_eq!(
        open(&mut gw, &path, Some(APP)).await,
        (401, Some("ticket_invalid"))
    );
    assert_eq!(
        open(&mut gw, "/chat?ticket=made-up", Some(APP)).await,
        (401, Some("ticket_invalid"))
    );
    assert!(
        !gw.audit_text().contains(&ticket),
        "a ticket reached the audit log"
    );
}

#[tokio::test]
async fn a_ticket_only_works_from_its_origin_and_on_its_route() {
    let echo = Echo::start().await;
    let mut gw = gateway(&echo).await;
    let ticket = buy(&mut gw, "/chat", APP, "alice").await;
    let other_listed = Some("https://a.example.org");
    assert_eq!(
        open(&mut gw, &format!("/chat?ticket={ticket}"), other_listed).await,
        (401, Some("ticket_invalid"))
    );
    // Tried once, gone: not even its own origin can use it now.
    assert_eq!(
        open(&mut gw, &format!("/chat?ticket={ticket}"), Some(APP))
            .await
            .1,
        Some("ticket_invalid")
    );
    let ticket = buy(&mut gw, "/chat", APP, "alice").await;
    assert_eq!(
        open(&mut gw, &format!("/other?ticket={ticket}"), Some(APP)).await,
        (401, Some("ticket_invalid"))
    );
    let ticket = buy(&mut gw, "/chat", APP, "alice").await;
    assert_eq!(
        open(&mut gw, &format!("/chat?ticket={ticket}"), None).await,
        (401, Some("ticket_invalid"))
    );
}

/// A target path, the request's headers, and the expected status and reason.
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16, &'a str);

#[tokio::test]
async fn buying_a_ticket_needs_a_credential_a_listed_origin_and_a_route_that_takes_tickets() {
    let echo = Echo::start().await;
    let mut gw = gateway(&echo).await;
    let token = jwt::hs256(SECRET, &claims("alice", 300));
    let bearer = format!("Bearer {token}");
    let cookie = format!("session={token}");
    let cases: Vec<Case<'_>> = vec![
        ("/chat", vec![("Origin", APP)], 401, "auth_missing"),
        (
            "/chat",
            vec![
                ("Origin", "https://evil.example"),
                ("Authorization", &bearer),
            ],
            403,
            "origin_not_allowed",
        ),
        // A hostile page's POST carries the cookie but not a listed Origin.
        (
            "/chat",
            vec![("Cookie", &cookie)],
            403,
            "cross_site_credentials",
        ),
        (
            "/plain",
            vec![("Origin", APP), ("Authorization", &bearer)],
            403,
            "forbidden",
        ),
        (
            "/nowhere",
            vec![("Origin", APP), ("Authorization", &bearer)],
            404,
            "route_not_found",
        ),
        // A route's path in another letter case is no route's.
        (
            "/CHAT",
            vec![("Origin", APP), ("Authorization", &bearer)],
            400,
            "bad_handshake",
        ),
    ];
    for (path, headers, status, reason) in cases {
        let mut c = RawClient::connect(gw.addr).await;
        let reply = c
            .request("POST", &format!("/.wsgate/ticket?path={path}"), &headers)
            .await;
        assert_eq!(reply.status, status, "{path} {headers:?}");
        assert_eq!(
            reply.header("access-control-allow-origin"),
            None,
            "{path} {headers:?}"
        );
        let ev = gw.event(|e| e.event == "ticket").await;
        assert_eq!((ev.decision, ev.reason), (Some("refused"), Some(reason)));
    }
    // A ticket cannot buy a ticket.
    let ticket = buy(&mut gw, "/chat", APP, "alice").await;
    let mut c = RawClient::connect(gw.addr).await;
    let path = format!("/.wsgate/ticket?path=/chat&ticket={ticket}");
    assert_eq!(
        c.request("POST", &path, &[("Origin", APP)]).await.status,
        401
    );
}

#[tokio::test]
async fn the_preflight_answers_listed_origins_only() {
    let echo = Echo::start().await;
    let mut gw = gateway(&echo).await;
    let mut c = RawClient::connect(gw.addr).await;
    let reply = c
        .request("OPTIONS", "/.wsgate/ticket?path=/chat", &[("Origin", APP)])
        .await;
    assert_eq!(reply.status, 204);
    assert_eq!(reply.header("access-control-allow-origin"), Some(APP));
    assert_eq!(
        reply.header("access-control-allow-headers"),
        Some("authorization")
    );
    gw.event(|e| e.event == "ticket").await;
    let mut c = RawClient::connect(gw.addr).await;
    let reply = c
        .request(
            "OPTIONS",
            "/.wsgate/ticket?path=/chat",
            &[("Origin", "https://evil.example")],
        )
        .await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.header("access-control-allow-origin"), None);
}

/// Buying a ticket verifies a credential, so it counts against the route's
/// handshake rate: guessing tokens or passwords on the ticket path goes no
/// faster than through handshakes, and the two share one budget.
#[tokio::test]
async fn buying_a_ticket_counts_against_the_routes_handshake_rate() {
    let echo = Echo::start().await;
    let config = format!(
        r#"
[[listener]]
bind = "127.0.0.1:0"

[auth.jwt]
hs256_secret_env = "JWT_SECRET"
algorithms = ["HS256"]

[auth.ticket]

[[route]]
path = "/chat"
upstream = "ws://{echo}/chat"
origins = ["https://app.example.com"]
auth = ["ticket", "jwt"]

[route.limits]
handshakes_per_ip_per_min = 2
"#,
        echo = echo.addr
    );
    let mut gw = TestGateway::start_with_env(&config, None, &[("JWT_SECRET", SECRET)]).await;
    let addr = gw.addr;
    let buy = move |token: String| async move {
        let bearer = format!("Bearer {token}");
        let headers = [("Origin", APP), ("Authorization", bearer.as_str())];
        let mut c = RawClient::connect(addr).await;
        c.request("POST", "/.wsgate/ticket?path=%2Fchat", &headers)
            .await
    };
    // A preflight carries no credential and is not counted. (Its `path` as
    // `URLSearchParams` writes it.)
    let mut c = RawClient::connect(gw.addr).await;
    let reply = c
        .request(
            "OPTIONS",
            "/.wsgate/ticket?path=%2Fchat",
            &[("Origin", APP)],
        )
        .await;
    assert_eq!(reply.status, 204);
    for _ in 0..2 {
        let guess = jwt::hs256("a-guessed-secret-of-at-least-32-bytes", &claims("a", 300));
        assert_eq!(buy(guess).await.status, 401);
    }
    // The third attempt in the minute is refused before any verification,
    // a good token as well as a guess.
    let good = jwt::hs256(SECRET, &claims("alice", 300));
    let reply = buy(good).await;
    assert_eq!(reply.status, 429, "{reply:?}");
    assert!(reply.header("retry-after").is_some(), "{reply:?}");
    let mut seen = Vec::new();
    for _ in 0..4 {
        let ev = gw.event(|e| e.event == "ticket").await;
        seen.push((ev.decision, ev.reason));
    }
    assert_eq!(
        seen,
        [
            (Some("preflight"), None),
            (Some("refused"), Some("auth_invalid")),
            (Some("refused"), Some("auth_invalid")),
            (Some("refused"), Some("rate_limited")),
        ]
    );
    // And the handshakes share the budget the purchases spent.
    let token = jwt::hs256(SECRET, &claims("alice", 300));
    let mut ws = RawClient::connect(gw.addr).await;
    let reply = ws
        .handshake(
            "/chat",
            &[
                ("Origin", APP),
                ("Authorization", &format!("Bearer {token}")),
            ],
        )
        .await;
    assert_eq!(reply.status, 429);
}
