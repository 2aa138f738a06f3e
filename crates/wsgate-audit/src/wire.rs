//! The auditor's own client: it must send what no WebSocket library sends
//! (foreign origins, bad versions, unmasked frames, lengths of 2^63), and
//! read what comes back without trusting it: every read has a deadline and
//! a size bound, and nothing the endpoint sends can make it allocate more.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

/// Largest response head read.
const MAX_HEAD: usize = 64 * 1024;
/// Payload bytes kept of a frame read (the rest is read and dropped).
const KEEP: usize = 4096;

/// What went wrong on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// TCP connect failed.
    #[error("cannot connect to {0}: {1}")]
    Connect(String, String),
    /// The TLS handshake failed.
    #[error("TLS handshake with {0} failed: {1}")]
    Tls(String, String),
    /// Nothing came within the deadline.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The endpoint closed the connection.
    #[error("the connection was closed")]
    Closed,
    /// The answer is not HTTP.
    #[error("not an HTTP response: {0}")]
    NotHttp(String),
    /// Any other I/O failure.
    #[error("{0}")]
    Io(String),
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How to reach the endpoint: host, port, TLS.
#[derive(Clone)]
pub struct Dialer {
    /// Host name or address, as in the URL.
    pub host: String,
    /// Port.
    pub port: u16,
    /// TLS config and the name to verify, for wss.
    pub tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    /// Deadline for connecting and for each answer.
    pub timeout: Duration,
    /// What certificate verification said, when `--insecure` let it pass.
    pub cert_problem: Arc<Mutex<Option<String>>>,
}

impl Dialer {
    /// Opens a connection (TCP, then TLS for wss).
    pub async fn connect(&self) -> Result<Conn, WireError> {
        let deadline = Instant::now() + self.timeout;
        let tcp = self.tcp(deadline).await?;
        let addr = self.addr();
        let io: Box<dyn Io> = match &self.tls {
            None => Box::new(tcp),
            Some((config, name)) => {
                let connector = tokio_rustls::TlsConnector::from(Arc::clone(config));
                match timeout_at(deadline, connector.connect(name.clone(), tcp)).await {
                    Ok(Ok(s)) => Box::new(s),
                    Ok(Err(e)) => return Err(WireError::Tls(addr, e.to_string())),
                    Err(_) => return Err(WireError::Timeout(self.timeout)),
                }
            }
        };
        Ok(Conn {
            io,
            buf: Vec::new(),
            timeout: self.timeout,
        })
    }

    /// `host:port`, as in the URL (an IPv6 host keeps its brackets).
    fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// A TCP connection by `deadline`, before any TLS.
    async fn tcp(&self, deadline: Instant) -> Result<TcpStream, WireError> {
        match timeout_at(deadline, TcpStream::connect(self.addr())).await {
            Ok(Ok(t)) => {
                let _ = t.set_nodelay(true);
                Ok(t)
            }
            Ok(Err(e)) => Err(WireError::Connect(self.addr(), e.to_string())),
            Err(_) => Err(WireError::Timeout(self.timeout)),
        }
    }

    /// The certificate problem `--insecure` let through, if any.
    pub fn cert_problem(&self) -> Option<String> {
        self.cert_problem
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// An opening handshake to send, header by header, exactly as given.
#[derive(Debug, Clone)]
pub struct Request {
    /// Path and query.
    pub target: String,
    /// Headers in order; duplicates allowed.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The bytes of the request.
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = format!("GET {} HTTP/1.1\r\n", self.target);
        for (k, v) in &self.headers {
            out.push_str(k);
            out.push_str(": ");
            out.push_str(v);
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        out.into_bytes()
    }

    /// Replaces (or adds) a header.
    pub fn set(&mut self, name: &str, value: &str) {
        self.remove(name);
        self.headers.push((name.to_owned(), value.to_owned()));
    }

    /// Removes every copy of a header.
    pub fn remove(&mut self, name: &str) {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    }
}

/// An HTTP response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// The status line, for evidence.
    pub status_line: String,
    /// Headers, names lower-case.
    pub headers: Vec<(String, String)>,
}

impl Response {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A frame the endpoint sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// FIN, RSV and opcode.
    pub first: u8,
    /// The payload's length as announced.
    pub len: u64,
    /// Up to the first 4 KiB of the payload.
    pub payload: Vec<u8>,
}

impl Frame {
    /// The opcode.
    pub fn opcode(&self) -> u8 {
        self.first & 0x0F
    }

    /// A close frame's code (1005 when it has none).
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode() == 0x8).then(|| match self.payload.get(..2) {
            Some(b) => u16::from_be_bytes([b[0], b[1]]),
            None => 1005,
        })
    }
}

/// How a connection ended up after a probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum After {
    /// The endpoint sent a close frame with this code.
    Closed(u16),
    /// The endpoint dropped the connection without a close frame.
    Dropped,
    /// Still open when the wait ended; `data` says whether data frames came back.
    Open {
        /// Data frames seen.
        data: u64,
    },
}

