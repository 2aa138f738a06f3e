//! The relay stage: both directions of an admitted connection, its timers,
//! and the closing handshake.
//!
//! Two [`Pump`]s move frames; this supervisor reacts to what they report and
//! to time (idle, ping, lifetime, shutdown), and decides who is sent which
//! close frame. Closing follows RFC 6455 section 7 on each leg: the side that
//! did not start the close gets a close frame and the gateway waits for the
//! answer, up to [`CLOSE_TIMEOUT`], before dropping the sockets.
//!
//! A reload wakes the supervisor too: it has the connection judged by the
//! new policy and either closes it (1008 `policy_changed`) or hands the new
//! limits and rules to the client's pump, which takes them between messages.
//!
//! When the client breaks a rule, the upstream is closed first and the client
//! gets its close code only after the upstream's close arrives, so anything
//! the upstream sent in answer to the client's earlier valid messages still
//! reaches the client, in order, before the close.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Mutex;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use wsgate_config::Limits;
use wsgate_policy::Reason;
use wsgate_proto::close::Close;
use wsgate_proto::frame::{self, Decoder, Sender};

use crate::buffers::Buffers;
use crate::pump::{Activity, Event, Events, Follow, Pump, Side};
pub(crate) use crate::pump::{Checks, Update};
use crate::sink::{PendingPong, Sink};
use crate::snapshot::Snapshot;

/// Longest wait for the other end's close frame once closing has begun.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the connection ended, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The client started the closing handshake.
    ClientClosed(Option<u16>),
    /// The upstream started the closing handshake.
    UpstreamClosed(Option<u16>),
    /// The client's stream ended without a close frame.
    ClientGone,
    /// The gateway closed, for this reason.
    Gateway(Reason),
}

impl Outcome {
    /// The `reason` field of the close log line.
    pub fn code(&self) -> &'static str {
        match self {
            Outcome::ClientClosed(_) => "client_closed",
            Outcome::UpstreamClosed(_) => "upstream_closed",
            Outcome::ClientGone => "client_gone",
            Outcome::Gateway(r) => r.code(),
        }
    }

    /// The close code the client sent or was sent (1006: none, the stream ended).
    pub fn close_code(&self) -> u16 {
        match self {
            Outcome::ClientClosed(c) | Outcome::UpstreamClosed(c) => c.unwrap_or(1005),
            Outcome::ClientGone => 1006,
            Outcome::Gateway(r) => r.close_code().unwrap_or(1011),
        }
    }

    /// Who started the close.
    pub fn initiator(&self) -> &'static str {
        match self {
            Outcome::ClientClosed(_) | Outcome::ClientGone => "client",
            Outcome::UpstreamClosed(_) => "upstream",
            Outcome::Gateway(Reason::UpstreamError | Reason::UpstreamGone) => "upstream",
            Outcome::Gateway(_) => "gateway",
        }
    }
}

/// What the close log line reports.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Why it ended.
    pub outcome: Outcome,
    /// Bytes read from the client.
    pub bytes_from_client: u64,
    /// Bytes read from the upstream.
    pub bytes_from_upstream: u64,
    /// Messages from the client.
    pub messages_from_client: u64,
    /// Messages from the upstream.
    pub messages_from_upstream: u64,
    /// Client messages dropped by `on_violation = "drop"`.
    pub messages_dropped: u64,
    /// A rule broken, in words, when one was.
    pub detail: Option<String>,
}

/// Judges an open connection by a new policy: its route's limits and rules
/// now, or why it must close.
pub(crate) type Judge<'a> = dyn Fn(&Snapshot) -> Result<Update, String> + Send + Sync + 'a;

/// How an open connection follows reloads: the supervisor wakes on each
/// new policy (so an idle connection is closed at once) and the client's
/// pump checks for one before each read it decodes (so what the client
/// sends after a reload meets the new limits and rules).
pub(crate) struct Reconfig<'a> {
    pub(crate) changes: tokio::sync::watch::Receiver<Arc<Snapshot>>,
    pub(crate) judge: &'a Judge<'a>,
}

