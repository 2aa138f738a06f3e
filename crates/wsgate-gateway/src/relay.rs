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
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, Wake, Waker, ready};
use std::time::Duration;

use futures_util::task::AtomicWaker;

use tokio::io::AsyncWrite;
use tokio::time::{Instant, Sleep, sleep_until};
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use wsgate_config::Limits;
use wsgate_policy::Reason;
use wsgate_proto::close::Close;
use wsgate_proto::frame::{self, Decoder, Sender};

use crate::buffers::{Buffers, Readable};
use crate::halves::{self, Halves};
use crate::pump::{Activity, Event, Follow, Pump, PumpIo, Side};
pub(crate) use crate::pump::{Checks, Update};
use crate::sink::Sink;
use crate::snapshot::Snapshot;

/// Longest wait for the other end's close frame once closing has begun.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a client that broke a rule may be quiet before its lingering
/// leg is closed (see the end of [`relay`]): long enough for the rest of
/// a message in flight to arrive, short enough that a client which stopped
/// sending is not kept waiting for its close.
const LINGER_QUIET: Duration = Duration::from_secs(1);

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
///
/// The future is one poll loop over plain state: the two [`Pump`]s, the two
/// [`Sink`]s, the closing handshake and the timers, plus the four things it
/// waits on (a timer, shutdown, revocation, a reload), each made once.
/// Nothing in it is a suspended async fn whose largest state every
/// connection would carry for its whole life, idle or not.
#[expect(
    clippy::too_many_arguments,
    reason = "each is one concern of the relay"
)]
pub(crate) fn relay<'a>(
    client: Halves,
    upstream: Halves,
    buffers: &'a Buffers,
    limits: &'a Limits,
    checks: Checks,
    session_end: Option<Instant>,
    shutdown: &'a CancellationToken,
    revoked: &'a CancellationToken,
    reconfig: Reconfig<'a>,
) -> impl Future<Output = Summary> + Send + 'a {
    let client_limits = frame::Limits {
        max_frame: limits.max_frame,
        max_message: limits.max_message,
    };
    let follow = Follow {
        changes: reconfig.changes.clone(),
        judge: reconfig.judge,
    };
    let activity = Activity::new();
    let timers = Timers::new(limits, activity.start(), session_end);
    let mut conn = Conn {
        client: Leg {
            reader: client.read,
            sink: Sink::new(client.write, false, buffers),
            pump: Pump::new(
                Side::Client,
                Decoder::new(Sender::Client, client_limits),
                checks,
                &client.early,
            ),
        },
        upstream: Leg {
            reader: upstream.read,
            sink: Sink::new(upstream.write, true, buffers),
            pump: Pump::new(
                Side::Upstream,
                Decoder::new(Sender::Upstream, frame::Limits::NONE),
                Checks::default(),
                &upstream.early,
            ),
        },
        follow,
        buffers,
        activity,
        timers,
        st: Closing::default(),
        judge: reconfig.judge,
        watching: true,
        rearm: true,
    };
    async move {
        // `conn` is used where it was captured: a `let` here would move it
        // into a second slot, and the future would keep both.
        // Each wait is made once and pinned in place; the loop polls them.
        let mut sleep = std::pin::pin!(sleep_until(Instant::now()));
        let mut shutting_down = std::pin::pin!(shutdown.cancelled());
        let mut revoking = std::pin::pin!(revoked.cancelled());
        let mut reloads = std::pin::pin!(next_change(reconfig.changes));
        let woken = Arc::new(Woken::default());
        let wakers = Wakers::new(&woken);
        std::future::poll_fn(|cx| {
            // Registered before the bits are read, so a wait that fires
            // from here on still wakes the task.
            woken.task.register(cx.waker());
            let fired = woken.fired.swap(0, Ordering::AcqRel);
            let mut rare_cx = (fired & RARE != 0).then(|| Context::from_waker(&wakers.rare));
            if let Some(rcx) = rare_cx.as_mut() {
                #[cfg(test)]
                tests::count_rare_pass();
                while conn.follows_reloads() {
                    let Poll::Ready((changes, open)) = reloads.as_mut().poll(rcx) else {
                        break;
                    };
                    conn.reload(&changes, open);
                    reloads.set(next_change(changes));
                }
            }
            let waits = Waits {
                sleep: sleep.as_mut(),
                shutdown: shutting_down.as_mut(),
                revoked: revoking.as_mut(),
                rare: rare_cx.as_mut(),
                wakers: &wakers,
                fired,
            };
            conn.poll(cx, waits)
        })
        .await;
        // A TLS leg is shut down (close_notify), for at most as long as a
        // close may take; then both sockets are closed (the FIN).
        //
        // A client that broke a rule may still be sending: the rest of an
        // oversized message, a flood. Closing its socket with those bytes
        // unread would answer them with a reset, and a reset can destroy
        // the close frame before the client has read it (a client blocked
        // in a write sees only the reset). So that leg lingers: shut down
        // for writing (the FIN after the close frame), then read and
        // discarded until it ends, or is quiet for `LINGER_QUIET`, within
        // the same bound.
        let linger = conn.st.client_failed && !conn.st.client_reader_done;
        let end = Instant::now() + CLOSE_TIMEOUT;
        let quiet_from = |now: Instant| {
            if linger {
                end.min(now + LINGER_QUIET)
            } else {
                end
            }
        };
        sleep.as_mut().reset(quiet_from(Instant::now()));
        std::future::poll_fn(|cx| {
            let client = if linger {
                let before = conn.activity.bytes_from_client.load(Ordering::Relaxed);
                let ended = conn.client.sink.poll_shutdown(cx).is_ready()
                    && conn.poll_drain_client(cx).is_ready();
                if conn.activity.bytes_from_client.load(Ordering::Relaxed) != before {
                    sleep.as_mut().reset(quiet_from(Instant::now()));
                }
                ended
            } else {
                !halves::needs_shutdown(conn.client.sink.writer())
                    || conn.client.sink.poll_shutdown(cx).is_ready()
            };
            let upstream = !halves::needs_shutdown(conn.upstream.sink.writer())
                || conn.upstream.sink.poll_shutdown(cx).is_ready();
            if (client && upstream) || sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
            Poll::Pending
        })
        .await;
        let summary = conn.summary();
        halves::close(conn.client.reader, conn.client.sink.into_writer());
        halves::close(conn.upstream.reader, conn.upstream.sink.into_writer());
        summary
    }
}

