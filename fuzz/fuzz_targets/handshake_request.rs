//! Any bytes as an HTTP request head, parsed the way hyper parses it
//! (httparse), then through the RFC 6455 handshake checks, the Host and
//! Origin parsers, and credential extraction (cookies, Basic, bearer tokens
//! in headers, subprotocols and the query) for a route that accepts every
//! method, and `X-Forwarded-For` as a trusted proxy's. Must never panic;
//! the `X-Forwarded-For` sent on names the client first and the proxy last.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;

/// A config whose one route accepts every kind of credential.
static CONFIG: LazyLock<wsgate_config::Config> = LazyLock::new(|| {
    let src = r#"
[[listener]]
bind = "127.0.0.1:0"

[auth.jwt]
hs256_secret_env = "S"
algorithms = ["HS256"]
from = ["header", "cookie:session", "subprotocol"]

[auth.forward]
url = "http://127.0.0.1:9/check"

[auth.ticket]

[[route]]
path = "/"
upstream = "ws://127.0.0.1:9/"
allow_missing_origin = true
auth = ["jwt", "forward", "ticket"]
jwt_query_param = "access_token"
"#;
    let secret = |_: &str| Some("0123456789abcdef0123456789abcdef".to_owned());
    wsgate_config::parse_with_env(src, std::path::Path::new("."), &secret).expect("fuzz config")
});

/// The trusted proxies `X-Forwarded-For` is read for.
static TRUSTED: LazyLock<Vec<wsgate_config::IpNet>> =
    LazyLock::new(|| vec!["10.0.0.0/8".parse().expect("a network")]);

fuzz_target!(|data: &[u8]| {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(_)) = req.parse(data) else {
        return;
    };
    let Ok(method) = http::Method::from_bytes(req.method.unwrap_or("GET").as_bytes()) else {
        return;
    };
    let version = if req.version == Some(1) {
        http::Version::HTTP_11
    } else {
        http::Version::HTTP_10
    };
    let mut map = http::HeaderMap::new();
    for h in req.headers.iter() {
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(h.name.as_bytes()),
            http::HeaderValue::from_bytes(h.value),
        ) else {
            return;
        };
        map.append(name, value);
    }
    let query = req.path.and_then(|p| p.split_once('?')).map(|(_, q)| q);
    let protocols: Vec<String> = map
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_owned()))
        .collect();
    let xff: Vec<&str> = map
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let peer = std::net::IpAddr::from([10, 0, 0, 1]);
    if let Ok(Some(fwd)) = wsgate_policy::forwarded::resolve(peer, &TRUSTED, xff.iter().copied()) {
        // The chain sent on names the client first and the proxy that
        // connected last.
        assert!(
            fwd.chain.starts_with(&format!("{}", fwd.client)),
            "{}",
            fwd.chain
        );
        assert!(fwd.chain.ends_with(", 10.0.0.1"), "{}", fwd.chain);
    }
    let route = &CONFIG.routes[0];
    for credential in
        wsgate_policy::credentials::presented(route, &CONFIG.auth, &map, query, &protocols, None)
    {
        let _ = credential.is_ambient();
    }
    let target = req
        .path
        .and_then(|p| p.parse::<http::Uri>().ok())
        .unwrap_or_else(|| http::Uri::from_static("/"));
    if let Ok(hs) = wsgate_proto::handshake::check_request(&method, &target, version, &map) {
        let _ = wsgate_config::host::HostHeader::parse(&hs.host);
        if let Some(origin) = hs.origin {
            let _ = wsgate_config::origin::Origin::parse(&origin);
        }
        assert_eq!(wsgate_proto::handshake::accept_key(&hs.key).len(), 28);
    }
});
