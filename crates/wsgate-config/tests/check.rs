//! Config validation: every error at once, each with its key path and line.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::Path;

use wsgate_config::{Auth, Hosts, Mode, Tls, parse};

const GOOD: &str = r#"
[[listener]]
bind = "127.0.0.1:0"

[[route]]
path = "/chat"
upstream = "ws://127.0.0.1:9001/chat"
origins = ["https://app.example.com", "https://*.example.com"]
auth = "none"
mode = "report"
subprotocols = ["chat.v1"]

[route.limits]
max_message = "1MiB"
max_frame = "16KiB"
idle_timeout = "off"
"#;

#[test]
fn a_good_config_loads_with_its_values() {
    let c = parse(GOOD, Path::new(".")).unwrap();
    assert_eq!(c.listeners.len(), 1);
    assert!(c.listeners[0].tls.is_none());
    // A loopback listener without a hosts list only accepts loopback names.
    assert!(matches!(c.listeners[0].hosts, Hosts::Only(ref h) if h.len() == 3));
    let r = &c.routes[0];
    assert_eq!(r.path, "/chat");
    assert_eq!(r.mode, Mode::Report);
    assert_eq!(r.auth, Auth::None);
    assert_eq!(r.origins.len(), 2);
    assert_eq!(r.limits.max_message, 1 << 20);
    assert_eq!(r.limits.max_frame, 16 << 10);
    assert_eq!(r.limits.idle_timeout, None);
    assert_eq!(r.upstream.port, 9001);
}

/// A duration the clock cannot hold would panic where it is added to the
/// time: it is refused when the config loads, with its key path.
#[test]
fn a_duration_past_100_years_is_refused() {
    let src = GOOD.replace(
        "bind = \"127.0.0.1:0\"",
        "bind = \"127.0.0.1:0\"\nhandshake_timeout = \"300000000000y\"",
    );
    let errs = parse(&src, Path::new(".")).unwrap_err().0;
    assert!(
        errs.iter()
            .any(|e| e.path == "listener[0].handshake_timeout"
                && e.to_string().contains("is longer than 100 years")),
        "{errs:#?}"
    );
}

#[test]
fn every_error_is_reported_at_once_with_path_and_line() {
    let src = r#"
[[listener]]
bind = "0.0.0.0:0"
tls = { self_signed = false }
handshake_timeout = "soon"

[[route]]
path = "chat"
upstream = "http://127.0.0.1:9001"
origins = ["*", "https://app.example.com/"]
mode = "loud"
colour = "blue"

[route.limits]
max_frame = "12 parsecs"
burst = 0

[[route]]
path = "/b"
upstream = "ws://127.0.0.1:9001"
auth = "jwt"
origins = ["https://a.example.com"]
csp = {}
"#;
    let errs = parse(src, Path::new(".")).unwrap_err().0;
    let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    let expect = [
        ("listener[0].tls", 4),
        ("listener[0].handshake_timeout", 5),
        ("route[0].path", 8),
        ("route[0].upstream", 9),
        ("route[0].origins[0]", 10),
        ("route[0].origins[1]", 10),
        ("route[0].mode", 11),
        ("route[0].colour", 12),
        ("route[0].limits.max_frame", 15),
        ("route[0].limits.burst", 16),
        ("route[1].csp", 23),
        ("route[0].auth", 7),
        ("route[1].auth", 21),
    ];
    for (path, line) in expect {
        assert!(
            errs.iter().any(|e| e.path == path && e.line == Some(line)),
            "no error for {path} at line {line} in {text:#?}"
        );
    }
    assert!(
        text.iter()
            .any(|t| t.contains("applies to kind = \"http\" routes only")),
        "{text:#?}"
    );
    assert!(text.iter().any(|t| t.contains("unknown key")));
}