/// Waits for the next reload; gives the receiver back with it, so the
/// relay can read the new policy and wait again in the same pinned slot.
async fn next_change(
    mut changes: tokio::sync::watch::Receiver<Arc<Snapshot>>,
) -> (tokio::sync::watch::Receiver<Arc<Snapshot>>, bool) {
    let open = changes.changed().await.is_ok();
    (changes, open)
}

/// What the relay waits on besides its sockets and reloads.
struct Waits<'w, 's, 'c> {
    sleep: Pin<&'w mut Sleep>,
    shutdown: Pin<&'w mut WaitForCancellationFuture<'s>>,
    revoked: Pin<&'w mut WaitForCancellationFuture<'s>>,
    /// The context to poll the rare waits with when one of them fired
    /// since the last poll; `None` when only a socket woke the task.
    rare: Option<&'w mut Context<'c>>,
    wakers: &'w Wakers,
    /// What woke the task since the last poll ([`Woken::fired`]).
    fired: u8,
}

/// Bits of [`Woken::fired`]: the client's socket has bytes (or its end) to
/// read, the upstream's has, or one of the rare waits (a timer, shutdown,
/// revocation, a reload) fired.
const CLIENT_READ: u8 = 1;
const UPSTREAM_READ: u8 = 2;
const RARE: u8 = 4;

