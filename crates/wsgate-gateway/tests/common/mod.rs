//! Shared config text for the gateway's integration tests.
#![allow(dead_code, unreachable_pub)]
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::net::SocketAddr;

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
