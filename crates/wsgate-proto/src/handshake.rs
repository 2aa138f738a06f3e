//! The opening handshake (RFC 6455 section 4), both legs.
//!
//! [`check_request`] applies section 4.2.1 to a client's request before any
//! admission decision, with [`check_target`], which every request the
//! gateway forwards meets (HTTP routes' too); [`check_response`] applies
//! section 4.2.2 to the upstream's answer. The gateway relays nothing until the upstream has
//! answered 101 with the right `Sec-WebSocket-Accept`: otherwise a client
//! could smuggle raw HTTP through a "WebSocket" into the upstream's server.

use base64::Engine as _;
use http::{HeaderMap, Method, StatusCode, Uri, Version, header};

/// The one WebSocket version there is.
pub const VERSION: &str = "13";

/// What a valid client handshake carries that later stages need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHandshake {
    /// `Sec-WebSocket-Key`, as sent.
    pub key: String,
    /// `Host`, as sent.
    pub host: String,
    /// `Origin`, as sent, when present.
    pub origin: Option<String>,
    /// Subprotocols offered, in order.
    pub protocols: Vec<String>,
}

/// One broken handshake rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// Section 4.2.1 item 1.
    #[error("method {0} is not GET")]
    NotGet(String),
    /// Section 4.2.1 item 1.
    #[error("{0:?} is not HTTP/1.1")]
    NotHttp11(Version),
    /// Section 4.2.1 item 2.
    #[error("no Host header")]
    MissingHost,
    /// A header that must appear once appeared more than once: which copy a
    /// later hop would read is anyone's guess, so neither is trusted.
    #[error("{0} appears more than once")]
    Duplicate(&'static str),
    /// Section 4.2.1 item 3.
    #[error("Upgrade does not name websocket")]
    NotUpgrade,
    /// Section 4.2.1 item 4.
    #[error("Connection does not name upgrade")]
    NoConnectionUpgrade,
    /// Section 4.2.1 item 5.
    #[error("Sec-WebSocket-Key missing or not 16 bytes in base64")]
    BadKey,
    /// Section 4.2.1 item 6: answered 426 with the version spoken.
    #[error("Sec-WebSocket-Version {0:?} is not 13")]
    UnsupportedVersion(String),
    /// Section 4.1: subprotocols are tokens.
    #[error("Sec-WebSocket-Protocol has an entry that is not a token")]
    BadProtocol,
    /// A header value that is not visible ASCII.
    #[error("{0} is not visible ASCII")]
    NotAscii(&'static str),
    /// Section 4.1: the request names its resource by path. An absolute
    /// URI carries an authority of its own, which HTTP says overrides
    /// `Host`: the name the gateway checked and the name the request
    /// means would differ.
    #[error("the request target is not a path (origin-form) but an absolute URI")]
    NotOriginForm,
    /// A path that hops may resolve to different resources (see
    /// [`check_target`]).
    #[error("the path has {0}, which a later hop may resolve to another resource than the route's")]
    AmbiguousPath(&'static str),
    /// A handshake has no body, and the bytes after its head are WebSocket
    /// frames. One that declares a body leaves it to each hop to decide
    /// where the body ends and the frames begin: a request-smuggling
    /// ambiguity, refused.
    #[error("the request declares a body ({0}); a handshake has none")]
    HasBody(&'static str),
}

impl HandshakeError {
    /// Whether the fix is another protocol version (426) rather than a well-formed request (400).
    pub fn is_version(&self) -> bool {
        matches!(self, HandshakeError::UnsupportedVersion(_))
    }
}

/// Whether the request asks for a WebSocket at all (`Upgrade: websocket`),
/// so that a plain HTTP request can be told apart from a broken handshake.
pub fn wants_websocket(headers: &HeaderMap) -> bool {
    has_token(headers, header::UPGRADE, "websocket")
}

/// Checks a client's opening handshake: its method, request target
/// (`target`), version and headers.
pub fn check_request(
    method: &Method,
    target: &Uri,
    version: Version,
    headers: &HeaderMap,
) -> Result<ClientHandshake, HandshakeError> {
    if method != Method::GET {
        return Err(HandshakeError::NotGet(method.to_string()));
    }
    if version != Version::HTTP_11 {
        return Err(HandshakeError::NotHttp11(version));
    }
    check_target(target)?;
    if headers.contains_key(header::TRANSFER_ENCODING) {
        return Err(HandshakeError::HasBody("Transfer-Encoding"));
    }
    if headers
        .get_all(header::CONTENT_LENGTH)
        .iter()
        .any(|v| v.as_bytes() != b"0")
    {
        return Err(HandshakeError::HasBody("Content-Length"));
    }
    let host = single(headers, header::HOST, "Host")?
        .filter(|h| !h.is_empty())
        .ok_or(HandshakeError::MissingHost)?;
    if !wants_websocket(headers) {
        return Err(HandshakeError::NotUpgrade);
    }
    if !has_token(headers, header::CONNECTION, "upgrade") {
        return Err(HandshakeError::NoConnectionUpgrade);
    }
    let version = single(
        headers,
        header::SEC_WEBSOCKET_VERSION,
        "Sec-WebSocket-Version",
    )?;
    match version.map(str::trim) {
        Some(VERSION) => {}
        other => {
            return Err(HandshakeError::UnsupportedVersion(
                other.unwrap_or("").to_owned(),
            ));
        }
    }
    let key = single(headers, header::SEC_WEBSOCKET_KEY, "Sec-WebSocket-Key")?
        .map(str::trim)
        .filter(|k| is_valid_key(k))
        .ok_or(HandshakeError::BadKey)?;
    let origin = single(headers, header::ORIGIN, "Origin")?;
    let protocols = protocols(headers)?;
    Ok(ClientHandshake {
        key: key.to_owned(),
        host: host.to_owned(),
        origin: origin.map(str::to_owned),
        protocols,
    })
}

/// Checks a request target before it is routed, for a handshake or any
/// request the gateway forwards: a path (origin-form), and one every hop
/// reads the same way. The gateway routes by the path as sent and forwards
/// it so; an upstream that resolves `..`, decodes `%2e%2e` or `%2f`, or
/// takes `\` for `/` would serve another resource than the route maps to
/// (`/public/../admin` past the `/admin` route's authentication), and one
/// that strips `;` parameters, merges slashes or decodes escapes would
/// serve `/admin` for `/admin;x`, `//admin` or `/%61dmin`, which miss the
/// `/admin` route and a catch-all route forwards. Browsers
/// resolve dot-segments before sending, so only a hand-made request has
/// them; all of these are refused rather than resolved, as hops resolve
/// them differently.
pub fn check_target(target: &Uri) -> Result<(), HandshakeError> {
    if target.scheme().is_some() || target.authority().is_some() {
        return Err(HandshakeError::NotOriginForm);
    }
    let path = target.path();
    let lower = path.to_ascii_lowercase();
    if path.contains('\\') || lower.contains("%5c") {
        return Err(HandshakeError::AmbiguousPath("a backslash"));
    }
    if lower.contains("%2f") {
        return Err(HandshakeError::AmbiguousPath("an encoded slash (%2F)"));
    }
    if lower.contains("%00") {
        return Err(HandshakeError::AmbiguousPath("an encoded NUL (%00)"));
    }
    // `/admin;x` and `//admin` miss the `/admin` route, and a catch-all
    // route would forward them to an upstream that strips the parameter or
    // merges the slashes: `/admin` under another route's policy.
    if path.contains(';') {
        return Err(HandshakeError::AmbiguousPath("a parameter (;)"));
    }
    if path.contains("//") {
        return Err(HandshakeError::AmbiguousPath("an empty segment (//)"));
    }
    // A segment that is `.` or `..` once `%2e` is decoded.
    let dots = lower.split('/').any(|segment| {
        let is_dots = |s: &str| matches!(s, "." | "..");
        // Decoded (a copy) only when there is an escape to decode.
        is_dots(segment) || (segment.contains("%2e") && is_dots(&segment.replace("%2e", ".")))
    });
    if dots {
        return Err(HandshakeError::AmbiguousPath("a dot-segment (. or ..)"));
    }
    // `/%63hat` is `/chat` to an upstream that decodes it, and misses the
    // `/chat` route here; a malformed escape is read as each hop likes.
    for (at, _) in path.match_indices('%') {
        let escaped = path
            .get(at + 1..at + 3)
            .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match escaped {
            None => return Err(HandshakeError::AmbiguousPath("a malformed escape (%)")),
            Some(b) if b.is_ascii_alphanumeric() || b"-._~".contains(&b) => {
                return Err(HandshakeError::AmbiguousPath(
                    "an escaped letter, digit or -._~ (the character itself to an upstream)",
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn is_valid_key(key: &str) -> bool {
    key.len() == 24
        && base64::engine::general_purpose::STANDARD
            .decode(key)
            .is_ok_and(|raw| raw.len() == 16)
}

/// The value of a header that may appear at most once.
fn single<'h>(
    headers: &'h HeaderMap,
    name: header::HeaderName,
    label: &'static str,
) -> Result<Option<&'h str>, HandshakeError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(HandshakeError::Duplicate(label));
    }
    first
        .to_str()
        .map(Some)
        .map_err(|_| HandshakeError::NotAscii(label))
}

/// Whether any comma-separated token of any copy of `name` equals `token`, ignoring case.
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

fn protocols(headers: &HeaderMap) -> Result<Vec<String>, HandshakeError> {
    let mut out = Vec::new();
    for value in headers.get_all(header::SEC_WEBSOCKET_PROTOCOL) {
        let text = value
            .to_str()
            .map_err(|_| HandshakeError::NotAscii("Sec-WebSocket-Protocol"))?;
        for p in text.split(',').map(str::trim) {
            if !is_token(p) {
                return Err(HandshakeError::BadProtocol);
            }
            out.push(p.to_owned());
        }
    }
    Ok(out)
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// `Sec-WebSocket-Accept` for a key (section 4.2.2 item 5.4).
pub fn accept_key(key: &str) -> String {
    tungstenite::handshake::derive_accept_key(key.as_bytes())
}

/// A fresh `Sec-WebSocket-Key` from 16 random bytes.
pub fn new_key(random: [u8; 16]) -> String {
    base64::engine::general_purpose::STANDARD.encode(random)
}

/// Why an upstream's answer is not a WebSocket handshake the gateway can relay.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamHandshakeError {
    /// Anything but 101.
    #[error("upstream answered {0} instead of 101")]
    Status(StatusCode),
    /// Missing `Upgrade: websocket` or `Connection: upgrade`.
    #[error("upstream's 101 does not upgrade to websocket")]
    NotUpgrade,
    /// Missing or wrong `Sec-WebSocket-Accept`.
    #[error("upstream's Sec-WebSocket-Accept does not match the key sent")]
    BadAccept,
    /// A subprotocol that was not offered, or more than one.
    #[error("upstream chose a subprotocol that was not offered")]
    BadProtocol,
    /// Any extension: the gateway offers none.
    #[error("upstream negotiated an extension that was not offered")]
    Extension,
}

/// Checks the upstream's answer to a handshake sent with `key` and `offered`
/// subprotocols; returns the chosen subprotocol.
pub fn check_response(
    status: StatusCode,
    headers: &HeaderMap,
    key: &str,
    offered: &[String],
) -> Result<Option<String>, UpstreamHandshakeError> {
    if status != StatusCode::SWITCHING_PROTOCOLS {
        return Err(UpstreamHandshakeError::Status(status));
    }
    if !wants_websocket(headers) || !has_token(headers, header::CONNECTION, "upgrade") {
        return Err(UpstreamHandshakeError::NotUpgrade);
    }
    let accept = single(
        headers,
        header::SEC_WEBSOCKET_ACCEPT,
        "Sec-WebSocket-Accept",
    )
    .map_err(|_| UpstreamHandshakeError::BadAccept)?;
    if accept.map(str::trim) != Some(accept_key(key).as_str()) {
        return Err(UpstreamHandshakeError::BadAccept);
    }
    if headers.contains_key(header::SEC_WEBSOCKET_EXTENSIONS) {
        return Err(UpstreamHandshakeError::Extension);
    }
    let chosen = single(
        headers,
        header::SEC_WEBSOCKET_PROTOCOL,
        "Sec-WebSocket-Protocol",
    )
    .map_err(|_| UpstreamHandshakeError::BadProtocol)?;
    match chosen.map(str::trim) {
        None => Ok(None),
        Some(p) if offered.iter().any(|o| o == p) => Ok(Some(p.to_owned())),
        Some(_) => Err(UpstreamHandshakeError::BadProtocol),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn request(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn good() -> Vec<(&'static str, &'static str)> {
        vec![
            ("host", "gw.example"),
            ("upgrade", "WebSocket"),
            ("connection", "keep-alive, Upgrade"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", KEY),
            ("origin", "https://app.example"),
        ]
    }

    fn check(pairs: &[(&str, &str)]) -> Result<ClientHandshake, HandshakeError> {
        check_request(&Method::GET, &PATH, Version::HTTP_11, &request(pairs))
    }

    static PATH: std::sync::LazyLock<Uri> = std::sync::LazyLock::new(|| Uri::from_static("/chat"));

    #[test]
    fn the_rfc_example_passes() {
        let hs = check(&good()).unwrap();
        assert_eq!(hs.origin.as_deref(), Some("https://app.example"));
        assert_eq!(accept_key(&hs.key), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn each_rule_has_its_error() {
        let without =
            |name: &str| -> Vec<_> { good().into_iter().filter(|(k, _)| *k != name).collect() };
        let with = |extra: (&'static str, &'static str)| -> Vec<_> {
            let mut v = good();
            v.push(extra);
            v
        };
        let replaced = |name: &'static str, value: &'static str| -> Vec<_> {
            let mut v = without(name);
            v.push((name, value));
            v
        };
        assert_eq!(check(&without("host")), Err(HandshakeError::MissingHost));
        assert_eq!(check(&without("upgrade")), Err(HandshakeError::NotUpgrade));
        assert_eq!(
            check(&without("connection")),
            Err(HandshakeError::NoConnectionUpgrade)
        );
        assert_eq!(
            check(&without("sec-websocket-key")),
            Err(HandshakeError::BadKey)
        );
        assert_eq!(
            check(&replaced("sec-websocket-key", "c2hvcnQ=")),
            Err(HandshakeError::BadKey)
        );
        assert!(
            check(&replaced("sec-websocket-version", "8"))
                .unwrap_err()
                .is_version()
        );
        assert!(
            check(&without("sec-websocket-version"))
                .unwrap_err()
                .is_version()
        );
        assert_eq!(
            check(&with(("origin", "https://evil.example"))),
            Err(HandshakeError::Duplicate("Origin"))
        );
        assert_eq!(
            check(&with(("host", "other"))),
            Err(HandshakeError::Duplicate("Host"))
        );
        assert_eq!(
            check(&with(("sec-websocket-key", KEY))),
            Err(HandshakeError::Duplicate("Sec-WebSocket-Key"))
        );
        assert_eq!(
            check(&with(("sec-websocket-protocol", "a b"))),
            Err(HandshakeError::BadProtocol)
        );
        let hs = check(&with(("sec-websocket-protocol", "chat.v1, chat.v2"))).unwrap();
        assert_eq!(hs.protocols, ["chat.v1", "chat.v2"]);
        let post = check_request(&Method::POST, &PATH, Version::HTTP_11, &request(&good()));
        assert!(matches!(post, Err(HandshakeError::NotGet(_))));
        let old = check_request(&Method::GET, &PATH, Version::HTTP_10, &request(&good()));
        assert!(matches!(old, Err(HandshakeError::NotHttp11(_))));
        // The resource by path only, and no body.
        for absolute in ["https://evil.example/chat", "http://gw.example/chat"] {
            let target = Uri::from_static(absolute);
            let hs = check_request(&Method::GET, &target, Version::HTTP_11, &request(&good()));
            assert_eq!(hs, Err(HandshakeError::NotOriginForm), "{absolute}");
        }
        assert_eq!(
            check(&with(("content-length", "6"))),
            Err(HandshakeError::HasBody("Content-Length"))
        );
        assert_eq!(
            check(&with(("transfer-encoding", "chunked"))),
            Err(HandshakeError::HasBody("Transfer-Encoding"))
        );
        assert!(check(&with(("content-length", "0"))).is_ok());
    }

    #[test]
    fn paths_every_hop_reads_alike_pass_and_the_others_are_refused() {
        for fine in [
            "/chat",
            "/chat/room.1",
            "/chat/..x",
            "/chat/.well-known",
            "/chat?path=../x",
            "/caf%C3%A9",
        ] {
            assert_eq!(check_target(&Uri::from_static(fine)), Ok(()), "{fine}");
        }
        for (bad, why) in [
            ("/public/../admin", "dot"),
            ("/public/./admin", "dot"),
            ("/public/..", "dot"),
            ("/public/%2e%2e/admin", "dot"),
            ("/public/%2E./admin", "dot"),
            ("/public/..;x/admin", "parameter"),
            ("/admin;x", "parameter"),
            ("//admin", "empty segment"),
            ("/public//admin", "empty segment"),
            ("/public/..%2fadmin", "slash"),
            ("/public/%2F../admin", "slash"),
            ("/public/..%5cadmin", "backslash"),
            ("/public/x%00.json", "NUL"),
            ("/%63hat", "escaped letter"),
            ("/file%2ejson", "escaped letter"),
            ("/chat%zz", "malformed"),
            ("/chat%+1", "malformed"),
            ("/chat%2", "malformed"),
        ] {
            match check_target(&Uri::from_static(bad)) {
                Err(HandshakeError::AmbiguousPath(what)) => {
                    assert!(what.contains(why), "{bad}: {what}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn upstream_answers() {
        let ok = request(&[
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        ]);
        let sw = StatusCode::SWITCHING_PROTOCOLS;
        assert_eq!(check_response(sw, &ok, KEY, &[]), Ok(None));
        assert_eq!(
            check_response(StatusCode::OK, &ok, KEY, &[]),
            Err(UpstreamHandshakeError::Status(StatusCode::OK))
        );
        assert_eq!(
            check_response(sw, &ok, "AAAAAAAAAAAAAAAAAAAAAA==", &[]),
            Err(UpstreamHandshakeError::BadAccept)
        );
        let mut chose = ok.clone();
        chose.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("admin"),
        );
        assert_eq!(
            check_response(sw, &chose, KEY, &["chat".into()]),
            Err(UpstreamHandshakeError::BadProtocol)
        );
        assert_eq!(
            check_response(sw, &chose, KEY, &["admin".into()]),
            Ok(Some("admin".into()))
        );
        let mut ext = ok.clone();
        ext.insert(
            header::SEC_WEBSOCKET_EXTENSIONS,
            HeaderValue::from_static("permessage-deflate"),
        );
        assert_eq!(
            check_response(sw, &ext, KEY, &[]),
            Err(UpstreamHandshakeError::Extension)
        );
    }
}
