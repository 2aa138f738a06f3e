//! A WebSocket endpoint that can be made vulnerable in the ways real ones
//! were, for the auditor to find:
//!
//! - no Origin check (IPython CVE-2014-3429, webpack-dev-server
//!   CVE-2018-14732, code-server CVE-2023-26114);
//! - an Origin check by substring (socket.io WS-2020-0443);
//! - `null` accepted (Next.js CVE-2026-27977);
//! - IP-literal origins allowed (webpack-dev-server CVE-2025-30360);
//! - cookie authentication without an Origin check (Jenkins CVE-2024-23898);
//! - no authentication (jupyter-server-proxy CVE-2024-28179);
//! - a token taken from the query string;
//! - no message size limit, and inflating permessage-deflate without one;
//! - no timeouts at all;
//! - any subprotocol echoed, any version accepted.
//!
//! Each flaw is a field of [`Flaws`]; [`Flaws::strict`] has none. Frames
//! are echoed; it is test support, not a server to deploy.

use std::net::SocketAddr;
use std::sync::Arc;

use flate2::{Decompress, FlushDecompress};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::upstream::header;

/// How the endpoint checks Origin.
#[derive(Debug, Clone)]
pub enum OriginCheck {
    /// Any Origin, or none.
    None,
    /// Any Origin that contains this text.
    Substring(String),
    /// Exactly these origins (and, with the flags below, more).
    Exact(Vec<String>),
}

/// How the endpoint authenticates.
#[derive(Debug, Clone)]
pub enum Auth {
    /// Not at all.
    None,
    /// This cookie (`name=value`) must be present.
    Cookie(String),
    /// `Authorization: Bearer TOKEN`, or `?token=TOKEN` when `query` is set.
    Bearer {
        /// The token.
        token: String,
        /// Also accept it as `?token=` or `?access_token=`.
        query: bool,
    },
}

/// The endpoint's flaws.
#[derive(Debug, Clone)]
pub struct Flaws {
    /// The Origin check.
    pub origin: OriginCheck,
    /// Accept `Origin: null` whatever the check.
    pub allow_null: bool,
    /// Accept IP-literal origins whatever the check.
    pub allow_ip_literal: bool,
    /// Refuse a handshake without Origin (a strict server does).
    pub require_origin: bool,
    /// Accept only these Host values (`None`: any).
    pub hosts: Option<Vec<String>>,
    /// Authentication.
    pub auth: Auth,
    /// Largest message; `None`: no limit.
    pub max_message: Option<u64>,
    /// Accept permessage-deflate and inflate without any limit.
    pub inflate: bool,
    /// Close a connection idle this long, and a handshake not read in it; `None`: never.
    pub timeout: Option<std::time::Duration>,
    /// Answer any subprotocol offered by selecting it.
    pub echo_subprotocol: bool,
    /// Accept any `Sec-WebSocket-Version` (a strict server answers 426).
    pub any_version: bool,
    /// Validate frames (masking, RSV, opcodes, control frames, UTF-8) and close with the right code.
    pub validate_frames: bool,
    /// Stop listening after accepting this many connections, as a server
    /// that falls over under load: later connections are refused.
    pub dies_after: Option<usize>,
    /// Answer a text message that is not JSON with the parser's traceback,
    /// as a server that sends its exceptions to the client.
    pub leaks_errors: bool,
}

impl Flaws {
    /// No flaw: exact origins, the given auth, limits, timeouts, validation.
    pub fn strict(origins: &[&str], auth: Auth) -> Flaws {
        Flaws {
            origin: OriginCheck::Exact(origins.iter().map(|o| (*o).to_owned()).collect()),
            allow_null: false,
            allow_ip_literal: false,
            require_origin: true,
            hosts: None,
            auth,
            max_message: Some(64 * 1024),
            inflate: false,
            timeout: Some(std::time::Duration::from_secs(1)),
            echo_subprotocol: false,
            any_version: false,
            validate_frames: true,
            dies_after: None,
            leaks_errors: false,
        }
    }
}

/// The endpoint, listening on 127.0.0.1:0.
pub struct Vulnerable {
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Vulnerable {
    /// Starts serving with `flaws`.
    pub async fn start(flaws: Flaws) -> Vulnerable {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let flaws = Arc::new(flaws);
        tokio::spawn(async move {
            let mut accepted = 0;
            while let Ok((tcp, _)) = listener.accept().await {
                let each = Arc::clone(&flaws);
                tokio::spawn(async move {
                    let _ = serve(tcp, &each).await;
                });
                accepted += 1;
                if flaws.dies_after.is_some_and(|n| accepted >= n) {
                    // The listener is dropped: connections are refused.
                    break;
                }
            }
        });
        Vulnerable { addr }
    }
}

async fn with_timeout<T>(
    t: Option<std::time::Duration>,
    f: impl Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    match t {
        None => f.await,
        Some(t) => tokio::time::timeout(t, f)
            .await
            .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into())),
    }
}

