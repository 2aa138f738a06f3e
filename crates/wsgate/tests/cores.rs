//! The runtime `wsgate serve` picks for the cores it is given: on one core
//! (here, pinned to one by `taskset`) a current-thread runtime, so the
//! process runs on its main thread alone; on more, a worker per core.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::Path;

use wsgate_testkit::client::RawClient;
use wsgate_testkit::process::GatewayProcess;
use wsgate_testkit::upstream::Echo;

const BIN: &str = env!("CARGO_BIN_EXE_wsgate");

fn config(upstream: std::net::SocketAddr) -> String {
    format!(
        r#"
[[listener]]
bind = "127.0.0.1:0"

[[route]]
path = "/chat"
upstream = "ws://{upstream}/chat"
origins = ["https://app.example.com"]
auth = "none"
"#
    )
}

/// The threads of process `pid`, from /proc.
fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .count()
}

#[tokio::test]
async fn on_one_core_the_gateway_serves_from_a_single_thread() {
    let echo = Echo::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wsgate.toml");
    std::fs::write(&path, config(echo.addr)).unwrap();
    let mut gw = GatewayProcess::spawn_pinned(Path::new(BIN), &path, &[], 0).await;

    let mut c = RawClient::connect(gw.addr).await;
    let reply = c
        .handshake("/chat", &[("Origin", "https://app.example.com")])
        .await;
    assert_eq!(reply.status, 101, "{}", reply.body);
    c.send_text("one core").await;
    assert_eq!(c.read_data().await.payload, b"one core");
    let refused = RawClient::connect(gw.addr)
        .await
        .handshake("/chat", &[("Origin", "https://evil.example")])
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let ev = gw.event(|e| e["decision"] == "refused").await;
    assert_eq!(ev["reason"], "origin_not_allowed");

    // A multi-threaded runtime would have a worker thread beside main.
    assert_eq!(threads(gw.pid()), 1, "{}", gw.log());
}

#[tokio::test]
async fn on_two_cores_the_gateway_runs_a_worker_per_core() {
    let cores = std::thread::available_parallelism().unwrap().get();
    assert!(
        cores >= 2,
        "this test needs a machine with two cores or more; this one has {cores}"
    );
    let echo = Echo::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wsgate.toml");
    std::fs::write(&path, config(echo.addr)).unwrap();
    let gw = GatewayProcess::spawn(Path::new(BIN), &path, &[]).await;
    let mut c = RawClient::connect(gw.addr).await;
    let reply = c
        .handshake("/chat", &[("Origin", "https://app.example.com")])
        .await;
    assert_eq!(reply.status, 101, "{}", reply.body);
    // main, and a worker for each core (tokio starts them all at once).
    assert!(threads(gw.pid()) > cores, "{}", gw.log());
}
