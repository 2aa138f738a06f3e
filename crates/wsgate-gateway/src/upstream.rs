//! The upstream stage: connect, send the handshake, check the 101.
//!
//! It takes an [`Admitted`], which only admission can make, so nothing
//! reaches an upstream undecided. The client's request is rebuilt, not
//! forwarded: hop-by-hop headers, the WebSocket headers and any client-sent
//! `X-Forwarded-*`/`Forwarded` are dropped, a fresh key is used, and only the
//! subprotocols the route allows are offered. The answer must be a correct
//! 101 for that key; anything else is `upstream_unavailable`, and the
//! upstream socket is closed without relaying a byte.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, header};
use http_body_util::Empty;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_util::either::Either;
use wsgate_config::Upstream;
use wsgate_policy::Admitted;
use wsgate_proto::handshake::{self, UpstreamHandshakeError};

/// An upstream that answered a correct 101.
pub(crate) struct Connected {
    pub(crate) io: Upgraded,
    pub(crate) protocol: Option<String>,
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
    #[error("HTTP exchange with the upstream failed: {0}")]
    Http(#[from] hyper::Error),
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
    let target = format!("{}:{}", up.host, up.port);
    let exchange = async {
        let stream = open(up, tls).await?;
        let key = handshake::new_key(rand::random());
        let mut request = build_request(up, &route.path, client, &key, admitted.protocols())?;
        identity_headers(
            &mut request,
            admitted,
            client.client_cert.map(|c| c.subject.as_str()),
        );
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        // hyper's connection is driven here, in the handshake's task, until
        // it hands the upgraded stream over (or fails): a task of its own
        // would cost a spawn and two cross-task wakes on every handshake.
        // Fused: it may finish in the first wait below, and must then never
        // be polled again (hyper panics if it is).
        let mut conn = std::pin::pin!(futures_util::FutureExt::fuse(conn.with_upgrades()));
        let response = {
            let mut sent = std::pin::pin!(sender.send_request(request));
            tokio::select! {
                response = &mut sent => response?,
                // Done before the answer: an error, or the upstream hung up,
                // which `sent` then reports.
                ended = &mut conn => {
                    ended?;
                    sent.await?
                }
            }
        };
        let protocol = handshake::check_response(
            response.status(),
            response.headers(),
            &key,
            admitted.protocols(),
        )?;
        let mut upgrade = std::pin::pin!(hyper::upgrade::on(response));
        let upgraded = tokio::select! {
            upgraded = &mut upgrade => upgraded?,
            // The connection ends by handing the stream to `upgrade`.
            ended = &mut conn => {
                ended?;
                upgrade.await?
            }
        };
        Ok(Connected {
            io: upgraded,
            protocol,
        })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| UpstreamError::Timeout(target))?
}

/// The TLS variant is boxed: a rustls connection is about a kilobyte, and
/// an enum is as large as its largest variant, so every plain upstream
/// connection (hyper boxes this stream for the upgrade, and keeps it for
/// the connection's life) would otherwise carry that kilobyte unused.
pub(crate) type Stream = Either<TcpStream, Box<tokio_rustls::client::TlsStream<TcpStream>>>;

/// A connection to the upstream, over TLS when its URL says so.
pub(crate) async fn open(
    up: &Upstream,
    tls: Option<&Arc<ClientConfig>>,
) -> Result<Stream, UpstreamError> {
    let target = format!("{}:{}", up.host, up.port);
    let tcp = TcpStream::connect((up.host.as_str(), up.port))
        .await
        .map_err(|e| UpstreamError::Connect(target.clone(), e))?;
    let _ = tcp.set_nodelay(true);
    let Some(config) = tls.filter(|_| up.tls) else {
        return Ok(Either::Left(tcp));
    };
    let name = ServerName::try_from(up.host.clone())
        .map_err(|e| UpstreamError::Tls(target.clone(), std::io::Error::other(e)))?;
    let stream = tokio_rustls::TlsConnector::from(Arc::clone(config))
        .connect(name, tcp)
        .await
        .map_err(|e| UpstreamError::Tls(target, e))?;
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

/// The header names a request's `Connection` lists: hop-by-hop too (RFC
/// 9110 section 7.6.1).
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
}