/// Relays between an upgraded client and an upgraded upstream until both
/// legs are closed.
///
/// A plain function that builds the connection's state and returns the
/// future that runs it: an async fn keeps each argument it moves (the two
/// streams, the checks) in its own slot for its whole life, beside the
/// copy it moved them into. Built here and only borrowed inside, each is
/// held once, and every open connection is that much smaller.
#[expect(
    clippy::too_many_arguments,
    reason = "each is one concern of the relay"
)]
pub(crate) fn relay<'a, C, U>(
    client: C,
    upstream: U,
    buffers: &'a Buffers,
    limits: &'a Limits,
    checks: Checks,
    session_end: Option<Instant>,
    shutdown: &'a CancellationToken,
    revoked: &'a CancellationToken,
    mut reconfig: Reconfig<'a>,
) -> impl Future<Output = Summary> + Send + 'a
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'a,
    U: AsyncRead + AsyncWrite + Unpin + Send + 'a,
{
    let (client_read, client_write) = tokio::io::split(client);
    let (upstream_read, upstream_write) = tokio::io::split(upstream);
    let client_pongs = Arc::new(PendingPong::default());
    let upstream_pongs = Arc::new(PendingPong::default());
    let client_sink = Mutex::new(Sink::new(client_write, false, Arc::clone(&client_pongs)));
    let upstream_sink = Mutex::new(Sink::new(upstream_write, true, Arc::clone(&upstream_pongs)));
    let client_limits = frame::Limits {
        max_frame: limits.max_frame,
        max_message: limits.max_message,
    };
    let follow = Follow {
        changes: reconfig.changes.clone(),
        judge: reconfig.judge,
    };
    let mut client_pump = Pump::new(
        Side::Client,
        Decoder::new(Sender::Client, client_limits),
        checks,
    );
    let mut upstream_pump = Pump::new(
        Side::Upstream,
        Decoder::new(Sender::Upstream, frame::Limits::NONE),
        Checks::default(),
    );
    let activity = Activity::new();
    let mut timers = Timers::new(limits, activity.start(), session_end);
    async move {
        let events = Events::default();
        // Pinned where they are made: `tokio::pin!` on a binding would move
        // each future into a second slot of this future, and rustc keeps
        // both, doubling what every connection holds.
        let mut c2u = std::pin::pin!(client_pump.run(
            client_read,
            buffers,
            &upstream_sink,
            &client_pongs,
            &events,
            &activity,
            Some(follow),
        ));
        let mut u2c = std::pin::pin!(upstream_pump.run(
            upstream_read,
            buffers,
            &client_sink,
            &upstream_pongs,
            &events,
            &activity,
            None,
        ));
        let legs = Legs {
            client: &client_sink,
            upstream: &upstream_sink,
        };
        let mut st = Closing::default();
        let mut watching = true;
        // Every handler below is boxed: each runs on a rare event (a close, a
        // timer, a reload), and left inline its state would be part of every
        // connection's future for the connection's whole life, idle or not.
        while !st.done() {
            let wake = st.deadline.unwrap_or_else(|| timers.next(&activity));
            tokio::select! {
                event = events.recv() => Box::pin(st.on_event(event, &legs)).await,
                () = &mut c2u, if !st.client_reader_done => st.client_reader_done = true,
                () = &mut u2c, if !st.upstream_aborted => st.upstream_aborted = true,
                () = client_pongs.ready.notified() => {
                    Box::pin(bounded(async { legs.client.lock().await.flush_pong().await })).await;
                }
                () = upstream_pongs.ready.notified(), if !st.upstream_aborted => {
                    Box::pin(bounded(async { legs.upstream.lock().await.flush_pong().await })).await;
                }
                () = shutdown.cancelled(), if st.outcome.is_none() => {
                    Box::pin(st.gateway_close(Reason::ShuttingDown, &legs)).await;
                }
                () = revoked.cancelled(), if st.outcome.is_none() => {
                    Box::pin(st.gateway_close(Reason::Revoked, &legs)).await;
                }
                changed = reconfig.changes.changed(), if watching && st.outcome.is_none() => {
                    if changed.is_err() {
                        // The gateway is going away; shutdown closes the connection.
                        watching = false;
                        continue;
                    }
                    let policy = Arc::clone(&reconfig.changes.borrow_and_update());
                    match (reconfig.judge)(&policy) {
                        Ok(update) => timers.follow(&update.limits, activity.start()),
                        Err(detail) => {
                            st.detail = Some(detail);
                            Box::pin(st.gateway_close(Reason::PolicyChanged, &legs)).await;
                        }
                    }
                }
                () = sleep_until(wake) => {
                    if st.deadline.is_some_and(|d| Instant::now() >= d) {
                        break;
                    }
                    if let Some(reason) = Box::pin(timers.fire(&activity, &legs)).await {
                        Box::pin(st.gateway_close(reason, &legs)).await;
                    }
                }
            }
        }
        Box::pin(async {
            client_sink.lock().await.shutdown().await;
            upstream_sink.lock().await.shutdown().await;
        })
        .await;
        use std::sync::atomic::Ordering::Relaxed;
        Summary {
            outcome: st.outcome.unwrap_or(Outcome::ClientGone),
            bytes_from_client: activity.bytes_from_client.load(Relaxed),
            bytes_from_upstream: activity.bytes_from_upstream.load(Relaxed),
            messages_from_client: activity.messages_from_client.load(Relaxed),
            messages_from_upstream: activity.messages_from_upstream.load(Relaxed),
            messages_dropped: activity.messages_dropped.load(Relaxed),
            detail: st.detail,
        }
    }
}

