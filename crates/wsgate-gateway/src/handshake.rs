//! The handshake stage: one HTTP request in, a refusal or a 101 out.
//!
//! [`handle`] first sends the gateway's own paths (JWKS, ticket issuing,
//! CSP reports) and requests on `kind = "http"` routes where they belong
//! (`pass`). For a WebSocket handshake, in order: RFC 6455 checks, admission (route, host, origin, credentials,
//! limits), the upstream's own 101, and only then the client's 101. Every
//! outcome is one audit line. An admitted connection goes on in its own task
//! (`open`), which starts the relay once hyper hands over the
//! upgraded connection.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::time::Instant;
use wsgate_policy::forwarded;
use wsgate_policy::limits::ClientKey;
use wsgate_policy::{Admitted, Reason, admit};
use wsgate_proto::deflate;
use wsgate_proto::handshake::{self, HandshakeError};

use crate::audit::AuditEvent;
use crate::metrics::RouteLabels;
use crate::open::Open;
use crate::respond::Body;
use crate::snapshot::Snapshot;
use crate::state::State;
use crate::upstream::{self, ClientSide, Connected};

/// Who is on the other end of one accepted connection.
pub(crate) struct Conn {
    pub(crate) state: Arc<State>,
    pub(crate) listener: usize,
    pub(crate) id: u64,
    /// The address the connection comes from.
    pub(crate) peer: SocketAddr,
    /// Who the requests are from: `peer`; on a `proxy_protocol` listener the
    /// client the balancer's header named (`listen.rs`); behind a trusted
    /// proxy the client its `X-Forwarded-For` names (see [`Conn::behind_proxy`]).
    pub(crate) client: Client,
    pub(crate) tls: bool,
    /// The client certificate verified during the TLS handshake, if any.
    pub(crate) client_cert: Option<wsgate_policy::credentials::ClientCert>,
    /// The chain the client presented (its certificate first), empty without
    /// one: a reload checks it again against the listener's CAs and CRLs.
    pub(crate) client_chain: Vec<rustls::pki_types::CertificateDer<'static>>,
}

/// The client of a request, as limits count it, the audit log names it
/// and the upstream is told of it.
#[derive(Clone)]
pub(crate) struct Client {
    pub(crate) ip: IpAddr,
    /// `ip` as text (with a port when one is known: the peer's, or the one a
    /// PROXY protocol header named), formatted once for every audit line.
    pub(crate) text: String,
    /// The trusted proxy's address, when the client came through one.
    pub(crate) via: Option<String>,
    /// The `X-Forwarded-For` the upstream is sent.
    pub(crate) forwarded_for: String,
}

impl Client {
    /// The connection's peer is the client.
    pub(crate) fn direct(peer: SocketAddr) -> Client {
        let (text, forwarded_for) = address_texts(peer);
        Client {
            ip: peer.ip(),
            text,
            via: None,
            forwarded_for,
        }
    }

    /// The peer is a trusted balancer, and `source` the client its PROXY
    /// protocol header names.
    pub(crate) fn proxied(peer: SocketAddr, source: SocketAddr) -> Client {
        Client {
            ip: source.ip(),
            text: source.to_string(),
            via: Some(peer.to_string()),
            forwarded_for: source.ip().to_string(),
        }
    }

    /// The client so far (`hop`) is a trusted proxy, and `found` the client
    /// its `X-Forwarded-For` names.
    fn forwarded(hop: &Client, found: forwarded::Forwarded) -> Client {
        Client {
            ip: found.client,
            text: found.client.to_string(),
            via: Some(hop.text.clone()),
            forwarded_for: found.chain,
        }
    }
}

/// `peer` as `Display` writes it, and its address alone. Every accepted
/// connection needs both: an IPv4 address is written once, by hand,
/// since `Display` takes 1,300 instructions for each (1 % of a plain
/// handshake's, twice).
fn address_texts(peer: SocketAddr) -> (String, String) {
    let SocketAddr::V4(v4) = peer else {
        return (peer.to_string(), peer.ip().to_string());
    };
    let mut ip = String::with_capacity(15);
    for (i, octet) in v4.ip().octets().into_iter().enumerate() {
        if i > 0 {
            ip.push('.');
        }
        ip.push_str(itoa::Buffer::new().format(octet));
    }
    let mut text = String::with_capacity(21);
    text.push_str(&ip);
    text.push(':');
    text.push_str(itoa::Buffer::new().format(v4.port()));
    (text, ip)
}

