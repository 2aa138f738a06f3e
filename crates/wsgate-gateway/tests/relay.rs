//! After the upgrade: every client frame is validated, and each broken rule
//! ends in its close code, the right reason in the log, and no crash.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::{ORIGIN, open_to_raw};
use wsgate_testkit::client::{RawClient, encode};
use wsgate_testkit::gateway::TestGateway;
use wsgate_testkit::upstream::{Echo, Raw};

async fn open(gw: &TestGateway) -> RawClient {
    let mut c = RawClient::connect(gw.addr).await;
    let reply = c.handshake("/chat", &[ORIGIN]).await;
    assert_eq!(reply.status, 101);
    c
}

/// A gateway in front of `raw`, a client through it to a raw upstream (read
/// as a client reads), and the client's close frame (1000) sent.
async fn client_closing_to_raw(raw: &mut Raw) -> (TestGateway, RawClient, RawClient) {
    let gw = TestGateway::start(&common::config(raw.addr, "", "")).await;
    let (mut c, up) = open_to_raw(&gw, raw).await;
    c.send_frame(0x88, &1000u16.to_be_bytes(), true).await;
    (gw, c, RawClient::over(up.stream))
}

async fn gateway(limits: &str) -> (Echo, TestGateway) {
    let echo = Echo::start().await;
    let gw = TestGateway::start(&common::config(echo.addr, "", limits)).await;
    (echo, gw)
}

/// Sends `bytes` after a valid message and expects the echo, then `code`.
async fn violation(gw: &mut TestGateway, bytes: &[u8], code: u16, reason: &str) {
    let mut c = open(gw).await;
    c.send_text("before").await;
    c.send_raw(bytes).await;
    // What the client sent before breaking the rule still gets its answer, in order.
    assert_eq!(c.read_data().await.payload, b"before", "for {reason}");
    let close = c.read_close().await;
    assert_eq!(close.close_code(), Some(code), "for {reason}: {close:?}");
    assert_eq!(close.close_reason(), reason);
    // The gateway half-closes and reads the client out (it may still be
    // sending); the client's end ends that.
    assert!(
        c.ends_cleanly().await,
        "for {reason}: a FIN after the close"
    );
    drop(c);
    let ev = gw.close_event().await;
    assert_eq!(
        (ev.reason, ev.close_code, ev.initiator),
        (Some(reason), Some(code), Some("gateway")),
        "{ev:?}"
    );
}

#[tokio::test]
async fn framing_violations_close_with_1002() {
    let (_echo, mut gw) = gateway("").await;
    let cases: Vec<Vec<u8>> = vec![
        encode(0x81, b"unmasked", false),
        encode(0xC1, b"rsv1", true),
        encode(0xA1, b"rsv2", true),
        encode(0x91, b"rsv3", true),
        encode(0x83, b"reserved opcode", true),
        encode(0x8B, b"", true),
        encode(0x89, &[0u8; 126], true),
        encode(0x09, b"fragmented ping", true),
        encode(0x80, b"continuation first", true),
        [encode(0x01, b"a", true), encode(0x81, b"b", true)].concat(),
        // 2^63: the length's top bit.
        vec![0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4],
        encode(0x88, &[0x03], true),
        encode(0x88, &1004u16.to_be_bytes(), true),
    ];
    for bytes in cases {
        violation(&mut gw, &bytes, 1002, "protocol_error").await;
    }
}

#[tokio::test]
async fn invalid_utf8_closes_with_1007() {
    let (_echo, mut gw) = gateway("").await;
    violation(
        &mut gw,
        &encode(0x81, b"\xC0\xAF", true),
        1007,
        "invalid_utf8",
    )
    .await;
    let split = [
        encode(0x01, "κό".as_bytes(), true),
        encode(0x80, b"\xF4\x90\x80\x80", true),
    ]
    .concat();
    violation(&mut gw, &split, 1007, "invalid_utf8").await;
    violation(
        &mut gw,
        &encode(0x88, &[0x03, 0xE8, 0xFF], true),
        1007,
        "invalid_utf8",
    )
    .await;
}

