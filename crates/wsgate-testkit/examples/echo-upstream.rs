//! A WebSocket echo server to put wsgate in front of: `scripts/run-example`
//! and `scripts/conformance` start it.
//!
//! Usage: `echo-upstream ADDR` (port 0 picks a free port). Prints
//! `echo-upstream: listening on ADDR` once ready.

use std::io::Write;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Some(addr) = std::env::args().nth(1) else {
        anyhow::bail!("usage: echo-upstream ADDR   (e.g. 127.0.0.1:0)");
    };
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let echo = wsgate_testkit::upstream::Echo::serve(listener, Default::default());
    let _ = writeln!(
        std::io::stderr(),
        "echo-upstream: listening on {}",
        echo.addr
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
