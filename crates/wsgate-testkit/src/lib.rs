//! Test support for wsgate: real components on ephemeral loopback ports.
//!
//! - [`upstream`]: a real WebSocket echo server (tokio-tungstenite, an
//!   implementation independent of wsgate's), and upstreams that misbehave
//!   in the ways a gateway must catch.
//! - [`client`]: a raw client that writes any bytes, including frames no
//!   library would send, and reads what comes back.
//! - [`deflate`]: payloads compressed as a permessage-deflate client sends them.
//! - [`pki`]: a CA and certificates made in the test.
//! - [`gateway`]: wsgate in-process on 127.0.0.1:0, with its audit events.
//! - [`jwt`]: tokens signed in the test, with keys made in the test.
//! - [`auth_server`]: a forward-auth service that judges cookie sessions.
//! - [`vulnerable`]: an endpoint with the flaws of real CVEs, for the auditor to find.
//! - [`redis`]: a real `redis-server` on a free loopback port.
//! - [`process`]: the `wsgate` binary as a child process, for clusters and crashes.
//!
//! Nothing here mocks the network: every test talks over real sockets.

// Test support: a panic with a message is how it reports a broken expectation.
#![allow(clippy::unwrap_used, clippy::result_large_err)]

pub mod auth_server;
pub mod client;
pub mod deflate;
pub mod gateway;
pub mod http_upstream;
pub mod jwt;
pub mod pki;
pub mod process;
pub mod redis;
pub mod upstream;
pub mod vulnerable;

/// How long a test waits for something that should happen at once before it
/// fails. A deadline for failing, never a sleep for synchronising.
pub const WAIT: std::time::Duration = std::time::Duration::from_secs(10);
