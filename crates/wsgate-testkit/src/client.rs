//! A raw WebSocket client: writes any bytes, reads what comes back.
//!
//! Library clients refuse to send malformed frames; a gateway's tests must.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use wsgate_proto::mask;

use crate::WAIT;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A sample key (RFC 6455's own example).
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// A client connection.
pub struct RawClient {
    io: Box<dyn Io>,
    buf: Vec<u8>,
}

/// The head (and short body) of an HTTP response.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-case.
    pub headers: Vec<(String, String)>,
    /// Body, when the response had a Content-Length.
    pub body: String,
}

impl Reply {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A frame as read from the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The first byte: FIN, RSV and opcode.
    pub first: u8,
    /// Whether the mask bit was set.
    pub masked: bool,
    /// Payload, unmasked.
    pub payload: Vec<u8>,
}

impl Frame {
    /// The opcode.
    pub fn opcode(&self) -> u8 {
        self.first & 0x0F
    }

    /// For a close frame, the code.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode() == 0x8 && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }

    /// For a close frame, the reason.
    pub fn close_reason(&self) -> String {
        String::from_utf8_lossy(self.payload.get(2..).unwrap_or_default()).into_owned()
    }
}

impl RawClient {
    /// Connects over plain TCP.
    pub async fn connect(addr: SocketAddr) -> RawClient {
        let tcp = TcpStream::connect(addr).await.expect("connect to gateway");
        let _ = tcp.set_nodelay(true);
        RawClient {
            io: Box::new(tcp),
            buf: Vec::new(),
        }
    }

    /// Reads and writes frames over a socket opened elsewhere (a raw
    /// upstream's side of a connection, say).
    pub fn over(stream: TcpStream) -> RawClient {
        RawClient {
            io: Box::new(stream),
            buf: Vec::new(),
        }
    }

    /// Connects over TLS, verifying the server as `name`.
    pub async fn connect_tls(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
        name: &str,
    ) -> RawClient {
        Self::try_connect_tls(addr, config, name)
            .await
            .expect("TLS handshake with the gateway")
    }

    /// Connects over TLS; the error when the handshake fails. In TLS 1.3 a
    /// server refuses a client certificate after the client has finished its
    /// side, so a refusal may also show as the connection ending at the first read.
    pub async fn try_connect_tls(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
        name: &str,
    ) -> std::io::Result<RawClient> {
        let tcp = TcpStream::connect(addr).await?;
        Self::try_tls_over(tcp, config, name).await
    }

    /// TLS over a socket opened elsewhere (one that has sent a PROXY
    /// protocol header, say); the error when the handshake fails.
    pub async fn try_tls_over(
        tcp: TcpStream,
        config: Arc<rustls::ClientConfig>,
        name: &str,
    ) -> std::io::Result<RawClient> {
        let server_name = rustls::pki_types::ServerName::try_from(name.to_owned()).expect("name");
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(server_name, tcp)
            .await?;
        Ok(RawClient {
            io: Box::new(tls),
            buf: Vec::new(),
        })
    }