async fn serve(mut tcp: TcpStream, flaws: &Flaws) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return Ok(());
        }
        let mut chunk = [0u8; 4096];
        let n = with_timeout(flaws.timeout, tcp.read(&mut chunk)).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.drain(..end);
    let answer = decide(&head, flaws);
    tcp.write_all(answer.as_bytes()).await?;
    if !answer.starts_with("HTTP/1.1 101") {
        return Ok(());
    }
    let deflate = answer.contains("permessage-deflate");
    frames(tcp, buf, flaws, deflate).await
}

fn refuse(status: &str) -> String {
    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
}

fn is_ip_literal(origin: &str) -> bool {
    let host = origin.split_once("://").map_or(origin, |(_, h)| h);
    let host = host.rsplit_once(':').map_or(
        host,
        |(h, p)| if p.parse::<u16>().is_ok() { h } else { host },
    );
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .is_ok()
}

fn decide(head: &str, flaws: &Flaws) -> String {
    let target = head.split_whitespace().nth(1).unwrap_or("/");
    let version = header(head, "sec-websocket-version").unwrap_or_default();
    if version != "13" && !flaws.any_version {
        return "HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n".into();
    }
    if let Some(hosts) = &flaws.hosts {
        let host = header(head, "host").unwrap_or_default();
        if !hosts.contains(&host) {
            return refuse("421 Misdirected Request");
        }
    }
    let origin = header(head, "origin");
    let origin_ok = match &origin {
        None => !flaws.require_origin,
        Some(o) if o == "null" => flaws.allow_null || matches!(flaws.origin, OriginCheck::None),
        Some(o) if flaws.allow_ip_literal && is_ip_literal(o) => true,
        Some(o) => match &flaws.origin {
            OriginCheck::None => true,
            OriginCheck::Substring(s) => o.contains(s.as_str()),
            OriginCheck::Exact(list) => list.contains(o),
        },
    };
    if !origin_ok {
        return refuse("403 Forbidden");
    }
    let authed = match &flaws.auth {
        Auth::None => true,
        Auth::Cookie(c) => {
            header(head, "cookie").is_some_and(|v| v.split(';').any(|p| p.trim() == c))
        }
        Auth::Bearer { token, query } => {
            header(head, "authorization").as_deref() == Some(&format!("Bearer {token}"))
                || (*query && (target.contains(&format!("token={token}"))))
        }
    };
    if !authed {
        return refuse("401 Unauthorized");
    }
    let Some(key) = header(head, "sec-websocket-key") else {
        return refuse("400 Bad Request");
    };
    let mut answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
        wsgate_proto::handshake::accept_key(&key)
    );
    if flaws.echo_subprotocol
        && let Some(p) = header(head, "sec-websocket-protocol")
    {
        answer.push_str(&format!(
            "Sec-WebSocket-Protocol: {}\r\n",
            p.split(',').next().unwrap_or("").trim()
        ));
    }
    if flaws.inflate
        && header(head, "sec-websocket-extensions")
            .is_some_and(|e| e.contains("permessage-deflate"))
    {
        answer.push_str("Sec-WebSocket-Extensions: permessage-deflate\r\n");
    }
    answer.push_str("\r\n");
    answer
}

fn server_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= 0xFFFF => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

async fn close(tcp: &mut TcpStream, code: u16) -> std::io::Result<()> {
    tcp.write_all(&server_frame(0x88, &code.to_be_bytes()))
        .await
}

