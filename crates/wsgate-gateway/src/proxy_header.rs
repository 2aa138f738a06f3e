//! The PROXY protocol (HAProxy's, versions 1 and 2), read before TLS and
//! HTTP on a listener with `proxy_protocol = true`.
//!
//! A balancer that relays TCP (an AWS NLB, HAProxy in `mode tcp`) cannot
//! add `X-Forwarded-For`: it writes the client's address in a header before
//! the connection's first byte instead. The header is read exactly, byte
//! for byte, so what follows it (a TLS ClientHello, a request head) is left
//! in the socket for whoever reads next. The listen stage decides whether
//! the peer may send one at all (`trusted_proxies`) and bounds the wait
//! (`handshake_timeout`); ppp parses.

use std::net::SocketAddr;

use ppp::{HeaderResult, PartialResult, v1, v2};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Longest header read. Version 1 stops at 107 bytes; version 2 may carry
/// extensions (TLVs) up to 64 KiB, but balancers send a few dozen bytes.
const MAX_HEADER: usize = 2048;

/// What the bytes seen so far hold.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    /// A whole header of `len` bytes; the client it names, or `None` for a
    /// balancer's own connection (v2 `LOCAL`, v1 `UNKNOWN`: a health check).
    Header {
        len: usize,
        client: Option<SocketAddr>,
    },
    /// A header's beginning.
    Incomplete,
    /// Not a header, in words.
    Invalid(String),
}

fn parse(bytes: &[u8]) -> Parsed {
    let parsed = HeaderResult::parse(bytes);
    if parsed.is_incomplete() {
        return Parsed::Incomplete;
    }
    match parsed {
        HeaderResult::V1(Ok(h)) => Parsed::Header {
            len: h.header.len(),
            client: match h.addresses {
                v1::Addresses::Tcp4(a) => Some((a.source_address, a.source_port).into()),
                v1::Addresses::Tcp6(a) => Some((a.source_address, a.source_port).into()),
                v1::Addresses::Unknown => None,
            },
        },
        HeaderResult::V2(Ok(h)) => Parsed::Header {
            len: h.len(),
            client: match (h.command, h.addresses) {
                (v2::Command::Proxy, v2::Addresses::IPv4(a)) => {
                    Some((a.source_address, a.source_port).into())
                }
                (v2::Command::Proxy, v2::Addresses::IPv6(a)) => {
                    Some((a.source_address, a.source_port).into())
                }
                // LOCAL, or an address that is not IP: the balancer's own.
                _ => None,
            },
        },
        HeaderResult::V1(Err(e)) => Parsed::Invalid(format!("not a PROXY protocol header: {e}")),
        HeaderResult::V2(Err(e)) => Parsed::Invalid(format!("not a PROXY protocol v2 header: {e}")),
    }
}

