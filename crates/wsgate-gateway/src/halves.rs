//! The two halves of an upgraded connection, as the relay reads and writes
//! them.
//!
//! hyper's server hands the client's upgraded connection over as
//! `Upgraded`: the stream boxed as a trait object behind a buffer of what it
//! read past the HTTP head. Read and written through that and tokio's
//! generic `split` (a lock taken on every call), each relayed message would
//! cross two dynamic calls and that lock. A plain TCP stream, the common
//! case, is taken back out and split into owned halves, which cost neither;
//! a TLS stream is taken out too and boxed once. The upstream's connection
//! comes from `upstream` as the stream itself. On both legs the bytes read
//! past the head come along, and the pump decodes them before anything it
//! reads itself.

use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::either::Either;

use crate::buffers::Readable;
use crate::stall::WriteStall;
use crate::upstream;

/// A stream the relay reads and writes through a box.
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

type Boxed = Box<dyn Io>;

/// An upgraded connection, split.
pub(crate) struct Halves {
    pub(crate) read: ReadHalf,
    pub(crate) write: WriteHalf,
    /// Bytes read past the HTTP head: the first the pump decodes.
    pub(crate) early: Bytes,
}

impl Halves {
    /// The client's connection, upgraded by hyper's server.
    pub(crate) fn client(upgraded: Upgraded) -> Halves {
        // `listen` bounds the HTTP part's writes with a wrapper the relay
        // has no use for: taken off here.
        let upgraded = match upgraded.downcast::<TokioIo<WriteStall<TcpStream>>>() {
            Ok(parts) => return Halves::tcp(parts.io.into_inner().into_inner(), parts.read_buf),
            Err(upgraded) => upgraded,
        };
        type Tls = tokio_rustls::server::TlsStream<TcpStream>;
        match upgraded.downcast::<TokioIo<WriteStall<Tls>>>() {
            Ok(parts) => {
                Halves::boxed(Box::new(parts.io.into_inner().into_inner()), parts.read_buf)
            }
            Err(upgraded) => Halves::fallback(upgraded),
        }
    }

    /// The upstream's connection after its 101.
    pub(crate) fn upstream(opened: upstream::Opened) -> Halves {
        match opened.stream {
            Either::Left(tcp) => Halves::tcp(tcp, opened.early),
            Either::Right(tls) => Halves::boxed(tls, opened.early),
        }
    }

    /// A stream of a type the gateway did not make: hyper's `Upgraded` as
    /// it is, correct but slower (see the module's doc). The listeners make
    /// only the types above, so this means a dependency changed what it
    /// wraps; debug builds stop here, so every test that relays over TCP or
    /// TLS proves the fast paths are taken.
    fn fallback(upgraded: Upgraded) -> Halves {
        debug_assert!(
            false,
            "an upgraded stream of an unexpected type: the relay would go through hyper's Upgraded"
        );
        Halves::boxed(Box::new(TokioIo::new(upgraded)), Bytes::new())
    }

    pub(crate) fn tcp(stream: TcpStream, early: Bytes) -> Halves {
        let (read, write) = stream.into_split();
        Halves {
            read: Either::Left(read),
            write: Either::Left(write),
            early,
        }
    }

    pub(crate) fn boxed(stream: Boxed, early: Bytes) -> Halves {
        let (read, write) = tokio::io::split(stream);
        Halves {
            read: Either::Right(read),
            write: Either::Right(write),
            early,
        }
    }
}

/// The reading half: owned TCP, or one half of a boxed stream.
pub(crate) type ReadHalf = Either<OwnedReadHalf, tokio::io::ReadHalf<Boxed>>;

impl Readable for ReadHalf {
    fn poll_readable(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match self {
            // An error is for the read to report.
            Either::Left(tcp) => tcp.as_ref().poll_read_ready(cx).map(|_| ()),
            Either::Right(_) => Poll::Ready(()),
        }
    }

    fn read_waits_alone(&self) -> bool {
        matches!(self, Either::Left(_))
    }
}

/// The writing half: owned TCP, or one half of a boxed stream.
pub(crate) type WriteHalf = Either<OwnedWriteHalf, tokio::io::WriteHalf<Boxed>>;

/// Whether a writer needs shutting down before its socket is closed. A TLS
/// stream does: its close_notify tells the peer the stream was not cut
/// short. Plain TCP does not: closing the socket sends the same FIN, and a
/// shutdown first would be one more system call on every connection.
pub(crate) fn needs_shutdown(write: &WriteHalf) -> bool {
    matches!(write, Either::Right(_))
}

/// Closes a leg. Plain TCP is put back together first: dropping an owned
/// write half on its own would shut it down (a system call) before the
/// close that does the same.
pub(crate) fn close(read: ReadHalf, write: WriteHalf) {
    if let (Either::Left(read), Either::Left(write)) = (read, write) {
        // Cannot fail (both came from one split); if it did, dropping the
        // halves it gives back still closes the socket.
        drop(read.reunite(write));
    }
}