#[tokio::test]
async fn oversized_frames_and_messages_close_with_1009_before_the_payload_arrives() {
    let (_echo, mut gw) = gateway(r#"max_frame = "1KiB""#).await;
    // Only the header of a 1 GiB frame: refused without waiting for its payload.
    let mut header = vec![0x82, 0xFF];
    header.extend_from_slice(&(1u64 << 30).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    violation(&mut gw, &header, 1009, "message_too_big").await;
    // A message of fragments under max_frame each, over max_message in all.
    let mut msg = encode(0x02, &[0u8; 1000], true);
    for _ in 0..1100 {
        msg.extend(encode(0x00, &[0u8; 1000], true));
    }
    violation(&mut gw, &msg, 1009, "message_too_big").await;
}

/// A client still sending when its message is refused gets the close frame
/// and a clean end, not a reset: the gateway half-closes, then reads and
/// discards the rest before it closes the socket. Closing with those bytes
/// unread would reset the connection, and a client blocked in its write
/// would see only the reset (the auditor's message-size probe did, now and
/// then).
#[tokio::test]
async fn a_client_still_sending_gets_its_close_frame_not_a_reset() {
    let (_echo, mut gw) = gateway(r#"max_frame = "1KiB""#).await;
    let mut c = open(&gw).await;
    // One 32 MiB frame, written whole: refused at its header, long before
    // its last byte is written.
    c.send_frame(0x82, &vec![0u8; 32 << 20], true).await;
    let close = c.read_close().await;
    assert_eq!(
        (close.close_code(), close.close_reason().as_str()),
        (Some(1009), "message_too_big")
    );
    assert!(c.ends_cleanly().await, "a FIN after the close frame");
    drop(c);
    let ev = gw.close_event().await;
    assert_eq!(
        (ev.reason, ev.close_code),
        (Some("message_too_big"), Some(1009))
    );
    assert!(
        ev.bytes_in.is_some_and(|n| n >= 32 << 20),
        "every byte was read, to be discarded: {ev:?}"
    );
}

/// A client that broke a rule and then neither sends nor closes is not
/// read for long: its leg is closed after a second of quiet, well before
/// the closing deadline (5 s).
#[tokio::test]
async fn a_quiet_client_that_broke_a_rule_is_closed_after_a_second() {
    let (_echo, mut gw) = gateway("").await;
    let mut c = open(&gw).await;
    c.send_frame(0x81, b"\xC0\xAF", true).await;
    assert_eq!(c.read_close().await.close_code(), Some(1007));
    // The client keeps its socket open and says nothing more.
    let ev = gw.close_event().await;
    assert_eq!(ev.reason, Some("invalid_utf8"));
    let ms = ev.duration_ms;
    assert!((1000..5000).contains(&ms), "closed after {ms} ms");
    assert!(c.ends_cleanly().await);
}

#[tokio::test]
async fn pings_are_answered_and_closes_relayed_with_codes_intact() {
    let (_echo, mut gw) = gateway("").await;
    let mut c = open(&gw).await;
    c.send_frame(0x89, b"are you there", true).await;
    let pong = c.read_frame().await.unwrap();
    assert_eq!(
        (pong.opcode(), pong.payload.as_slice(), pong.masked),
        (0xA, &b"are you there"[..], false)
    );
    // Every ping of a burst is answered, in order.
    for i in 0..10u8 {
        c.send_frame(0x89, &[i], true).await;
    }
    for i in 0..10u8 {
        let pong = c.read_frame().await.unwrap();
        assert_eq!((pong.opcode(), pong.payload.as_slice()), (0xA, &[i][..]));
    }
    // Control frames between fragments are allowed.
    c.send_frame(0x01, b"frag", true).await;
    c.send_frame(0x89, b"", true).await;
    c.send_frame(0x80, b"mented", true).await;
    assert_eq!(c.read_frame().await.unwrap().opcode(), 0xA);
    assert_eq!(c.read_data().await.payload, b"fragmented");
    c.send_frame(
        0x88,
        &[&4321u16.to_be_bytes()[..], b"bye now"].concat(),
        true,
    )
    .await;
    let close = c.read_close().await;
    assert_eq!(
        (close.close_code(), close.close_reason().as_str()),
        (Some(4321), "bye now")
    );
    assert!(c.ends().await);
    let ev = gw.close_event().await;
    assert_eq!(
        (ev.reason, ev.close_code, ev.initiator),
        (Some("client_closed"), Some(4321), Some("client"))
    );
}

#[tokio::test]
async fn an_upstream_close_reaches_the_client_and_the_answer_goes_back() {
    let (_echo, mut gw) = gateway("").await;
    let mut c = open(&gw).await;
    c.send_text("close:4001").await;
    let close = c.read_close().await;
    assert_eq!(close.close_code(), Some(4001));
    c.send_frame(0x88, &4001u16.to_be_bytes(), true).await;
    assert!(c.ends().await);
    let ev = gw.close_event().await;
    assert_eq!(
        (ev.reason, ev.close_code, ev.initiator),
        (Some("upstream_closed"), Some(4001), Some("upstream"))
    );
}

#[tokio::test]
async fn after_a_closing_handshake_both_sockets_end_with_a_fin() {
    let mut raw = Raw::start().await;
    let (mut gw, mut c, mut up) = client_closing_to_raw(&mut raw).await;
    let forwarded = up.read_close().await;
    assert_eq!(
        (forwarded.close_code(), forwarded.masked),
        (Some(1000), true)
    );
    up.send_frame(0x88, &1000u16.to_be_bytes(), false).await;
    assert_eq!(c.read_close().await.close_code(), Some(1000));
    // The gateway closes both sockets: an orderly end, not a reset.
    assert!(
        c.ends_cleanly().await,
        "the client's socket was not closed cleanly"
    );
    assert!(
        up.ends_cleanly().await,
        "the upstream's socket was not closed cleanly"
    );
    assert_eq!(gw.close_event().await.reason, Some("client_closed"));
}

#[tokio::test]
async fn an_upstream_that_never_answers_a_close_is_dropped_at_the_closing_deadline() {
    // The client's close arrives on a socket's wake, and the closing
    // deadline it starts (5 s) still ends the connection: both sockets are
    // closed, though the upstream never answered.
    let mut raw = Raw::start().await;
    let (mut gw, mut c, mut up) = client_closing_to_raw(&mut raw).await;
    let sent = tokio::time::Instant::now();
    assert_eq!(up.read_close().await.close_code(), Some(1000));
    // The upstream holds its socket open and never answers.
    assert!(
        up.ends_cleanly().await,
        "the upstream's socket was not closed at the deadline"
    );
    assert!(
        sent.elapsed() >= wsgate_gateway::relay::CLOSE_TIMEOUT,
        "closed before the deadline: {:?}",
        sent.elapsed()
    );
    assert!(c.ends().await, "the client's socket was not closed");
    assert_eq!(gw.close_event().await.reason, Some("client_closed"));
}

#[tokio::test]
async fn a_large_message_streams_through() {
    let (_echo, gw) = gateway("").await;
    let mut c = open(&gw).await;
    let text = "w".repeat(1 << 20);
    c.send_text(&text).await;
    let frame = c.read_data().await;
    assert_eq!(frame.payload.len(), 1 << 20);
    assert!(frame.payload.iter().all(|&b| b == b'w'));
}

#[tokio::test]
async fn idle_connections_are_closed_with_1001() {
    let (_echo, mut gw) = gateway(r#"idle_timeout = "300ms""#).await;
    let mut c = open(&gw).await;
    let close = c.read_close().await;
    assert_eq!(
        (close.close_code(), close.close_reason().as_str()),
        (Some(1001), "idle_timeout")
    );
    c.send_frame(0x88, &1001u16.to_be_bytes(), true).await;
    assert!(c.ends().await);
    assert_eq!(gw.close_event().await.reason, Some("idle_timeout"));
}

#[tokio::test]
async fn a_client_that_never_answers_pings_is_closed() {
    let (_echo, mut gw) = gateway(r#"ping_interval = "200ms""#).await;
    let mut c = open(&gw).await;
    let ping = c.read_frame().await.unwrap();
    assert_eq!(ping.opcode(), 0x9);
    // No pong: by the next ping the client counts as gone.
    let close = c.read_close().await;
    assert_eq!(close.close_reason(), "pong_timeout");
    // A peer that stopped answering is not waited on for its close frame.
    assert!(c.ends().await);
    assert_eq!(gw.close_event().await.reason, Some("pong_timeout"));
}

#[tokio::test]
async fn a_client_that_answers_pings_stays() {
    let (_echo, mut gw) = gateway(r#"ping_interval = "100ms""#).await;
    let mut c = open(&gw).await;
    for _ in 0..4 {
        let ping = c.read_frame().await.unwrap();
        assert_eq!(ping.opcode(), 0x9);
        c.send_frame(0x8A, &ping.payload, true).await;
    }
    c.send_text("alive").await;
    assert_eq!(c.read_data().await.payload, b"alive");
    c.send_frame(0x88, &1000u16.to_be_bytes(), true).await;
    assert_eq!(c.read_close().await.close_code(), Some(1000));
    assert_eq!(gw.close_event().await.reason, Some("client_closed"));
}

#[tokio::test]
async fn connections_end_at_their_max_lifetime() {
    let (_echo, mut gw) = gateway(r#"max_lifetime = "300ms""#).await;
    let mut c = open(&gw).await;
    assert_eq!(c.read_close().await.close_reason(), "lifetime_exceeded");
    c.send_frame(0x88, &1001u16.to_be_bytes(), true).await;
    assert!(c.ends().await);
    assert_eq!(gw.close_event().await.close_code, Some(1001));
}

#[tokio::test]
async fn an_upstream_that_breaks_framing_is_cut_off_with_1011() {
    let mut raw = Raw::start().await;
    let mut gw = TestGateway::start(&common::config(raw.addr, "", "")).await;
    let (mut c, mut up) = open_to_raw(&gw, &mut raw).await;
    // A server must not mask its frames.
    use tokio::io::AsyncWriteExt;
    up.stream
        .write_all(&encode(0x81, b"masked by a server", true))
        .await
        .unwrap();
    let close = c.read_close().await;
    assert_eq!(
        (close.close_code(), close.close_reason().as_str()),
        (Some(1011), "upstream_error")
    );
    c.send_frame(0x88, &1011u16.to_be_bytes(), true).await;
    assert!(c.ends().await);
    let ev = gw.close_event().await;
    assert_eq!(
        (ev.reason, ev.initiator),
        (Some("upstream_error"), Some("upstream"))
    );
}

#[tokio::test]
async fn an_upstream_that_vanishes_gets_the_client_a_1011() {
    let mut raw = Raw::start().await;
    let mut gw = TestGateway::start(&common::config(raw.addr, "", "")).await;
    let (mut c, up) = open_to_raw(&gw, &mut raw).await;
    drop(up);
    assert_eq!(c.read_close().await.close_reason(), "upstream_gone");
    c.send_frame(0x88, &1011u16.to_be_bytes(), true).await;
    assert!(c.ends().await);
    assert_eq!(gw.close_event().await.reason, Some("upstream_gone"));
}

#[tokio::test]
async fn one_bad_client_does_not_disturb_another() {
    let (_echo, mut gw) = gateway("").await;
    let mut good = open(&gw).await;
    let mut bad = open(&gw).await;
    bad.send_raw(&encode(0x83, b"x", true)).await;
    assert_eq!(bad.read_close().await.close_code(), Some(1002));
    good.send_text("unaffected").await;
    assert_eq!(good.read_data().await.payload, b"unaffected");
    assert_eq!(gw.close_event().await.reason, Some("protocol_error"));
}

/// Regression: a pump that answered a ping by writing to its own peer could
/// wait for that peer's writer while the other pump held it, blocked on a peer
/// that had stopped reading: both directions stopped for good. Here the
/// upstream stops reading while the client floods it, then pings and sends a
/// message; the message must still reach the client.
#[tokio::test]
async fn a_ping_from_a_saturated_peer_does_not_stall_the_other_direction() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut raw = Raw::start().await;
    let config = common::config(raw.addr, "", "")
        .replace(r#"max_message = "1MiB""#, r#"max_message = "64MiB""#);
    let gw = TestGateway::start(&config).await;
    let mut tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let request = format!(
        "GET /chat HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\nOrigin: https://app.example.com\r\n\r\n",
        wsgate_testkit::client::KEY
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut up = raw.accept().await;
    up.stream
        .write_all(up.switching_protocols().as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tcp.read_u8().await.unwrap());
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    let (mut client_read, mut client_write) = tcp.into_split();
    // The client floods; the upstream reads nothing, so every buffer on the
    // way fills and the gateway's write to the upstream blocks for good.
    let frame = encode(0x82, &vec![0u8; 48 << 20], true);
    let (progress, mut progressed) = tokio::sync::watch::channel(0usize);
    let flood = tokio::spawn(async move {
        for (i, chunk) in frame.chunks(64 << 10).enumerate() {
            if client_write.write_all(chunk).await.is_err() {
                break;
            }
            let _ = progress.send(i);
        }
        client_write
    });
    // Stalled: no progress for a while. Misjudging this can only let the test
    // pass on a broken relay, never fail a correct one.
    while let Ok(changed) =
        tokio::time::timeout(std::time::Duration::from_millis(200), progressed.changed()).await
    {
        changed.unwrap();
    }
    up.stream
        .write_all(&encode(0x89, b"ping", false))
        .await
        .unwrap();
    up.stream
        .write_all(&encode(0x81, b"hello", false))
        .await
        .unwrap();
    // The client skips binary-free frames until it sees the text.
    let mut buf = Vec::new();
    let found = tokio::time::timeout(wsgate_testkit::WAIT, async {
        loop {
            let mut chunk = [0u8; 4096];
            let n = client_read.read(&mut chunk).await.unwrap();
            assert!(n > 0, "gateway closed the client");
            buf.extend_from_slice(&chunk[..n]);
            if buf.windows(7).any(|w| w == b"\x81\x05hello") {
                return;
            }
        }
    })
    .await;
    assert!(
        found.is_ok(),
        "the upstream's message never reached the client: the relay stalled"
    );
    flood.abort();
}

/// Bytes that arrive with an HTTP head, in the same read, are relayed first,
/// not lost: an upstream that greets in the segment carrying its 101, a
/// client that sends its first message without waiting for the 101. (The
/// relay takes plain TCP streams back from hyper, and with them what hyper
/// had read past the head.)
#[tokio::test]
async fn bytes_that_arrive_with_the_handshake_are_relayed_first() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut raw = Raw::start().await;
    let gw = TestGateway::start(&common::config(raw.addr, "", "")).await;
    let mut c = RawClient::connect(gw.addr).await;
    let mut request = format!(
        "GET /chat HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\nOrigin: https://app.example.com\r\n\r\n",
        wsgate_testkit::client::KEY
    )
    .into_bytes();
    request.extend(encode(0x81, b"early", true));
    c.send_raw(&request).await;
    let mut up = raw.accept().await;
    let mut answer = up.switching_protocols().into_bytes();
    answer.extend(encode(0x81, b"welcome", false));
    up.stream.write_all(&answer).await.unwrap();
    assert_eq!(c.read_reply().await.status, 101);
    assert_eq!(c.read_data().await.payload, b"welcome");
    // The client's first message reaches the upstream, masked afresh.
    let mut got = [0u8; 2 + 4 + 5];
    tokio::time::timeout(wsgate_testkit::WAIT, up.stream.read_exact(&mut got))
        .await
        .expect("the client's early message never reached the upstream")
        .unwrap();
    assert_eq!(got[..2], [0x81, 0x85]);
    let payload: Vec<u8> = (0..5).map(|i| got[6 + i] ^ got[2 + i % 4]).collect();
    assert_eq!(payload, b"early");
}
