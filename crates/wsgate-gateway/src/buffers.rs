//! Read buffers, lent to a connection only while it has bytes to read.
//!
//! An idle WebSocket connection is the common case (a chat client waits
//! minutes between messages), and a gateway holding 10,000 of them must
//! not hold 10,000 pairs of read buffers. So a pump owns no buffer: it
//! borrows one from the process's [`Buffers`] when it polls its socket, and
//! gives it back as soon as the socket has nothing more to give. What a read
//! left undecoded (the first bytes of a frame header, or a control frame in
//! pieces: never more than the decoder needs to see a whole header or
//! control frame) moves to a small stash of the pump's own, so a client
//! stalling mid-header does not pin a buffer. The stash also carries, once,
//! the bytes hyper read past the HTTP head ([`Lent::with_early`]).
//!
//! A sink's backlog (what a slow peer has not taken yet) borrows from the
//! same free list and gives its buffer back when it drains.
//!
//! Buffers come back to a bounded free list, so in steady state relaying
//! allocates nothing; past the bound they are freed, so a burst of
//! connections does not hold memory after it.

use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::AsyncRead;

/// Bytes one read may take: a 16 KiB message and its header in one read,
/// and four of them, so bulk traffic costs few system calls.
pub(crate) const READ_BUF: usize = 64 * 1024;
/// Spare room below which a lent buffer is grown again before a read.
const MIN_SPARE: usize = 1024;
/// Free buffers kept for reuse: 1 MiB. A pump holds a buffer only while it
/// is being polled with bytes to read (or while the other side is backed
/// up), so a worker seldom has more than a few out at once; past this many
/// they are freed, so what stays resident after a burst is bounded and
/// small beside the connections (10,000 idle ones: 0.1 KiB each).
const KEEP_FREE: usize = 16;

/// The process's free read buffers.
#[derive(Debug, Default)]
pub(crate) struct Buffers {
    free: Mutex<Vec<BytesMut>>,
}

impl Buffers {
    /// A buffer of at least [`READ_BUF`] bytes: a free one, or a new one.
    pub(crate) fn take(&self) -> BytesMut {
        let reused = self.free.lock().unwrap_or_else(|p| p.into_inner()).pop();
        reused.unwrap_or_else(|| BytesMut::with_capacity(READ_BUF))
    }

    /// Takes a buffer back (kept for reuse up to [`KEEP_FREE`]).
    pub(crate) fn give(&self, mut buf: BytesMut) {
        buf.clear();
        // Reclaims the space consumed from the front (no allocation: the
        // buffer is empty and unshared).
        buf.reserve(READ_BUF);
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        if free.len() < KEEP_FREE {
            free.push(buf);
        }
    }