/// What has woken the relay's task since its last poll.
///
/// The relay is one task waiting on many things, and a task has one waker.
/// So each thing is polled with a waker of its own ([`WakeFor`]) that notes
/// which it is before it wakes the task, and a poll does only what woke it:
/// - a data wake leaves the rare waits alone: polling a cancellation token
///   takes two locks, and polling all four on every wake cost about as much
///   as decoding a 64-byte frame (callgrind);
/// - a pump waiting on its own socket is polled only when that socket
///   woke the task: one socket usually wakes it, and asking the other
///   too cost about a tenth of the gateway's instructions per message when
///   each wake carries one message (callgrind, one message in flight).
struct Woken {
    /// Starts with every bit set, so the first poll registers every wait.
    fired: AtomicU8,
    task: AtomicWaker,
}

impl Default for Woken {
    fn default() -> Self {
        Woken {
            fired: AtomicU8::new(CLIENT_READ | UPSTREAM_READ | RARE),
            task: AtomicWaker::new(),
        }
    }
}

/// A waker that sets its bit in [`Woken::fired`] and wakes the task.
struct WakeFor {
    bit: u8,
    woken: Arc<Woken>,
}

impl Wake for WakeFor {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.fired.fetch_or(self.bit, Ordering::Release);
        self.woken.task.wake();
    }
}

/// The wakers a connection's waits are polled with, made once: the same
/// waker each time lets tokio keep the one it holds.
struct Wakers {
    client: Waker,
    upstream: Waker,
    rare: Waker,
}

impl Wakers {
    fn new(woken: &Arc<Woken>) -> Self {
        let waker = |bit| {
            Waker::from(Arc::new(WakeFor {
                bit,
                woken: Arc::clone(woken),
            }))
        };
        Wakers {
            client: waker(CLIENT_READ),
            upstream: waker(UPSTREAM_READ),
            rare: waker(RARE),
        }
    }
}

/// One peer: its reading half, its writer, and the pump that reads it.
struct Leg<'a, R, W> {
    reader: R,
    sink: Sink<'a, W>,
    pump: Pump,
}

/// An admitted connection's whole state.
struct Conn<'a, CR, CW, UR, UW> {
    client: Leg<'a, CR, CW>,
    upstream: Leg<'a, UR, UW>,
    follow: Follow<'a>,
    buffers: &'a Buffers,
    activity: Activity,
    timers: Timers,
    st: Closing,
    judge: &'a Judge<'a>,
    /// Reloads are followed (the gateway still sends them).
    watching: bool,
    /// The timer must be set again: something it depends on changed.
    rearm: bool,
}

