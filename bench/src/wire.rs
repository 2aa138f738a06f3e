//! The WebSocket wire as the harness needs it, and no more: the opening
//! handshake of both ends, and a streaming frame reader that never holds a
//! whole message.
//!
//! Nothing here validates: the harness measures proxies, it does not judge
//! frames (wsgate-proto does that, in the gateway). Both ends trust what
//! they read, so the echo upstream and the load generator cost as little as
//! they can and the proxies' costs stand out.

use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest HTTP head either end reads.
const MAX_HEAD: usize = 16 * 1024;

/// Opcodes the harness acts on.
pub const OP_CLOSE: u8 = 0x8;
/// A ping, answered with a pong.
pub const OP_PING: u8 = 0x9;
/// A pong.
pub const OP_PONG: u8 = 0xA;

/// A frame header read off the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// FIN bit.
    pub fin: bool,
    /// The opcode (low four bits of the first byte).
    pub opcode: u8,
    /// The masking key, if the frame is masked.
    pub mask: Option<[u8; 4]>,
    /// Payload length.
    pub len: u64,
    /// Bytes the header took.
    pub size: usize,
}

/// Parses a frame header at the start of `buf`; `None` until it is all there.
pub fn parse_header(buf: &[u8]) -> Option<Header> {
    let (&b0, rest) = buf.split_first()?;
    let &b1 = rest.first()?;
    let (len, mut size) = match b1 & 0x7f {
        126 => (
            u64::from(u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?)),
            4,
        ),
        127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?), 10),
        n => (u64::from(n), 2),
    };
    let mask = if b1 & 0x80 != 0 {
        let key: [u8; 4] = buf.get(size..size + 4)?.try_into().ok()?;
        size += 4;
        Some(key)
    } else {
        None
    };
    Some(Header {
        fin: b0 & 0x80 != 0,
        opcode: b0 & 0x0f,
        mask,
        len,
        size,
    })
}

/// Appends an unmasked header (a server's) for a frame of `len` bytes.
pub fn server_header(out: &mut Vec<u8>, fin: bool, opcode: u8, len: u64) {
    out.push(if fin { 0x80 } else { 0 } | opcode);
    match len {
        0..=125 => out.push(len as u8),
        126..=0xffff => {
            out.push(126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(127);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
}

/// A final, masked client frame, as a client sends it.
pub fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    wsgate_proto::frame::encode_data(opcode, payload, Some(rand::random()))
}

/// XORs `data` with `key`, starting `offset` bytes into the key.
pub fn unmask(data: &mut [u8], key: [u8; 4], offset: usize) {
    wsgate_proto::mask::apply(data, key, offset);
}

/// Where a reader stands in the frame stream.
#[derive(Debug, Default)]
pub struct FrameReader {
    /// Payload bytes of the current frame not yet seen.
    remaining: u64,
    /// The current frame's header, while its payload streams.
    current: Option<Header>,
    /// Payload bytes of the current frame already seen (for the mask offset).
    seen: u64,
}

/// What [`FrameReader::next`] found in the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// A frame header; its payload follows.
    Header(Header),
    /// `len` payload bytes of the current frame, at the start of the rest
    /// of the buffer; `end` when they finish the frame.
    Payload {
        /// Bytes of payload here.
        len: usize,
        /// Whether they end the frame.
        end: bool,
        /// The frame's masking key, if it is masked.
        mask: Option<[u8; 4]>,
        /// Where in the key these bytes start.
        offset: usize,
    },
    /// Nothing more can be read until more bytes arrive.
    NeedMore,
}

impl FrameReader {
    /// The next piece of `buf` (the unread bytes).
    pub fn next(&mut self, buf: &[u8]) -> Piece {
        if let Some(h) = self.current {
            if self.remaining == 0 && h.len == 0 || self.remaining > 0 && !buf.is_empty() {
                let len = usize::try_from(self.remaining)
                    .unwrap_or(usize::MAX)
                    .min(buf.len());
                let offset = (self.seen % 4) as usize;
                self.remaining -= len as u64;
                self.seen += len as u64;
                let end = self.remaining == 0;
                if end {
                    self.current = None;
                }
                return Piece::Payload {
                    len,
                    end,
                    mask: h.mask,
                    offset,
                };
            }
            if self.remaining > 0 {
                return Piece::NeedMore;
            }
        }
        match parse_header(buf) {
            Some(h) => {
                self.current = Some(h);
                self.remaining = h.len;
                self.seen = 0;
                Piece::Header(h)
            }
            None => Piece::NeedMore,
        }
    }
}

/// Reads an HTTP head (through the blank line) into `buf`; returns its length.
pub async fn read_head<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
) -> anyhow::Result<usize> {
    let mut chunk = [0u8; 2048];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(end + 4);
        }
        anyhow::ensure!(buf.len() < MAX_HEAD, "HTTP head over {MAX_HEAD} bytes");
        let n = s.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "connection closed during the HTTP head");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// What a client sends in its opening handshake.