/// Runs one of the supervisor's own writes, giving up after [`CLOSE_TIMEOUT`]:
/// a peer that cannot take a control frame in that time is stuck, and the
/// supervisor must stay free to run timers and the closing deadline.
async fn bounded(write: impl Future<Output = std::io::Result<()>>) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, write).await;
}

struct Legs<'a, C, U> {
    client: &'a Mutex<Sink<C>>,
    upstream: &'a Mutex<Sink<U>>,
}

/// The closing handshake on both legs.
#[derive(Default)]
struct Closing {
    outcome: Option<Outcome>,
    detail: Option<String>,
    client_sent: bool,
    client_received: bool,
    upstream_sent: bool,
    upstream_received: bool,
    upstream_aborted: bool,
    client_reader_done: bool,
    /// The close the client gets once the upstream has answered ours.
    pending_client: Option<Reason>,
    deadline: Option<Instant>,
}

impl Closing {
    fn done(&self) -> bool {
        let client = self.client_sent && self.client_received;
        let upstream = self.upstream_aborted || (self.upstream_sent && self.upstream_received);
        client && upstream
    }

    fn begin(&mut self, outcome: Outcome) {
        self.outcome.get_or_insert(outcome);
        self.deadline
            .get_or_insert_with(|| Instant::now() + CLOSE_TIMEOUT);
    }