impl Conn {
    pub(crate) fn event(&self, kind: &'static str) -> AuditEvent {
        let listener = self.state.bound_text[self.listener].clone();
        let mut ev = AuditEvent::new(kind, self.id, self.client.text.clone(), listener);
        ev.via.clone_from(&self.client.via);
        ev
    }

    /// The connection as one request sees it: when the client so far (the
    /// peer, or the client a PROXY header named) is a trusted proxy, the
    /// client its `X-Forwarded-For` names. Per request, since a balancer
    /// sends many clients' requests over one connection. `Err` holds the
    /// refusal when a trusted proxy's header cannot be read.
    fn behind_proxy(
        self: Arc<Self>,
        headers: &http::HeaderMap,
        policy: &Snapshot,
    ) -> Result<Arc<Self>, String> {
        let trusted = &policy.listeners[self.listener].config.trusted_proxies;
        if trusted.is_empty() {
            return Ok(self);
        }
        // A value that is not text cannot be an address: it reads as one
        // that is not, and is refused if it had to be read.
        let values = headers
            .get_all("x-forwarded-for")
            .iter()
            .map(|v| v.to_str().unwrap_or("(not text)"));
        // Behind a balancer that sent a PROXY header, the hop is the client it named.
        let Some(found) =
            forwarded::resolve(self.client.ip, trusted, values).map_err(|e| e.to_string())?
        else {
            return Ok(self);
        };
        Ok(Arc::new(Conn {
            state: Arc::clone(&self.state),
            listener: self.listener,
            id: self.id,
            peer: self.peer,
            client: Client::forwarded(&self.client, found),
            tls: self.tls,
            client_cert: self.client_cert.clone(),
            client_chain: self.client_chain.clone(),
        }))
    }

    /// An event about one request: its path (never its query), `Host` and `Origin`.
    pub(crate) fn request_event(
        &self,
        kind: &'static str,
        uri: &http::Uri,
        headers: &http::HeaderMap,
    ) -> AuditEvent {
        let mut ev = self.event(kind);
        ev.path = Some(uri.path().to_owned());
        ev.host = header_text(headers, header::HOST);
        ev.origin = header_text(headers, header::ORIGIN);
        ev
    }
}

/// Answers one request on a client connection: the gateway's own paths
/// (JWKS, tickets, CSP reports), a `kind = "http"` route's pass-through,
/// or a WebSocket handshake. `write_stall` is how long the connection's
/// writes may wait for the client to read: set here for each answer.
pub(crate) async fn handle(
    req: Request<Incoming>,
    conn: Arc<Conn>,
    write_stall: Arc<crate::stall::Bound>,
) -> Result<Response<Body>, Infallible> {
    // One policy for the whole decision, whatever a reload does meanwhile.
    let policy = conn.state.policy();
    // The gateway's own answers are small: a client that reads none of
    // one within the handshake's time is not reading at all.
    let listener = &policy.listeners[conn.listener].config;
    write_stall.set(Some(listener.handshake_timeout));
    let conn = match Arc::clone(&conn).behind_proxy(req.headers(), &policy) {
        Ok(conn) => conn,
        Err(detail) => {
            // Logged as the route the request was meant for.
            let route = match policy.router.find(req.uri().path()) {
                Ok((_, r)) | Err(wsgate_policy::NoRoute::CaseVariant(r)) => Some(r),
                Err(wsgate_policy::NoRoute::Unserved) => None,
            };
            return Ok(refuse_bad_request(&req, &conn, route, detail));
        }
    };
    let path = req.uri().path();
    if let Some(signer) = &policy.assertion
        && path == signer.jwks_path()
    {
        return Ok(crate::respond::boxed(crate::respond::jwks(signer.jwks())));
    }
    if let Some(t) = &policy.auth.ticket
        && path == t.issue_path
    {
        return Ok(crate::respond::boxed(ticket(req, &conn, &policy).await));
    }
    if path == crate::pass::CSP_REPORT_PATH
        && policy.router.routes().iter().any(|r| r.csp.is_some())
    {
        return Ok(crate::pass::csp_report(req, &conn).await);
    }
    match policy.router.find(path) {
        Err(none @ wsgate_policy::NoRoute::CaseVariant(imitated)) => {
            let (_, detail) = none.refusal(path);
            return Ok(refuse_bad_request(&req, &conn, Some(imitated), detail));
        }
        Ok((index, route)) if route.kind == wsgate_config::RouteKind::Http => {
            let route = Arc::clone(route);
            // A page or a download, read at the client's pace: paused for up
            // to the time the route allows any wait for bytes.
            write_stall.set(route.limits.idle_timeout);
            return Ok(crate::pass::forward(req, &conn, &policy, index, &route).await);
        }
        // A WebSocket route's, or no route's: admission refuses the latter.
        _ => {}
    }
    Ok(crate::respond::boxed(websocket(req, conn, policy).await))
}

