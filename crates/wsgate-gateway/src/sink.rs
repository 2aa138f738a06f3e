//! The writing half of one peer, aware of frame boundaries.
//!
//! Two writers share each peer: the pump relaying data from the other peer,
//! and the gateway itself (pongs, pings, close frames). A frame being relayed
//! may span many writes; the gateway's own frames wait until it is complete,
//! so they never land inside it. After a close frame nothing more is
//! written, as RFC 6455 section 5.5.1 requires.
//!
//! Writing never waits. What the socket does not take at once waits in a
//! backlog, a buffer lent from the process's [`Buffers`] and given back when
//! it drains; the pump feeding this sink reads nothing more from its own
//! peer until then ([`Sink::backed_up`]), which is the relay's backpressure.
//! So a pump's work on a read is a plain function call, and a connection
//! carries no suspended write in its state: an idle one holds a few words
//! here and no buffer.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use tokio::io::AsyncWrite;
use wsgate_proto::close;

use crate::buffers::Buffers;

/// Largest queue of the gateway's own control frames waiting for a frame to
/// finish; beyond it further pings and pongs are dropped (a client flooding
/// pings is owed only the latest pong, RFC 6455 section 5.5.3).
const MAX_QUEUED: usize = 1024;

/// Pongs that may wait for one peer: 32 payloads of at most 125 bytes.
/// Every ping is answered (Autobahn 2.10 checks it), but past this many
/// waiting the oldest are dropped, as RFC 6455 section 5.5.3 allows, so a
/// ping flood costs a bounded buffer.
const MAX_PENDING_PONGS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CloseState {
    Open,
    /// A close frame is queued behind the current frame or being written.
    Queued,
    Sent,
}

/// A peer's writer.
pub(crate) struct Sink<'a, W> {
    w: W,
    buffers: &'a Buffers,
    /// Frames to this peer are masked (the peer is the upstream).
    masked: bool,
    /// The relayed bytes accepted so far (written or in the backlog) end
    /// inside a frame.
    mid_frame: bool,
    /// Relayed bytes the socket has not taken yet.
    backlog: Option<BytesMut>,
    /// Bytes were written and not yet flushed (TLS holds records until then).
    unflushed: bool,
    /// The gateway's own frames waiting for a frame boundary, and how many
    /// of their bytes are written.
    own: Vec<u8>,
    own_sent: usize,
    /// Payloads of pings read from this peer, owed a pong.
    pongs: VecDeque<Vec<u8>>,
    close: CloseState,
    /// A write failed or the peer was abandoned: nothing more is written.
    dead: bool,
}

impl<'a, W: AsyncWrite + Unpin> Sink<'a, W> {
    pub(crate) fn new(w: W, masked: bool, buffers: &'a Buffers) -> Self {
        Sink {
            w,
            buffers,
            masked,
            mid_frame: false,
            backlog: None,
            unflushed: false,
            own: Vec::new(),
            own_sent: 0,
            pongs: VecDeque::new(),
            close: CloseState::Open,
            dead: false,
        }
    }

    /// Whether the last relayed bytes ended inside a frame.
    pub(crate) fn mid_frame(&self) -> bool {
        self.mid_frame
    }

    /// Whether relayed bytes still wait for the socket: the pump feeding
    /// this sink must not read more until [`Sink::poll_flush`] is ready.
    pub(crate) fn backed_up(&self) -> bool {
        !self.dead && (self.backlog.is_some() || self.unflushed)
    }

    /// Relays validated frame bytes; `mid_frame` says whether they end
    /// inside a frame. Writes what the socket takes now and keeps the rest
    /// in the backlog; never waits.
    pub(crate) fn data(&mut self, cx: &mut Context<'_>, bytes: &[u8], mid_frame: bool) {
        if self.dead || bytes.is_empty() {
            return;
        }
        if self.close != CloseState::Open && !self.mid_frame {
            // A new frame after a close: not allowed on the wire.
            return;
        }
        self.mid_frame = mid_frame;
        // Earlier bytes first: only an empty backlog lets these go straight out.
        let mut rest = bytes;
        if self.backlog.is_none() && self.own_sent == 0 {
            match self.write(cx, rest) {
                Poll::Ready(Ok(n)) => rest = &rest[n..],
                Poll::Ready(Err(_)) => return self.fail(),
                Poll::Pending => {}
            }
        }
        if !rest.is_empty() {
            self.backlog
                .get_or_insert_with(|| self.buffers.take())
                .extend_from_slice(rest);
        }
        // Registers for the socket's readiness when it did not take everything.
        let _ = self.poll_flush(cx);
    }