    /// Free buffers now held (for tests).
    #[cfg(test)]
    pub(crate) fn free(&self) -> usize {
        self.free.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// A reader that can tell, before a buffer is lent to it, that it has
/// nothing to read, and what its waiting waits on.
///
/// The relay polls a pump whose socket did not wake it too (the first
/// poll, a round after an event, a pump that waits on more than its
/// socket), and such a pump usually has nothing to read; asked first, it
/// costs no trip to the free list and back. Only a plain socket can
/// answer: a TLS stream may hold decrypted bytes its socket no longer
/// shows, so its answer is always "maybe".
pub(crate) trait Readable: AsyncRead + Unpin {
    /// `Pending` (the waker registered) when nothing can be read now;
    /// `Ready` when a read may find bytes, the end of the stream or an
    /// error.
    fn poll_readable(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let _ = cx;
        Poll::Ready(())
    }

    /// Whether a read that is `Pending` waits for this reader's socket to
    /// become readable and for nothing else, so that only the waker it was
    /// given will ever wake it. True of a plain socket; not of a TLS
    /// stream, whose read may wait on a write, through state it shares
    /// with its writing half.
    fn read_waits_alone(&self) -> bool {
        false
    }
}

/// In-memory pipes, which the unit tests relay through: always "maybe".
#[cfg(test)]
impl Readable for tokio::io::DuplexStream {}

/// One pump's reading state: a lent buffer while reading, or a stash of
/// unfinished bytes while waiting.
#[derive(Debug, Default)]
pub(crate) struct Lent {
    buf: Option<BytesMut>,
    /// Bytes a read left unfinished, kept while the buffer is given back.
    stash: Vec<u8>,
}

impl Lent {
    /// A reader whose first bytes were read before it existed (see
    /// [`Lent::replay`]).
    pub(crate) fn with_early(early: &[u8]) -> Self {
        Lent {
            buf: None,
            stash: early.to_vec(),
        }
    }

    /// Moves the stash into a lent buffer, as if just read; the number of
    /// bytes.
    pub(crate) fn replay(&mut self, buffers: &Buffers) -> usize {
        let n = self.stash.len();
        self.buf
            .get_or_insert_with(|| buffers.take())
            .extend_from_slice(&self.stash);
        self.stash = Vec::new();
        n
    }

    /// Reads what the socket has into a lent buffer; ready with the number
    /// of bytes read (0: the stream ended). Unless the caller knows the
    /// socket just woke it (`likely_readable`), the reader is asked first
    /// whether there is anything to read, and no buffer is lent if not.
    pub(crate) fn poll_read<R: Readable>(
        &mut self,
        cx: &mut Context<'_>,
        reader: &mut R,
        buffers: &Buffers,
        likely_readable: bool,
    ) -> Poll<std::io::Result<usize>> {
        if self.buf.is_none() && !likely_readable {
            std::task::ready!(reader.poll_readable(cx));
        }
        let buf = self.buf.get_or_insert_with(|| buffers.take());
        if !self.stash.is_empty() {
            buf.extend_from_slice(&self.stash);
            self.stash.clear();
        }
        if buf.capacity() - buf.len() < MIN_SPARE {
            buf.reserve(READ_BUF);
        }
        let polled = tokio_util::io::poll_read_buf(Pin::new(reader), cx, buf);
        if polled.is_pending()
            && let Some(waiting) = self.buf.take()
        {
            // Nothing to read now: the buffer goes back; what it holds
            // (a piece of a header at most) waits in the stash.
            self.stash.extend_from_slice(&waiting);
            buffers.give(waiting);
        }
        polled
    }

    /// The bytes read and not yet consumed.
    pub(crate) fn bytes(&mut self) -> &mut BytesMut {
        self.buf.get_or_insert_with(BytesMut::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn read(
        lent: &mut Lent,
        r: &mut tokio::io::DuplexStream,
        buffers: &Buffers,
    ) -> std::io::Result<usize> {
        std::future::poll_fn(|cx| lent.poll_read(cx, r, buffers, false)).await
    }

    #[tokio::test]
    async fn an_idle_reader_holds_no_buffer() {
        let buffers = Buffers::default();
        let (mut near, mut far) = tokio::io::duplex(1024);
        let mut lent = Lent::default();
        far.write_all(b"\x81\x85abc").await.expect("write");
        let n = read(&mut lent, &mut near, &buffers).await.expect("read");
        assert_eq!(n, 5);
        // The decoder consumed two bytes; three (of a header) are left.
        bytes::Buf::advance(lent.bytes(), 2);
        let pending = futures_util::FutureExt::now_or_never(read(&mut lent, &mut near, &buffers));
        assert!(pending.is_none(), "nothing more was written");
        assert!(lent.buf.is_none(), "the buffer went back while waiting");
        assert_eq!(lent.stash, b"abc", "the unfinished bytes were kept");
        assert_eq!(buffers.free(), 1);
        far.write_all(b"de").await.expect("write");
        assert_eq!(read(&mut lent, &mut near, &buffers).await.expect("read"), 2);
        assert_eq!(
            &lent.bytes()[..],
            b"abcde",
            "stash first, then the new bytes"
        );
        assert_eq!(buffers.free(), 0, "the same buffer was lent again");
    }

    #[test]
    fn the_free_list_is_bounded() {
        let buffers = Buffers::default();
        for _ in 0..KEEP_FREE + 10 {
            buffers.give(BytesMut::with_capacity(READ_BUF));
        }
        assert_eq!(buffers.free(), KEEP_FREE);
    }
}
