//! The upstream stage: connect, send the handshake, check the 101.
//!
//! It takes an [`Admitted`], which only admission can make, so nothing
//! reaches an upstream undecided. The client's request is rebuilt, not
//! forwarded: hop-by-hop headers, the WebSocket headers and any client-sent
//! `X-Forwarded-*`/`Forwarded` are dropped, a fresh key is used, and only the
//! subprotocols the route allows are offered. The answer must be a correct
//! 101 for that key; anything else is `upstream_unavailable`, and the
//! upstream socket is closed without relaying a byte. The request head is
//! written here and the answer's read with httparse (see [`exchange`]);
//! its head may be 16 KiB at most.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Request, header};
use http_body_util::Empty;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::either::Either;
use wsgate_config::Upstream;
use wsgate_policy::Admitted;
use wsgate_proto::handshake::{self, UpstreamHandshakeError};

/// An upstream that answered a correct 101.
pub(crate) struct Connected {
    pub(crate) io: Opened,
    pub(crate) protocol: Option<String>,
}

/// The upstream's connection after its 101, and what was read past the
/// 101's head: the upstream may send its first frames with it.
pub(crate) struct Opened {
    pub(crate) stream: Stream,
    pub(crate) early: Bytes,
}

/// Why the upstream could not be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    #[error("connecting to {0} timed out")]
    Timeout(String),
    #[error("cannot connect to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("TLS with {0} failed: {1}")]
    Tls(String, std::io::Error),
    /// Of a `kind = "http"` route's exchange, through hyper's client.
    #[error("HTTP exchange with the upstream failed: {0}")]
    Http(#[from] hyper::Error),
    #[error("HTTP exchange with the upstream failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the upstream closed the connection before answering")]
    Closed,
    #[error("the upstream's answer is not valid HTTP/1.1: {0}")]
    Malformed(String),
    #[error("the upstream's answer head is larger than {MAX_HEAD} bytes")]
    TooLarge,
    #[error("{0}")]
    Handshake(#[from] UpstreamHandshakeError),
    #[error("invalid upstream request: {0}")]
    Request(#[from] http::Error),
}

/// What the client's side contributes to the upstream request.
pub(crate) struct ClientSide<'a> {
    pub(crate) path_and_query: &'a str,
    pub(crate) headers: &'a HeaderMap,
    /// The `X-Forwarded-For` to send: the client, after it any trusted
    /// proxies it came through.
    pub(crate) forwarded_for: &'a str,
    pub(crate) tls: bool,
    pub(crate) client_cert: Option<&'a wsgate_policy::credentials::ClientCert>,
    /// The signed identity assertion's header (client copies always
    /// removed) and its value, when one could be signed.
    pub(crate) assertion: Option<(&'a str, Option<String>)>,
}

/// Opens the upstream connection for an admitted handshake.
pub(crate) async fn connect(
    admitted: &Admitted,
    client: &ClientSide<'_>,
    tls: Option<&Arc<ClientConfig>>,
) -> Result<Connected, UpstreamError> {
    let route = admitted.route();
    let up = &route.upstream;
    let timeout = route.limits.connect_timeout;
    let exchange = async {
        let mut stream = open(up, tls).await?;
        let key = handshake::new_key(rand::random());
        let mut request = build_request(up, &route.path, client, &key, admitted.protocols())?;
        identity_headers(
            &mut request,
            admitted,
            client.client_cert.map(|c| c.subject.as_str()),
        );
        let (status, headers, early) = exchange(&mut stream, &request).await?;
        let protocol = handshake::check_response(status, &headers, &key, admitted.protocols())?;
        Ok(Connected {
            io: Opened { stream, early },
            protocol,
        })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| UpstreamError::Timeout(target(up)))?
}

/// The upstream as errors name it (formatted only for them).
fn target(up: &Upstream) -> String {
    format!("{}:{}", up.host, up.port)
}

/// The most the upstream's answer head may be: a 101 is a few hundred bytes.
const MAX_HEAD: usize = 16 * 1024;
/// The most header fields it may have.
const MAX_HEADERS: usize = 64;

/// Sends the request's head and reads the answer's. The upstream's side
/// of a handshake is one request on a fresh connection, never reused, with
/// no body either way: hyper's client (a dispatcher, a channel for
/// requests, another for the upgrade) cost a fifth of a handshake's
/// instructions for it (docs/perf/findings.md). The answer is parsed by
/// httparse, hyper's own parser; the bytes read past its head are the
/// upstream's first frames, kept for the relay.
async fn exchange(
    stream: &mut Stream,
    request: &Request<Empty<Bytes>>,
) -> Result<(http::StatusCode, HeaderMap, Bytes), UpstreamError> {
    stream.write_all(&request_head(request)).await?;
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(1024);
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(UpstreamError::Closed);
        }
        match answer(&buf)? {
            Some((status, headers, len)) => {
                // Usually nothing; copied when there is something, so that
                // the read buffer is freed now, not kept alive by a view.
                return Ok((status, headers, Bytes::copy_from_slice(&buf[len..])));
            }
            None if buf.len() < MAX_HEAD => continue,
            None => return Err(UpstreamError::TooLarge),
        }
    }
}

