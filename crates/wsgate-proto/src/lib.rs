//! RFC 6455 as wsgate enforces it, with no I/O.
//!
//! - [`handshake`]: the opening handshake rules (section 4.2.1) for a client's
//!   request, and the checks on an upstream's 101 (section 4.2.2) that keep the
//!   gateway from becoming a raw tunnel.
//! - [`frame`]: a streaming decoder that validates every frame a peer sends
//!   (masking, reserved bits, opcodes, control frame rules, fragmentation,
//!   UTF-8, size limits) and re-masks client frames in place, so the relay
//!   forwards frame by frame without ever holding a whole message.
//! - [`close`]: close frame payloads.
//! - [`deflate`]: permessage-deflate (RFC 7692): choosing the client's
//!   offer, and inflating its messages with a bound that holds while inflating.
//!
//! The frame header encoding itself comes from tungstenite's public
//! `FrameHeader`; what is here is the policy of which frames may pass.

pub mod close;
pub mod deflate;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod utf8;
