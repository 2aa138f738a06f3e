//! Allocations per relayed message, counted: the relay path should
//! allocate nothing in steady state.
//!
//! wsgate runs in this process in front of the harness's echo upstream; one
//! client keeps a batch of text messages in flight through it (decoded,
//! UTF-8 checked, re-masked, echoed, decoded again on the way back). After
//! a warm-up, every allocation in the process is counted (dhat's global
//! allocator) while 20,000 more messages make the round trip: the gateway's,
//! the client's and the upstream's together, so the figure is an upper
//! bound for the gateway's.
//!
//! A route with `json = true` is counted too, as the control: it assembles
//! each text message before judging it, which allocates, so it must show
//! at least one allocation per message, or the counting is broken.
//!
//! Run: `cargo bench -p wsgate-bench --bench allocations`. It fails when a
//! streamed message costs more than [`MAX_PER_MESSAGE`] allocations on
//! average, or when the control shows none: a count, not a speed, so CI
//! runs it too.
#![allow(missing_docs, clippy::unwrap_used)]

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wsgate_bench::wire::{self, FrameReader, Piece, Request};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Messages in flight at once.
const BATCH: usize = 8;
/// Messages before counting starts: the buffers, the pool and tokio's
/// internals reach their steady size.
const WARM_UP: usize = 4_000;
/// Messages counted.
const COUNTED: usize = 20_000;
/// The most an average message may cost. Not zero: a timer wheel level or
/// a run-queue slab may still grow once in a while, in any process.
const MAX_PER_MESSAGE: f64 = 0.01;

fn main() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (size, route) in [(64, "/stream"), (16 * 1024, "/stream"), (64, "/json")] {
        let (allocations, bytes) = runtime.block_on(count(size, route));
        let per = allocations as f64 / COUNTED as f64;
        println!(
            "allocations/{size} B text via {route}: {allocations} allocations ({bytes} bytes) \
             for {COUNTED} echoed messages: {per:.4} per message"
        );
        if route == "/json" {
            assert!(
                per >= 1.0,
                "the control counted {per} allocations per assembled message: the counter is broken"
            );
        } else {
            assert!(
                per <= MAX_PER_MESSAGE,
                "{size} B: {per} allocations per relayed message (at most {MAX_PER_MESSAGE})"
            );
        }
    }
}

/// Allocations and bytes allocated while [`COUNTED`] messages of `size`
/// bytes make the round trip through `route`.
async fn count(size: usize, route: &str) -> (u64, u64) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo = listener.local_addr().unwrap();
    tokio::spawn(wsgate_bench::echo::serve(listener, None));
    // Two routes to the same upstream: one streams, one assembles (the control).
    let route_toml = |path: &str, rules: &str| {
        format!(
            r#"
[[route]]
path = "{path}"
upstream = "ws://{echo}/"
origins = ["https://app.example.com"]
auth = "none"

[route.limits]
max_message = "64KiB"
idle_timeout = "off"
ping_interval = "off"
{rules}"#
        )
    };
    let config = format!(
        "[[listener]]\nbind = \"127.0.0.1:0\"\n{}{}",
        route_toml("/stream", ""),
        route_toml("/json", "\n[route.messages]\njson = true\n")
    );
    let gateway = wsgate_testkit::gateway::TestGateway::start(&config).await;
    let mut stream = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let request = Request {
        host: gateway.addr.to_string(),
        path: route.into(),
        origin: Some("https://app.example.com".into()),
        bearer: None,
    };
    let early = wire::client_handshake(&mut stream, &request).await.unwrap();
    assert!(early.is_empty());
    // A JSON string, so the control route's rule passes it.
    let mut text = vec![b'x'; size];
    text[0] = b'"';
    text[size - 1] = b'"';
    let batch = wire::client_frame(0x1, &text).repeat(BATCH);
    let mut client = Client {
        stream,
        batch,
        buf: vec![0; 256 * 1024],
        filled: 0,
        frames: FrameReader::default(),
        fin: false,
    };
    client.round_trips(WARM_UP / BATCH).await;
    let before = dhat::HeapStats::get();
    client.round_trips(COUNTED / BATCH).await;
    let after = dhat::HeapStats::get();
    drop(client);
    let _ = tokio::time::timeout(Duration::from_secs(5), gateway.shutdown()).await;
    (
        after.total_blocks - before.total_blocks,
        after.total_bytes - before.total_bytes,
    )
}

/// A client that sends a batch, then reads the batch's echoes, reusing its buffers.
struct Client {
    stream: tokio::net::TcpStream,
    batch: Vec<u8>,
    buf: Vec<u8>,
    filled: usize,
    frames: FrameReader,
    fin: bool,
}

impl Client {
    async fn round_trips(&mut self, n: usize) {
        for _ in 0..n {
            self.stream.write_all(&self.batch).await.unwrap();
            let mut echoed = 0;
            while echoed < BATCH {
                echoed += self.read_messages().await;
            }
        }
    }

    /// Reads once; returns the whole messages that completed.
    async fn read_messages(&mut self) -> usize {
        let n = self
            .stream
            .read(&mut self.buf[self.filled..])
            .await
            .unwrap();
        assert!(n > 0, "the gateway closed the connection");
        self.filled += n;
        let (mut pos, mut done) = (0, 0);
        loop {
            match self.frames.next(&self.buf[pos..self.filled]) {
                Piece::NeedMore => break,
                Piece::Header(h) => {
                    assert_eq!(h.opcode, 0x1, "only text echoes are expected");
                    self.fin = h.fin;
                    pos += h.size;
                }
                Piece::Payload { len, end, .. } => {
                    pos += len;
                    done += usize::from(end && self.fin);
                }
            }
        }
        self.buf.copy_within(pos..self.filled, 0);
        self.filled -= pos;
        done
    }
}