#[test]
fn cleartext_on_a_public_address_needs_consent() {
    let src = GOOD.replace("127.0.0.1:0", "0.0.0.0:0");
    let errs = parse(&src, Path::new(".")).unwrap_err();
    assert!(errs.to_string().contains("allow_cleartext"), "{errs}");
    let src = src.replace(
        "bind = \"0.0.0.0:0\"",
        "bind = \"0.0.0.0:0\"\nallow_cleartext = true",
    );
    let c = parse(&src, Path::new(".")).unwrap();
    assert!(matches!(c.listeners[0].hosts, Hosts::Any));
}

#[test]
fn tls_files_must_exist_and_self_signed_is_accepted() {
    let src = GOOD.replace(
        "bind = \"127.0.0.1:0\"",
        "bind = \"127.0.0.1:0\"\ntls = { cert = \"missing.pem\", key = \"missing.key\" }",
    );
    let errs = parse(&src, Path::new("/nonexistent")).unwrap_err().0;
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs[0].message.contains("no such file"));
    let src = GOOD.replace(
        "bind = \"127.0.0.1:0\"",
        "bind = \"127.0.0.1:0\"\ntls = { self_signed = true }",
    );
    assert_eq!(
        parse(&src, Path::new(".")).unwrap().listeners[0].tls,
        Some(Tls::SelfSigned)
    );
}

#[test]
fn a_route_without_origins_or_missing_origin_consent_admits_nobody() {
    let src = GOOD.replace(
        "origins = [\"https://app.example.com\", \"https://*.example.com\"]",
        "",
    );
    let errs = parse(&src, Path::new(".")).unwrap_err();
    assert!(errs.to_string().contains("admits nobody"), "{errs}");
}

#[test]
fn syntax_errors_have_lines() {
    let errs = parse("[[listener]]\nbind = \n", Path::new("."))
        .unwrap_err()
        .0;
    assert_eq!(errs[0].line, Some(2), "{errs:?}");
}

#[test]
fn auth_must_be_written_out() {
    let src = GOOD.replace("auth = \"none\"\n", "");
    let errs = parse(&src, Path::new(".")).unwrap_err();
    assert!(errs.to_string().contains("route[0].auth"), "{errs}");
}

#[test]
fn the_assertion_table() {
    let with = |table: &str| parse(&format!("{GOOD}\n{table}"), Path::new("/nonexistent"));
    let a = with("[assertion]").unwrap().assertion.unwrap();
    assert_eq!(
        (
            a.header.as_str(),
            a.ttl.as_secs(),
            a.jwks_path.as_str(),
            a.key
        ),
        ("x-wsgate-assertion", 60, "/.wsgate/jwks.json", None)
    );
    for (table, expect) in [
        (
            "[assertion]\nheader = \"Sec-Assert\"",
            "not a header name of your own",
        ),
        ("[assertion]\nkey = \"id.pem\"", "no such file"),
        ("[assertion]\njwks_path = \"jwks\"", "not an absolute path"),
    ] {
        let err = with(table).unwrap_err().to_string();
        assert!(
            err.contains(expect),
            "{table:?}: expected {expect:?} in\n{err}"
        );
    }
}

#[test]
fn the_metrics_table() {
    let c = parse(
        &format!("{GOOD}\n[metrics]\nbind = \"127.0.0.1:0\""),
        Path::new("."),
    )
    .unwrap();
    assert_eq!(c.metrics, Some("127.0.0.1:0".parse().unwrap()));
    let err = parse(
        &format!("{GOOD}\n[metrics]\nbind = \"localhost\""),
        Path::new("."),
    )
    .unwrap_err();
    assert!(err.to_string().contains("metrics.bind"), "{err}");
    let err = parse(&format!("{GOOD}\n[metrics]"), Path::new(".")).unwrap_err();
    assert!(err.to_string().contains("is required"), "{err}");
    let c = parse(
        &format!("{GOOD}\n[metrics]\nbind = \"127.0.0.1:0\"\nhosts = [\"metrics.internal\"]"),
        Path::new("."),
    )
    .unwrap();
    assert_eq!(c.admin_hosts.len(), 1);
    let err = parse(
        &format!(
            "{GOOD}\n[metrics]\nbind = \"127.0.0.1:0\"\nhosts = [\"ok.internal\", \"http://x/\"]"
        ),
        Path::new("."),
    )
    .unwrap_err();
    assert!(err.to_string().contains("metrics.hosts[1]"), "{err}");
}

