//! An admitted connection's task, from its 101 to its close line: the
//! upgrade, the relay, the registration that lets a revocation reach it,
//! the re-check each reload makes, and the metrics and audit line of its
//! close.
//!
//! The task lives as long as the connection, idle or not, so what it holds
//! is what every open connection costs (issue 7 allows 5 KiB). It holds
//! what the relay, the re-check and the close line need, and nothing that
//! only the handshake needed: [`Open`] keeps the identity, not the whole
//! [`Admitted`], and the few fields of the handshake's audit line that the
//! close line repeats, not the line itself. And it holds each thing once:
//! an async block keeps a value moved out of one of its captures in a new
//! slot beside the old one, for as long as the block runs, so the task
//! borrows what it captured and builds what the relay takes (its checks,
//! its reload receiver) in [`Open::relaying`], a plain function.

use std::future::Future;
use std::sync::Arc;

use hyper::upgrade::{OnUpgrade, Upgraded};
use rustls::pki_types::CertificateDer;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wsgate_config::{AuthMethod, Mode, Route};
use wsgate_policy::messages::MessageRules;
use wsgate_policy::verify::Identity;
use wsgate_policy::{Admitted, Reason, Seen};

use crate::audit::AuditEvent;
use crate::halves::Halves;
use crate::handshake::{Conn, Held, elapsed_ms};
use crate::metrics::{CloseLabels, FlowLabels, Metrics, RouteLabels};
use crate::relay::{self, Judge, Summary};
use crate::snapshot::Snapshot;
use crate::state::State;
use crate::upstream;

/// An admitted connection, from its 101 until it closes.
pub(crate) struct Open {
    state: Arc<State>,
    listener: usize,
    /// The route the connection was admitted by, as then configured.
    route: Arc<Route>,
    rules: Option<Arc<MessageRules>>,
    identity: Option<Identity>,
    /// False when a route in report mode admitted what enforcing would refuse.
    enforced: bool,
    /// What a reload re-checks the connection by.
    seen: Seen,
    /// The chain the client presented, for a reload to check again; empty
    /// (no allocation) without a certificate.
    client_chain: Vec<CertificateDer<'static>>,
    /// permessage-deflate was agreed.
    deflate: bool,
    /// When the credential that admitted the connection stops covering it.
    session_end: Option<Instant>,
    /// The policy generation the handshake was decided by.
    generation: u64,
    line: CloseLine,
    /// Given back when the task ends, however the connection ended.
    held: Held,
}

/// The fields of the handshake's audit line that the close line repeats
/// and the task does not otherwise keep.
struct CloseLine {
    conn: u64,
    client: String,
    via: Option<String>,
    path: Option<String>,
    host: Option<String>,
    origin: Option<String>,
}

impl Open {
    /// What the connection keeps of its handshake, decided by `policy` and
    /// logged as `handshake`.
    pub(crate) fn new(
        conn: &Conn,
        policy: &Snapshot,
        admitted: Admitted,
        seen: Seen,
        deflate: bool,
        handshake: &AuditEvent,
        held: Held,
    ) -> Open {
        let route_index = admitted.route_index();
        let route = Arc::clone(admitted.route());
        let enforced = admitted.report().is_none();
        let identity = admitted.into_identity();
        Open {
            state: Arc::clone(&conn.state),
            listener: conn.listener,
            rules: policy.rules[route_index].clone(),
            session_end: session_end(identity.as_ref(), policy),
            route,
            identity,
            enforced,
            seen,
            client_chain: conn.client_chain.clone(),
            deflate,
            generation: policy.generation,
            line: CloseLine {
                conn: handshake.conn,
                client: handshake.client.clone(),
                via: handshake.via.clone(),
                path: handshake.path.clone(),
                host: handshake.host.clone(),
                origin: handshake.origin.clone(),
            },
            held,
        }
    }

    /// Runs the connection in a task of its own once hyper hands over the
    /// client's side of the upgrade: `upstream` is the upstream's connection
    /// after its 101.
    ///
    /// Not boxed, unlike the accepted connection's task (`listen.rs`): boxed,
    /// it would be copied less (about 900 instructions of a plain
    /// handshake's 146,000), but every idle connection would hold 128 bytes
    /// more, tokio's own allocation around the box (docs/perf/findings.md,
    /// "Handshakes: instructions, 2026-12-02").
    pub(crate) fn spawn(self, upstream: upstream::Opened, on_upgrade: OnUpgrade) {
        let tasks = self.state.tasks.clone();
        tasks.spawn(self.task(upstream, on_upgrade));
    }