/// A request refused before its kind's own checks (a trusted proxy's
/// `X-Forwarded-For` that names no client, a path that is a route's in
/// another letter case): 400 `bad_handshake`, logged as the request it
/// would have been on `route`, the one it was meant for (the one its path
/// finds, or the one a case variant imitates).
fn refuse_bad_request(
    req: &Request<Incoming>,
    conn: &Conn,
    route: Option<&Arc<wsgate_config::Route>>,
    detail: String,
) -> Response<Body> {
    let kind = match route {
        Some(r) if r.kind == wsgate_config::RouteKind::Http => "http",
        _ => "handshake",
    };
    let mut ev = conn.request_event(kind, req.uri(), req.headers());
    ev.route = route.map(|r| r.path.clone());
    ev.refuse(Reason::BadHandshake, detail);
    if kind == "handshake" {
        let code = Some(Reason::BadHandshake.code());
        (conn.state.metrics).handshake(ev.route.as_deref(), "refused", code, 0.0);
    }
    conn.state.audit.write(ev);
    crate::respond::boxed(crate::respond::refusal(Reason::BadHandshake))
}

/// The ticket-issuing path: one audit line per request.
async fn ticket(req: Request<Incoming>, conn: &Conn, policy: &Snapshot) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let (parts, _body) = req.into_parts();
    let mut ev = conn.request_event("ticket", &parts.uri, &parts.headers);
    let response = crate::tickets::handle(conn, policy, &parts, &mut ev).await;
    ev.duration_ms = elapsed_ms(started);
    conn.state.audit.write(ev);
    response
}

