//! Origin and allow-list parsing and matching. Properties: no panic; an
//! exact entry matches exactly the origins that parse to the same tuple; a
//! subdomain pattern never matches an origin whose host does not end in
//! `.suffix`; an `Origin` or `Host` parses to the same value with and
//! without the shortcut that skips the URL parser for text already in
//! normal form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsgate_config::origin::{Origin, OriginPattern};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (a, b) = text.split_once('\n').unwrap_or((text, text));
    let origin = Origin::parse(b);
    let pattern = OriginPattern::parse(a);
    if let (Ok(pattern), Ok(origin)) = (&pattern, &origin) {
        let matched = pattern.matches(origin);
        match (pattern, origin) {
            (OriginPattern::Exact(want), Origin::Tuple(got)) => assert_eq!(matched, want == got),
            (OriginPattern::Subdomains { suffix, .. }, Origin::Tuple(got)) if matched => {
                assert!(got.host().ends_with(suffix.as_str()) && got.host().len() > suffix.len());
            }
            (OriginPattern::Null, o) => assert_eq!(matched, *o == Origin::Null),
            _ => {}
        }
    }
    assert_eq!(origin, Origin::parse_without_shortcut(b), "{b:?}");
    let _ = wsgate_config::host::HostPattern::parse(a);
    let host = wsgate_config::host::HostHeader::parse(b);
    assert_eq!(
        host,
        wsgate_config::host::HostHeader::parse_without_shortcut(b),
        "{b:?}"
    );
});