#[test]
fn the_messages_table() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("s.json"), r#"{"type": "object"}"#).unwrap();
    std::fs::write(dir.path().join("bad.json"), "{ not json").unwrap();
    let with = |table: &str| parse(&format!("{GOOD}\n[route.messages]\n{table}"), dir.path());
    let m = with("types = [\"text\"]\nschema = \"s.json\"\non_violation = \"drop\"")
        .unwrap()
        .routes[0]
        .messages
        .clone();
    assert!(m.text && !m.binary && m.assembles_text());
    assert_eq!(m.on_violation, wsgate_config::OnViolation::Drop);
    for (table, expect) in [
        ("types = [\"video\"]", "`video`"),
        ("schema = \"missing.json\"", "cannot read"),
        ("schema = \"bad.json\"", "is not JSON"),
        ("on_violation = \"ignore\"", "`ignore`"),
        (
            "types = [\"binary\"]\njson = true",
            "apply to text messages",
        ),
    ] {
        let err = with(table).unwrap_err().to_string();
        assert!(
            err.contains(expect),
            "{table:?}: expected {expect:?} in\n{err}"
        );
    }
}

#[test]
fn client_limits_load_and_their_mistakes_are_named() {
    let src = format!(
        "{GOOD}{}",
        r#"messages_per_sec = 20
burst = 40
bytes_per_sec = "64KiB"
max_conns_per_ip = 50
handshakes_per_ip_per_min = 120
ipv6_prefix = 56

[limits]
max_connections = 500
assembly_memory = "8MiB"
"#
    );
    let c = parse(&src, Path::new(".")).unwrap();
    let l = &c.routes[0].limits;
    assert_eq!(l.messages_per_sec, Some(20));
    assert_eq!(l.burst, Some(40));
    assert_eq!(l.bytes_per_sec, Some(64 << 10));
    assert_eq!(l.max_conns_per_ip, Some(50));
    assert_eq!(l.handshakes_per_ip_per_min, Some(120));
    assert_eq!(l.ipv6_prefix, 56);
    assert_eq!(c.limits.max_connections, 500);
    assert_eq!(c.limits.assembly_memory, 8 << 20);

    let bad = format!(
        "{GOOD}{}",
        r#"burst = 5
max_conns_per_user = 2
ipv6_prefix = 129
max_conns_per_ip = -1

[limits]
max_connections = 0
"#
    );
    let errs = parse(&bad, Path::new(".")).unwrap_err();
    let text = errs.to_string();
    for (path, words) in [
        ("route[0].limits.burst", "needs `messages_per_sec`"),
        ("route[0].limits.max_conns_per_user", "auth = \"none\""),
        ("route[0].limits.ipv6_prefix", "from 1 to 128"),
        ("route[0].limits.max_conns_per_ip", "whole number"),
        ("limits.max_connections", "from 1 to"),
    ] {
        assert!(
            errs.0
                .iter()
                .any(|e| e.path == path && e.to_string().contains(words)),
            "no `{words}` error at {path} in {text}"
        );
    }
    let low = GOOD.replace(
        "idle_timeout = \"off\"",
        "idle_timeout = \"off\"\nmessages_per_sec = 10\nburst = 5",
    );
    let text = parse(&low, Path::new(".")).unwrap_err().to_string();
    assert!(text.contains("below `messages_per_sec`"), "{text}");
}