/// Answers a WebSocket handshake.
async fn websocket(
    mut req: Request<Incoming>,
    conn: Arc<Conn>,
    policy: Arc<Snapshot>,
) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let on_upgrade = hyper::upgrade::on(&mut req);
    let (parts, _body) = req.into_parts();
    let mut ev = conn.request_event("handshake", &parts.uri, &parts.headers);
    let state = &conn.state;
    let response = match decide(&conn, &policy, &parts).await {
        Err(Refusal {
            reason,
            route,
            detail,
            retry_after,
            limit,
        }) => {
            if let Some(kind) = limit {
                state.metrics.limit_hit(kind);
            }
            let route = route.map(|i| &policy.router.routes()[i]);
            ev.route = route.map(|r| r.path.clone());
            ev.refuse(reason, detail.unwrap_or_default());
            ev.duration_ms = elapsed_ms(started);
            let secs = started.elapsed().as_secs_f64();
            state
                .metrics
                .handshake(ev.route.as_deref(), "refused", Some(reason.code()), secs);
            let mut response = crate::respond::refusal(reason);
            if let Some(after) = retry_after {
                crate::respond::retry_after(&mut response, after);
            }
            if let Some(r) = route {
                crate::respond::challenge(&mut response, reason, r, &policy.auth);
            }
            response
        }
        Ok(Decided {
            admitted,
            seen,
            key: hs_key,
            connected,
            held,
            deflate,
        }) => {
            ev.route = Some(admitted.route().path.clone());
            let (reason, detail) = match admitted.report() {
                Some(r) => (Some(r.reason), Some(r.detail.clone())),
                None => (None, None),
            };
            ev.decision = Some("admitted");
            ev.user = admitted.identity().map(|i| i.user.clone());
            ev.auth = admitted.identity().map(|i| i.method.name());
            ev.reason = reason.map(Reason::code);
            ev.enforced = reason.is_none();
            ev.status = Some(101);
            ev.detail = detail;
            ev.duration_ms = elapsed_ms(started);
            let accept = handshake::accept_key(&hs_key);
            let response = crate::respond::switching(
                &accept,
                connected.protocol.as_deref(),
                deflate.as_ref().map(|d| d.response.as_str()),
            );
            let secs = started.elapsed().as_secs_f64();
            state
                .metrics
                .handshake(ev.route.as_deref(), "admitted", ev.reason, secs);
            let open = Open::new(&conn, &policy, admitted, seen, deflate.is_some(), &ev, held);
            state.audit.write(ev);
            open.spawn(connected.io, on_upgrade);
            return response;
        }
    };
    state.audit.write(ev);
    response
}

/// Why a handshake was refused, with what the response and the log need.
struct Refusal {
    reason: Reason,
    route: Option<usize>,
    detail: Option<String>,
    retry_after: Option<std::time::Duration>,
    /// The config key of the limit that refused it, when one did.
    limit: Option<&'static str>,
}

impl Refusal {
    fn new(reason: Reason, route: Option<usize>, detail: String) -> Self {
        Refusal {
            reason,
            route,
            detail: Some(detail),
            retry_after: None,
            limit: None,
        }
    }

    fn denied(d: crate::store::Denied, route: usize) -> Self {
        Refusal {
            reason: d.reason,
            route: Some(route),
            detail: Some(d.detail),
            retry_after: d.retry_after,
            limit: d.limit,
        }
    }
}

/// What an open connection holds until it closes: its slot in the
/// gateway's `max_connections` and its counts in the store.
pub(crate) struct Held {
    _slot: crate::limits::Slot,
    _lease: crate::store::Lease,
}

/// An admitted handshake whose upstream has answered its 101.
struct Decided {
    admitted: Admitted,
    /// What a reload re-checks the connection by.
    seen: wsgate_policy::Seen,
    key: String,
    connected: Connected,
    held: Held,
    /// The client's permessage-deflate offer, when the route takes one.
    deflate: Option<deflate::Agreement>,
}

