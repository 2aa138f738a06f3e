//! `[auth.*]` validation: algorithms against keys, secrets from the
//! environment, htpasswd hashes line by line, and where Basic may be used.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::Path;

use wsgate_config::auth::{JwtAlgorithm, JwtKeys, TokenSource};
use wsgate_config::{Auth, AuthMethod, parse_with_env};

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn env(name: &str) -> Option<String> {
    match name {
        "GOOD_SECRET" => Some(SECRET.into()),
        "SHORT_SECRET" => Some("short".into()),
        _ => None,
    }
}

fn config(auth: &str, route_auth: &str, dir: &Path) -> Result<wsgate_config::Config, String> {
    let src = format!(
        r#"
[[listener]]
bind = "127.0.0.1:0"

{auth}

[[route]]
path = "/chat"
upstream = "ws://127.0.0.1:9/"
origins = ["https://app.example.com"]
auth = {route_auth}
identity_headers = {{ user = "X-Wsgate-User", method = "X-Wsgate-Auth" }}
"#
    );
    parse_with_env(&src, dir, &env).map_err(|e| e.to_string())
}

#[test]
fn a_jwt_route_with_an_hs256_secret_from_the_environment() {
    let c = config(
        "[auth.jwt]\nhs256_secret_env = \"GOOD_SECRET\"\nalgorithms = [\"HS256\"]\nfrom = [\"header\", \"cookie:session\", \"subprotocol\"]\naudience = \"chat\"",
        "[\"jwt\"]",
        Path::new("."),
    )
    .unwrap();
    let jwt = c.auth.jwt.as_ref().unwrap();
    assert!(matches!(&jwt.keys, JwtKeys::Secret { secret, .. } if secret == SECRET.as_bytes()));
    assert_eq!(jwt.algorithms, [JwtAlgorithm::HS256]);
    assert_eq!(
        jwt.from,
        [
            TokenSource::Header,
            TokenSource::Cookie("session".into()),
            TokenSource::Subprotocol
        ]
    );
    assert_eq!(jwt.user_claim, "sub");
    assert_eq!(c.routes[0].auth, Auth::Any(vec![AuthMethod::Jwt]));
    assert_eq!(
        c.routes[0].identity_headers.user.as_deref(),
        Some("x-wsgate-user")
    );
    // The secret never shows in debug output.
    assert!(!format!("{c:?}").contains(SECRET));
}

#[test]
fn algorithm_and_key_mistakes_are_refused() {
    let cases = [
        (
            "hs256_secret_env = \"GOOD_SECRET\"\nalgorithms = [\"RS256\"]",
            "does not fit the keys",
        ),
        (
            "hs256_secret_env = \"GOOD_SECRET\"\nalgorithms = [\"none\"]",
            "never accepted",
        ),
        (
            "hs256_secret_env = \"GOOD_SECRET\"\nalgorithms = [\"HS1\"]",
            "not a supported JWS algorithm",
        ),
        (
            "hs256_secret_env = \"MISSING\"\nalgorithms = [\"HS256\"]",
            "$MISSING is not set",
        ),
        (
            "hs256_secret_env = \"SHORT_SECRET\"\nalgorithms = [\"HS256\"]",
            "at least 32",
        ),
        ("hs256_secret_env = \"GOOD_SECRET\"", "algorithms (line"),
        (
            "keys = \"nope.json\"\nalgorithms = [\"RS256\"]",
            "no such file",
        ),
        ("algorithms = [\"RS256\"]", "exactly one of"),
        (
            "hs256_secret_env = \"GOOD_SECRET\"\nalgorithms = [\"HS256\"]\nfrom = [\"query\"]",
            "jwt_query_param",
        ),
    ];
    for (jwt, expect) in cases {
        let err = config(&format!("[auth.jwt]\n{jwt}"), "[\"jwt\"]", Path::new(".")).unwrap_err();
        assert!(
            err.contains(expect),
            "{jwt:?}: expected {expect:?} in\n{err}"
        );
    }
}