/// Reads the header the connection starts with, and nothing after it; the
/// client it names (`None`: the balancer's own connection), or why the
/// connection must be refused.
pub(crate) async fn read(tcp: &mut TcpStream) -> Result<Option<SocketAddr>, String> {
    let failed = |e: std::io::Error| format!("reading the PROXY protocol header: {e}");
    // Consumed so far: only ever the beginning of a header.
    let mut taken: Vec<u8> = Vec::new();
    // On the heap: inline, it would enlarge every connection's future by
    // its size, on listeners without the PROXY protocol too.
    let mut buf = vec![0u8; MAX_HEADER];
    loop {
        // Peeked, so that bytes past the header stay in the socket.
        let room = MAX_HEADER - taken.len();
        let n = tcp.peek(&mut buf[..room]).await.map_err(failed)?;
        if n == 0 {
            return Err("the connection ended inside its PROXY protocol header".into());
        }
        let mut seen = taken.clone();
        seen.extend_from_slice(&buf[..n]);
        match parse(&seen) {
            Parsed::Header { len, client } => {
                let rest = len - taken.len();
                tcp.read_exact(&mut buf[..rest]).await.map_err(failed)?;
                return Ok(client.map(|c| SocketAddr::new(c.ip().to_canonical(), c.port())));
            }
            Parsed::Incomplete if seen.len() >= MAX_HEADER => {
                return Err(format!(
                    "the PROXY protocol header is longer than {MAX_HEADER} bytes"
                ));
            }
            // Taken out of the socket, so that the next peek waits for more.
            Parsed::Incomplete => {
                tcp.read_exact(&mut buf[..n]).await.map_err(failed)?;
                taken.extend_from_slice(&buf[..n]);
            }
            Parsed::Invalid(why) => return Err(why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2_ipv4(command: u8, source: [u8; 4], port: u16, tlvs: &[u8]) -> Vec<u8> {
        let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        h.push(0x20 | command);
        h.push(0x11); // IPv4, stream
        let len = u16::try_from(12 + tlvs.len()).unwrap_or(u16::MAX);
        h.extend_from_slice(&len.to_be_bytes());
        h.extend_from_slice(&source);
        h.extend_from_slice(&[10, 0, 0, 1]);
        h.extend_from_slice(&port.to_be_bytes());
        h.extend_from_slice(&443u16.to_be_bytes());
        h.extend_from_slice(tlvs);
        h
    }

    #[test]
    fn both_versions_name_the_client_and_their_length() {
        let v1 = b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\nGET / HTTP/1.1\r\n";
        assert_eq!(
            parse(v1),
            Parsed::Header {
                len: 43,
                client: Some(
                    "203.0.113.7:51234"
                        .parse()
                        .unwrap_or_else(|_| unreachable!())
                ),
            }
        );
        let v1_6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 51234 443\r\n";
        assert!(
            matches!(parse(v1_6), Parsed::Header { len: 46, client: Some(c) } if c.ip().is_ipv6())
        );
        let mut v2 = v2_ipv4(1, [203, 0, 113, 7], 51234, &[0x04, 0, 1, 0]);
        let len = v2.len();
        v2.extend_from_slice(b"\x16\x03\x01"); // a ClientHello's beginning
        assert_eq!(
            parse(&v2),
            Parsed::Header {
                len,
                client: Some(
                    "203.0.113.7:51234"
                        .parse()
                        .unwrap_or_else(|_| unreachable!())
                ),
            }
        );
    }

    #[test]
    fn a_balancers_own_connection_names_no_client() {
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n"),
            Parsed::Header {
                len: 15,
                client: None
            }
        );
        let local = v2_ipv4(0, [10, 0, 0, 9], 1, &[]);
        assert_eq!(
            parse(&local),
            Parsed::Header {
                len: local.len(),
                client: None
            }
        );
    }

    #[test]
    fn beginnings_wait_and_anything_else_is_refused() {
        assert_eq!(parse(b"PROXY TCP4 203.0"), Parsed::Incomplete);
        assert_eq!(parse(b"\r\n\r\n\0\r\nQU"), Parsed::Incomplete);
        let v2 = v2_ipv4(1, [203, 0, 113, 7], 51234, &[]);
        assert_eq!(parse(&v2[..20]), Parsed::Incomplete);
        for bad in [
            &b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            b"PROXY TCP4 not-an-address 10.0.0.1 1 2\r\n",
        ] {
            assert!(
                matches!(parse(bad), Parsed::Invalid(_)),
                "{:?}: {:?}",
                String::from_utf8_lossy(bad),
                parse(bad)
            );
        }
    }

    /// A header that arrives in two pieces is read whole, and what follows
    /// it is left in the socket.
    #[tokio::test]
    async fn a_header_in_pieces_is_read_exactly() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let mut client = TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let (mut server, _) = listener.accept().await.unwrap_or_else(|e| panic!("{e}"));
        client
            .write_all(b"PROXY TCP4 203.0.113.7 10")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // Until the first piece has arrived (one segment on loopback).
        let mut probe = [0u8; 64];
        let arrived = server
            .peek(&mut probe)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(arrived, 25);
        let named = {
            let mut reading = std::pin::pin!(read(&mut server));
            let first = tokio::time::timeout(std::time::Duration::ZERO, reading.as_mut()).await;
            assert!(
                first.is_err(),
                "a header's beginning was taken for a whole one"
            );
            client
                .write_all(b".0.0.1 51234 443\r\nGET")
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            reading.await
        };
        assert_eq!(named, Ok(Some(SocketAddr::from(([203, 0, 113, 7], 51234)))));
        let mut rest = [0u8; 3];
        server
            .read_exact(&mut rest)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&rest, b"GET");
    }
}
