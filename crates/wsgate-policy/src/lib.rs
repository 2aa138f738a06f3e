//! wsgate's decisions, pure and free of I/O.
//!
//! - [`reason`]: the vocabulary of refusals and the one table from a
//!   [`Reason`] to what the client is told (HTTP status or close code).
//! - [`route`]: which route a request path selects.
//! - [`admit`]: the admission decision for a handshake, in DESIGN.md's order
//!   (route, host, origin, credentials, limits), decided once before any 101.
//!   Its result, [`Admitted`], can only be made here, and the gateway's
//!   upstream stage takes nothing else: a connection cannot reach an
//!   upstream without passing every check.
//!
//! A Rust WebSocket server can embed this crate to make the same decisions.

pub mod admit;
pub mod reason;
pub mod route;

pub use admit::{Admitted, Refused, Request, admit};
pub use reason::{Reason, Response};
pub use route::Router;
