//! The bound on a client that stops reading while its connection speaks
//! HTTP.
//!
//! hyper's server has timers for the request head only. Once it has an
//! answer to write, a client that never reads holds the connection (its
//! socket, its task, its address's place at HTTP, and on an HTTP route the
//! upstream's connection behind it) for as long as it likes: hyper waits on
//! the socket's write readiness and polls nothing else, so no timer in the
//! response body runs either. [`WriteStall`] wraps the client's stream for
//! the HTTP part of its life and fails a write (or flush, or shutdown) that
//! has made no progress for the connection's current [`Bound`]: the
//! listener's `handshake_timeout` for the gateway's own answers (101s,
//! refusals), the route's `idle_timeout` for an HTTP route's response, as
//! nginx's `send_timeout` and HAProxy's `timeout client` do. Progress of
//! any size restarts the wait: a slow reader is served, a stopped one is
//! not.
//!
//! At the upgrade `halves` takes the stream back out of the wrapper, so the
//! relay pays nothing for it per message. A WebSocket client that stops
//! reading meets the relay's own bounds instead: the sink's backlog stops
//! the upstream's pump from reading, and the idle and ping timers end a
//! connection on which nothing moves.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// How long a write to the client may wait for the client to read, set per
/// request by `handshake::handle`; `None` (a route's `idle_timeout =
/// "off"`) waits for as long as it takes. Shared by the connection's
/// [`WriteStall`] and the handler of its requests; milliseconds in an
/// atomic, not a `Cell`, since the type system cannot see that both run in
/// the connection's one task.
#[derive(Debug)]
pub(crate) struct Bound(AtomicU64);

const UNBOUNDED: u64 = u64::MAX;

impl Bound {
    pub(crate) fn new(bound: Option<Duration>) -> Bound {
        Bound(AtomicU64::new(millis(bound)))
    }

    pub(crate) fn set(&self, bound: Option<Duration>) {
        self.0.store(millis(bound), Ordering::Relaxed);
    }

    fn get(&self) -> Option<Duration> {
        match self.0.load(Ordering::Relaxed) {
            UNBOUNDED => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }
}

fn millis(bound: Option<Duration>) -> u64 {
    bound.map_or(UNBOUNDED, |b| {
        u64::try_from(b.as_millis()).unwrap_or(UNBOUNDED - 1)
    })
}

/// A wait for progress that may last at most some time: a timer made at
/// the first wait and reset at each later one, so nothing is allocated per
/// poll, and a connection or body that never waits allocates nothing.
#[derive(Default)]
pub(crate) struct Wait {
    timer: Option<Pin<Box<Sleep>>>,
    /// Set by a poll that waited, cleared by progress: the deadline runs
    /// from the first wait, not from the latest poll.
    waiting: bool,
}

impl Wait {
    /// Progress: the next wait starts afresh.
    pub(crate) fn progressed(&mut self) {
        self.waiting = false;
    }

    /// No progress this poll: ready once `limit` has passed since the wait
    /// began (the task is woken then). The clock is read when a wait
    /// begins, not at every poll of it.
    pub(crate) fn poll_over(&mut self, cx: &mut Context<'_>, limit: Duration) -> Poll<()> {
        if !self.waiting {
            // A limit beyond any instant is no limit.
            let Some(deadline) = Instant::now().checked_add(limit) else {
                return Poll::Pending;
            };
            match &mut self.timer {
                Some(timer) => timer.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            self.waiting = true;
        }
        match &mut self.timer {
            Some(timer) => timer.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }
}

/// The error a write ends with when the client has read nothing for the
/// [`Bound`]; `listen` finds it in hyper's error to log it as such.
#[derive(Debug, thiserror::Error)]
#[error("the client read nothing of the answer for {0:?}")]
pub(crate) struct NotRead(pub(crate) Duration);

/// A client's stream while it speaks HTTP, with writes bounded in time.
pub(crate) struct WriteStall<I> {
    io: I,
    bound: Arc<Bound>,
    wait: Wait,
}

impl<I> WriteStall<I> {
    pub(crate) fn new(io: I, bound: Arc<Bound>) -> WriteStall<I> {
        WriteStall {
            io,
            bound,
            wait: Wait::default(),
        }
    }

    /// The stream, for the relay, once hyper hands the connection over.
    pub(crate) fn into_inner(self) -> I {
        self.io
    }

    /// Passes on what the inner stream's write answered, unless it has
    /// waited for longer than the bound.
    fn bounded<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.wait.progressed();
            return polled;
        }
        let Some(bound) = self.bound.get() else {
            return Poll::Pending;
        };
        ready!(self.wait.poll_over(cx, bound));
        Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, NotRead(bound))))
    }
}
impl<I: AsyncRead + Unpin> AsyncRead for WriteStall<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for WriteStall<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.bounded(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.bounded(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        this.bounded(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_shutdown(cx);
        this.bounded(cx, polled)
    }
}
