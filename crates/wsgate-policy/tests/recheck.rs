//! Open connections judged again by a new config (a reload): what
//! admission saw under the old one, rechecked under the new one.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::Path;

use wsgate_policy::verify::Identity;
use wsgate_policy::{Reason, Request, Router, Seen, Verified, admit, recheck};

const SECRET: &str = "0123456789abcdef0123456789abcdef";

/// A config whose one route is `route`, with JWTs from a header or a cookie.
fn config(route: &str) -> (wsgate_config::Config, Router) {
    let src = format!(
        r#"
[[listener]]
bind = "127.0.0.1:0"

[auth.jwt]
hs256_secret_env = "S"
algorithms = ["HS256"]
from = ["header", "cookie:session"]

[auth.forward]
url = "http://127.0.0.1:9/auth/check"

[[route]]
{route}
"#
    );
    let config =
        wsgate_config::parse_with_env(&src, Path::new("."), &|_| Some(SECRET.into())).unwrap();
    let router = Router::new(config.routes.clone());
    (config, router)
}

const CHAT: &str = r#"path = "/chat"
upstream = "ws://127.0.0.1:9/chat"
origins = ["https://app.example.com"]
auth = "jwt""#;

/// Admits a handshake to /chat under [`CHAT`], its JWT in `header`.
fn admitted(origin: &str, header: (&'static str, &str)) -> Seen {
    let (config, router) = config(CHAT);
    let mut headers = http::HeaderMap::new();
    headers.insert(header.0, header.1.parse().unwrap());
    let req = Request {
        path: "/chat/room",
        query: None,
        host: "localhost",
        origin: Some(origin),
        protocols: &[],
        headers: &headers,
        client_cert: None,
    };
    let checked = admit(&config.listeners[0].hosts, &router, &config.auth, &req).unwrap();
    let identity = Identity {
        user: "alice".into(),
        method: wsgate_config::AuthMethod::Jwt,
        expires: None,
    };
    let admitted = checked
        .finish(Ok(Verified {
            identity,
            credential: 0,
        }))
        .unwrap();
    admitted.seen(&req)
}

fn judge(seen: &Seen, route: &str) -> Result<Option<Reason>, Reason> {
    let (config, router) = config(route);
    recheck(&config.listeners[0].hosts, &router, seen)
        .map(|r| r.report.map(|r| r.reason))
        .map_err(|r| r.reason)
}

#[test]
fn what_admission_saw_is_kept_without_the_credential() {
    let seen = admitted(
        "https://app.example.com",
        ("cookie", "session=secret-token"),
    );
    assert_eq!(seen.path, "/chat/room");
    assert_eq!(seen.host, "localhost");
    assert_eq!(seen.origin.as_deref(), Some("https://app.example.com"));
    assert_eq!(seen.auth, Some((wsgate_config::AuthMethod::Jwt, true)));
    assert!(!format!("{seen:?}").contains("secret-token"));
    let bearer = admitted("https://app.example.com", ("authorization", "Bearer t"));
    assert_eq!(bearer.auth, Some((wsgate_config::AuthMethod::Jwt, false)));
}

#[test]
fn the_same_policy_keeps_the_connection() {
    let seen = admitted("https://app.example.com", ("cookie", "session=t"));
    assert_eq!(judge(&seen, CHAT), Ok(None));
}

#[test]
fn an_origin_taken_off_the_list_is_refused() {
    let seen = admitted("https://app.example.com", ("authorization", "Bearer t"));
    let other = CHAT.replace("https://app.example.com", "https://new.example.com");
    assert_eq!(judge(&seen, &other), Err(Reason::OriginNotAllowed));
}

#[test]
fn a_path_no_route_serves_any_more_is_refused() {
    let seen = admitted("https://app.example.com", ("authorization", "Bearer t"));
    let moved = CHAT.replace(r#"path = "/chat""#, r#"path = "/talk""#);
    assert_eq!(judge(&seen, &moved), Err(Reason::RouteNotFound));
}

#[test]
fn a_path_that_a_new_route_serves_in_another_letter_case_is_refused() {
    let seen = admitted("https://app.example.com", ("authorization", "Bearer t"));
    // /chat/room now imitates the new route /chat/ROOM, which an upstream
    // that ignores case would take it for.
    let more = format!(
        "{CHAT}\n\n[[route]]\npath = \"/chat/ROOM\"\nupstream = \"ws://127.0.0.1:9/\"\norigins = [\"https://app.example.com\"]\nauth = \"jwt\""
    );
    assert_eq!(judge(&seen, &more), Err(Reason::BadHandshake));
}

#[test]
fn a_host_allow_list_that_leaves_the_host_out_is_refused() {
    let seen = admitted("https://app.example.com", ("authorization", "Bearer t"));
    let hosts = format!("{CHAT}\nhosts = [\"chat.example.com\"]");
    assert_eq!(judge(&seen, &hosts), Err(Reason::HostNotAllowed));
    let listed = format!("{CHAT}\nhosts = [\"localhost\"]");
    assert_eq!(judge(&seen, &listed), Ok(None));
}

#[test]
fn a_method_the_route_no_longer_accepts_is_refused() {
    let seen = admitted("https://app.example.com", ("authorization", "Bearer t"));
    let basic = CHAT.replace(r#"auth = "jwt""#, r#"auth = "forward""#);
    assert_eq!(judge(&seen, &basic), Err(Reason::AuthMissing));
    let either = CHAT.replace(r#"auth = "jwt""#, r#"auth = ["forward", "jwt"]"#);
    assert_eq!(judge(&seen, &either), Ok(None));
    let none = CHAT.replace(r#"auth = "jwt""#, r#"auth = "none""#);
    assert_eq!(judge(&seen, &none), Ok(None));
}

#[test]
fn an_unauthenticated_connection_is_refused_when_the_route_starts_to_require_auth() {
    let mut seen = admitted("https://app.example.com", ("authorization", "Bearer t"));
    seen.auth = None;
    assert_eq!(judge(&seen, CHAT), Err(Reason::AuthMissing));
}

#[test]
fn an_ambient_credential_needs_a_tuple_origin_still_listed() {
    // `null` listed and the origin still allowed, but a cookie needs a real origin.
    let seen = admitted("https://app.example.com", ("cookie", "session=t"));
    let wildcard = CHAT.replace(
        r#"origins = ["https://app.example.com"]"#,
        r#"origins = ["https://*.example.com"]"#,
    );
    assert_eq!(judge(&seen, &wildcard), Ok(None));
    let mut from_null = seen.clone();
    from_null.origin = Some("null".into());
    let nulls = CHAT.replace(
        r#"origins = ["https://app.example.com"]"#,
        r#"origins = ["null"]"#,
    );
    assert_eq!(judge(&from_null, &nulls), Err(Reason::CrossSiteCredentials));
}

#[test]
fn report_mode_keeps_the_connection_and_records_the_refusal() {
    let seen = admitted("https://app.example.com", ("authorization", "Bearer t"));
    let report = format!(
        "{}\nmode = \"report\"",
        CHAT.replace("https://app.example.com", "https://new.example.com")
    );
    assert_eq!(judge(&seen, &report), Ok(Some(Reason::OriginNotAllowed)));
}
