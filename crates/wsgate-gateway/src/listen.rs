//! The listen stage: accept TCP, read a PROXY protocol header where the
//! listener takes one, finish TLS, read the request head, all within the
//! listener's `handshake_timeout`, then hand the request to the handshake
//! stage.
//!
//! hyper reads the request head with a bounded buffer (`max_header_bytes`,
//! answered 431 above it) and a header-read timer (slowloris). Failures it
//! answers itself are still logged here, with their reason.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::pki_types::{CertificateDer, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use wsgate_policy::Reason;
use wsgate_policy::credentials::ClientCert;

use crate::handshake::{Client, Conn, elapsed_ms, handle};
use crate::limits::AtHttp;
use crate::snapshot::ListenerPolicy;
use crate::stall::{Bound, NotRead, WriteStall};
use crate::state::State;
use wsgate_policy::limits::ClientKey;

/// A listening socket on `bind`; with `reuse_port`, `SO_REUSEPORT` lets
/// another process (the next version of wsgate) bind the same address, and
/// the kernel spreads new connections over both until this one closes.
pub(crate) fn bind(bind: SocketAddr, reuse_port: bool) -> std::io::Result<TcpListener> {
    let socket = match bind {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    // As `TcpListener::bind` does: a restart can bind while old
    // connections sit in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    if reuse_port {
        socket.set_reuseport(true)?;
    }
    socket.bind(bind)?;
    socket.listen(1024)
}

