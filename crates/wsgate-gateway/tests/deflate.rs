//! permessage-deflate over real sockets: negotiated per route, client
//! messages inflated (whole or fragmented) before the upstream or any rule
//! sees them, with `max_message` bounding the inflated size.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::ORIGIN;
use wsgate_testkit::client::{RawClient, encode};
use wsgate_testkit::deflate::{compress, zeros};
use wsgate_testkit::gateway::TestGateway;
use wsgate_testkit::upstream::Echo;

const OFFER: (&str, &str) = (
    "Sec-WebSocket-Extensions",
    "permessage-deflate; client_max_window_bits",
);

async fn gateway(route_extra: &str, limits: &str, messages: &str) -> (Echo, TestGateway) {
    let echo = Echo::start().await;
    let config = common::config(echo.addr, route_extra, limits) + messages;
    let gw = TestGateway::start(&config).await;
    (echo, gw)
}

async fn open(gw: &TestGateway) -> RawClient {
    let mut c = RawClient::connect(gw.addr).await;
    let reply = c.handshake("/chat", &[ORIGIN, OFFER]).await;
    assert_eq!(reply.status, 101);
    assert_eq!(
        reply.header("sec-websocket-extensions"),
        Some("permessage-deflate; client_no_context_takeover")
    );
    c
}

async fn closed_with(c: &mut RawClient, gw: &mut TestGateway, code: u16, reason: &str) {
    let close = c.read_close().await;
    assert_eq!(
        (close.close_code(), close.close_reason().as_str()),
        (Some(code), reason)
    );
    c.send_frame(0x88, &code.to_be_bytes(), true).await;
    assert_eq!(gw.close_event().await.reason, Some(reason));
}

#[tokio::test]
async fn compressed_messages_reach_the_upstream_inflated() {
    let (_echo, gw) = gateway("compression = true", "", "").await;
    let mut c = open(&gw).await;
    let text = "héllo, compressed world! ".repeat(2000);
    c.send_frame(0xC1, &compress(text.as_bytes()), true).await;
    // The echo got plain text (it knows nothing of compression) and the
    // gateway sends its answer uncompressed: RSV1 clear.
    let back = c.read_data().await;
    assert_eq!(back.payload, text.as_bytes());
    // Fragmented: RSV1 on the first frame only, the compressed bytes split anywhere.
    let binary: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    let z = compress(&binary);
    let (a, b) = z.split_at(z.len() / 3);
    c.send_frame(0x42, a, true).await;
    c.send_frame(0x89, b"mid", true).await;
    c.send_frame(0x80, b, true).await;
    assert_eq!(c.read_frame().await.unwrap().opcode(), 0xA);
    assert_eq!(c.read_data().await.payload, binary);
    // Uncompressed messages still pass on the same connection.
    c.send_text("plain").await;
    assert_eq!(c.read_data().await.payload, b"plain");
}

#[tokio::test]
async fn a_route_without_compression_declines_and_rsv1_is_a_protocol_error() {
    let (_echo, mut gw) = gateway("", "", "").await;
    let mut c = RawClient::connect(gw.addr).await;
    let reply = c.handshake("/chat", &[ORIGIN, OFFER]).await;
    assert_eq!(reply.status, 101);
    assert_eq!(reply.header("sec-websocket-extensions"), None);
    gw.handshake_event().await;
    c.send_frame(0xC1, &compress(b"sneaky"), true).await;
    closed_with(&mut c, &mut gw, 1002, "protocol_error").await;
}

#[tokio::test]
async fn a_decompression_bomb_is_stopped_at_max_message_of_1mib_with_1009() {
    let (_echo, mut gw) = gateway("compression = true", "", "").await;
    let mut c = open(&gw).await;
    let bomb = zeros(50 << 20);
    assert!(bomb.len() < 100 << 10, "{} bytes", bomb.len());
    c.send_frame(0xC2, &bomb, true).await;
    closed_with(&mut c, &mut gw, 1009, "message_too_big").await;
}

#[tokio::test]
async fn inflated_text_must_be_utf8_and_rules_judge_the_inflated_message() {
    let (_echo, mut gw) = gateway(
        "compression = true",
        "",
        "\n[route.messages]\njson = true\n",
    )
    .await;
    let mut c = open(&gw).await;
    c.send_frame(0xC1, &compress(br#"{"ok": true}"#), true)
        .await;
    assert_eq!(c.read_data().await.payload, br#"{"ok": true}"#);
    c.send_frame(0xC1, &compress(b"not json"), true).await;
    closed_with(&mut c, &mut gw, 1008, "invalid_json").await;

    let (_echo, mut gw) = gateway("compression = true", "", "").await;
    let mut c = open(&gw).await;
    c.send_frame(0xC1, &compress(b"\xff\xfe broken"), true)
        .await;
    closed_with(&mut c, &mut gw, 1007, "invalid_utf8").await;
    // Corrupt DEFLATE data fails the connection.
    let mut c = open(&gw).await;
    c.send_raw(&encode(0xC2, &[0xff; 32], true)).await;
    closed_with(&mut c, &mut gw, 1002, "protocol_error").await;
}