impl<CR, CW, UR, UW> Conn<'_, CR, CW, UR, UW>
where
    CR: Readable,
    CW: AsyncWrite + Unpin,
    UR: Readable,
    UW: AsyncWrite + Unpin,
{
    /// Polls the client's pump, which follows reloads when `follow` is set.
    fn poll_client(&mut self, cx: &mut Context<'_>, follow: bool) -> Poll<Event> {
        #[cfg(test)]
        tests::count_pump_poll();
        let mut io = PumpIo {
            reader: &mut self.client.reader,
            to: &mut self.upstream.sink,
            back: &mut self.client.sink,
            buffers: self.buffers,
            activity: &self.activity,
            follow: follow.then_some(&mut self.follow),
        };
        self.client.pump.poll_next(cx, &mut io)
    }

    /// Polls the upstream's pump.
    fn poll_upstream(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        #[cfg(test)]
        tests::count_pump_poll();
        let mut io = PumpIo {
            reader: &mut self.upstream.reader,
            to: &mut self.client.sink,
            back: &mut self.upstream.sink,
            buffers: self.buffers,
            activity: &self.activity,
            follow: None,
        };
        self.upstream.pump.poll_next(cx, &mut io)
    }

    /// Reads the client's leg to its end, discarding (its pump drains):
    /// ready at the end of its stream.
    fn poll_drain_client(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while !self.st.client_reader_done {
            // A draining pump reports only the end of its stream.
            if let Event::Gone(_) = ready!(self.poll_client(cx, false)) {
                self.st.client_reader_done = true;
            }
        }
        Poll::Ready(())
    }

    /// Runs everything that can make progress; ready when both legs are
    /// closed or the closing deadline has passed.
    fn poll(&mut self, cx: &mut Context<'_>, mut waits: Waits<'_, '_, '_>) -> Poll<()> {
        // A pump that waits on its own socket alone is polled when that
        // socket woke the task; any other pump, every time.
        let mut woke = waits.fired;
        loop {
            let mut again = false;
            if !self.st.client_reader_done
                && (woke & CLIENT_READ != 0 || !self.client.pump.parked())
                && let Poll::Ready(event) =
                    self.poll_client(&mut Context::from_waker(&waits.wakers.client), true)
            {
                if matches!(event, Event::Gone(_)) {
                    self.st.client_reader_done = true;
                }
                self.on_event(event);
                again = true;
            }
            if !self.st.upstream_aborted
                && (woke & UPSTREAM_READ != 0 || !self.upstream.pump.parked())
                && let Poll::Ready(event) =
                    self.poll_upstream(&mut Context::from_waker(&waits.wakers.upstream))
            {
                self.on_event(event);
                again = true;
            }
            // Round again (something happened): both pumps are polled.
            woke = CLIENT_READ | UPSTREAM_READ;
            if self.st.outcome.is_none()
                && let Some(rcx) = waits.rare.as_deref_mut()
            {
                if waits.shutdown.as_mut().poll(rcx).is_ready() {
                    self.gateway_close(Reason::ShuttingDown);
                } else if waits.revoked.as_mut().poll(rcx).is_ready() {
                    self.gateway_close(Reason::Revoked);
                }
            }
            // The timer is polled when it may have fired, and whenever it
            // was set again: tokio keeps the waker a `Sleep` was last polled
            // with across `reset`, but not after it completed, and polling
            // it with the rare waker here keeps the relay from depending on
            // that.
            let mut timer_moved = false;
            if self.rearm || self.st.deadline.is_some() {
                let wake = self
                    .st
                    .deadline
                    .unwrap_or_else(|| self.timers.next(&self.activity));
                if waits.sleep.deadline() != wake {
                    waits.sleep.as_mut().reset(wake);
                }
                self.rearm = false;
                timer_moved = true;
            }
            let timer_fired = match waits.rare.as_deref_mut() {
                Some(rcx) => waits.sleep.as_mut().poll(rcx).is_ready(),
                None if timer_moved => {
                    #[cfg(test)]
                    tests::count_rare_pass();
                    let mut rcx = Context::from_waker(&waits.wakers.rare);
                    waits.sleep.as_mut().poll(&mut rcx).is_ready()
                }
                None => false,
            };
            if timer_fired {
                if self.st.deadline.is_some_and(|d| Instant::now() >= d) {
                    return Poll::Ready(());
                }
                if let Some(reason) = self.timers.fire(&self.activity, &mut self.client.sink) {
                    self.gateway_close(reason);
                }
                self.rearm = true;
                again = true;
            }
            // What the pumps and the closing handshake queued goes out; the
            // relay ends once both closes are exchanged and written.
            let client_flushed = self.client.sink.poll_flush(cx).is_ready();
            let upstream_flushed = self.upstream.sink.poll_flush(cx).is_ready();
            if self.st.done() && client_flushed && upstream_flushed {
                return Poll::Ready(());
            }
            if !again {
                return Poll::Pending;
            }
        }
    }
}
/// The two writers, for the closing handshake.
struct Legs<'s, 'a, C, U> {
    client: &'s mut Sink<'a, C>,
    upstream: &'s mut Sink<'a, U>,
}