/// The answer's status, headers and head length, once `buf` holds the
/// whole head (`None` until then).
fn answer(buf: &[u8]) -> Result<Option<(http::StatusCode, HeaderMap, usize)>, UpstreamError> {
    let malformed = |e: &dyn std::fmt::Display| UpstreamError::Malformed(e.to_string());
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut answer = httparse::Response::new(&mut fields);
    let len = match answer.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(malformed(&e)),
    };
    if answer.version != Some(1) {
        return Err(malformed(&"an HTTP/1.0 answer cannot switch protocols"));
    }
    let status = answer
        .code
        .and_then(|code| http::StatusCode::from_u16(code).ok())
        .ok_or_else(|| malformed(&"no status code"))?;
    let mut headers = HeaderMap::with_capacity(answer.headers.len());
    for field in answer.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes()).map_err(|e| malformed(&e))?;
        let value = HeaderValue::from_bytes(field.value).map_err(|e| malformed(&e))?;
        headers.append(name, value);
    }
    Ok(Some((status, headers, len)))
}

/// A request's head as HTTP/1.1 sends it. Every part was checked when the
/// request was built: the target is a valid URI, and header values hold no
/// line breaks.
fn request_head(request: &Request<Empty<Bytes>>) -> Vec<u8> {
    let target = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let mut head = Vec::with_capacity(512);
    head.extend_from_slice(b"GET ");
    head.extend_from_slice(target.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in request.headers() {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// The TLS variant is boxed: a rustls connection is about a kilobyte, and
/// an enum is as large as its largest variant, so every plain upstream
/// connection (its open task holds this stream until the relay splits it)
/// would otherwise carry that kilobyte unused.
pub(crate) type Stream = Either<TcpStream, Box<tokio_rustls::client::TlsStream<TcpStream>>>;

/// A connection to the upstream, over TLS when its URL says so.
pub(crate) async fn open(
    up: &Upstream,
    tls: Option<&Arc<ClientConfig>>,
) -> Result<Stream, UpstreamError> {
    let tcp = TcpStream::connect((up.host.as_str(), up.port))
        .await
        .map_err(|e| UpstreamError::Connect(target(up), e))?;
    let _ = tcp.set_nodelay(true);
    let Some(config) = tls.filter(|_| up.tls) else {
        return Ok(Either::Left(tcp));
    };
    let name = ServerName::try_from(up.host.clone())
        .map_err(|e| UpstreamError::Tls(target(up), std::io::Error::other(e)))?;
    let stream = tokio_rustls::TlsConnector::from(Arc::clone(config))
        .connect(name, tcp)
        .await
        .map_err(|e| UpstreamError::Tls(target(up), e))?;
    Ok(Either::Right(Box::new(stream)))
}

/// Headers that describe one hop, or that only the gateway may set: never
/// passed on from a client, on any route.
pub(crate) const NOT_FORWARDED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "host",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
    // RFC 9440: only the gateway vouches for a client certificate.
    "client-cert",
    "client-cert-chain",
];

/// The WebSocket handshake's own headers: the gateway's handshake with the
/// upstream is its own, with its own key.
const WEBSOCKET_HEADERS: &[&str] = &[
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "sec-websocket-accept",
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const CLIENT_CERT: HeaderName = HeaderName::from_static("client-cert");

/// Sets the `X-Forwarded-*` headers of a request passed on for a client
/// (any the client sent were dropped): the address chain, the scheme the
/// client used, and the `Host` it asked for. The names are constants, not
/// parsed again for every request.
pub(crate) fn forwarding(
    headers: &mut HeaderMap,
    forwarded_for: &str,
    tls: bool,
    client_headers: &HeaderMap,
) -> Result<(), http::Error> {
    headers.insert(X_FORWARDED_FOR, HeaderValue::from_str(forwarded_for)?);
    let proto = if tls { "https" } else { "http" };
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    if let Some(h) = client_headers.get(header::HOST) {
        headers.insert(X_FORWARDED_HOST, h.clone());
    }
    Ok(())
}

/// The header names a message's `Connection` lists: hop-by-hop too (RFC
/// 9110 section 7.6.1), in requests and responses alike.
pub(crate) fn connection_tokens(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|t| t.trim().to_ascii_lowercase()))
        .collect()
}

fn build_request(
    up: &Upstream,
    route_path: &str,
    client: &ClientSide<'_>,
    key: &str,
    protocols: &[String],
) -> Result<Request<Empty<Bytes>>, UpstreamError> {
    let uri = upstream_path(up, route_path, client.path_and_query);
    let mut req = Request::get(uri).body(Empty::new())?;
    let headers = req.headers_mut();
    // The client's headers and the dozen the gateway sets, without growing
    // the map (and rehashing it) on the way.
    headers.reserve(client.headers.len() + 12);
    let named = connection_tokens(client.headers);
    for (name, value) in client.headers {
        let n = name.as_str();
        let assertion = client.assertion.as_ref().is_some_and(|(h, _)| *h == n);
        let dropped = NOT_FORWARDED.contains(&n) || WEBSOCKET_HEADERS.contains(&n);
        if !dropped && !named.iter().any(|t| t == n) && !assertion {
            headers.append(name, value.clone());
        }
    }
    headers.insert(
        header::HOST,
        HeaderValue::from_str(&host_header(up)).map_err(http::Error::from)?,
    );
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(
        header::SEC_WEBSOCKET_VERSION,
        HeaderValue::from_static(handshake::VERSION),
    );
    headers.insert(
        header::SEC_WEBSOCKET_KEY,
        HeaderValue::from_str(key).map_err(http::Error::from)?,
    );
    if !protocols.is_empty() {
        let joined = HeaderValue::from_str(&protocols.join(", ")).map_err(http::Error::from)?;
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, joined);
    }
    forwarding(headers, client.forwarded_for, client.tls, client.headers)?;
    if let Some((name, Some(value))) = &client.assertion {
        let name = http::HeaderName::from_bytes(name.as_bytes()).map_err(http::Error::from)?;
        headers.insert(
            name,
            HeaderValue::from_str(value).map_err(http::Error::from)?,
        );
    }
    if let Some(cert) = client.client_cert {
        use base64::Engine as _;
        // An RFC 8941 byte sequence: the DER between colons.
        let value = format!(
            ":{}:",
            base64::engine::general_purpose::STANDARD.encode(&cert.der)
        );
        headers.insert(
            CLIENT_CERT,
            HeaderValue::from_str(&value).map_err(http::Error::from)?,
        );
    }
    Ok(req)
}

