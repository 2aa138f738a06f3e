//! A decompression bomb costs the gateway no more than its limits: 200 MiB
//! of zeros, sent as about 200 KiB compressed, are stopped at `max_message`
//! (1 MiB) with 1009, and the process's peak resident memory grows by far
//! less than the bomb's inflated size.
//!
//! Alone in its test binary, so no other test's allocations move the peak.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::{ORIGIN, peak_rss};
use wsgate_testkit::client::RawClient;
use wsgate_testkit::deflate::zeros;
use wsgate_testkit::gateway::TestGateway;
use wsgate_testkit::upstream::Echo;

#[tokio::test]
async fn a_bomb_is_refused_with_1009_and_bounded_peak_memory() {
    const INFLATED: usize = 200 << 20;
    const ALLOWED_GROWTH: u64 = 24 << 20;
    let bomb = zeros(INFLATED);
    assert!(bomb.len() < 256 << 10, "{} bytes", bomb.len());
    let echo = Echo::start().await;
    // Assembled for a JSON rule, the worst case: the message is held, not streamed.
    let config =
        common::config(echo.addr, "compression = true", "") + "\n[route.messages]\njson = true\n";
    let mut gw = TestGateway::start(&config).await;
    let mut c = RawClient::connect(gw.addr).await;
    let offer = ("Sec-WebSocket-Extensions", "permessage-deflate");
    assert_eq!(c.handshake("/chat", &[ORIGIN, offer]).await.status, 101);
    let before = peak_rss();
    c.send_frame(0xC1, &bomb, true).await;
    let close = c.read_close().await;
    assert_eq!(
        (close.close_code(), close.close_reason().as_str()),
        (Some(1009), "message_too_big")
    );
    c.send_frame(0x88, &1009u16.to_be_bytes(), true).await;
    assert_eq!(gw.close_event().await.reason, Some("message_too_big"));
    let grown = peak_rss().saturating_sub(before);
    assert!(
        grown < ALLOWED_GROWTH,
        "peak memory grew by {} MiB inflating a {} MiB bomb",
        grown >> 20,
        INFLATED >> 20
    );
}