/// Reads frames and echoes data; with `validate_frames`, closes on broken rules.
async fn frames(
    mut tcp: TcpStream,
    mut buf: Vec<u8>,
    flaws: &Flaws,
    deflate: bool,
) -> std::io::Result<()> {
    let mut message: Vec<u8> = Vec::new();
    let mut message_len: u64 = 0;
    let mut compressed = false;
    let mut text = false;
    loop {
        // Header.
        while buf.len() < 2 {
            let mut chunk = vec![0u8; 64 * 1024];
            let n = with_timeout(flaws.timeout, tcp.read(&mut chunk)).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let (first, second) = (buf[0], buf[1]);
        let (len, mut at) = match second & 0x7F {
            126 if buf.len() >= 4 => (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
            127 if buf.len() >= 10 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&buf[2..10]);
                (u64::from_be_bytes(b), 10)
            }
            126 | 127 => {
                let mut chunk = vec![0u8; 64 * 1024];
                let n = with_timeout(flaws.timeout, tcp.read(&mut chunk)).await?;
                if n == 0 {
                    return Ok(());
                }
                buf.extend_from_slice(&chunk[..n]);
                continue;
            }
            n => (u64::from(n), 2),
        };
        let masked = second & 0x80 != 0;
        let opcode = first & 0x0F;
        let fin = first & 0x80 != 0;
        let rsv = first & 0x70;
        if flaws.validate_frames {
            let bad_rsv = rsv != 0 && !(deflate && rsv == 0x40 && matches!(opcode, 1 | 2));
            let broken = !masked
                || bad_rsv
                || matches!(opcode, 3..=7 | 0xB..=0xF)
                || (opcode >= 8 && (len > 125 || !fin))
                || len >= 1 << 63;
            if broken {
                return close(&mut tcp, 1002).await;
            }
        }
        if let Some(max) = flaws.max_message
            && opcode < 8
            && message_len + len > max
        {
            return close(&mut tcp, 1009).await;
        }
        if masked {
            at += 4;
        }
        let total = at as u64 + len;
        // Read the whole frame: this server holds messages (as vulnerable ones do).
        while (buf.len() as u64) < total {
            let mut chunk = vec![0u8; 64 * 1024];
            let n = with_timeout(flaws.timeout, tcp.read(&mut chunk)).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let key = masked.then(|| [buf[at - 4], buf[at - 3], buf[at - 2], buf[at - 1]]);
        let total = total as usize;
        let mut payload = buf[at..total].to_vec();
        buf.drain(..total);
        if let Some(k) = key {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= k[i % 4];
            }
        }
        match opcode {
            0x8 => return close(&mut tcp, 1000).await,
            0x9 => tcp.write_all(&server_frame(0x8A, &payload)).await?,
            0xA => {}
            op => {
                if op != 0 {
                    compressed = rsv & 0x40 != 0;
                    text = op == 1;
                    message.clear();
                    message_len = 0;
                }
                message_len += len;
                message.extend_from_slice(&payload);
                if fin {
                    let mut whole = std::mem::take(&mut message);
                    if compressed {
                        whole = inflate_all(&whole);
                    }
                    if text && flaws.validate_frames && std::str::from_utf8(&whole).is_err() {
                        return close(&mut tcp, 1007).await;
                    }
                    let reply = if text { 0x81 } else { 0x82 };
                    let leak = text
                        && flaws.leaks_errors
                        && serde_json::from_slice::<serde_json::Value>(&whole).is_err();
                    // Echo a short acknowledgement for big messages.
                    let body: &[u8] = if leak {
                        b"Traceback (most recent call last):\n  File \"/srv/chat/app.py\", line 41, in on_message\n    data = json.loads(message)\njson.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)"
                    } else if whole.len() > 4096 {
                        b"ok"
                    } else {
                        &whole
                    };
                    tcp.write_all(&server_frame(reply, body)).await?;
                    message_len = 0;
                }
            }
        }
    }
}

/// Inflates without any limit: the flaw.
fn inflate_all(data: &[u8]) -> Vec<u8> {
    let mut z = Decompress::new(false);
    let mut input = data.to_vec();
    input.extend_from_slice(&[0x00, 0x00, 0xff, 0xff]);
    let mut out = Vec::with_capacity(input.len() * 4);
    let mut pos = 0;
    loop {
        if out.capacity() - out.len() < 64 * 1024 {
            out.reserve(out.capacity().max(64 * 1024));
        }
        let before_in = z.total_in();
        let before_out = z.total_out();
        if z.decompress_vec(&input[pos..], &mut out, FlushDecompress::Sync)
            .is_err()
        {
            break;
        }
        pos += (z.total_in() - before_in) as usize;
        if pos >= input.len() && z.total_out() == before_out {
            break;
        }
    }
    out
}

/// A TLS stub that takes TLS 1.0: it answers any ClientHello with a
/// ServerHello for version 1.0 and hangs up. Enough for the auditor's
/// legacy-version probe, which reads nothing further.
pub struct LegacyTls {
    /// Where it listens.
    pub addr: SocketAddr,
}

impl LegacyTls {
    /// Starts the stub.
    pub async fn start() -> LegacyTls {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut hello = [0u8; 5];
                    if tcp.read_exact(&mut hello).await.is_err() || hello[0] != 22 {
                        return;
                    }
                    let mut body = vec![0x03, 0x01];
                    body.extend_from_slice(&[7u8; 32]);
                    body.extend_from_slice(&[0, 0xc0, 0x13, 0]);
                    let mut handshake = vec![2u8, 0, 0, body.len() as u8];
                    handshake.extend_from_slice(&body);
                    let mut record = vec![22u8, 0x03, 0x01, 0, handshake.len() as u8];
                    record.extend_from_slice(&handshake);
                    let _ = tcp.write_all(&record).await;
                });
            }
        });
        LegacyTls { addr }
    }
}
