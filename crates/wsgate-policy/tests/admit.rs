//! Admission decisions over configs parsed the way the gateway parses them.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::Path;

use wsgate_policy::verify::{AuthFailure, Identity};
use wsgate_policy::{Reason, Request, Router, Verified, admit};

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
    let headers = http::HeaderMap::new();
    let req = Request {
        path,
        query: None,
        host,
        origin,
        protocols: &protocols,
        headers: &headers,
        client_cert: None,
    };
    admit(&config.listeners[0].hosts, &router, &config.auth, &req)
        .and_then(|checked| checked.finish(Err(AuthFailure::Missing)))
        .map(|a| {
            if path.starts_with("/chat") {
                assert_eq!(a.protocols(), ["chat.v1"]);
            }
            a.report().map(|r| r.reason)
        })
        .map_err(|r| r.reason)
}

#[test]
fn a_routes_path_in_another_letter_case_is_malformed_not_unrouted() {
    let ok = Some("https://app.example.com");
    // Admission itself refuses it, not only the gateway around it: an
    // upstream that ignores case would take /CHAT for /chat.
    for path in ["/CHAT", "/Chat/room", "/OPEN"] {
        assert_eq!(
            decide("", path, "127.0.0.1", ok),
            Err(Reason::BadHandshake),
            "{path}"
        );
    }
    assert_eq!(
        decide("", "/CHATROOM", "127.0.0.1", ok),
        Err(Reason::RouteNotFound)
    );
}