#[derive(Debug, Clone)]
pub struct Request {
    /// The `Host` header.
    pub host: String,
    /// The path and query.
    pub path: String,
    /// An `Origin` to send, if any.
    pub origin: Option<String>,
    /// A bearer token for `Authorization`, if any.
    pub bearer: Option<String>,
}

impl Request {
    /// The request's bytes, with a fresh key.
    pub fn encode(&self) -> Vec<u8> {
        use std::fmt::Write;
        let key: [u8; 16] = rand::random();
        let key = base64::engine::general_purpose::STANDARD.encode(key);
        let mut s = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n",
            self.path, self.host
        );
        if let Some(o) = &self.origin {
            let _ = write!(s, "Origin: {o}\r\n");
        }
        if let Some(t) = &self.bearer {
            let _ = write!(s, "Authorization: Bearer {t}\r\n");
        }
        s.push_str("\r\n");
        s.into_bytes()
    }
}

/// Runs a client's opening handshake; returns the bytes read past the 101's head.
pub async fn client_handshake<S>(s: &mut S, req: &Request) -> anyhow::Result<Vec<u8>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    s.write_all(&req.encode()).await?;
    let mut buf = Vec::new();
    let end = read_head(s, &mut buf).await?;
    let status = buf.get(..12).unwrap_or_default();
    if status != b"HTTP/1.1 101" {
        let line = buf.split(|&b| b == b'\r').next().unwrap_or_default();
        anyhow::bail!("handshake refused: {}", String::from_utf8_lossy(line));
    }
    Ok(buf.split_off(end))
}

/// Runs a server's side of the opening handshake; returns the bytes read past the request.
pub async fn server_handshake<S>(s: &mut S) -> anyhow::Result<Vec<u8>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = Vec::new();
    let end = read_head(s, &mut buf).await?;
    let head = std::str::from_utf8(&buf[..end])?;
    let key = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("sec-websocket-key"))
        .map(|(_, v)| v.trim())
        .ok_or_else(|| anyhow::anyhow!("no Sec-WebSocket-Key"))?;
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let reply = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    s.write_all(reply.as_bytes()).await?;
    Ok(buf.split_off(end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_masked_frame_split_anywhere() {
        let frame = client_frame(0x1, b"hello, proxy");
        for split in 1..frame.len() {
            let mut r = FrameReader::default();
            let (a, b) = frame.split_at(split);
            let mut got = Vec::new();
            let mut pending = a.to_vec();
            let mut rest = b;
            loop {
                match r.next(&pending) {
                    Piece::Header(h) => {
                        assert_eq!((h.opcode, h.len, h.fin), (0x1, 12, true));
                        pending.drain(..h.size);
                    }
                    Piece::Payload {
                        len,
                        end,
                        mask,
                        offset,
                    } => {
                        let mut part: Vec<u8> = pending.drain(..len).collect();
                        unmask(&mut part, mask.expect("masked"), offset);
                        got.extend(part);
                        if end {
                            break;
                        }
                    }
                    Piece::NeedMore => {
                        assert!(!rest.is_empty(), "split at {split}: stuck");
                        pending.extend_from_slice(rest);
                        rest = &[];
                    }
                }
            }
            assert_eq!(got, b"hello, proxy", "split at {split}");
        }
    }

    #[test]
    fn empty_frames_end_at_once() {
        let mut r = FrameReader::default();
        let frame = client_frame(OP_CLOSE, b"");
        let Piece::Header(h) = r.next(&frame) else {
            panic!("header");
        };
        assert_eq!(h.len, 0);
        let end = Piece::Payload {
            len: 0,
            end: true,
            mask: h.mask,
            offset: 0,
        };
        assert_eq!(r.next(&[]), end);
        assert_eq!(r.next(&[]), Piece::NeedMore);
    }
}