    async fn on_event<C, U>(&mut self, event: Event, legs: &Legs<'_, C, U>)
    where
        C: AsyncWrite + Unpin,
        U: AsyncWrite + Unpin,
    {
        match event {
            Event::Closed(Side::Client, close) => self.client_closed(close, legs).await,
            Event::Closed(Side::Upstream, close) => self.upstream_closed(close, legs).await,
            Event::Violation(Side::Client, reason, detail, upstream_mid_frame) => {
                self.detail = Some(detail);
                self.begin(Outcome::Gateway(reason));
                self.client_received = true;
                if upstream_mid_frame || self.upstream_aborted {
                    // Part of a frame went upstream: no close frame can follow it.
                    self.abort_upstream(legs).await;
                    self.send_client(Some(reason), None, legs).await;
                } else {
                    self.pending_client = Some(reason);
                    self.send_upstream(Some(1001), &format!("wsgate: {reason}"), legs)
                        .await;
                }
            }
            Event::Violation(Side::Upstream, _, detail, _) => {
                self.detail = Some(detail);
                self.begin(Outcome::Gateway(Reason::UpstreamError));
                self.abort_upstream(legs).await;
                self.send_client(Some(Reason::UpstreamError), None, legs)
                    .await;
            }
            Event::Gone(Side::Client) => {
                self.begin(Outcome::ClientGone);
                self.client_received = true;
                self.client_sent = true;
                legs.client.lock().await.abandon();
                self.send_upstream(Some(1001), "wsgate: client went away", legs)
                    .await;
            }
            Event::Gone(Side::Upstream) => {
                if !self.upstream_received {
                    self.begin(Outcome::Gateway(Reason::UpstreamGone));
                    self.send_client(Some(Reason::UpstreamGone), None, legs)
                        .await;
                }
                self.abort_upstream(legs).await;
            }
        }
    }

    async fn client_closed<C, U>(&mut self, close: Close, legs: &Legs<'_, C, U>)
    where
        C: AsyncWrite + Unpin,
        U: AsyncWrite + Unpin,
    {
        self.begin(Outcome::ClientClosed(close.code));
        self.client_received = true;
        self.send_upstream(close.code, &close.reason, legs).await;
        if self.upstream_aborted {
            // No upstream to answer: the gateway answers the client itself.
            self.send_client(None, Some(&close), legs).await;
        }
    }

    async fn upstream_closed<C, U>(&mut self, close: Close, legs: &Legs<'_, C, U>)
    where
        C: AsyncWrite + Unpin,
        U: AsyncWrite + Unpin,
    {
        self.begin(Outcome::UpstreamClosed(close.code));
        self.upstream_received = true;
        let pending = self.pending_client.take();
        self.send_client(pending, Some(&close), legs).await;
    }

    /// Closes the client leg, with a reason of the gateway's or relaying `close`.
    async fn send_client<C, U>(
        &mut self,
        reason: Option<Reason>,
        close: Option<&Close>,
        legs: &Legs<'_, C, U>,
    ) where
        C: AsyncWrite + Unpin,
    {
        if self.client_sent {
            return;
        }
        self.client_sent = true;
        let (code, text) = match (reason, close) {
            (Some(r), _) => (r.close_code(), r.code().to_owned()),
            (None, Some(c)) => (c.code, c.reason.clone()),
            (None, None) => (Some(1000), String::new()),
        };
        bounded(async { legs.client.lock().await.close(code, &text).await }).await;
    }

    async fn send_upstream<C, U>(&mut self, code: Option<u16>, reason: &str, legs: &Legs<'_, C, U>)
    where
        U: AsyncWrite + Unpin,
    {
        if self.upstream_sent || self.upstream_aborted {
            return;
        }
        self.upstream_sent = true;
        bounded(async { legs.upstream.lock().await.close(code, reason).await }).await;
    }

    async fn abort_upstream<C, U>(&mut self, legs: &Legs<'_, C, U>)
    where
        U: AsyncWrite + Unpin,
    {
        self.upstream_aborted = true;
        legs.upstream.lock().await.abandon();
    }

    /// A close the gateway starts on both legs.
    async fn gateway_close<C, U>(&mut self, reason: Reason, legs: &Legs<'_, C, U>)
    where
        C: AsyncWrite + Unpin,
        U: AsyncWrite + Unpin,
    {
        self.begin(Outcome::Gateway(reason));
        self.send_client(Some(reason), None, legs).await;
        if reason == Reason::PongTimeout {
            // It stopped answering pings; it will not answer a close either.
            self.client_received = true;
        }
        self.send_upstream(Some(1001), &format!("wsgate: {reason}"), legs)
            .await;
    }
}

/// Idle timeout, keepalive pings and the lifetime limit.
struct Timers {
    idle: Option<Duration>,
    ping: Option<Duration>,
    lifetime_end: Option<Instant>,
    /// When the credential that admitted the connection has expired (plus grace).
    session_end: Option<Instant>,
    next_ping: Option<Instant>,
    /// When the outstanding ping went out, on the [`Activity::now_ms`] clock.
    ping_sent_ms: Option<u64>,
}

impl Timers {
    fn new(limits: &Limits, start: Instant, session_end: Option<Instant>) -> Self {
        Timers {
            idle: limits.idle_timeout,
            ping: limits.ping_interval,
            lifetime_end: limits.max_lifetime.map(|d| start + d),
            session_end,
            next_ping: limits.ping_interval.map(|d| start + d),
            ping_sent_ms: None,
        }
    }

    /// Takes a reload's idle timeout, ping interval and lifetime, all
    /// counted from the times they count from (last data, the start).
    fn follow(&mut self, limits: &Limits, start: Instant) {
        self.idle = limits.idle_timeout;
        self.lifetime_end = limits.max_lifetime.map(|d| start + d);
        if self.ping != limits.ping_interval {
            self.ping = limits.ping_interval;
            self.next_ping = limits.ping_interval.map(|d| Instant::now() + d);
            self.ping_sent_ms = None;
        }
    }

    fn next(&self, activity: &Activity) -> Instant {
        let idle_end = self.idle.map(|d| activity.last_data() + d);
        [
            idle_end,
            self.lifetime_end,
            self.session_end,
            self.next_ping,
        ]
        .into_iter()
        .flatten()
        .min()
        // Nothing to wait for: wake rarely, just to re-check.
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))
    }

    /// Acts on whatever is due; returns a reason when the connection must close.
    async fn fire<C, U>(&mut self, activity: &Activity, legs: &Legs<'_, C, U>) -> Option<Reason>
    where
        C: AsyncWrite + Unpin,
    {
        let now = Instant::now();
        if self.session_end.is_some_and(|end| now >= end) {
            return Some(Reason::SessionExpired);
        }
        if self.lifetime_end.is_some_and(|end| now >= end) {
            return Some(Reason::LifetimeExceeded);
        }
        if self.idle.is_some_and(|d| now >= activity.last_data() + d) {
            return Some(Reason::IdleTimeout);
        }
        if let (Some(interval), Some(due)) = (self.ping, self.next_ping)
            && now >= due
        {
            if self
                .ping_sent_ms
                .is_some_and(|sent| activity.last_pong_ms() < sent)
            {
                return Some(Reason::PongTimeout);
            }
            bounded(async { legs.client.lock().await.control(0x9, b"wsgate").await }).await;
            self.ping_sent_ms = Some(activity.now_ms());
            self.next_ping = Some(now + interval);
        }
        None
    }
}
