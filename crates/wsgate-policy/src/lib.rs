//! wsgate's decisions, pure and free of I/O.
//!
//! - [`reason`]: the vocabulary of refusals and the one table from a
//!   [`Reason`] to what the client is told (HTTP status or close code).
//! - [`route`]: which route a request path selects.
//! - [`admit`]: the admission decision for a handshake, in DESIGN.md's order
//!   (route, host, origin, credentials, limits), decided once before any 101.
//!   [`admit()`] runs the checks that need nothing but the request and yields
//!   a [`Checked`] naming the credentials to verify; [`Checked::finish`]
//!   takes the verification's outcome, applies the cross-site credentials
//!   rule, and yields an [`Admitted`]. Only `finish` makes one, and the
//!   gateway's upstream stage takes nothing else: a connection cannot reach
//!   an upstream without passing every check.
//! - [`credentials`]: what a request presents, and which of it is ambient.
//! - [`verify`]: JWT and Basic verification, with the clock passed in.
//! - [`limits`]: one connection's message and byte rates, and the address
//!   (IPv6: the prefix) a client is counted under.
//! - [`messages`]: the route's rules for each message a client sends.
//! - [`forwarded`]: the client behind a trusted proxy, from its
//!   `X-Forwarded-For`.
//!
//! A Rust WebSocket server can embed this crate to make the same decisions.

pub mod admit;
pub mod credentials;
pub mod forwarded;
pub mod limits;
pub mod messages;
pub mod reason;
pub mod route;
pub mod verify;

pub use admit::{Admitted, Checked, Rechecked, Refused, Request, Seen, Verified, admit, recheck};
pub use reason::{Reason, Response};
pub use route::{NoRoute, Router};
