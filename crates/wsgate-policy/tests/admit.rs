//! Admission decisions over configs parsed the way the gateway parses them.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::Path;

use wsgate_policy::{Reason, Request, Router, admit};

fn router(extra: &str) -> (wsgate_config::Config, Router) {
    let src = format!(
        r#"
[[listener]]
bind = "127.0.0.1:0"

[[route]]
path = "/chat"
upstream = "ws://127.0.0.1:9/chat"
origins = ["https://app.example.com", "https://*.example.org", "null"]
auth = "none"
subprotocols = ["chat.v1"]
{extra}

[[route]]
path = "/open"
upstream = "ws://127.0.0.1:9/"
allow_missing_origin = true
auth = "none"
"#
    );
    let config = wsgate_config::parse(&src, Path::new(".")).unwrap();
    let router = Router::new(config.routes.clone());
    (config, router)
}

fn decide(
    extra: &str,
    path: &str,
    host: &str,
    origin: Option<&str>,
) -> Result<Option<Reason>, Reason> {
    let (config, router) = router(extra);
    let protocols = ["chat.v2".to_string(), "chat.v1".to_string()];
    let req = Request {
        path,
        host,
        origin,
        protocols: &protocols,
    };
    admit(&config.listeners[0].hosts, &router, &req)
        .map(|a| {
            if path.starts_with("/chat") {
                assert_eq!(a.protocols(), ["chat.v1"]);
            }
            a.report().map(|r| r.reason)
        })
        .map_err(|r| r.reason)
}

#[test]
fn decisions_in_order() {
    let ok = Some("https://app.example.com");
    assert_eq!(decide("", "/chat", "127.0.0.1", ok), Ok(None));
    assert_eq!(decide("", "/chat/room/1", "localhost:8080", ok), Ok(None));
    assert_eq!(
        decide("", "/chatroom", "127.0.0.1", ok),
        Err(Reason::RouteNotFound)
    );
    assert_eq!(
        decide("", "/chat", "evil.test", ok),
        Err(Reason::HostNotAllowed)
    );
    assert_eq!(
        decide("", "/chat", "127.0.0.1", None),
        Err(Reason::OriginMissing)
    );
    assert_eq!(
        decide("", "/chat", "127.0.0.1", Some("https://evil.test")),
        Err(Reason::OriginNotAllowed)
    );
    assert_eq!(
        decide("", "/chat", "127.0.0.1", Some("https://a.example.org")),
        Ok(None)
    );
    assert_eq!(decide("", "/chat", "127.0.0.1", Some("null")), Ok(None));
    assert_eq!(
        decide("", "/chat", "127.0.0.1", Some("garbage")),
        Err(Reason::OriginNotAllowed)
    );
    // Host is checked before Origin.
    assert_eq!(
        decide("", "/chat", "evil.test", Some("https://evil.test")),
        Err(Reason::HostNotAllowed)
    );
    // A route with no origins refuses any handshake that has one.
    assert_eq!(
        decide("", "/open", "127.0.0.1", ok),
        Err(Reason::OriginNotAllowed)
    );
    assert_eq!(decide("", "/open", "127.0.0.1", None), Ok(None));
}

#[test]
fn route_hosts_narrow_the_listener() {
    let extra = r#"hosts = ["chat.example.com"]"#;
    assert_eq!(
        decide(extra, "/chat", "127.0.0.1", Some("https://app.example.com")),
        Err(Reason::HostNotAllowed)
    );
}

#[test]
fn report_mode_admits_and_records_the_refusal() {
    let extra = r#"mode = "report""#;
    assert_eq!(
        decide(extra, "/chat", "127.0.0.1", Some("https://evil.test")),
        Ok(Some(Reason::OriginNotAllowed))
    );
    assert_eq!(
        decide(extra, "/chat", "127.0.0.1", Some("https://app.example.com")),
        Ok(None)
    );
}
