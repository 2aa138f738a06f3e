//! Shared config text for the gateway's integration tests.
#![allow(dead_code, unreachable_pub)]
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::net::SocketAddr;

use wsgate_testkit::client::RawClient;
use wsgate_testkit::gateway::TestGateway;
use wsgate_testkit::upstream::{Raw, RawConn};

/// A gateway config with one loopback listener and one route to `upstream`.
/// `route_extra` goes inside the route; `limits` inside its `[route.limits]`.
pub fn config(upstream: SocketAddr, route_extra: &str, limits: &str) -> String {
    format!(
        r#"
[[listener]]
bind = "127.0.0.1:0"
handshake_timeout = "2s"

[shutdown]
grace = "5s"

[[route]]
path = "/chat"
upstream = "ws://{upstream}/chat"
origins = ["https://app.example.com", "https://*.example.org"]
auth = "none"
{route_extra}

[route.limits]
max_message = "1MiB"
{limits}
"#
    )
}

/// The allow-listed browser origin as a request header.
pub const ORIGIN: (&str, &str) = ("Origin", "https://app.example.com");

/// A client through the gateway to a raw upstream that answers a correct
/// 101; the upstream's side comes back for the test to drive.
pub async fn open_to_raw(gw: &TestGateway, raw: &mut Raw) -> (RawClient, RawConn) {
    use tokio::io::AsyncWriteExt;
    let client = tokio::spawn({
        let addr = gw.addr;
        async move {
            let mut c = RawClient::connect(addr).await;
            assert_eq!(c.handshake("/chat", &[ORIGIN]).await.status, 101);
            c
        }
    });
    let mut up = raw.accept().await;
    let answer = up.switching_protocols();
    up.stream.write_all(answer.as_bytes()).await.unwrap();
    (client.await.unwrap(), up)
}

/// The process's peak resident set (`VmHWM`), in bytes: for the tests that
/// bound memory, each alone in its binary so no other test moves the peak.
pub fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}