    /// Sends a handshake (Host `localhost`) and returns the reply, or `None`
    /// if the connection ends first (a refusal at the TLS layer).
    pub async fn try_handshake(&mut self, path: &str, extra: &[(&str, &str)]) -> Option<Reply> {
        let mut req = format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
        );
        for (k, v) in extra {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        if self.io.write_all(req.as_bytes()).await.is_err() || self.io.flush().await.is_err() {
            return None;
        }
        loop {
            if find(&self.buf, b"\r\n\r\n").is_some() {
                return Some(self.read_reply().await);
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// Sends a plain HTTP request with no body (Host `127.0.0.1` unless given).
    pub async fn request(&mut self, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut req = format!("{method} {path} HTTP/1.1\r\n");
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            req.push_str("Host: 127.0.0.1\r\n");
        }
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("Content-Length: 0\r\n\r\n");
        self.send_raw(req.as_bytes()).await;
        self.read_reply().await
    }

    /// Writes bytes as they are.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.expect("write");
        self.io.flush().await.expect("flush");
    }

    /// Sends a handshake for `path` with the standard headers plus `extra`
    /// (an extra header replaces a standard one of the same name; a value of
    /// `None`-like empty string removes it).
    pub async fn handshake(&mut self, path: &str, extra: &[(&str, &str)]) -> Reply {
        let mut headers: Vec<(String, String)> = [
            ("Host", "127.0.0.1"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", KEY),
            ("Sec-WebSocket-Version", "13"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in extra {
            let replaced = headers
                .iter()
                .position(|(name, _)| name.eq_ignore_ascii_case(k));
            match (replaced, v.is_empty()) {
                (Some(i), true) => {
                    headers.remove(i);
                }
                (Some(i), false) => headers[i].1 = v.to_string(),
                (None, _) => headers.push((k.to_string(), v.to_string())),
            }
        }
        let mut req = format!("GET {path} HTTP/1.1\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.send_raw(req.as_bytes()).await;
        self.read_reply().await
    }

    /// Sends a handshake that may repeat headers: `headers` is sent as is.
    pub async fn handshake_exact(&mut self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut req = format!("GET {path} HTTP/1.1\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.send_raw(req.as_bytes()).await;
        self.read_reply().await
    }

    /// Reads an HTTP response head and its body (when it has a length).
    pub async fn read_reply(&mut self) -> Reply {
        let end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            assert!(
                self.fill().await,
                "connection closed before a response head"
            );
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end);
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .expect("status line");
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        while self.buf.len() < len {
            assert!(
                self.fill().await,
                "connection closed inside a response body"
            );
        }
        let body = String::from_utf8_lossy(&self.buf[..len]).into_owned();
        self.buf.drain(..len);
        Reply {
            status,
            headers,
            body,
        }
    }

    /// Sends one frame; `first` is the FIN/RSV/opcode byte. Masked with a fixed key when `masked`.
    pub async fn send_frame(&mut self, first: u8, payload: &[u8], masked: bool) {
        self.send_raw(&encode(first, payload, masked)).await;
    }

    /// Sends a masked final text frame.
    pub async fn send_text(&mut self, text: &str) {
        self.send_frame(0x81, text.as_bytes(), true).await;
    }

    /// Reads one frame; `None` when the connection ends first.
    pub async fn read_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some((frame, used)) = parse(&self.buf) {
                self.buf.drain(..used);
                return Some(frame);
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// Reads frames until a close frame; returns it. Panics if the connection ends first.
    pub async fn read_close(&mut self) -> Frame {
        loop {
            let frame = self
                .read_frame()
                .await
                .expect("connection ended without a close frame");
            if frame.opcode() == 0x8 {
                return frame;
            }
        }
    }

    /// Reads frames until a data frame (skipping pings and pongs).
    pub async fn read_data(&mut self) -> Frame {
        loop {
            let frame = self
                .read_frame()
                .await
                .expect("connection ended before a data frame");
            if !matches!(frame.opcode(), 0x9 | 0xA) {
                return frame;
            }
        }
    }

    /// Whether the connection ends (EOF or reset) with nothing more to read.
    pub async fn ends(&mut self) -> bool {
        self.buf.clear();
        !self.fill().await && self.buf.is_empty()
    }

    /// Whether the connection ends cleanly with nothing more to read: a
    /// FIN on TCP, a close_notify on TLS; not a reset, not a TLS stream cut
    /// off without its close_notify.
    pub async fn ends_cleanly(&mut self) -> bool {
        let mut chunk = [0u8; 64];
        match tokio::time::timeout(WAIT, self.io.read(&mut chunk)).await {
            Ok(Ok(0)) => self.buf.is_empty(),
            Ok(Ok(_) | Err(_)) => false,
            Err(_) => panic!("the connection did not end within {WAIT:?}"),
        }
    }

    /// The bytes received up to and including `delimiter` (a stream such
    /// as server-sent events, read raw).
    pub async fn read_until(&mut self, delimiter: &[u8]) -> Vec<u8> {
        loop {
            if let Some(i) = find(&self.buf, delimiter) {
                return self.buf.drain(..i + delimiter.len()).collect();
            }
            assert!(self.fill().await, "connection closed before {delimiter:?}");
        }
    }

    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16384];
        match tokio::time::timeout(WAIT, self.io.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => false,
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(_) => panic!("nothing received from the gateway within {WAIT:?}"),
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Encodes a frame with any first byte, masked with a fixed key when asked.
pub fn encode(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = vec![first];
    let bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(bit | n as u8),
        n if n <= 0xFFFF => {
            out.push(bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let key = [0x12, 0x34, 0x56, 0x78];
    if masked {
        out.extend_from_slice(&key);
    }
    let start = out.len();
    out.extend_from_slice(payload);
    if masked {
        mask::apply(&mut out[start..], key, 0);
    }
    out
}

/// Parses one whole frame from the start of `buf`.
fn parse(buf: &[u8]) -> Option<(Frame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let masked = buf[1] & 0x80 != 0;
    let (len, mut at) = match buf[1] & 0x7F {
        126 => (
            u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    let key = if masked {
        let k: [u8; 4] = buf.get(at..at + 4)?.try_into().ok()?;
        at += 4;
        Some(k)
    } else {
        None
    };
    let mut payload = buf.get(at..at + len)?.to_vec();
    if let Some(k) = key {
        mask::apply(&mut payload, k, 0);
    }
    Some((
        Frame {
            first: buf[0],
            masked,
            payload,
        },
        at + len,
    ))
}
