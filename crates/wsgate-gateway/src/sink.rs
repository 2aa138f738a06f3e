//! The writing half of one peer, aware of frame boundaries.
//!
//! Two writers share each peer: the pump relaying data from the other peer,
//! and the gateway itself (pongs, pings, close frames). A frame being relayed
//! may span many writes; the gateway's own frames wait in a small queue until
//! it is complete, so they never land inside it. After a close frame nothing
//! more is written, as RFC 6455 section 5.5.1 requires.

use std::sync::Arc;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use wsgate_proto::close;

/// Largest queue of the gateway's own control frames waiting for a frame to
/// finish; beyond it further pongs are dropped (a client flooding pings is
/// owed only the latest pong, RFC 6455 section 5.5.3).
const MAX_QUEUED: usize = 1024;

/// The latest pong owed to a peer.
///
/// A pump that reads a ping never writes the pong itself: waiting for its own
/// peer's writer while the other pump holds it, blocked on a peer that stopped
/// reading, would stop both directions for good. It leaves the pong here;
/// the sink sends it at its next frame boundary, or the supervisor does.
/// Every ping is answered (Autobahn 2.10 checks it), but at most
/// [`MAX_PENDING_PONGS`] wait at once; past that the oldest are dropped, as
/// RFC 6455 section 5.5.3 allows, so a ping flood costs a bounded buffer.
#[derive(Default)]
pub(crate) struct PendingPong {
    waiting: std::sync::Mutex<std::collections::VecDeque<Vec<u8>>>,
    /// Woken when a pong is left.
    pub(crate) ready: Notify,
}

/// Pongs that may wait for one peer: 32 payloads of at most 125 bytes.
const MAX_PENDING_PONGS: usize = 32;

impl PendingPong {
    /// Leaves a pong for `payload`.
    pub(crate) fn offer(&self, payload: &[u8]) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        if waiting.len() == MAX_PENDING_PONGS {
            waiting.pop_front();
        }
        waiting.push_back(payload.to_vec());
        drop(waiting);
        self.ready.notify_one();
    }

    /// Every waiting pong, oldest first.
    fn take(&self) -> Vec<Vec<u8>> {
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CloseState {
    Open,
    /// A close frame waits for the current frame to finish.
    Queued,
    Sent,
}

/// A peer's writer.
pub(crate) struct Sink<W> {
    w: W,
    /// Frames to this peer are masked (the peer is the upstream).
    masked: bool,
    mid_frame: bool,
    queued: Vec<u8>,
    close: CloseState,
    /// A write failed or the peer was abandoned: nothing more is written.
    dead: bool,
    pongs: Arc<PendingPong>,
}

impl<W: AsyncWrite + Unpin> Sink<W> {
    pub(crate) fn new(w: W, masked: bool, pongs: Arc<PendingPong>) -> Self {
        Sink {
            w,
            masked,
            mid_frame: false,
            queued: Vec::new(),
            close: CloseState::Open,
            dead: false,
            pongs,
        }
    }

    /// Whether the last relayed bytes ended inside a frame.
    pub(crate) fn mid_frame(&self) -> bool {
        self.mid_frame
    }

    /// Relays validated frame bytes; `mid_frame` says whether they end inside a frame.
    pub(crate) async fn data(&mut self, bytes: &[u8], mid_frame: bool) -> std::io::Result<()> {
        if self.dead || self.close == CloseState::Sent || bytes.is_empty() {
            return Ok(());
        }
        if self.close == CloseState::Queued && !self.mid_frame {
            // A new frame after a queued close: not allowed on the wire.
            return Ok(());
        }
        let result = self.write_data(bytes, mid_frame).await;
        self.note(result)
    }

    async fn write_data(&mut self, bytes: &[u8], mid_frame: bool) -> std::io::Result<()> {
        self.w.write_all(bytes).await?;
        self.mid_frame = mid_frame;
        if !self.mid_frame && self.close == CloseState::Open {
            for payload in self.pongs.take() {
                let frame = close::control_frame(0xA, &payload, self.key());
                self.w.write_all(&frame).await?;
            }
        }
        if !self.mid_frame && !self.queued.is_empty() {
            self.w.write_all(&self.queued).await?;
            self.queued.clear();
            if self.close == CloseState::Queued {
                self.close = CloseState::Sent;
            }
        }
        self.w.flush().await
    }

    /// Sends the pongs that are owed.
    pub(crate) async fn flush_pong(&mut self) -> std::io::Result<()> {
        for payload in self.pongs.take() {
            self.control(0xA, &payload).await?;
        }
        Ok(())
    }

    /// Sends a ping or pong of the gateway's own.
    pub(crate) async fn control(&mut self, opcode: u8, payload: &[u8]) -> std::io::Result<()> {
        if self.dead || self.close != CloseState::Open {
            return Ok(());
        }
        let frame = close::control_frame(opcode, payload, self.key());
        if self.mid_frame {
            if self.queued.len() + frame.len() <= MAX_QUEUED {
                self.queued.extend_from_slice(&frame);
            }
            return Ok(());
        }
        let result = self.write_now(&frame).await;
        self.note(result)
    }

    /// Sends (or queues behind the current frame) a close frame; at most once.
    pub(crate) async fn close(&mut self, code: Option<u16>, reason: &str) -> std::io::Result<()> {
        if self.dead || self.close != CloseState::Open {
            return Ok(());
        }
        let frame = close::encode(code, reason, self.key());
        if self.mid_frame {
            self.queued.extend_from_slice(&frame);
            self.close = CloseState::Queued;
            return Ok(());
        }
        self.close = CloseState::Sent;
        let result = self.write_now(&frame).await;
        self.note(result)
    }

    /// Stops all writes to this peer (it broke protocol or went away).
    pub(crate) fn abandon(&mut self) {
        self.dead = true;
    }

    /// Flushes and shuts down the write side (TLS close_notify, TCP FIN).
    pub(crate) async fn shutdown(&mut self) {
        if !self.dead {
            let _ = self.w.shutdown().await;
        }
    }

    async fn write_now(&mut self, frame: &[u8]) -> std::io::Result<()> {
        self.w.write_all(frame).await?;
        self.w.flush().await
    }

    fn key(&self) -> Option<[u8; 4]> {
        self.masked.then(rand::random)
    }

    fn note(&mut self, result: std::io::Result<()>) -> std::io::Result<()> {
        if result.is_err() {
            self.dead = true;
        }
        result
    }
}