async fn decide(
    conn: &Conn,
    policy: &Snapshot,
    parts: &http::request::Parts,
) -> Result<Decided, Refusal> {
    let state = &conn.state;
    let path = parts.uri.path();
    // Taken first, before any work: a gateway at its bound answers at once.
    let slot = state.slots.take().ok_or_else(|| {
        let detail = format!(
            "the gateway holds its [limits] max_connections ({})",
            state.slots.max()
        );
        Refusal {
            limit: Some("max_connections"),
            ..Refusal::new(Reason::TooManyConnections, None, detail)
        }
    })?;
    let hs = handshake::check_request(&parts.method, &parts.uri, parts.version, &parts.headers)
        .map_err(|e| {
            let reason = match e {
                HandshakeError::NotUpgrade if policy.router.find(path).is_err() => {
                    Reason::RouteNotFound
                }
                ref e => Reason::from(e),
            };
            Refusal::new(reason, None, e.to_string())
        })?;
    let request = wsgate_policy::Request {
        path,
        query: parts.uri.query(),
        headers: &parts.headers,
        client_cert: conn.client_cert.as_ref(),
        host: &hs.host,
        origin: hs.origin.as_deref(),
        protocols: &hs.protocols,
    };
    let hosts = &policy.listeners[conn.listener].config.hosts;
    // Every handshake that names a route counts, whatever is decided
    // after: guessing origins, passwords or tokens is as slow as the
    // route's handshake rate. Limits apply in report mode too: they
    // protect the gateway, not a policy being rolled out.
    if let Ok((route, r)) = policy.router.find(path) {
        let client = ClientKey::new(conn.client.ip, r.limits.ipv6_prefix);
        state
            .store
            .handshake(r, client)
            .await
            .map_err(|d| Refusal::denied(d, route))?;
    }
    let refused = |r: wsgate_policy::Refused| Refusal::new(r.reason, r.route, r.detail);
    let checked = admit(hosts, &policy.router, &policy.auth, &request).map_err(refused)?;
    let route = checked.route_index();
    let client = ClientKey::new(conn.client.ip, checked.route().limits.ipv6_prefix);
    let tickets = policy.auth.ticket.is_some().then_some(&state.store);
    let outcome = policy
        .verifiers
        .verify(&checked, tickets, hs.origin.as_deref())
        .await;
    let admitted = checked.finish(outcome).map_err(refused)?;
    let user = admitted.identity().map(|i| i.user.as_str());
    let lease = state
        .store
        .open(admitted.route(), client, user)
        .await
        .map_err(|d| Refusal::denied(d, route))?;
    let client_side = ClientSide {
        path_and_query: parts.uri.path_and_query().map_or(path, |p| p.as_str()),
        headers: &parts.headers,
        forwarded_for: &conn.client.forwarded_for,
        tls: conn.tls,
        client_cert: conn.client_cert.as_ref(),
        assertion: policy.assertion.as_ref().map(|s| {
            let value = s.sign(admitted.identity(), &admitted.route().path, conn.client.ip);
            (s.header(), value)
        }),
    };
    let tls = policy.upstream_tls[admitted.route_index()].as_ref();
    let asked = Instant::now();
    let connected = upstream::connect(&admitted, &client_side, tls).await;
    state
        .metrics
        .upstream_seconds
        .observe(asked.elapsed().as_secs_f64());
    if connected.is_err() {
        let labels = RouteLabels {
            route: admitted.route().path.clone(),
        };
        state.metrics.upstream_errors.get_or_create(&labels).inc();
    }
    match connected {
        Ok(connected) => Ok(Decided {
            deflate: admitted
                .route()
                .compression
                .then(|| {
                    let offers = parts.headers.get_all(header::SEC_WEBSOCKET_EXTENSIONS);
                    deflate::negotiate(offers.iter().filter_map(|v| v.to_str().ok()))
                })
                .flatten(),
            seen: admitted.seen(&request),
            admitted,
            key: hs.key,
            connected,
            held: Held {
                _slot: slot,
                _lease: lease,
            },
        }),
        Err(e) => Err(Refusal::new(
            Reason::UpstreamUnavailable,
            Some(route),
            e.to_string(),
        )),
    }
}

pub(crate) fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A header for the log: the first copy, non-ASCII bytes replaced, capped in length.
fn header_text(headers: &http::HeaderMap, name: header::HeaderName) -> Option<String> {
    const MAX: usize = 256;
    let v = headers.get(name)?;
    let text = String::from_utf8_lossy(v.as_bytes());
    // `MAX` characters, not bytes: cut where the next one starts, and copy
    // once (collecting them one by one grows the string as it goes).
    let end = text
        .char_indices()
        .nth(MAX)
        .map_or(text.len(), |(at, _)| at);
    Some(text[..end].to_owned())
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv6Addr, SocketAddrV6};

    use super::*;

    #[test]
    fn a_peers_address_is_written_as_display_writes_it() {
        let mut peers: Vec<SocketAddr> = [
            "127.0.0.1:9",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "10.20.3.104:50123",
            "[::1]:443",
            "[::ffff:1.2.3.4]:80",
        ]
        .iter()
        .map(|p| p.parse().unwrap())
        .collect();
        peers.push(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 80, 0, 2).into());
        for peer in peers {
            let (text, ip) = address_texts(peer);
            assert_eq!(text, peer.to_string());
            assert_eq!(ip, peer.ip().to_string());
        }
    }
}
