//! A client flooding a connection whose upstream reads nothing costs the
//! gateway no more than its buffers: once what it holds for the upstream is
//! backed up, it stops reading the client, the client's writes stall in the
//! kernel's socket buffers, and the process's peak resident memory grows by
//! far less than what the client tried to send. When the upstream reads
//! again, every message arrives whole and in order.
//!
//! Alone in its test binary, so no other test's allocations move the peak.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::{open_to_raw, peak_rss};
use wsgate_testkit::client::{RawClient, encode};
use wsgate_testkit::gateway::TestGateway;
use wsgate_testkit::upstream::Raw;

#[tokio::test]
async fn a_client_flooding_a_stalled_upstream_is_held_back_with_bounded_memory() {
    // 128 MiB in all: more than the loopback socket buffers on the way can
    // take (here at most 4 MiB to send and 32 MiB to receive, each way), so
    // the flood must stall unless the gateway keeps what the kernel won't.
    const MESSAGE: usize = 512 << 10;
    const MESSAGES: usize = 256;
    const ALLOWED_GROWTH: u64 = 16 << 20;
    let mut raw = Raw::start().await;
    let gw = TestGateway::start(&common::config(raw.addr, "", "")).await;
    let (mut client, up) = open_to_raw(&gw, &mut raw).await;
    let message = encode(0x82, &vec![0u8; MESSAGE], true);
    let before = peak_rss();
    let (progress, mut progressed) = tokio::sync::watch::channel(0usize);
    let flood = tokio::spawn(async move {
        for sent in 1..=MESSAGES {
            client.send_raw(&message).await;
            let _ = progress.send(sent);
        }
        client
    });
    // Stalled: no progress for a while, or the flood finished. Misjudging a
    // slow gateway as stalled can only fail the test on a correct relay if
    // the gateway really held the flood in memory.
    while let Ok(Ok(())) =
        tokio::time::timeout(Duration::from_millis(300), progressed.changed()).await
    {}
    let sent = *progressed.borrow();
    assert!(
        sent < MESSAGES,
        "the gateway took all {} MiB from a client whose upstream reads nothing",
        (MESSAGES * MESSAGE) >> 20
    );
    let grown = peak_rss().saturating_sub(before);
    assert!(
        grown < ALLOWED_GROWTH,
        "peak memory grew by {} MiB while the client pushed {} MiB at a stalled upstream",
        grown >> 20,
        (sent * MESSAGE) >> 20
    );
    // The upstream reads again: the client is read again, and nothing was
    // lost or reordered while it was held back.
    let mut upstream = RawClient::over(up.stream);
    for i in 0..MESSAGES {
        let frame = upstream.read_data().await;
        assert_eq!(
            (frame.first, frame.masked, frame.payload.len()),
            (0x82, true, MESSAGE),
            "message {i}"
        );
        assert!(frame.payload.iter().all(|&b| b == 0), "message {i}");
    }
    let mut client = flood.await.unwrap();
    client.send_frame(0x88, &1000u16.to_be_bytes(), true).await;
    assert_eq!(upstream.read_close().await.close_code(), Some(1000));
}