    /// The connection's task: what every open connection holds in memory
    /// for its whole life (its size is tested below).
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn keeps its arguments twice, as captures and as locals"
    )]
    fn task(
        self,
        upstream: upstream::Opened,
        on_upgrade: OnUpgrade,
    ) -> impl Future<Output = ()> + Send + 'static {
        async move {
            // Only borrowed from here until the close line (see the module's docs).
            let open = &self;
            let started = Instant::now();
            let gauge = open
                .state
                .metrics
                .open
                .get_or_create(&RouteLabels {
                    route: open.route.path.clone(),
                })
                .clone();
            gauge.inc();
            let registration = open
                .identity
                .as_ref()
                .map(|i| open.state.live.register(&i.user, open.line.conn));
            let revoked = registration
                .as_ref()
                .map_or(&open.state.never_revoked, |r| &r.revoked);
            let judge = |p: &Snapshot| open.recheck(p);
            let summary = open
                .relaying(on_upgrade.await, upstream, revoked, &judge)
                .await;
            gauge.dec();
            drop(registration);
            self.close(summary, started);
        }
    }

    /// The relay of the upgraded connection, or when the client left before
    /// the upgrade completed, what the close line says of that.
    fn relaying<'a>(
        &'a self,
        client: hyper::Result<Upgraded>,
        upstream: upstream::Opened,
        revoked: &'a CancellationToken,
        judge: &'a Judge<'a>,
    ) -> impl Future<Output = Summary> + Send + 'a {
        let Ok(client) = client else {
            return futures_util::future::Either::Left(std::future::ready(Summary {
                outcome: relay::Outcome::ClientGone,
                bytes_from_client: 0,
                bytes_from_upstream: 0,
                messages_from_client: 0,
                messages_from_upstream: 0,
                messages_dropped: 0,
                detail: Some("client left before the upgrade completed".into()),
            }));
        };
        let state = &self.state;
        let limits = &self.route.limits;
        let checks = relay::Checks {
            rules: self.rules.clone(),
            meter: wsgate_policy::limits::Meter::for_limits(limits).map(Box::new),
            budget: Some(Arc::clone(&state.budget)),
            deflate: self.deflate.then_some(limits.max_message),
        };
        let mut changes = state.watch_policy();
        if changes.borrow().generation != self.generation {
            // A reload landed while the handshake was being decided.
            changes.mark_changed();
        }
        futures_util::future::Either::Right(relay::relay(
            Halves::client(client),
            Halves::upstream(upstream),
            &state.buffers,
            limits,
            checks,
            self.session_end,
            &state.shutdown,
            revoked,
            relay::Reconfig { changes, judge },
        ))
    }

    /// Judges the open connection by a reloaded policy: what the pure
    /// re-check says (route, host, origin, auth method); for a Basic user,
    /// whether the new htpasswd still names them; and for a client
    /// certificate, whether the listener's CAs and CRLs as now configured
    /// still accept it. `Ok` carries the route's limits and rules as now
    /// configured; `Err` why the connection must close, for the log.
    fn recheck(&self, policy: &Snapshot) -> Result<relay::Update, String> {
        let listener_policy = &policy.listeners[self.listener];
        // The TLS layer refuses a revoked certificate whatever the route's
        // mode, so this comes first and ignores report mode.
        if !self.client_chain.is_empty() {
            match &listener_policy.client_verifier {
                Some(verifier) => crate::tls::still_trusted(
                    verifier,
                    &self.client_chain,
                    rustls::pki_types::UnixTime::now(),
                )
                .map_err(|e| format!("tls_failed: the client certificate is refused now: {e}"))?,
                None if matches!(self.seen.auth, Some((AuthMethod::Mtls, _))) => {
                    return Err(
                        "client_cert_required: the listener no longer asks for client certificates"
                            .into(),
                    );
                }
                None => {}
            }
        }
        let hosts = &listener_policy.config.hosts;
        let why = |r: &wsgate_policy::Refused| format!("{}: {}", r.reason.code(), r.detail);
        let now = wsgate_policy::recheck(hosts, &policy.router, &self.seen).map_err(|r| why(&r))?;
        let enforce = now.route.mode == Mode::Enforce;
        let user = self.identity.as_ref().map(|i| i.user.as_str());
        if let (Some((AuthMethod::Basic, _)), Some(user)) = (self.seen.auth, user)
            && enforce
            && !policy.verifiers.knows_basic_user(user)
        {
            return Err(format!(
                "auth_invalid: user {user:?} is no longer in [auth.basic] htpasswd"
            ));
        }
        Ok(relay::Update {
            limits: now.route.limits.clone(),
            rules: policy.rules[now.route_index].clone(),
        })
    }

    /// Counts the closed connection and writes its close line; gives back
    /// what it held.
    fn close(self, summary: Summary, started: Instant) {
        let state = &self.state;
        count_close(&state.metrics, &self.route.path, &summary);
        let line = self.line;
        let listener = state.bound_text[self.listener].clone();
        let mut ev = AuditEvent::new("close", line.conn, line.client, listener);
        ev.via = line.via;
        ev.route = Some(self.route.path.clone());
        ev.path = line.path;
        ev.host = line.host;
        ev.origin = line.origin;
        ev.user = self.identity.as_ref().map(|i| i.user.clone());
        ev.auth = self.identity.as_ref().map(|i| i.method.name());
        ev.enforced = self.enforced;
        ev.reason = Some(summary.outcome.code());
        ev.close_code = Some(summary.outcome.close_code());
        ev.initiator = Some(summary.outcome.initiator());
        ev.bytes_in = Some(summary.bytes_from_client);
        ev.bytes_out = Some(summary.bytes_from_upstream);
        ev.messages_in = Some(summary.messages_from_client);
        ev.messages_out = Some(summary.messages_from_upstream);
        ev.messages_dropped = (summary.messages_dropped > 0).then_some(summary.messages_dropped);
        ev.duration_ms = elapsed_ms(started);
        ev.detail = summary.detail;
        // The slot and the store's counts go back before the line is
        // written, so that whoever acts on the line (a client reconnecting,
        // a test) finds them free.
        drop(self.held);
        state.audit.write(ev);
    }
}