    /// Leaves a pong for `payload`; it goes out at the next frame boundary.
    pub(crate) fn pong(&mut self, payload: &[u8]) {
        if self.pongs.len() == MAX_PENDING_PONGS {
            self.pongs.pop_front();
        }
        self.pongs.push_back(payload.to_vec());
    }

    /// Queues a ping or pong of the gateway's own.
    pub(crate) fn control(&mut self, opcode: u8, payload: &[u8]) {
        if self.dead || self.close != CloseState::Open {
            return;
        }
        let frame = close::control_frame(opcode, payload, self.key());
        if self.own.len() + frame.len() <= MAX_QUEUED {
            self.own.extend_from_slice(&frame);
        }
    }

    /// Queues a close frame, behind the current frame if one is being
    /// relayed; at most once.
    pub(crate) fn close(&mut self, code: Option<u16>, reason: &str) {
        if self.dead || self.close != CloseState::Open {
            return;
        }
        self.take_pongs();
        let frame = close::encode(code, reason, self.key());
        self.own.extend_from_slice(&frame);
        self.close = CloseState::Queued;
    }

    /// Stops all writes to this peer (it broke protocol or went away).
    pub(crate) fn abandon(&mut self) {
        self.dead = true;
        self.release();
    }

    /// Writes what waits: the backlog first, then, at a frame boundary, the
    /// pongs owed and the gateway's own frames; then flushes. Ready once
    /// nothing waits (or the peer is dead).
    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // The relay asks after every wake; usually nothing waits.
        if self.dead || !self.waiting() {
            return Poll::Ready(());
        }
        match self.poll_write_waiting(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(()),
            Poll::Ready(Err(_)) => {
                self.fail();
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Whether anything waits that [`Sink::poll_write_waiting`] would write
    /// or flush: every queue it drains is named here, so that an idle sink's
    /// flush can return without a call to the writer.
    fn waiting(&self) -> bool {
        self.own_sent > 0
            || self.backlog.is_some()
            || self.unflushed
            || !self.own.is_empty()
            || !self.pongs.is_empty()
    }

    fn poll_write_waiting(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // An own frame half written is finished before anything else.
        if self.own_sent > 0 {
            ready!(self.poll_own(cx))?;
        }
        while let Some(backlog) = self.backlog.as_mut() {
            let n = ready!(Pin::new(&mut self.w).poll_write(cx, backlog))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.unflushed = true;
            backlog.advance(n);
            if backlog.is_empty() {
                self.release();
            }
        }
        if !self.mid_frame {
            if self.close == CloseState::Open {
                self.take_pongs();
            }
            ready!(self.poll_own(cx))?;
        }
        if self.unflushed {
            ready!(Pin::new(&mut self.w).poll_flush(cx))?;
            self.unflushed = false;
        }
        Poll::Ready(Ok(()))
    }

    /// Writes the gateway's own frames; a queued close is sent once they are.
    fn poll_own(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.own_sent < self.own.len() {
            let n = ready!(Pin::new(&mut self.w).poll_write(cx, &self.own[self.own_sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.unflushed = true;
            self.own_sent += n;
        }
        if !self.own.is_empty() {
            self.own.clear();
            self.own_sent = 0;
            if self.close == CloseState::Queued {
                self.close = CloseState::Sent;
            }
        }
        Poll::Ready(Ok(()))
    }

    /// The writer, to tell what kind of stream it is.
    pub(crate) fn writer(&self) -> &W {
        &self.w
    }

    /// Gives the writer back; a backlog still held is dropped with the sink.
    pub(crate) fn into_writer(self) -> W {
        self.w
    }

    /// Shuts down the write side (TLS close_notify, TCP FIN).
    pub(crate) fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.dead {
            return Poll::Ready(());
        }
        let _ = ready!(Pin::new(&mut self.w).poll_shutdown(cx));
        self.dead = true;
        Poll::Ready(())
    }

    fn write(&mut self, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.w).poll_write(cx, bytes))?;
        if n == 0 && !bytes.is_empty() {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        self.unflushed = true;
        Poll::Ready(Ok(n))
    }

    /// Moves the pongs owed into the gateway's queue of frames.
    fn take_pongs(&mut self) {
        while let Some(payload) = self.pongs.pop_front() {
            let frame = close::control_frame(0xA, &payload, self.key());
            self.own.extend_from_slice(&frame);
        }
    }

    /// Gives the backlog's buffer back.
    fn release(&mut self) {
        if let Some(buf) = self.backlog.take() {
            self.buffers.give(buf);
        }
    }

    fn fail(&mut self) {
        self.dead = true;
        self.release();
    }

    fn key(&self) -> Option<[u8; 4]> {
        self.masked.then(mask_key)
    }
}

/// A fresh masking key for a frame the gateway writes to the upstream
/// (RFC 6455 section 5.3: unpredictable, from a strong source).
pub(crate) fn mask_key() -> [u8; 4] {
    mask_key_from(&mut rand::rng())
}

/// A masking key from `rng` (the thread's CSPRNG), in one 32-bit draw:
/// `rand::random::<[u8; 4]>()` would draw a word per byte.
pub(crate) fn mask_key_from(rng: &mut impl rand::RngCore) -> [u8; 4] {
    rng.next_u32().to_ne_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::task::noop_waker_ref;
    use tokio::io::AsyncReadExt;

    /// Everything the far end of `pipe` can read now.
    async fn drain(far: &mut tokio::io::DuplexStream) -> Vec<u8> {
        let mut out = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Some(n) = futures_util::FutureExt::now_or_never(far.read(&mut chunk)) {
            let n = n.expect("read");
            if n == 0 {
                break;
            }
            out.extend_from_slice(&chunk[..n]);
        }
        out
    }

    #[tokio::test]
    async fn what_the_socket_does_not_take_waits_in_order_and_the_feeder_is_told() {
        let buffers = Buffers::default();
        let (near, mut far) = tokio::io::duplex(1024);
        let mut sink = Sink::new(near, false, &buffers);
        let mut cx = Context::from_waker(noop_waker_ref());
        let first: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        sink.data(&mut cx, &first, true);
        assert!(sink.backed_up(), "1024 bytes fit; the rest must wait");
        assert!(sink.mid_frame());
        // A pong owed now must not land inside the frame being relayed.
        sink.pong(b"p");
        let mut got = drain(&mut far).await;
        assert_eq!(got.len(), 1024);
        while sink.poll_flush(&mut cx).is_pending() {
            got.extend(drain(&mut far).await);
        }
        got.extend(drain(&mut far).await);
        assert_eq!(
            got, first,
            "the backlog went out whole, in order, pong withheld"
        );
        assert!(!sink.backed_up());
        assert_eq!(buffers.free(), 1, "the backlog's buffer was given back");
        // The frame ends: the pong follows it.
        sink.data(&mut cx, b"end", false);
        assert!(sink.poll_flush(&mut cx).is_ready());
        assert_eq!(drain(&mut far).await, b"end\x8a\x01p");
    }

    #[tokio::test]
    async fn a_close_follows_the_frame_in_progress_and_nothing_follows_the_close() {
        let buffers = Buffers::default();
        let (near, mut far) = tokio::io::duplex(1024);
        let mut sink = Sink::new(near, false, &buffers);
        let mut cx = Context::from_waker(noop_waker_ref());
        sink.data(&mut cx, b"\x82\x04ab", true);
        sink.close(Some(1001), "bye");
        sink.control(0x9, b"late");
        assert_eq!(drain(&mut far).await, b"\x82\x04ab", "the close waits");
        sink.data(&mut cx, b"cd", false);
        assert!(sink.poll_flush(&mut cx).is_ready());
        assert_eq!(drain(&mut far).await, b"cd\x88\x05\x03\xe9bye");
        sink.data(&mut cx, b"\x81\x01x", false);
        assert!(sink.poll_flush(&mut cx).is_ready());
        assert_eq!(drain(&mut far).await, b"", "no frame after a close");
    }

    #[tokio::test]
    async fn a_failed_write_stops_the_sink_and_frees_its_backlog() {
        let buffers = Buffers::default();
        let (near, far) = tokio::io::duplex(16);
        let mut sink = Sink::new(near, false, &buffers);
        let mut cx = Context::from_waker(noop_waker_ref());
        sink.data(&mut cx, &[0u8; 100], true);
        assert!(sink.backed_up());
        drop(far);
        assert!(sink.poll_flush(&mut cx).is_ready());
        assert!(!sink.backed_up(), "a dead peer holds nothing back");
        assert_eq!(buffers.free(), 1);
    }
}