#[test]
fn a_method_without_its_table_and_none_mixed_with_methods() {
    let err = config("", "[\"jwt\"]", Path::new(".")).unwrap_err();
    assert!(
        err.contains("route[0].auth[0] (line 11): `jwt` needs an [auth.jwt] table"),
        "{err}"
    );
    let err = config("", "[\"none\", \"basic\"]", Path::new(".")).unwrap_err();
    assert!(err.contains("cannot be combined"), "{err}");
}

#[test]
fn htpasswd_accepts_bcrypt_and_argon2_and_names_the_line_of_anything_else() {
    let dir = tempfile::tempdir().unwrap();
    let bcrypt = "$2y$05$D9hq5yX3u7s0iFpGl0nF8ucG6S4W3n3pB0p1s1Rb5tK0cYg0xQd1a";
    let argon =
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    std::fs::write(
        dir.path().join("good.htpasswd"),
        format!("# users\nalice:{bcrypt}\nbob:{argon}\n"),
    )
    .unwrap();
    let c = config(
        "[auth.basic]\nhtpasswd = \"good.htpasswd\"",
        "[\"basic\"]",
        dir.path(),
    )
    .unwrap();
    assert_eq!(c.auth.basic.as_ref().unwrap().users.len(), 2);
    std::fs::write(
        dir.path().join("bad.htpasswd"),
        format!("alice:{bcrypt}\ncarol:$apr1$abc$def\ndave:{{SHA}}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\neve:plaintext\nalice:{bcrypt}\nnocolon\n"),
    )
    .unwrap();
    let err = config(
        "[auth.basic]\nhtpasswd = \"bad.htpasswd\"",
        "[\"basic\"]",
        dir.path(),
    )
    .unwrap_err();
    for expect in [
        "line 2: user `carol`: MD5-crypt",
        "line 3: user `dave`: SHA-1",
        "line 4: user `eve`: plain-text",
        "line 5: repeats user `alice`",
        "line 6: is not `user:hash`",
    ] {
        assert!(err.contains(expect), "expected {expect:?} in\n{err}");
    }
    assert!(
        !err.contains("plaintext"),
        "a password leaked into the error:\n{err}"
    );
}

#[test]
fn basic_credentials_never_cross_a_public_cleartext_listener() {
    let dir = tempfile::tempdir().unwrap();
    let bcrypt = "$2y$05$D9hq5yX3u7s0iFpGl0nF8ucG6S4W3n3pB0p1s1Rb5tK0cYg0xQd1a";
    std::fs::write(dir.path().join("u.htpasswd"), format!("alice:{bcrypt}\n")).unwrap();
    let src = r#"
[[listener]]
bind = "0.0.0.0:0"
allow_cleartext = true

[auth.basic]
htpasswd = "u.htpasswd"

[[route]]
path = "/chat"
upstream = "ws://127.0.0.1:9/"
origins = ["https://app.example.com"]
auth = "basic"
"#;
    let err = parse_with_env(src, dir.path(), &env)
        .unwrap_err()
        .to_string();
    assert!(err.contains("would carry in clear"), "{err}");
}

#[test]
fn identity_headers_cannot_hijack_protocol_headers() {
    let src = "[auth.jwt]\nhs256_secret_env = \"GOOD_SECRET\"\nalgorithms = [\"HS256\"]";
    let c = config(src, "[\"jwt\"]", Path::new(".")).unwrap();
    assert!(c.routes[0].identity_headers.method.is_some());
    let err = wsgate_config::parse_with_env(
        &format!(
            "[[listener]]\nbind = \"127.0.0.1:0\"\n{src}\n[[route]]\npath = \"/\"\nupstream = \"ws://127.0.0.1:9/\"\nallow_missing_origin = true\nauth = \"jwt\"\nidentity_headers = {{ user = \"Cookie\" }}\n"
        ),
        Path::new("."),
        &env,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("cannot carry an identity"), "{err}");
}

