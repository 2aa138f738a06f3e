//! Any bytes as an HTTP request head, parsed the way hyper parses it
//! (httparse), then through the RFC 6455 handshake checks and the Host and
//! Origin parsers. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

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
    if let Ok(hs) = wsgate_proto::handshake::check_request(&method, version, &map) {
        let _ = wsgate_config::host::HostHeader::parse(&hs.host);
        if let Some(origin) = hs.origin {
            let _ = wsgate_config::origin::Origin::parse(&origin);
        }
        assert_eq!(wsgate_proto::handshake::accept_key(&hs.key).len(), 28);
    }
});