#[test]
fn the_store_loads_with_defaults_and_its_mistakes_are_named() {
    let src = format!(
        "{GOOD}{}",
        r#"
[store]
kind = "redis"
url = "redis://127.0.0.1:6379/0"
on_error = "allow"
lease = "10s"
"#
    );
    let c = parse(&src, Path::new(".")).unwrap();
    let wsgate_config::Store::Redis(r) = &c.store else {
        panic!("not redis: {:?}", c.store);
    };
    assert_eq!(r.url, "redis://127.0.0.1:6379/0");
    assert_eq!(r.on_error, wsgate_config::OnStoreError::Allow);
    assert_eq!(r.lease, std::time::Duration::from_secs(10));
    assert_eq!(r.timeout, wsgate_config::DEFAULT_STORE_TIMEOUT);
    assert_eq!(r.prefix, "wsgate");
    let c = parse(GOOD, Path::new(".")).unwrap();
    assert_eq!(c.store, wsgate_config::Store::Memory);

    for (store, path, words) in [
        ("kind = \"etcd\"", "store.kind", "not a store"),
        ("kind = \"redis\"", "store.url", "is required"),
        (
            "kind = \"redis\"\nurl = \"http://x\"",
            "store.url",
            "redis://",
        ),
        (
            "kind = \"redis\"\nurl = \"redis://x\"\non_error = \"maybe\"",
            "store.on_error",
            "deny",
        ),
        (
            "kind = \"redis\"\nurl = \"redis://x\"\nlease = \"10ms\"",
            "store.lease",
            "at least 1s",
        ),
        ("url = \"redis://x\"", "store.url", "only means something"),
    ] {
        let src = format!("{GOOD}\n[store]\n{store}\n");
        let errs = parse(&src, Path::new(".")).unwrap_err();
        assert!(
            errs.0
                .iter()
                .any(|e| e.path == path && e.to_string().contains(words)),
            "no `{words}` at {path} for {store:?}: {errs}"
        );
    }
}

/// A config whose last route is `route`, beside a WebSocket route.
fn with_route(route: &str) -> String {
    format!("{GOOD}\n[[route]]\n{route}\n")
}

#[test]
fn http_routes_take_http_upstreams_a_csp_and_none_of_the_websocket_keys() {
    let ok = with_route(
        r#"path = "/app"
kind = "http"
upstream = "https://127.0.0.1:8080/base"
auth = "none"
hosts = ["app.example.com"]
identity_headers = { method = "X-Wsgate-Auth" }
csp = { connect_src = ["'self'", "wss://chat.example.com"], report_only = true }
limits = { connect_timeout = "2s", idle_timeout = "30s" }"#,
    );
    let c = parse(&ok, Path::new(".")).unwrap();
    let r = c.routes.last().unwrap();
    assert_eq!(r.kind, wsgate_config::RouteKind::Http);
    assert_eq!(r.limits.connect_timeout, std::time::Duration::from_secs(2));
    assert_eq!(
        r.limits.idle_timeout,
        Some(std::time::Duration::from_secs(30))
    );
    assert!(r.upstream.tls);
    let csp = r.csp.as_ref().unwrap();
    assert_eq!(csp.connect_src, ["'self'", "wss://chat.example.com"]);
    assert!(csp.report_only);

    let bad = with_route(
        r#"path = "/app"
kind = "http"
upstream = "ws://127.0.0.1:8080"
auth = "jwt"
origins = ["https://app.example.com"]
subprotocols = ["chat"]
compression = true
csp = { connect_src = ["'self'; script-src *", "wss://a.example.com, https:"] }
limits = { connect_timeout = "2s", handshakes_per_ip_per_min = 10, max_conns_per_ip = 5 }"#,
    );
    let errs = parse(&bad, Path::new(".")).unwrap_err().0;
    let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    let last = c.routes.len() - 1;
    for (path, says) in [
        ("upstream", "not an HTTP upstream"),
        ("auth", "take auth = \"none\""),
        ("origins", "WebSocket routes only"),
        ("subprotocols", "WebSocket routes only"),
        ("compression", "WebSocket routes only"),
        // Pass-through counts no handshakes or connections: a limit
        // written there would protect nothing while seeming to.
        ("limits.handshakes_per_ip_per_min", "WebSocket routes only"),
        ("limits.max_conns_per_ip", "WebSocket routes only"),
        ("csp.connect_src[0]", "not a CSP source expression"),
        ("csp.connect_src[1]", "not a CSP source expression"),
    ] {
        let path = format!("route[{last}].{path}");
        assert!(
            errs.iter()
                .any(|e| e.path == path && e.to_string().contains(says)),
            "no {path}: {says} in {text:#?}"
        );
    }
    let kind = with_route(
        r#"path = "/app"
kind = "ftp"
upstream = "ws://127.0.0.1:8080"
auth = "none"
allow_missing_origin = true"#,
    );
    let errs = parse(&kind, Path::new(".")).unwrap_err();
    assert!(errs.to_string().contains("not a route kind"), "{errs}");
}