#[test]
fn client_certificate_settings_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), "placeholder").unwrap();
    let with = |listener: &str, auth: &str| {
        let src = format!(
            "[[listener]]\nbind = \"127.0.0.1:0\"\n{listener}\n\n{auth}\n\n[[route]]\npath = \"/\"\nupstream = \"ws://127.0.0.1:9/\"\norigins = [\"https://app.example.com\"]\nauth = \"mtls\"\n"
        );
        parse_with_env(&src, dir.path(), &env).map_err(|e| e.to_string())
    };
    let ok = with(
        "tls = { self_signed = true }\nclient_ca = \"ca.pem\"\nclient_cert = \"required\"",
        "[auth.mtls]\nuser_from = \"cn\"",
    )
    .unwrap();
    let certs = ok.listeners[0].client_certs.as_ref().unwrap();
    assert_eq!(certs.mode, wsgate_config::ClientCertMode::Required);
    for (listener, auth, expect) in [
        ("client_ca = \"ca.pem\"", "[auth.mtls]", "need TLS"),
        (
            "tls = { self_signed = true }\nclient_cert = \"optional\"",
            "[auth.mtls]",
            "needs `client_ca`",
        ),
        (
            "tls = { self_signed = true }\nclient_ca = \"ca.pem\"\nclient_cert = \"maybe\"",
            "[auth.mtls]",
            "`maybe`",
        ),
        (
            "tls = { self_signed = true }\nclient_ca = \"missing.pem\"",
            "[auth.mtls]",
            "no such file",
        ),
        (
            "tls = { self_signed = true }",
            "[auth.mtls]",
            "needs a listener with `client_ca`",
        ),
        (
            "tls = { self_signed = true }\nclient_ca = \"ca.pem\"",
            "[auth.mtls]\nuser_from = \"uid\"",
            "`uid`",
        ),
        (
            "tls = { self_signed = true }\nclient_ca = \"ca.pem\"",
            "",
            "needs an [auth.mtls] table",
        ),
    ] {
        let err = with(listener, auth).unwrap_err();
        assert!(
            err.contains(expect),
            "{listener:?} {auth:?}: expected {expect:?} in\n{err}"
        );
    }
}

#[test]
fn tickets_are_bought_with_another_method() {
    let jwt = "[auth.jwt]\nhs256_secret_env = \"GOOD_SECRET\"\nalgorithms = [\"HS256\"]";
    let c = config(
        &format!("{jwt}\n[auth.ticket]\nttl = \"10s\""),
        "[\"ticket\", \"jwt\"]",
        Path::new("."),
    )
    .unwrap();
    let t = c.auth.ticket.as_ref().unwrap();
    assert_eq!(
        (t.issue_path.as_str(), t.ttl.as_secs()),
        ("/.wsgate/ticket", 10)
    );
    let err = config(
        &format!("{jwt}\n[auth.ticket]"),
        "\"ticket\"",
        Path::new("."),
    )
    .unwrap_err();
    assert!(err.contains("bought with another credential"), "{err}");
    let err = config(
        &format!("{jwt}\n[auth.ticket]\nissue_path = \"ticket\""),
        "[\"ticket\", \"jwt\"]",
        Path::new("."),
    )
    .unwrap_err();
    assert!(err.contains("not an absolute path"), "{err}");
    let err = config(jwt, "[\"ticket\", \"jwt\"]", Path::new(".")).unwrap_err();
    assert!(err.contains("needs an [auth.ticket] table"), "{err}");
}

#[test]
fn forward_auth_settings() {
    let c = config(
        "[auth.forward]\nurl = \"http://127.0.0.1:8080/auth/check\"",
        "\"forward\"",
        Path::new("."),
    )
    .unwrap();
    let f = c.auth.forward.as_ref().unwrap();
    assert_eq!(
        (
            f.user_header.as_str(),
            f.timeout.as_secs(),
            f.cache.map(|d| d.as_secs())
        ),
        ("x-user", 2, Some(5))
    );
    assert_eq!(f.max_age, None);
    for (table, expect) in [
        ("[auth.forward]", "url (line"),
        (
            "[auth.forward]\nurl = \"ftp://x/\"",
            "not an http:// or https:// URL",
        ),
        (
            "[auth.forward]\nurl = \"http://x/\"\ncache_ttl = \"0s\"",
            "write \"off\"",
        ),
    ] {
        let err = config(table, "\"forward\"", Path::new(".")).unwrap_err();
        assert!(
            err.contains(expect),
            "{table:?}: expected {expect:?} in\n{err}"
        );
    }
}

