//! A zero-downtime upgrade, as docs/operations.md describes it: the new
//! process binds the same address beside the old one (`reuse_port`), the
//! old one is sent SIGTERM, closes its listener at once and lets its open
//! connections run on (`[shutdown] drain`) while the new one takes every
//! new connection; the old one exits once its last connection has ended.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::Path;
use std::process::Command;

use wsgate_testkit::client::RawClient;
use wsgate_testkit::process::GatewayProcess;
use wsgate_testkit::upstream::Echo;

const BIN: &str = env!("CARGO_BIN_EXE_wsgate");

fn config(bind: &str, upstream: std::net::SocketAddr) -> String {
    format!(
        r#"
[shutdown]
drain = "60s"

[[listener]]
bind = "{bind}"
reuse_port = true

[[route]]
path = "/chat"
upstream = "ws://{upstream}/chat"
origins = ["https://app.example.com"]
auth = "none"
"#
    )
}

async fn open(addr: std::net::SocketAddr) -> RawClient {
    let mut c = RawClient::connect(addr).await;
    let reply = c
        .handshake("/chat", &[("Origin", "https://app.example.com")])
        .await;
    assert_eq!(reply.status, 101, "{}", reply.body);
    c
}

async fn echoes(c: &mut RawClient, text: &str) {
    c.send_text(text).await;
    assert_eq!(c.read_data().await.payload, text.as_bytes());
}

#[tokio::test]
async fn a_new_process_beside_the_old_one_takes_over_without_dropping_a_connection() {
    let echo = Echo::start().await;
    let dir = tempfile::tempdir().unwrap();
    let old_config = dir.path().join("old.toml");
    std::fs::write(&old_config, config("127.0.0.1:0", echo.addr)).unwrap();
    let mut old = GatewayProcess::spawn(Path::new(BIN), &old_config, &[]).await;
    let mut on_old = open(old.addr).await;
    echoes(&mut on_old, "before the upgrade").await;

    // The new version binds the very address the old one holds.
    let new_config = dir.path().join("new.toml");
    std::fs::write(&new_config, config(&old.addr.to_string(), echo.addr)).unwrap();
    let mut new = GatewayProcess::spawn(Path::new(BIN), &new_config, &[]).await;
    assert_eq!(new.addr, old.addr);

    wsgate_testkit::process::signal(old.pid(), "TERM");
    old.wait_log("listeners closed; draining open connections")
        .await;

    // Every new connection now reaches the new process.
    let mut on_new = open(old.addr).await;
    let ev = new.event(|e| e["event"] == "handshake").await;
    assert_eq!(ev["decision"], "admitted");
    echoes(&mut on_new, "after the upgrade").await;
    // The old process still relays the connection it has.
    echoes(&mut on_old, "still on the old process").await;

    // Its last connection ends: the old process exits, well before the drain is over.
    on_old.send_frame(0x88, &1000u16.to_be_bytes(), true).await;
    assert_eq!(on_old.read_close().await.close_code(), Some(1000));
    assert_eq!(old.exited().await, Some(0));
    assert!(
        !old.stdout().contains("after the upgrade") && !old.log().contains("panicked"),
        "{}",
        old.log()
    );
    echoes(&mut on_new, "the new process carries on").await;
}

#[tokio::test]
async fn without_reuse_port_a_second_process_cannot_bind_the_address() {
    let echo = Echo::start().await;
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.toml");
    std::fs::write(&first, config("127.0.0.1:0", echo.addr)).unwrap();
    let running = GatewayProcess::spawn(Path::new(BIN), &first, &[]).await;
    let second = dir.path().join("second.toml");
    let text = config(&running.addr.to_string(), echo.addr).replace("reuse_port = true", "");
    std::fs::write(&second, text).unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&second)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot bind {}", running.addr)),
        "{stderr}"
    );
}
