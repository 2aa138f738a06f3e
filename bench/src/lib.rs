//! wsgate's benchmarks.
//!
//! - `benches/hot_paths.rs`: criterion micro-benchmarks of what the gateway
//!   does per frame and per handshake;
//! - `benches/allocations.rs`: allocations per relayed message, counted;
//! - the `wsgate-perf` binary (`src/main.rs`): an echo upstream ([`echo`]), a
//!   load generator ([`load`]), two byte relays that inspect nothing, as
//!   baselines ([`relay`]), and the runner that measures wsgate beside
//!   nginx and HAProxy ([`runner`]).
//!
//! docs/PERFORMANCE.md has the results and the commands that produced them.

pub mod echo;
pub mod load;
pub mod relay;
pub mod runner;
pub mod tls;
pub mod wire;