/// When the credential that admitted a connection stops covering it.
fn session_end(identity: Option<&Identity>, policy: &Snapshot) -> Option<Instant> {
    let expires = identity?.expires?;
    let left = expires
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    Some(Instant::now() + left + policy.auth.session_grace)
}

/// Counts a finished connection.
fn count_close(metrics: &Metrics, route: &str, summary: &Summary) {
    let close = CloseLabels {
        route: route.to_owned(),
        reason: summary.outcome.code(),
        code: summary.outcome.close_code(),
    };
    metrics.closes.get_or_create(&close).inc();
    // Which limit closed it, as far as the reason tells: rates and sizes
    // each have two keys behind one reason.
    let limit = match summary.outcome {
        relay::Outcome::Gateway(Reason::MessageRateExceeded) => Some("message_rate"),
        relay::Outcome::Gateway(Reason::MessageTooBig) => Some("message_size"),
        relay::Outcome::Gateway(Reason::Overloaded) => Some("assembly_memory"),
        _ => None,
    };
    if let Some(kind) = limit {
        metrics.limit_hit(kind);
    }
    for (direction, messages, bytes) in [
        (
            "in",
            summary.messages_from_client,
            summary.bytes_from_client,
        ),
        (
            "out",
            summary.messages_from_upstream,
            summary.bytes_from_upstream,
        ),
    ] {
        let labels = FlowLabels {
            route: route.to_owned(),
            direction,
        };
        metrics.messages.get_or_create(&labels).inc_by(messages);
        metrics.bytes.get_or_create(&labels).inc_by(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of what `f` returns, without calling it.
    fn size_of_return<A, R>(_: impl FnOnce(A) -> R) -> usize {
        std::mem::size_of::<R>()
    }

    /// Every open connection holds its task, idle or not. tokio allocates
    /// the future with 112 bytes of its own (a header, a trailer, the
    /// scheduler's and the task tracker's fields: `-Zprint-type-sizes`),
    /// rounded up to 128 bytes; at 2,448 bytes or less that is at most
    /// 2,560, mimalloc's size class below 3,072. The task was 2,840 bytes
    /// (a 3,072-byte allocation) before it kept only what it needs, and is
    /// 2,232 since (docs/perf/findings.md, "An open connection's task").
    #[test]
    fn an_open_connections_task_fits_a_2560_byte_allocation() {
        let size = size_of_return(
            |(open, upstream, on_upgrade): (Open, upstream::Opened, OnUpgrade)| {
                open.task(upstream, on_upgrade)
            },
        );
        assert!(size <= 2_448, "the open connection's task is {size} bytes");
    }
}