impl std::fmt::Display for After {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            After::Closed(code) => write!(f, "closed with {code}"),
            After::Dropped => f.write_str("connection dropped without a close frame"),
            After::Open { data: 0 } => f.write_str("connection still open"),
            After::Open { data } => {
                write!(f, "connection still open ({data} data frames answered)")
            }
        }
    }
}

/// One connection to the endpoint.
pub struct Conn {
    io: Box<dyn Io>,
    buf: Vec<u8>,
    timeout: Duration,
}

impl Conn {
    /// Writes bytes.
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        let deadline = Instant::now() + self.timeout;
        match timeout_at(deadline, self.io.write_all(bytes)).await {
            Ok(Ok(())) => match timeout_at(deadline, self.io.flush()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(io_error(&e)),
                Err(_) => Err(WireError::Timeout(self.timeout)),
            },
            Ok(Err(e)) => Err(io_error(&e)),
            Err(_) => Err(WireError::Timeout(self.timeout)),
        }
    }

    /// Sends a handshake and reads the response head.
    pub async fn handshake(&mut self, req: &Request) -> Result<Response, WireError> {
        self.send(&req.bytes()).await?;
        self.read_head().await
    }

    /// Reads a response head (up to 64 KiB).
    pub async fn read_head(&mut self) -> Result<Response, WireError> {
        let deadline = Instant::now() + self.timeout;
        let end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            if self.buf.len() > MAX_HEAD {
                return Err(WireError::NotHttp("a response head over 64 KiB".into()));
            }
            self.fill(deadline).await?;
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default().to_owned();
        let status = status_line
            .strip_prefix("HTTP/1.1 ")
            .or_else(|| status_line.strip_prefix("HTTP/1.0 "))
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| WireError::NotHttp(status_line.chars().take(80).collect()))?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Ok(Response {
            status,
            status_line,
            headers,
        })
    }

    async fn fill(&mut self, deadline: Instant) -> Result<(), WireError> {
        let mut chunk = [0u8; 16 * 1024];
        match timeout_at(deadline, self.io.read(&mut chunk)).await {
            Ok(Ok(0)) => Err(WireError::Closed),
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Ok(Err(e)) => Err(io_error(&e)),
            Err(_) => Err(WireError::Timeout(self.timeout)),
        }
    }

    /// Whether the endpoint hangs up (or answers anything) within `wait`.
    pub async fn hangs_up_within(&mut self, wait: Duration) -> bool {
        !matches!(
            self.fill(Instant::now() + wait).await,
            Err(WireError::Timeout(_))
        )
    }

    /// Reads one frame by `deadline`, keeping at most 4 KiB of its payload.
    pub async fn read_frame(&mut self, deadline: Instant) -> Result<Frame, WireError> {
        while self.buf.len() < 2 {
            self.fill(deadline).await?;
        }
        let masked = self.buf[1] & 0x80 != 0;
        let (len, mut at) = match self.buf[1] & 0x7F {
            126 => {
                while self.buf.len() < 4 {
                    self.fill(deadline).await?;
                }
                (u64::from(u16::from_be_bytes([self.buf[2], self.buf[3]])), 4)
            }
            127 => {
                while self.buf.len() < 10 {
                    self.fill(deadline).await?;
                }
                let mut b = [0u8; 8];
                b.copy_from_slice(&self.buf[2..10]);
                (u64::from_be_bytes(b), 10)
            }
            n => (u64::from(n), 2),
        };
        if masked {
            at += 4;
        }
        while self.buf.len() < at {
            self.fill(deadline).await?;
        }
        let first = self.buf[0];
        let key = masked.then(|| {
            [
                self.buf[at - 4],
                self.buf[at - 3],
                self.buf[at - 2],
                self.buf[at - 1],
            ]
        });
        self.buf.drain(..at);
        let mut payload = Vec::new();
        let mut left = len;
        let mut offset = 0usize;
        while left > 0 {
            if self.buf.is_empty() {
                self.fill(deadline).await?;
            }
            let n = usize::try_from(left).map_or(self.buf.len(), |l| l.min(self.buf.len()));
            let room = KEEP.saturating_sub(payload.len()).min(n);
            payload.extend_from_slice(&self.buf[..room]);
            if let Some(k) = key {
                for (i, b) in payload[offset..].iter_mut().enumerate() {
                    *b ^= k[(offset + i) % 4];
                }
            }
            offset = payload.len();
            self.buf.drain(..n);
            left -= n as u64;
        }
        Ok(Frame {
            first,
            len,
            payload,
        })
    }

    /// Reads until the endpoint closes, drops the connection, or `wait`
    /// passes; answers nothing (pings included). Data frames are counted.
    pub async fn after(&mut self, wait: Duration) -> After {
        let deadline = Instant::now() + wait;
        let mut data = 0;
        loop {
            match self.read_frame(deadline).await {
                Ok(f) if f.opcode() == 0x8 => return After::Closed(f.close_code().unwrap_or(1005)),
                Ok(f) if matches!(f.opcode(), 0x0..=0x2) => data += 1,
                Ok(_) => {}
                Err(WireError::Timeout(_)) => return After::Open { data },
                Err(_) => return After::Dropped,
            }
        }
    }

    /// Ends the connection politely: a close frame (1000), then drop.
    pub async fn close(mut self) {
        let _ = self.send(&frame(0x88, &1000u16.to_be_bytes(), true)).await;
    }
}

