//! The audit log: one JSON line for every handshake decision, every close,
//! every ticket issued, every revocation, every reload, every refused
//! request on an HTTP route and every CSP violation report.
//!
//! Lines go to the configured target (stdout or a file) and to in-process
//! subscribers (tests wait on them instead of sleeping; the demo's console
//! streams them). Field names are a stable contract, documented in
//! docs/audit-log.md. Query strings, tokens and cookies never appear: the
//! path is logged without its query.
//!
//! Refusals that cost the sender nothing (a socket closed at accept) are
//! logged within a [`LineBudget`]: a flood of them would otherwise be a
//! flood of lines; the metrics count them all.

use std::io::Write;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use serde::Serialize;
use tokio::sync::broadcast;

/// How many events a slow subscriber may fall behind before it misses some.
const SUBSCRIBER_BACKLOG: usize = 4096;

/// Bytes reserved for a line: a handshake's or a close's line is 300 to
/// 500 bytes.
const LINE_CAPACITY: usize = 640;

/// How many lines of one kind may be written a second, and at once,
/// before they are left out and counted instead (connections closed at
/// accept; CSP reports, which are refused with 429 instead).
pub(crate) struct LineBudget<C: Clock = DefaultClock> {
    limiter: RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<C::Instant>>,
    left_out: AtomicU64,
}

impl LineBudget {
    /// `per_sec` lines a second, bursts of `burst`.
    pub(crate) fn new(per_sec: u32, burst: u32) -> Self {
        LineBudget::with_clock(per_sec, burst, &DefaultClock::default())
    }
}

impl<C: Clock + Clone> LineBudget<C> {
    fn with_clock(per_sec: u32, burst: u32, clock: &C) -> Self {
        let rate = NonZeroU32::new(per_sec).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        LineBudget {
            limiter: RateLimiter::direct_with_clock(
                Quota::per_second(rate).allow_burst(burst),
                clock.clone(),
            ),
            left_out: AtomicU64::new(0),
        }
    }

    /// `Some(n)`: write this line, and say that `n` were left out since
    /// the last one written; `None`: leave it out.
    pub(crate) fn take(&self) -> Option<u64> {
        if self.limiter.check().is_ok() {
            Some(self.left_out.swap(0, Ordering::AcqRel))
        } else {
            self.left_out.fetch_add(1, Ordering::AcqRel);
            None
        }
    }
}

/// One audit event.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AuditEvent {
    /// RFC 3339 time with milliseconds, UTC.
    pub time: String,
    /// `handshake`, `close`, `http`, `csp_violation`, `ticket`, `revoke` or `reload`.
    pub event: &'static str,
    /// Connection id, unique within the process.
    pub conn: u64,
    /// Client address: the connection's peer, or behind a trusted proxy
    /// the client its `X-Forwarded-For` names (then without a port).
    pub client: String,
    /// The trusted proxy the client came through, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// Listener address.
    pub listener: String,
    /// Route path, when one matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Request path, without the query string.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `Host`, as sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `Origin`, as sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// The verified user, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// How the user was verified: `jwt`, `basic`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<&'static str>,
    /// Handshakes: `admitted` or `refused`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<&'static str>,
    /// A reason code from DESIGN.md's table, or how a connection ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// False when a route in report mode admitted what enforcing would refuse.
    pub enforced: bool,
    /// HTTP status sent (handshakes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Close code the client sent or was sent (closes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub close_code: Option<u16>,
    /// Who started the close: client, upstream or gateway.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initiator: Option<&'static str>,
    /// Bytes read from the client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_in: Option<u64>,
    /// Bytes read from the upstream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_out: Option<u64>,
    /// Messages from the client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages_in: Option<u64>,
    /// Messages from the upstream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages_out: Option<u64>,
    /// Client messages dropped by `on_violation = "drop"`, when any were.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages_dropped: Option<u64>,
    /// CSP violations: the URL the browser blocked (without its query).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked: Option<String>,
    /// Reloads: the config generation in force after it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// Milliseconds: the handshake's decision time, or the connection's life.
    pub duration_ms: u64,
    /// A sentence for the operator.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl AuditEvent {
    /// An event of `kind` for connection `conn`, other fields empty.
    pub fn new(event: &'static str, conn: u64, client: String, listener: String) -> Self {
        AuditEvent {
            time: now(),
            event,
            conn,
            client,
            via: None,
            listener,
            route: None,
            path: None,
            host: None,
            origin: None,
            user: None,
            auth: None,
            decision: None,
            reason: None,
            enforced: true,
            status: None,
            close_code: None,
            initiator: None,
            bytes_in: None,
            bytes_out: None,
            messages_in: None,
            messages_out: None,
            messages_dropped: None,
            blocked: None,
            generation: None,
            duration_ms: 0,
            detail: None,
        }
    }
}

impl AuditEvent {
    /// Marks the event a refusal for `reason`: its code, and the HTTP status
    /// the one table gives it (none for reasons answered by closing).
    pub(crate) fn refuse(&mut self, reason: wsgate_policy::Reason, detail: String) {
        self.decision = Some("refused");
        self.reason = Some(reason.code());
        if let wsgate_policy::Response::Http(status) = reason.response() {
            self.status = Some(status);
        }
        self.detail = Some(detail);
    }
}

/// The current time as audit lines write it.
pub fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// Where audit events go.
#[derive(Clone)]
pub struct AuditLog {
    out: Arc<Mutex<Box<dyn Write + Send>>>,
    subscribers: broadcast::Sender<Arc<AuditEvent>>,
}

impl AuditLog {
    /// An audit log writing JSON lines to `out`.
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        AuditLog {
            out: Arc::new(Mutex::new(out)),
            subscribers: broadcast::channel(SUBSCRIBER_BACKLOG).0,
        }
    }

    /// Sends every event from now on to `out` instead (a reopened file, after rotation).
    pub fn replace(&self, out: Box<dyn Write + Send>) {
        *self
            .out
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = out;
    }

    /// Receives every event written from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<AuditEvent>> {
        self.subscribers.subscribe()
    }

    /// Writes one event.
    pub fn write(&self, event: AuditEvent) {
        // Sized for a typical line: grown from serde_json's default, it
        // would be copied two or three times on the way.
        let mut line = Vec::with_capacity(LINE_CAPACITY);
        if serde_json::to_writer(&mut line, &event).is_ok() {
            line.push(b'\n');
            let mut out = self
                .out
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            // An audit line that cannot be written is reported on stderr; the
            // connection it describes is not made to fail for it.
            if let Err(e) = out.write_all(&line).and_then(|()| out.flush()) {
                tracing::error!(error = %e, "cannot write audit log");
            }
        }
        // `wsgate serve` has no subscribers: no copy is made for nobody.
        if self.subscribers.receiver_count() > 0 {
            let _ = self.subscribers.send(Arc::new(event));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use governor::clock::FakeRelativeClock;

    use super::LineBudget;

    #[test]
    fn lines_over_the_budget_are_left_out_and_counted_on_the_next() {
        let clock = FakeRelativeClock::default();
        let budget = LineBudget::with_clock(10, 3, &clock);
        let taken: Vec<_> = (0..5).map(|_| budget.take()).collect();
        assert_eq!(taken, [Some(0), Some(0), Some(0), None, None]);
        // A tenth of a second later one more line fits, and says what it missed.
        clock.advance(Duration::from_millis(100));
        assert_eq!(budget.take(), Some(2));
        assert_eq!(budget.take(), None);
    }
}
