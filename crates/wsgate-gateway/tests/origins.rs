//! Origin admission over real handshakes: a long list of the ways an
//! allow-list has been bypassed in real servers.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use wsgate_testkit::client::RawClient;
use wsgate_testkit::gateway::TestGateway;
use wsgate_testkit::upstream::Echo;

/// Allow-list: `https://app.example.com` exactly, any `https://*.example.org`,
/// `http://localhost:3000`, and `null` on the second route only.
const ROUTES: &str = r#"
[[route]]
path = "/sandboxed"
upstream = "ws://UPSTREAM/"
origins = ["null"]
auth = "none"
"#;

async fn status(gw: &mut TestGateway, path: &str, origin: &str) -> (u16, Option<&'static str>) {
    let mut c = RawClient::connect(gw.addr).await;
    let status = c.handshake(path, &[("Origin", origin)]).await.status;
    let ev = gw.handshake_event().await;
    (status, ev.reason)
}

#[tokio::test]
async fn origins_match_as_parsed_tuples_never_as_strings() {
    let echo = Echo::start().await;
    let config = common::config(echo.addr, "", "")
        .replace(
            r#"origins = ["https://app.example.com", "https://*.example.org"]"#,
            r#"origins = ["https://app.example.com", "https://*.example.org", "http://localhost:3000"]"#,
        )
        + &ROUTES.replace("UPSTREAM", &echo.addr.to_string());
    let mut gw = TestGateway::start(&config).await;
    let allowed = [
        "https://app.example.com",
        "https://app.example.com:443",
        "HTTPS://APP.EXAMPLE.COM",
        "https://a.example.org",
        "https://deep.sub.example.org",
        "http://localhost:3000",
    ];
    for origin in allowed {
        assert_eq!(
            status(&mut gw, "/chat", origin).await,
            (101, None),
            "{origin} should be admitted"
        );
    }
    let refused = [
        // scheme and port
        "http://app.example.com",
        "wss://app.example.com",
        "https://app.example.com:8443",
        "http://localhost:3001",
        "https://localhost:3000",
        // look-alikes: prefix, suffix, sibling, dots replaced
        "https://app.example.com.evil.test",
        "https://evilapp.example.com",
        "https://app-example.com",
        "https://appxexample.com",
        "https://app.example.co",
        "https://other.example.com",
        "https://example.org",
        "https://example.org.evil.test",
        "https://evilexample.org",
        // trailing dot: a different origin to the browser
        "https://app.example.com.",
        // malformed or with extras
        "https://app.example.com/",
        "https://user@app.example.com",
        "https://app.example.com`.evil.test",
        "https://app.example.com$.evil.test",
        "app.example.com",
        "",
        // IP literals, files, extensions, null on a route that does not list it
        "http://127.0.0.1:3000",
        "http://[::1]:3000",
        "file://",
        "chrome-extension://abcdefghijklmnop",
        "null",
        "NULL",
    ];
    for origin in refused {
        assert_eq!(
            status(&mut gw, "/chat", origin).await,
            (403, Some("origin_not_allowed")),
            "{origin:?} should be refused"
        );
    }
    // `null` only where it is listed literally.
    assert_eq!(status(&mut gw, "/sandboxed", "null").await, (101, None));
    assert_eq!(
        status(&mut gw, "/sandboxed", "https://app.example.com")
            .await
            .0,
        403
    );
}

#[tokio::test]
async fn a_missing_origin_is_refused_unless_the_route_allows_it() {
    let echo = Echo::start().await;
    let mut gw = TestGateway::start(&common::config(echo.addr, "", "")).await;
    let mut c = RawClient::connect(gw.addr).await;
    assert_eq!(c.handshake("/chat", &[]).await.status, 403);
    assert_eq!(gw.handshake_event().await.reason, Some("origin_missing"));

    let gw = TestGateway::start(&common::config(
        echo.addr,
        "allow_missing_origin = true",
        "",
    ))
    .await;
    let mut c = RawClient::connect(gw.addr).await;
    assert_eq!(c.handshake("/chat", &[]).await.status, 101);
    // Allowing a missing Origin does not widen the allow-list.
    let mut c = RawClient::connect(gw.addr).await;
    assert_eq!(
        c.handshake("/chat", &[("Origin", "https://evil.example")])
            .await
            .status,
        403
    );
}