fn io_error(e: &std::io::Error) -> WireError {
    match e.kind() {
        std::io::ErrorKind::ConnectionReset
        | std::io::ErrorKind::BrokenPipe
        | std::io::ErrorKind::UnexpectedEof
        | std::io::ErrorKind::ConnectionAborted => WireError::Closed,
        _ => WireError::Io(e.to_string()),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A client frame: `first` is FIN, RSV and opcode as sent; masked with a
/// random key when `masked`. Any first byte, any payload.
pub fn frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = header(first, payload.len() as u64, masked);
    let key: [u8; 4] = rand::random();
    if masked {
        out.extend_from_slice(&key);
    }
    let start = out.len();
    out.extend_from_slice(payload);
    if masked {
        for (i, b) in out[start..].iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
    }
    out
}

/// A frame header announcing `len` bytes (the 64-bit form above 65,535), without the mask key.
pub fn header(first: u8, len: u64, masked: bool) -> Vec<u8> {
    let bit = if masked { 0x80 } else { 0 };
    let mut out = vec![first];
    match len {
        n if n < 126 => out.push(bit | n as u8),
        n if n <= 0xFFFF => {
            out.push(bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(bit | 127);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
    out
}

/// Whether the endpoint completes a ServerHello for a ClientHello that
/// offers only `version` (0x0301 TLS 1.0, 0x0302 TLS 1.1). rustls speaks
/// neither, so this one message is built by hand; nothing after the
/// ServerHello is attempted.
pub async fn legacy_tls(dialer: &Dialer, version: u16) -> Result<bool, WireError> {
    let deadline = Instant::now() + dialer.timeout;
    let mut tcp = dialer.tcp(deadline).await?;
    let name = dialer.host.trim_start_matches('[').trim_end_matches(']');
    let sni = name.parse::<std::net::IpAddr>().is_err().then_some(name);
    let hello = client_hello(version, sni);
    match timeout_at(deadline, tcp.write_all(&hello)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(io_error(&e)),
        Err(_) => return Err(WireError::Timeout(dialer.timeout)),
    }
    // A record header (5 bytes), then a handshake header (4) and the
    // ServerHello's version (2).
    let mut head = [0u8; 11];
    let mut got = 0;
    while got < head.len() {
        match timeout_at(deadline, tcp.read(&mut head[got..])).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(false),
            Ok(Ok(n)) => got += n,
            Err(_) => return Err(WireError::Timeout(dialer.timeout)),
        }
        // An alert (21) or anything but a handshake record is a refusal.
        if got >= 1 && head[0] != 22 {
            return Ok(false);
        }
    }
    Ok(head[5] == 2 && u16::from_be_bytes([head[9], head[10]]) == version)
}

/// A TLS 1.0/1.1 ClientHello: CBC suites with ECDHE and RSA key exchange,
/// SNI, the usual groups, and secure renegotiation.
fn client_hello(version: u16, sni: Option<&str>) -> Vec<u8> {
    const SUITES: [u16; 7] = [0xc014, 0xc013, 0xc00a, 0xc009, 0x0035, 0x002f, 0x000a];
    let mut ext = Vec::new();
    if let Some(name) = sni {
        let n = name.as_bytes();
        let mut list = vec![0u8];
        list.extend_from_slice(&(n.len() as u16).to_be_bytes());
        list.extend_from_slice(n);
        ext.extend_from_slice(&[0x00, 0x00]);
        ext.extend_from_slice(&((list.len() + 2) as u16).to_be_bytes());
        ext.extend_from_slice(&(list.len() as u16).to_be_bytes());
        ext.extend_from_slice(&list);
    }
    // supported_groups: secp256r1, secp384r1, x25519.
    ext.extend_from_slice(&[
        0x00, 0x0a, 0x00, 0x08, 0x00, 0x06, 0x00, 0x17, 0x00, 0x18, 0x00, 0x1d,
    ]);
    // ec_point_formats: uncompressed.
    ext.extend_from_slice(&[0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]);
    // renegotiation_info, empty.
    ext.extend_from_slice(&[0xff, 0x01, 0x00, 0x01, 0x00]);
    let mut body = Vec::new();
    body.extend_from_slice(&version.to_be_bytes());
    body.extend_from_slice(&rand::random::<[u8; 32]>());
    body.push(0);
    body.extend_from_slice(&((SUITES.len() * 2) as u16).to_be_bytes());
    for s in SUITES {
        body.extend_from_slice(&s.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut handshake = vec![1u8];
    handshake.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);
    let mut record = vec![22u8, 0x03, 0x01];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}