#[test]
fn jwks_urls_need_https_except_on_loopback() {
    let ok = config(
        "[auth.jwt]\njwks_url = \"https://id.example.com/jwks.json\"\nalgorithms = [\"RS256\"]",
        "\"jwt\"",
        Path::new("."),
    )
    .unwrap();
    assert!(
        matches!(&ok.auth.jwt.as_ref().unwrap().keys, JwtKeys::JwksUrl { refresh_min, .. } if refresh_min.as_secs() == 30)
    );
    assert!(
        config(
            "[auth.jwt]\njwks_url = \"http://127.0.0.1:9/jwks\"\nalgorithms = [\"ES256\"]",
            "\"jwt\"",
            Path::new(".")
        )
        .is_ok()
    );
    for (jwt, expect) in [
        (
            "jwks_url = \"http://id.example.com/jwks.json\"\nalgorithms = [\"RS256\"]",
            "https://",
        ),
        (
            "jwks_url = \"https://id.example.com/jwks.json\"\nalgorithms = [\"HS256\"]",
            "does not fit the keys",
        ),
        (
            "jwks_url = \"https://id.example.com/j\"\nhs256_secret_env = \"GOOD_SECRET\"\nalgorithms = [\"RS256\"]",
            "exactly one of",
        ),
    ] {
        let err = config(&format!("[auth.jwt]\n{jwt}"), "\"jwt\"", Path::new(".")).unwrap_err();
        assert!(
            err.contains(expect),
            "{jwt:?}: expected {expect:?} in\n{err}"
        );
    }
}

#[test]
fn a_ca_for_an_https_endpoint_is_a_file_and_only_for_https() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), "PEM").unwrap();
    let ok = config(
        "[auth.jwt]\njwks_url = \"https://id.internal/jwks.json\"\njwks_ca = \"ca.pem\"\nalgorithms = [\"RS256\"]",
        "\"jwt\"",
        dir.path(),
    )
    .unwrap();
    assert!(matches!(
        &ok.auth.jwt.as_ref().unwrap().keys,
        JwtKeys::JwksUrl { ca: Some(ca), .. } if *ca == dir.path().join("ca.pem")
    ));
    let ok = config(
        "[auth.forward]\nurl = \"https://auth.internal/check\"\nca = \"ca.pem\"",
        "\"forward\"",
        dir.path(),
    )
    .unwrap();
    assert_eq!(ok.auth.forward.unwrap().ca, Some(dir.path().join("ca.pem")));
    for (table, route, expect) in [
        (
            "[auth.jwt]\njwks_url = \"http://127.0.0.1:9/jwks\"\njwks_ca = \"ca.pem\"\nalgorithms = [\"ES256\"]",
            "\"jwt\"",
            "auth.jwt.jwks_ca (line 7): applies to an https:// URL only",
        ),
        (
            "[auth.jwt]\njwks_url = \"https://id.internal/jwks.json\"\njwks_ca = \"nowhere.pem\"\nalgorithms = [\"RS256\"]",
            "\"jwt\"",
            "no such file",
        ),
        (
            "[auth.jwt]\nhs256_secret_env = \"GOOD_SECRET\"\njwks_ca = \"ca.pem\"\nalgorithms = [\"HS256\"]",
            "\"jwt\"",
            "names the CA of a `jwks_url`, and there is none",
        ),
        (
            "[auth.forward]\nurl = \"http://auth.internal/check\"\nca = \"ca.pem\"",
            "\"forward\"",
            "auth.forward.ca (line 7): applies to an https:// URL only",
        ),
    ] {
        let err = config(table, route, dir.path()).unwrap_err();
        assert!(
            err.contains(expect),
            "{table:?}: expected {expect:?} in\n{err}"
        );
    }
}