impl<'a, CR, CW, UR, UW> Conn<'a, CR, CW, UR, UW>
where
    CW: AsyncWrite + Unpin,
    UW: AsyncWrite + Unpin,
{
    /// The closing handshake and the two writers it acts on, borrowed apart.
    fn closing(&mut self) -> (&mut Closing, Legs<'_, 'a, CW, UW>) {
        let legs = Legs {
            client: &mut self.client.sink,
            upstream: &mut self.upstream.sink,
        };
        (&mut self.st, legs)
    }

    fn on_event(&mut self, event: Event) {
        let (st, mut legs) = self.closing();
        st.on_event(event, &mut legs);
        self.rearm = true;
    }

    /// Whether a reload can still change this connection.
    fn follows_reloads(&self) -> bool {
        self.watching && self.st.outcome.is_none()
    }

    fn gateway_close(&mut self, reason: Reason) {
        let (st, mut legs) = self.closing();
        st.gateway_close(reason, &mut legs);
        self.rearm = true;
    }

    /// A new policy: the connection follows it (its timers now, its
    /// client's messages from the next one) or is closed by it.
    fn reload(&mut self, changes: &tokio::sync::watch::Receiver<Arc<Snapshot>>, open: bool) {
        if !open {
            // The gateway is going away; shutdown closes the connection.
            self.watching = false;
            return;
        }
        let policy = Arc::clone(&changes.borrow());
        match (self.judge)(&policy) {
            Ok(update) => {
                self.timers.follow(&update.limits, self.activity.start());
                self.rearm = true;
            }
            Err(detail) => {
                self.st.detail = Some(detail);
                self.gateway_close(Reason::PolicyChanged);
            }
        }
    }

    fn summary(&mut self) -> Summary {
        use std::sync::atomic::Ordering::Relaxed;
        let activity = &self.activity;
        Summary {
            outcome: self.st.outcome.take().unwrap_or(Outcome::ClientGone),
            bytes_from_client: activity.bytes_from_client.load(Relaxed),
            bytes_from_upstream: activity.bytes_from_upstream.load(Relaxed),
            messages_from_client: activity.messages_from_client.load(Relaxed),
            messages_from_upstream: activity.messages_from_upstream.load(Relaxed),
            messages_dropped: activity.messages_dropped.load(Relaxed),
            detail: self.st.detail.take(),
        }
    }
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
    /// The client broke a rule: its pump only drains from then on (a pump
    /// reports a violation as it stops forwarding), the gateway does not
    /// wait for its close frame, and its leg lingers at the end.
    client_failed: bool,
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

    fn on_event<C, U>(&mut self, event: Event, legs: &mut Legs<'_, '_, C, U>)
    where
        C: AsyncWrite + Unpin,
        U: AsyncWrite + Unpin,
    {
        match event {
            Event::Closed(Side::Client, close) => self.client_closed(close, legs),
            Event::Closed(Side::Upstream, close) => self.upstream_closed(close, legs),
            Event::Violation(Side::Client, reason, detail, upstream_mid_frame) => {
                self.detail = Some(detail);
                self.begin(Outcome::Gateway(reason));
                self.client_received = true;
                self.client_failed = true;
                if upstream_mid_frame || self.upstream_aborted {
                    // Part of a frame went upstream: no close frame can follow it.
                    self.abort_upstream(legs);
                    self.send_client(Some(reason), None, legs);
                } else {
                    self.pending_client = Some(reason);
                    self.send_upstream(Some(1001), &format!("wsgate: {reason}"), legs);
                }
            }
            Event::Violation(Side::Upstream, _, detail, _) => {
                self.detail = Some(detail);
                self.begin(Outcome::Gateway(Reason::UpstreamError));
                self.abort_upstream(legs);
                self.send_client(Some(Reason::UpstreamError), None, legs);
            }
            Event::Gone(Side::Client) => {
                self.begin(Outcome::ClientGone);
                self.client_received = true;
                self.client_sent = true;
                legs.client.abandon();
                self.send_upstream(Some(1001), "wsgate: client went away", legs);
            }
            Event::Gone(Side::Upstream) => {
                if !self.upstream_received {
                    self.begin(Outcome::Gateway(Reason::UpstreamGone));
                    self.send_client(Some(Reason::UpstreamGone), None, legs);
                }
                self.abort_upstream(legs);
            }
        }
    }

    fn client_closed<C, U>(&mut self, close: Close, legs: &mut Legs<'_, '_, C, U>)
    where
        C: AsyncWrite + Unpin,
        U: AsyncWrite + Unpin,
    {
        self.begin(Outcome::ClientClosed(close.code));
        self.client_received = true;
        self.send_upstream(close.code, &close.reason, legs);
        if self.upstream_aborted {
            // No upstream to answer: the gateway answers the client itself.
            self.send_client(None, Some(&close), legs);
        }
    }

    fn upstream_closed<C, U>(&mut self, close: Close, legs: &mut Legs<'_, '_, C, U>)
    where
        C: AsyncWrite + Unpin,
        U: AsyncWrite + Unpin,
    {
        self.begin(Outcome::UpstreamClosed(close.code));
        self.upstream_received = true;
        let pending = self.pending_client.take();
        self.send_client(pending, Some(&close), legs);
    }

    /// Closes the client leg, with a reason of the gateway's or relaying `close`.
    fn send_client<C, U>(
        &mut self,
        reason: Option<Reason>,
        close: Option<&Close>,
        legs: &mut Legs<'_, '_, C, U>,
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
        legs.client.close(code, &text);
    }

    fn send_upstream<C, U>(
        &mut self,
        code: Option<u16>,
        reason: &str,
        legs: &mut Legs<'_, '_, C, U>,
    ) where
        U: AsyncWrite + Unpin,
    {
        if self.upstream_sent || self.upstream_aborted {
            return;
        }
        self.upstream_sent = true;
        legs.upstream.close(code, reason);
    }

    fn abort_upstream<C, U>(&mut self, legs: &mut Legs<'_, '_, C, U>)
    where
        U: AsyncWrite + Unpin,
    {
        self.upstream_aborted = true;
        legs.upstream.abandon();
    }

    /// A close the gateway starts on both legs.
    fn gateway_close<C, U>(&mut self, reason: Reason, legs: &mut Legs<'_, '_, C, U>)
    where
        C: AsyncWrite + Unpin,
        U: AsyncWrite + Unpin,
    {
        self.begin(Outcome::Gateway(reason));
        self.send_client(Some(reason), None, legs);
        if reason == Reason::PongTimeout {
            // It stopped answering pings; it will not answer a close either.
            self.client_received = true;
        }
        self.send_upstream(Some(1001), &format!("wsgate: {reason}"), legs);
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
    fn fire<C: AsyncWrite + Unpin>(
        &mut self,
        activity: &Activity,
        client: &mut Sink<'_, C>,
    ) -> Option<Reason> {
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
            client.control(0x9, b"wsgate");
            self.ping_sent_ms = Some(activity.now_ms());
            self.next_ping = Some(now + interval);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use wsgate_testkit::client::encode;

    const CONFIG: &str = r#"
[[listener]]
bind = "127.0.0.1:0"

# The relay is handed its upstream stream; this address is never dialled.
[[route]]
path = "/"
upstream = "ws://127.0.0.1:9/"
origins = ["https://app.example.com"]
auth = "none"
"#;

    async fn read(s: &mut (impl AsyncRead + Unpin), n: usize) -> Vec<u8> {
        let mut b = vec![0; n];
        s.read_exact(&mut b).await.expect("read");
        b
    }

    thread_local! {
        /// Passes the relay made over its rare waits on this thread (a
        /// current-thread test runtime polls the relay here).
        static RARE_PASSES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    pub(super) fn count_rare_pass() {
        RARE_PASSES.with(|n| n.set(n.get() + 1));
    }

    thread_local! {
        /// Pump polls the relay made on this thread.
        static PUMP_POLLS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    pub(super) fn count_pump_poll() {
        PUMP_POLLS.with(|n| n.set(n.get() + 1));
    }

    /// Runs a relay over in-memory streams with the default limits and
    /// sends `messages` text messages each way through it, one at a time,
    /// checking each as it arrives; returns once the last echo is read.
    async fn exchange(buffers: &Buffers, messages: usize) {
        let (client_end, client) = tokio::io::duplex(64 * 1024);
        let (upstream_end, upstream) = tokio::io::duplex(64 * 1024);
        let legs = (
            Halves::boxed(Box::new(client_end), Bytes::new()),
            Halves::boxed(Box::new(upstream_end), Bytes::new()),
        );
        exchange_over(legs, client, upstream, buffers, messages).await;
    }

    /// The same over loopback TCP, the relay's legs plain sockets.
    async fn exchange_tcp(buffers: &Buffers, messages: usize) {
        async fn pair() -> (TcpStream, TcpStream) {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("address");
            let (near, far) = tokio::join!(listener.accept(), TcpStream::connect(addr));
            (near.expect("accept").0, far.expect("connect"))
        }
        let ((client_end, client), (upstream_end, upstream)) = (pair().await, pair().await);
        let legs = (
            Halves::tcp(client_end, Bytes::new()),
            Halves::tcp(upstream_end, Bytes::new()),
        );
        exchange_over(legs, client, upstream, buffers, messages).await;
    }

    /// Relays between the far ends `client` and `upstream` of `legs`.
    async fn exchange_over<C, U>(
        legs: (Halves, Halves),
        mut client: C,
        mut upstream: U,
        buffers: &Buffers,
        messages: usize,
    ) where
        C: AsyncRead + AsyncWrite + Unpin,
        U: AsyncRead + AsyncWrite + Unpin,
    {
        let config = wsgate_config::parse(CONFIG, std::path::Path::new(".")).expect("config");
        let Ok(built) = Snapshot::build(&config, 1, None) else {
            panic!("the config's policy does not build");
        };
        let (_reloads, changes) = tokio::sync::watch::channel(Arc::new(built.snapshot));
        let limits = Limits::default();
        let (shutdown, revoked) = (CancellationToken::new(), CancellationToken::new());
        let judge = |_: &Snapshot| Err::<Update, _>("no reload here".to_owned());
        let running = relay(
            legs.0,
            legs.1,
            buffers,
            &limits,
            crate::pump::Checks::default(),
            None,
            &shutdown,
            &revoked,
            Reconfig {
                changes,
                judge: &judge,
            },
        );
        let talk = async {
            for _ in 0..messages {
                client
                    .write_all(&encode(0x81, b"hello", true))
                    .await
                    .expect("write");
                // Re-masked by the gateway: 2 bytes of header, 4 of key, 5 of text.
                let sent = read(&mut upstream, 11).await;
                assert_eq!(sent[..2], [0x81, 0x85]);
                upstream
                    .write_all(&encode(0x81, b"hello", false))
                    .await
                    .expect("write");
                assert_eq!(read(&mut client, 7).await, encode(0x81, b"hello", false));
            }
        };
        // One task: by the time `talk` sees the last echo, the relay's poll
        // that wrote it has finished, and with it both pumps' reads.
        tokio::select! {
            () = talk => {}
            summary = running => panic!("the relay ended: {summary:?}"),
        }
    }

    /// A message each way, then nothing: both pumps have read, and neither
    /// may keep a read buffer while its socket has nothing more (the
    /// idle-memory design, at the level of the relay's poll loop rather
    /// than one reader's).
    #[tokio::test]
    async fn an_idle_connection_holds_no_read_buffer() {
        let buffers = Buffers::default();
        exchange(&buffers, 1).await;
        assert_eq!(
            buffers.free(),
            1,
            "one buffer served both reads and is back in the free list"
        );
    }

    /// Data wakes the relay through its sockets, and those wakes leave the
    /// timer, shutdown, revocation and reload waits alone: the first poll
    /// registers them, and nothing fires or sets the timer again while 200
    /// messages go through (each wake would otherwise take the
    /// cancellation tokens' locks).
    #[tokio::test]
    async fn data_wakes_leave_the_rare_waits_alone() {
        RARE_PASSES.with(|n| n.set(0));
        exchange(&Buffers::default(), 100).await;
        assert_eq!(RARE_PASSES.with(std::cell::Cell::get), 1);
    }

    /// Over plain sockets each wake comes from one of them, and only the
    /// pump reading that socket is polled (see [`Woken`]): one poll per
    /// message each way, where asking both pumps on every wake would be
    /// two.
    #[tokio::test]
    async fn a_socket_wakes_only_the_pump_that_reads_it() {
        PUMP_POLLS.with(|n| n.set(0));
        exchange_tcp(&Buffers::default(), 100).await;
        let polls = PUMP_POLLS.with(std::cell::Cell::get);
        // 200 wakes, one per message; the first poll asks both pumps.
        assert!(
            (200..=210).contains(&polls),
            "{polls} pump polls for 100 messages each way"
        );
    }
}