#[test]
fn trusted_proxies_load_and_their_mistakes_are_named() {
    let with = |list: &str| {
        GOOD.replace(
            "bind = \"127.0.0.1:0\"",
            &format!("bind = \"127.0.0.1:0\"\ntrusted_proxies = {list}"),
        )
    };
    let c = parse(
        &with(r#"["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"]"#),
        Path::new("."),
    )
    .unwrap();
    let nets: Vec<String> = c.listeners[0]
        .trusted_proxies
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(nets, ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"]);
    assert!(
        parse(GOOD, Path::new(".")).unwrap().listeners[0]
            .trusted_proxies
            .is_empty()
    );

    let bad = with(r#"["10.0.0.1/8", "lb.internal", "0.0.0.0/0", "::/0", "::ffff:10.0.0.0/104"]"#);
    let errs = parse(&bad, Path::new(".")).unwrap_err();
    let text = errs.to_string();
    for words in [
        "`10.0.0.1/8` has bits set past its prefix; write \"10.0.0.0/8\"",
        "`lb.internal` is not an address or a network",
        "`0.0.0.0/0` would believe every client's X-Forwarded-For",
        "`::/0` would believe every client's X-Forwarded-For",
        "`::ffff:10.0.0.0/104` is IPv4 written as IPv6, which a connection's address is never compared as; write \"10.0.0.0/8\"",
    ] {
        assert!(
            errs.0
                .iter()
                .any(|e| e.path.starts_with("listener[0].trusted_proxies")
                    && e.to_string().contains(words)),
            "no `{words}` error in {text}"
        );
    }
    assert_eq!(errs.0.len(), 5, "{text}");
}

#[test]
fn proxy_protocol_needs_trusted_proxies() {
    let with = |keys: &str| {
        GOOD.replace(
            "bind = \"127.0.0.1:0\"",
            &format!("bind = \"127.0.0.1:0\"\n{keys}"),
        )
    };
    let c = parse(
        &with("proxy_protocol = true\ntrusted_proxies = [\"10.0.0.0/8\"]"),
        Path::new("."),
    )
    .unwrap();
    assert!(c.listeners[0].proxy_protocol);
    assert!(!parse(GOOD, Path::new(".")).unwrap().listeners[0].proxy_protocol);

    let errs = parse(&with("proxy_protocol = true"), Path::new(".")).unwrap_err();
    let text = errs.to_string();
    assert!(
        errs.0.iter().any(|e| e.path == "listener[0].proxy_protocol"
            && e.to_string().contains("needs `trusted_proxies`")),
        "{text}"
    );
    assert_eq!(errs.0.len(), 1, "{text}");
}

/// A file the config names is read up to a bound, never whole: a path to
/// an endless device (or a runaway file) is an error with its key path,
/// not memory exhausted at start.
#[test]
fn a_file_the_config_names_is_read_up_to_a_bound() {
    let src = GOOD.replace(
        "idle_timeout = \"off\"",
        "idle_timeout = \"off\"\n\n[route.messages]\nschema = \"/dev/zero\"",
    ) + "\n[auth.basic]\nhtpasswd = \"/dev/zero\"\n";
    let errs = parse(&src, Path::new(".")).unwrap_err().0;
    for key in ["route[0].messages.schema", "auth.basic.htpasswd"] {
        assert!(
            errs.iter()
                .any(|e| e.path == key && e.to_string().contains("larger than")),
            "{key}: {errs:#?}"
        );
    }
    let errs = wsgate_config::load(Path::new("/dev/zero")).unwrap_err().0;
    assert!(
        errs[0].to_string().contains("larger than 16 MiB"),
        "{errs:#?}"
    );
}

/// A listener or route that is refused is left out of the checks across
/// them; those checks still name every other one by its own index and
/// line, not by its place among the survivors.
#[test]
fn errors_after_a_refused_listener_or_route_name_the_right_one() {
    let src = r#"
[[listener]]
bind = "nowhere"

[[listener]]
bind = "0.0.0.0:0"
allow_cleartext = true

[auth.ticket]
[auth.basic]
htpasswd = "users.htpasswd"

[[route]]
path = "no-slash"
upstream = "ws://127.0.0.1:9001/"
auth = "none"

[[route]]
path = "/tickets"
upstream = "ws://127.0.0.1:9001/"
allow_missing_origin = true
auth = ["ticket"]

[[route]]
path = "/basic"
upstream = "ws://127.0.0.1:9001/"
allow_missing_origin = true
auth = ["basic"]
"#;
    let dir = tempfile::tempdir().unwrap();
    let bcrypt = "$2y$05$D9hq5yX3u7s0iFpGl0nF8ucG6S4W3n3pB0p1s1Rb5tK0cYg0xQd1a";
    std::fs::write(
        dir.path().join("users.htpasswd"),
        format!("alice:{bcrypt}\n"),
    )
    .unwrap();
    let errs = parse(src, dir.path()).unwrap_err().0;
    let named: Vec<(&str, Option<usize>)> = errs
        .iter()
        .filter(|e| e.message.contains("ticket is bought") || e.message.contains("in clear"))
        .map(|e| (e.path.as_str(), e.line))
        .collect();
    assert_eq!(
        named,
        [("listener[1]", Some(5)), ("route[1].auth", Some(18))],
        "{errs:#?}"
    );
    assert!(
        errs.iter().any(|e| e
            .message
            .contains("route[2] takes Basic credentials, which listener[1]")),
        "{errs:#?}"
    );
}

/// A `tls` or `[auth.*]` table that was written but refused has its own
/// errors; nothing else claims it was never written ("plain ws", "needs
/// TLS", "needs an [auth.jwt] table").
#[test]
fn a_refused_tls_or_auth_table_is_not_also_said_to_be_missing() {
    let src = r#"
[[listener]]
bind = "0.0.0.0:0"
tls = { cert = "missing.pem", key = "missing.key" }
client_ca = "missing-ca.pem"

[auth.jwt]
hs256_secret_env = "UNSET_SECRET"
algorithms = ["HS256"]

[auth.basic]
htpasswd = "missing.htpasswd"

[auth.mtls]

[[route]]
path = "/chat"
upstream = "ws://127.0.0.1:9001/"
allow_missing_origin = true
auth = ["jwt", "basic", "mtls"]
"#;
    let errs = parse(src, Path::new("/nonexistent")).unwrap_err().0;
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "listener[0].tls.cert",
            "listener[0].tls.key",
            "listener[0].client_ca",
            "auth.jwt.hs256_secret_env",
            "auth.basic.htpasswd",
        ],
        "{errs:#?}"
    );
}
