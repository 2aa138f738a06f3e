//! Upstreams for tests: a real echo server, and a raw one that a test scripts.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// Largest message the echo server takes: above Autobahn's 16 MiB cases.
const ECHO_MAX: usize = 64 << 20;

/// A WebSocket echo server on 127.0.0.1:0.
///
/// It echoes text and binary messages. A text message `close:CODE` makes it
/// close with that code instead, so tests can have the upstream start a close.
/// The headers of every handshake it accepts are sent to [`Echo::requests`].
pub struct Echo {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Headers of each handshake received, in order.
    pub requests: mpsc::UnboundedReceiver<http::HeaderMap>,
}

/// Options for the echo server.
#[derive(Default, Clone)]
pub struct EchoOptions {
    /// Serve wss with this config.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Answer with this subprotocol when the client offers it.
    pub protocol: Option<String>,
}

impl Echo {
    /// Starts a plain ws echo server.
    pub async fn start() -> Echo {
        Echo::start_with(EchoOptions::default()).await
    }

    /// Starts an echo server with options.
    pub async fn start_with(options: EchoOptions) -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
        Echo::serve(listener, options)
    }

    /// Serves on a listener the caller bound (the demo binary binds a given address).
    pub fn serve(listener: TcpListener, options: EchoOptions) -> Echo {
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (tx, options) = (tx.clone(), options.clone());
                tokio::spawn(async move {
                    let _ = tcp.set_nodelay(true);
                    match &options.tls {
                        None => serve_echo(tcp, tx, options.protocol).await,
                        Some(config) => {
                            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(config));
                            if let Ok(tls) = acceptor.accept(tcp).await {
                                serve_echo(tls, tx, options.protocol).await;
                            }
                        }
                    }
                });
            }
        });
        Echo { addr, requests: rx }
    }

    /// `ws://` URL of a path on this server.
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }
}

async fn serve_echo<S>(
    stream: S,
    tx: mpsc::UnboundedSender<http::HeaderMap>,
    protocol: Option<String>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let callback = |req: &Request, mut resp: Response| {
        let _ = tx.send(req.headers().clone());
        let offered = req
            .headers()
            .get_all("sec-websocket-protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(',').map(|p| p.trim().to_owned()))
            .collect::<Vec<_>>();
        if let Some(p) = protocol.as_ref().filter(|p| offered.contains(p))
            && let Ok(value) = p.parse()
        {
            resp.headers_mut().insert("sec-websocket-protocol", value);
        }
        Ok(resp)
    };
    let config = WebSocketConfig::default()
        .max_message_size(Some(ECHO_MAX))
        .max_frame_size(Some(ECHO_MAX));
    let Ok(mut ws) =
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config)).await
    else {
        return;
    };
    while let Some(Ok(msg)) = ws.next().await {
        let reply = match msg {
            Message::Text(t) if t.starts_with("close:") => {
                let code = t["close:".len()..].parse::<u16>().unwrap_or(1000);
                let frame = CloseFrame {
                    code: CloseCode::from(code),
                    reason: "upstream says bye".into(),
                };
                let _ = ws.close(Some(frame)).await;
                continue;
            }
            m @ (Message::Text(_) | Message::Binary(_)) => m,
            _ => continue,
        };
        if ws.send(reply).await.is_err() {
            break;
        }
    }
}

/// An upstream whose every move the test makes by hand.
pub struct Raw {
    /// Where it listens.
    pub addr: SocketAddr,
    conns: mpsc::UnboundedReceiver<RawConn>,
}

/// One connection to a [`Raw`] upstream, its request head already read.
pub struct RawConn {
    /// The request head as received.
    pub head: String,
    /// The socket, for the test to answer on.
    pub stream: TcpStream,
}

impl RawConn {
    /// The `Sec-WebSocket-Key` the gateway sent.
    pub fn key(&self) -> String {
        header(&self.head, "sec-websocket-key").unwrap_or_default()
    }

    /// A correct 101 for this request's key.
    pub fn switching_protocols(&self) -> String {
        let accept = wsgate_proto::handshake::accept_key(&self.key());
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        )
    }
}

/// The value of a header in a raw head, by case-insensitive name.
pub fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

impl Raw {
    /// Starts listening on 127.0.0.1:0.
    pub async fn start() -> Raw {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind raw");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") && head.len() < 65536 {
                        match stream.read(&mut byte).await {
                            Ok(1) => head.push(byte[0]),
                            _ => return,
                        }
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let _ = tx.send(RawConn { head, stream });
                });
            }
        });
        Raw { addr, conns: rx }
    }

    /// The next connection, with its request head read.
    pub async fn accept(&mut self) -> RawConn {
        tokio::time::timeout(crate::WAIT, self.conns.recv())
            .await
            .expect("no connection reached the raw upstream in time")
            .expect("raw upstream stopped")
    }

    /// Whether a connection arrived (without waiting).
    pub fn try_accept(&mut self) -> Option<RawConn> {
        self.conns.try_recv().ok()
    }
}