#[test]
fn decisions_in_order() {
    let ok = Some("https://app.example.com");
    assert_eq!(decide("", "/chat", "127.0.0.1", ok), Ok(None));
    assert_eq!(decide("", "/chat/room/1", "localhost:80", ok), Ok(None));
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

/// The cross-site credentials rule, decided on verified credentials.
mod cross_site {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn config(extra: &str) -> wsgate_config::Config {
        let src = format!(
            r#"
[[listener]]
bind = "127.0.0.1:0"

[auth.jwt]
hs256_secret_env = "S"
algorithms = ["HS256"]
from = ["header", "cookie:session"]

[[route]]
path = "/"
upstream = "ws://127.0.0.1:9/"
origins = ["https://app.example.com", "http://127.0.0.1", "null"]
allow_missing_origin = true
auth = "jwt"
{extra}
"#
        );
        wsgate_config::parse_with_env(&src, Path::new("."), &|_| Some(SECRET.into())).unwrap()
    }

    /// Admits with the first presented credential verified as `alice`.
    fn decide(origin: Option<&str>, header: (&str, &str)) -> Result<Option<Reason>, Reason> {
        decide_with(origin, &[header])
    }

    fn decide_with(origin: Option<&str>, given: &[(&str, &str)]) -> Result<Option<Reason>, Reason> {
        let config = config("");
        let router = Router::new(config.routes.clone());
        let mut headers = http::HeaderMap::new();
        for (k, v) in given {
            headers.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let req = Request {
            path: "/",
            query: None,
            host: "127.0.0.1",
            origin,
            protocols: &[],
            headers: &headers,
            client_cert: None,
        };
        let checked =
            admit(&config.listeners[0].hosts, &router, &config.auth, &req).map_err(|r| r.reason)?;
        assert_eq!(checked.credentials().len(), 1, "{checked:?}");
        let identity = Identity {
            user: "alice".into(),
            method: wsgate_config::AuthMethod::Jwt,
            expires: None,
        };
        checked
            .finish(Ok(Verified {
                identity,
                credential: 0,
            }))
            .map(|a| {
                assert_eq!(a.identity().map(|i| i.user.as_str()), Some("alice"));
                a.report().map(|r| r.reason)
            })
            .map_err(|r| r.reason)
    }

    #[test]
    fn a_cookie_is_ambient_and_needs_a_listed_origin() {
        let cookie = ("cookie", "session=t");
        assert_eq!(decide(Some("https://app.example.com"), cookie), Ok(None));
        assert_eq!(decide(None, cookie), Err(Reason::CrossSiteCredentials));
        // `null` may be listed for token clients; with a cookie it is still refused.
        assert_eq!(
            decide(Some("null"), cookie),
            Err(Reason::CrossSiteCredentials)
        );
    }

    #[test]
    fn sec_fetch_site_cross_site_from_the_endpoints_own_host_refuses_ambient_credentials() {
        // The Host these handshakes ask for is 127.0.0.1.
        let app = Some("http://127.0.0.1");
        let cookie = ("cookie", "session=t");
        let bearer = ("authorization", "Bearer t");
        let cross = ("sec-fetch-site", "cross-site");
        assert_eq!(
            decide_with(app, &[cookie, cross]),
            Err(Reason::CrossSiteCredentials)
        );
        assert_eq!(
            decide_with(app, &[cookie, ("sec-fetch-site", "Cross-Site")]),
            Err(Reason::CrossSiteCredentials)
        );
        for site in ["same-origin", "same-site", "none"] {
            assert_eq!(
                decide_with(app, &[cookie, ("sec-fetch-site", site)]),
                Ok(None),
                "{site}"
            );
        }
        // A token is not ambient: a cross-site page holding one was given it.
        assert_eq!(decide_with(app, &[bearer, cross]), Ok(None));
        // A listed origin on another site than the endpoint is cross-site by design.
        let other_site = Some("https://app.example.com");
        assert_eq!(decide_with(other_site, &[cookie, cross]), Ok(None));
    }

    #[test]
    fn a_header_token_is_not_ambient() {
        let bearer = ("authorization", "Bearer t");
        assert_eq!(decide(Some("https://app.example.com"), bearer), Ok(None));
        assert_eq!(decide(None, bearer), Ok(None));
        assert_eq!(decide(Some("null"), bearer), Ok(None));
    }

    #[test]
    fn a_credential_index_that_was_not_presented_is_refused() {
        let config = config("");
        let router = Router::new(config.routes.clone());
        let headers = http::HeaderMap::new();
        let req = Request {
            path: "/",
            query: None,
            host: "127.0.0.1",
            origin: None,
            protocols: &[],
            headers: &headers,
            client_cert: None,
        };
        let checked = admit(&config.listeners[0].hosts, &router, &config.auth, &req).unwrap();
        let identity = Identity {
            user: "mallory".into(),
            method: wsgate_config::AuthMethod::Jwt,
            expires: None,
        };
        let refused = checked
            .finish(Ok(Verified {
                identity,
                credential: 3,
            }))
            .unwrap_err();
        assert_eq!(refused.reason, Reason::AuthInvalid);
    }
}

/// One credential of each kind is verified, however many the handshake
/// repeats: each costs a verification, a password a bcrypt run.
#[test]
fn one_credential_of_each_kind_is_taken() {
    use base64::Engine as _;
    use wsgate_policy::credentials::{Credential, Source};
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    // A line of bcrypt's shape: the file is only read here, no password is checked.
    std::fs::write(
        dir.join("one-of-each.htpasswd"),
        "u1:$2y$04$zQ3mBoSBa5CvjiL9uIc3K.gVXvN0i4uY5uFeBsR8rPo2v1cm2gQOW\n",
    )
    .unwrap();
    let src = r#"
[[listener]]
bind = "127.0.0.1:0"

[auth.jwt]
hs256_secret_env = "S"
algorithms = ["HS256"]
from = ["header", "subprotocol", "cookie:session"]

[auth.basic]
htpasswd = "one-of-each.htpasswd"

[[route]]
path = "/"
upstream = "ws://127.0.0.1:9/"
allow_missing_origin = true
auth = ["jwt", "basic"]
"#;
    let config = wsgate_config::parse_with_env(src, dir, &|_| {
        Some("0123456789abcdef0123456789abcdef".into())
    })
    .unwrap();
    let router = Router::new(config.routes.clone());
    let basic = |pair: &str| {
        let b64 = base64::engine::general_purpose::STANDARD.encode(pair);
        format!("Basic {b64}")
    };
    let mut headers = http::HeaderMap::new();
    for value in [
        "Bearer a".to_owned(),
        basic("u1:p1"),
        "Bearer b".to_owned(),
        basic("u2:p2"),
        basic("u3:p3"),
    ] {
        headers.append(http::header::AUTHORIZATION, value.parse().unwrap());
    }
    headers.append(http::header::COOKIE, "session=c".parse().unwrap());
    headers.append(http::header::COOKIE, "session=c2".parse().unwrap());
    let protocols = ["bearer.d".to_owned(), "bearer.e".to_owned()];
    let req = Request {
        path: "/",
        query: None,
        host: "127.0.0.1",
        origin: None,
        protocols: &protocols,
        headers: &headers,
        client_cert: None,
    };
    let checked = admit(&config.listeners[0].hosts, &router, &config.auth, &req).unwrap();
    let bearer = |token: &str, source| Credential::Bearer {
        token: token.into(),
        source,
    };
    assert_eq!(
        checked.credentials(),
        [
            bearer("a", Source::Header),
            bearer("d", Source::Subprotocol),
            bearer("c", Source::Cookie("session".into())),
            Credential::Basic {
                user: "u1".into(),
                password: "p1".into(),
            },
        ]
    );
}