/// Accepts on one listener until shutdown.
pub(crate) async fn accept_loop(state: Arc<State>, index: usize, listener: TcpListener) {
    loop {
        let accepted = tokio::select! {
            () = state.stop.cancelled() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((tcp, client)) => {
                // Read once for all the connection takes from it at accept:
                // a reload in between cannot give one connection the
                // certificate of one policy and the timeouts or trusted
                // proxies of another.
                let policy = state.policy();
                let listener = &policy.listeners[index];
                let Some(at_http) = take_at_http(&state, index, listener, client) else {
                    // Closed unread.
                    drop(tcp);
                    continue;
                };
                let settings = Settings::of(listener);
                drop(policy);
                let s = Arc::clone(&state);
                // Boxed: the task's future is 2.9 KiB, and a future spawned
                // inline is copied whole on its way into the task and again
                // when the task ends (2 % of a plain handshake's instructions).
                state
                    .tasks
                    .spawn(Box::pin(serve(s, index, settings, tcp, client, at_http)));
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// What a connection takes from its listener's policy at accept. A reload
/// applies to connections accepted after it, a rotated certificate too.
struct Settings {
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    verifier: Option<crate::tls::ClientVerifier>,
    /// The PROXY header, TLS and the request head must all arrive within it.
    handshake_timeout: Duration,
    /// Bounded by config validation to 8 KiB..=1 MiB.
    max_header_bytes: usize,
    /// With the PROXY protocol: who may send its header.
    proxies: Option<Vec<wsgate_config::IpNet>>,
}

impl Settings {
    fn of(l: &ListenerPolicy) -> Settings {
        Settings {
            acceptor: l.tls.clone(),
            verifier: l.client_verifier.clone(),
            handshake_timeout: l.config.handshake_timeout,
            max_header_bytes: usize::try_from(l.config.max_header_bytes).unwrap_or(usize::MAX),
            proxies: l
                .config
                .proxy_protocol
                .then(|| l.config.trusted_proxies.clone()),
        }
    }
}

/// A place at HTTP for a connection from `peer`: among all connections
/// and, unless a trusted proxy brings it, among its address's. Taken before
/// the connection's task exists: a flood of connections that never send a
/// request, never finish TLS or trickle a request body would otherwise hold
/// sockets and tasks without bound and starve the process of descriptors.
/// `None`: refused and logged; the caller closes the socket unread, since
/// answering would mean a TLS handshake and a request head, the very work
/// there is no room for.
fn take_at_http(
    state: &Arc<State>,
    index: usize,
    listener: &ListenerPolicy,
    peer: SocketAddr,
) -> Option<AtHttp> {
    let refused = |limit, detail: &dyn Fn() -> String| {
        log_unread(state, index, listener.tls.is_some(), peer, limit, detail);
    };
    let Some(all) = state.at_http.take() else {
        refused("max_connections", &|| {
            format!(
                "{} connections are already at HTTP (before or between requests, or on kind = \"http\" routes; [limits] max_connections); closed unread",
                state.at_http.max()
            )
        });
        return None;
    };
    // A trusted proxy brings many clients' connections from one address,
    // and names them only later (its header, or the PROXY protocol's).
    let from_proxy =
        wsgate_policy::forwarded::is_trusted(&listener.config.trusted_proxies, peer.ip());
    let address = if from_proxy {
        None
    } else {
        let key = ClientKey::new(peer.ip(), 64);
        let Some(place) = state.at_http_per_address.take(key) else {
            refused("max_http_conns_per_ip", &|| {
                format!(
                    "{key} already holds {} connections at HTTP ([limits] max_http_conns_per_ip); closed unread",
                    state.at_http_per_address.max()
                )
            });
            return None;
        };
        Some(place)
    };
    Some(AtHttp {
        _all: all,
        _address: address,
    })
}

/// Counts a connection closed at accept for the bound `limit` and logs it
/// within [`State::unread_lines`]: the sender spends nothing on a socket,
/// so these are the cheapest lines to flood the log with (the metrics
/// count every one).
fn log_unread(
    state: &Arc<State>,
    index: usize,
    tls: bool,
    peer: SocketAddr,
    limit: &'static str,
    detail: &dyn Fn() -> String,
) {
    state.metrics.limit_hit(limit);
    let Some(left_out) = state.unread_lines.take() else {
        // Left out of the log, not out of the counts.
        let code = Some(Reason::TooManyConnections.code());
        state.metrics.handshake(None, "refused", code, 0.0);
        return;
    };
    let detail = detail();
    let detail = if left_out == 0 {
        detail
    } else {
        format!("{detail} ({left_out} more closed unread since the last such line, not logged)")
    };
    let conn = Conn {
        state: Arc::clone(state),
        listener: index,
        id: state.next_conn_id(),
        peer,
        client: Client::direct(peer),
        tls,
        client_cert: None,
        client_chain: Vec::new(),
    };
    log_failure(
        &conn,
        Reason::TooManyConnections,
        tokio::time::Instant::now(),
        &detail,
    );
}

async fn serve(
    state: Arc<State>,
    index: usize,
    settings: Settings,
    mut tcp: TcpStream,
    peer: SocketAddr,
    at_http: AtHttp,
) {
    let _ = tcp.set_nodelay(true);
    let Settings {
        acceptor,
        verifier,
        handshake_timeout: timeout,
        max_header_bytes,
        proxies,
    } = settings;
    let id = state.next_conn_id();
    let started = tokio::time::Instant::now();
    // The PROXY header, TLS and the request head, all within one timeout.
    let deadline = started + timeout;
    let mut client = Client::direct(peer);
    // A verified certificate's fields and the chain it came in, together
    // or not at all.
    let conn = |client: &Client, presented: Option<(ClientCert, Vec<CertificateDer<'static>>)>| {
        let (client_cert, client_chain) =
            presented.map_or((None, Vec::new()), |(c, chain)| (Some(c), chain));
        Arc::new(Conn {
            state: Arc::clone(&state),
            listener: index,
            id,
            peer,
            client: client.clone(),
            tls: acceptor.is_some(),
            client_cert,
            client_chain,
        })
    };
    if let Some(trusted) = proxies {
        let refuse = |client: &Client, reason, detail: &str| {
            log_failure(&conn(client, None), reason, started, detail);
        };
        // Whoever may send the header may name any client.
        if !wsgate_policy::forwarded::is_trusted(&trusted, peer.ip()) {
            let detail = format!(
                "{} is not in trusted_proxies, and this listener takes only PROXY protocol connections",
                peer.ip()
            );
            return refuse(&client, Reason::ProxyHeaderRefused, &detail);
        }
        match tokio::time::timeout_at(deadline, crate::proxy_header::read(&mut tcp)).await {
            Ok(Ok(Some(source))) => client = Client::proxied(peer, source),
            // The balancer's own connection (a health check): its own client.
            Ok(Ok(None)) => {}
            Ok(Err(detail)) => return refuse(&client, Reason::ProxyHeaderRefused, &detail),
            Err(_) => {
                let detail = "PROXY protocol header not received in time";
                return refuse(&client, Reason::HandshakeTimeout, detail);
            }
        }
    }
    let conn = |presented| conn(&client, presented);
    let head = Head {
        timeout,
        max_bytes: max_header_bytes,
        started,
    };
    let Some(acceptor) = &acceptor else {
        return serve_http(conn(None), tcp, head, at_http).await;
    };
    match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => {
            // A full handshake's certificate has just passed webpki: chain,
            // validity, CRLs. A resumed session's passed when the session
            // began and may have expired since, so it is checked again.
            let session = tls.get_ref().1;
            let chain = session.peer_certificates().unwrap_or_default();
            if session.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
                && let Some(verifier) = &verifier
                && let Err(e) = crate::tls::still_trusted(verifier, chain, UnixTime::now())
            {
                return log_failure(
                    &conn(None),
                    Reason::TlsFailed,
                    started,
                    &format!("the resumed TLS session's client certificate is refused now: {e}"),
                );
            }
            let presented = chain
                .first()
                .and_then(crate::tls::client_cert)
                .map(|cert| (cert, chain.to_vec()));
            // Boxed: inline, the TLS stream would double the size of every
            // connection's task (6.0 KiB against 2.9), plain ones too, and
            // that much is moved when the task is spawned and written again
            // when it ends (1.8 % of the instructions per plain handshake).
            Box::pin(serve_http(conn(presented), tls, head, at_http)).await;
        }
        Ok(Err(e)) => log_failure(
            &conn(None),
            Reason::TlsFailed,
            started,
            &format!("TLS handshake failed: {e}"),
        ),
        Err(_) => log_failure(
            &conn(None),
            Reason::HandshakeTimeout,
            started,
            "TLS handshake not finished in time",
        ),
    }
}

/// How a connection's request heads are read: each within the listener's
/// `handshake_timeout` (the first counted from accept), none larger than
/// its `max_header_bytes`.
#[derive(Clone, Copy)]
struct Head {
    timeout: Duration,
    max_bytes: usize,
    /// When the connection was accepted.
    started: tokio::time::Instant,
}

async fn serve_http<I>(conn: Arc<Conn>, io: I, head: Head, at_http: AtHttp)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let started = head.started;
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(head.timeout)
        .max_buf_size(head.max_bytes);
    // Not `keep_alive(false)`: hyper would then overwrite the 101's
    // `Connection: Upgrade` with `close`. Every refusal carries
    // `Connection: close` instead, which ends the connection after it.

    // Set once a request has been handed to `handle`: a header-read
    // timeout after that is a keep-alive connection left idle, not a
    // handshake that never came.
    let served = AtomicBool::new(false);
    // Until the first request sets it: the 400s hyper writes itself.
    let write_stall = Arc::new(Bound::new(Some(head.timeout)));
    let service = service_fn(|req| {
        served.store(true, Ordering::Relaxed);
        handle(req, Arc::clone(&conn), Arc::clone(&write_stall))
    });
    let io = WriteStall::new(io, Arc::clone(&write_stall));
    let connection = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(connection);
    // Stopping ends connections still at HTTP (idle keep-alives, requests
    // in progress get their answer); upgraded ones are the relay's.
    let shutdown = conn.state.stop.clone();
    let result = tokio::select! {
        r = connection.as_mut() => r,
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    // The connection has ended, or hyper has handed it to the WebSocket
    // relay, which `slots` counts: either way it no longer speaks HTTP.
    drop(at_http);
    let Err(e) = result else { return };
    if e.is_timeout() && served.load(Ordering::Relaxed) {
        // hyper's header-read timer also runs while a keep-alive
        // connection waits for its next request: closing an idle one
        // refuses nothing.
        tracing::debug!(client = %conn.peer, "idle keep-alive connection closed");
    } else if e.is_timeout() {
        log_failure(
            &conn,
            Reason::HandshakeTimeout,
            started,
            "request head not received in time",
        );
    } else if e.is_parse_too_large() {
        log_failure(
            &conn,
            Reason::HeadersTooLarge,
            started,
            "request head larger than max_header_bytes",
        );
    } else if e.is_parse() {
        log_failure(
            &conn,
            Reason::BadHandshake,
            started,
            &format!("malformed HTTP: {e}"),
        );
    } else if let Some(stalled) = stalled(&e) {
        // The request was logged when it was answered; this is how the
        // answer ended.
        tracing::warn!(
            client = %conn.client.text,
            connection = conn.id,
            "{stalled}: connection closed"
        );
    } else {
        tracing::debug!(client = %conn.peer, error = %e, "connection ended with an error");
    }
}

/// The [`NotRead`] a connection's error comes from, if it does.
fn stalled(e: &hyper::Error) -> Option<&NotRead> {
    let io = std::error::Error::source(e)?.downcast_ref::<std::io::Error>()?;
    io.get_ref()?.downcast_ref::<NotRead>()
}

fn log_failure(conn: &Conn, reason: Reason, started: tokio::time::Instant, detail: &str) {
    let mut ev = conn.event("handshake");
    ev.refuse(reason, detail.to_owned());
    ev.duration_ms = elapsed_ms(started);
    let secs = started.elapsed().as_secs_f64();
    conn.state
        .metrics
        .handshake(None, "refused", Some(reason.code()), secs);
    conn.state.audit.write(ev);
}