/// Removes every client-sent copy of the route's identity headers, then sets
/// them from what the gateway verified.
fn identity_headers(
    request: &mut Request<Empty<Bytes>>,
    admitted: &Admitted,
    cert_subject: Option<&str>,
) {
    let names = &admitted.route().identity_headers;
    let identity = admitted.identity();
    let values = [
        (&names.user, identity.map(|i| i.user.clone())),
        (
            &names.method,
            Some(identity.map_or("none", |i| i.method.name()).to_owned()),
        ),
        (&names.client_cert, cert_subject.map(str::to_owned)),
    ];
    for (name, value) in values {
        let Some(name) = name
            .as_ref()
            .and_then(|n| http::HeaderName::from_bytes(n.as_bytes()).ok())
        else {
            continue;
        };
        request.headers_mut().remove(&name);
        if let Some(v) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            request.headers_mut().insert(name, v);
        }
    }
}

/// The upstream's `Host`: its name, and its port unless the scheme's default.
pub(crate) fn host_header(up: &Upstream) -> String {
    if up.port == default_port(up.tls) {
        up.host.clone()
    } else {
        format!("{}:{}", bracket(&up.host), up.port)
    }
}

fn default_port(tls: bool) -> u16 {
    if tls { 443 } else { 80 }
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// The upstream's path for a request: the upstream URL's path, then what the
/// request path has beyond the route's prefix, then the request's query.
pub(crate) fn upstream_path(up: &Upstream, route_path: &str, path_and_query: &str) -> String {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let rest = if route_path == "/" {
        path
    } else {
        path.strip_prefix(route_path).unwrap_or("")
    };
    let base = up.url.path().trim_end_matches('/');
    let mut out = format!("{base}{rest}");
    if out.is_empty() {
        out.push('/');
    }
    if let Some(q) = query.or(up.url.query()) {
        out.push('?');
        out.push_str(q);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(url: &str) -> Upstream {
        let url = url::Url::parse(url).unwrap();
        Upstream {
            tls: false,
            host: url.host_str().unwrap().to_owned(),
            port: url.port_or_known_default().unwrap(),
            url,
            ca: None,
        }
    }

    #[test]
    fn paths_join_on_the_route_prefix() {
        assert_eq!(upstream_path(&up("ws://h/chat"), "/chat", "/chat"), "/chat");
        assert_eq!(
            upstream_path(&up("ws://h/chat"), "/chat", "/chat/room?x=1"),
            "/chat/room?x=1"
        );
        assert_eq!(upstream_path(&up("ws://h/"), "/", "/a/b"), "/a/b");
        assert_eq!(upstream_path(&up("ws://h"), "/ws", "/ws"), "/");
        assert_eq!(
            upstream_path(&up("ws://h/base/"), "/ws", "/ws/x"),
            "/base/x"
        );
    }

    const HEAD: &str = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

    /// However the head arrives, it is complete only with its blank line,
    /// and what follows it is not part of it.
    #[test]
    fn an_answer_is_read_once_its_head_is_whole() {
        for end in 0..HEAD.len() {
            assert!(answer(&HEAD.as_bytes()[..end]).unwrap().is_none(), "{end}");
        }
        let frame = [0x81, 0x02, b'h', b'i'];
        let buf = [HEAD.as_bytes(), &frame].concat();
        let (status, headers, len) = answer(&buf).unwrap().unwrap();
        assert_eq!(status, http::StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(len, HEAD.len());
        assert_eq!(
            headers["sec-websocket-accept"],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(headers.len(), 3);
    }

    #[test]
    fn an_answer_that_is_not_http_1_1_is_refused_with_its_fault() {
        let refused = |head: &str| match answer(head.as_bytes()) {
            Err(UpstreamError::Malformed(why)) => why,
            other => panic!("{head:?}: {:?}", other.map(|a| a.map(|(s, _, _)| s))),
        };
        assert!(refused(&HEAD.replace("HTTP/1.1", "HTTP/1.0")).contains("HTTP/1.0"));
        refused("SSH-2.0-OpenSSH_9.6\r\n\r\n");
        refused("HTTP/1.1 101 Switching Protocols\r\nUp grade: websocket\r\n\r\n");
        let many = "X-A: b\r\n".repeat(MAX_HEADERS + 1);
        refused(&HEAD.replace("\r\n\r\n", &format!("\r\n{many}\r\n")));
    }

    #[test]
    fn the_request_head_is_the_request() {
        let mut request = Request::get("/chat?room=1").body(Empty::new()).unwrap();
        let headers = request.headers_mut();
        headers.insert(header::HOST, HeaderValue::from_static("up:8080"));
        headers.append(X_FORWARDED_FOR, HeaderValue::from_static("10.0.0.1"));
        assert_eq!(
            String::from_utf8(request_head(&request)).unwrap(),
            "GET /chat?room=1 HTTP/1.1\r\nhost: up:8080\r\nx-forwarded-for: 10.0.0.1\r\n\r\n"
        );
    }
}
