//! The echo upstream every proxy is measured in front of.
//!
//! It echoes frame by frame as bytes arrive (a 1 MiB message is never held
//! whole), answers pings, and answers a close with a close. One read buffer
//! and one write buffer per connection, reused, so in steady state it
//! allocates nothing per message. It serves ws, or wss when given a
//! certificate, so the direct connection can be measured both ways.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::wire::{self, FrameReader, OP_CLOSE, OP_PING, OP_PONG, Piece};

/// Bytes read at a time.
const READ_BUF: usize = 64 * 1024;

/// Serves until the process ends; prints `echo: listening on ADDR` once bound.
pub async fn run(bind: SocketAddr, tls: Option<Arc<rustls::ServerConfig>>) -> anyhow::Result<()> {
    let listener = TcpListener::bind(bind).await?;
    eprintln!("echo: listening on {}", listener.local_addr()?);
    serve(listener, tls).await
}

/// Serves on `listener` until the process ends.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> anyhow::Result<()> {
    let acceptor = tls.map(TlsAcceptor::from);
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(pair) => pair,
            // Out of descriptors, for instance: the run reports the failures.
            Err(_) => continue,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _ = match acceptor {
                Some(a) => match a.accept(tcp).await {
                    Ok(tls) => connection(tls).await,
                    Err(e) => Err(e.into()),
                },
                None => connection(tcp).await,
            };
        });
    }
}

async fn connection<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) -> anyhow::Result<()> {
    let early = wire::server_handshake(&mut s).await?;
    let mut buf = vec![0u8; READ_BUF];
    let mut filled = early.len();
    buf[..filled].copy_from_slice(&early);
    let mut out = Vec::with_capacity(READ_BUF + 16);
    let mut reader = FrameReader::default();
    // A control frame's header and payload, gathered before it is answered.
    let mut control: Option<(wire::Header, Vec<u8>)> = None;
    loop {
        let mut pos = 0;
        let mut closing = false;
        loop {
            match reader.next(&buf[pos..filled]) {
                Piece::NeedMore => break,
                Piece::Header(h) => {
                    pos += h.size;
                    if h.opcode >= OP_CLOSE {
                        control = Some((h, Vec::new()));
                    } else {
                        wire::server_header(&mut out, h.fin, h.opcode, h.len);
                    }
                }
                Piece::Payload {
                    len,
                    end,
                    mask,
                    offset,
                } => {
                    let data = &mut buf[pos..pos + len];
                    if let Some(key) = mask {
                        wire::unmask(data, key, offset);
                    }
                    match control.as_mut() {
                        Some((_, payload)) => payload.extend_from_slice(data),
                        None => out.extend_from_slice(data),
                    }
                    pos += len;
                    if end && let Some((h, payload)) = control.take() {
                        let opcode = if h.opcode == OP_PING {
                            OP_PONG
                        } else {
                            h.opcode
                        };
                        if h.opcode != OP_PONG {
                            wire::server_header(&mut out, true, opcode, payload.len() as u64);
                            out.extend_from_slice(&payload);
                        }
                        closing |= h.opcode == OP_CLOSE;
                    }
                }
            }
            if closing {
                break;
            }
        }
        if !out.is_empty() {
            s.write_all(&out).await?;
            out.clear();
        }
        if closing {
            let _ = s.shutdown().await;
            return Ok(());
        }
        buf.copy_within(pos..filled, 0);
        filled -= pos;
        let n = s.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Ok(());
        }
        filled += n;
    }
}
