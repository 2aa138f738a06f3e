//! wsgate's runtime: a WebSocket reverse proxy that enforces its policy.
//!
//! A connection flows through one module per stage, in call order:
//!
//! ```text
//! listen     TCP accept, TLS, request head (timeouts, size limits)
//! handshake  a process slot (limits) -> RFC 6455 checks -> the route's
//!            handshake rate (store) -> admission (wsgate-policy) ->
//!            credentials (auth) -> connection counts, revocation (store)
//!            -> upstream -> 101
//! upstream   connect, handshake, verify the upstream's 101
//! relay      both directions, frame by frame (pump, sink): message rates,
//!            inflating, assembly within the process budget; timers, closing
//! ```
//!
//! [`respond`] applies the refusal table of `wsgate_policy::Reason` to HTTP;
//! [`audit`] writes the one log line per decision and per close. The
//! invariant the stages keep: no byte reaches an upstream before admission
//! has decided, and no byte reaches the client before the upstream has
//! answered a correct 101.

mod admin;
mod assertion;
pub mod audit;
mod auth;
mod fetch;
mod forward;
mod handshake;
mod jwks;
mod limits;
mod listen;
mod live;
mod metrics;
mod pump;
pub mod relay;
mod respond;
mod sink;
mod state;
mod store;
mod tickets;
mod tls;
mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use wsgate_config::Config;

pub use audit::{AuditEvent, AuditLog};

use crate::state::State;

/// A gateway whose certificates are loaded and whose config is accepted,
/// not yet listening.
pub struct Prepared {
    state: State,
    /// Things the operator should know (self-signed fingerprints).
    pub notes: Vec<String>,
}

/// Loads what a config refers to (certificates, keys, CA files) and reports
/// every problem at once. `wsgate check` runs this too, without binding.
pub fn prepare(config: Config, audit: AuditLog) -> Result<Prepared, Vec<String>> {
    let p = State::prepare(config, audit)?;
    Ok(Prepared {
        state: p.state,
        notes: p.notes,
    })
}

/// A running gateway.
pub struct Gateway {
    state: Arc<State>,
    addrs: Vec<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
}

impl Prepared {
    /// Binds every listener and starts accepting.
    pub async fn start(mut self) -> std::io::Result<Gateway> {
        let mut sockets = Vec::new();
        for l in &mut self.state.listeners {
            let socket = TcpListener::bind(l.config.bind).await.map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot bind {}: {e}", l.config.bind))
            })?;
            l.local = socket.local_addr()?;
            sockets.push(socket);
        }
        let admin = match self.state.metrics_bind {
            None => None,
            Some(bind) => Some(TcpListener::bind(bind).await.map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot bind the metrics endpoint {bind}: {e}"),
                )
            })?),
        };
        let metrics_addr = admin.as_ref().map(TcpListener::local_addr).transpose()?;
        let state = Arc::new(self.state);
        if let store::Store::Redis { redis, .. } = &state.store {
            redis.start(Arc::clone(&state.live), state.shutdown.clone());
        }
        if let Some(listener) = admin {
            state
                .tasks
                .spawn(admin::serve(Arc::clone(&state), listener));
        }
        let addrs = state.listeners.iter().map(|l| l.local).collect();
        for (i, socket) in sockets.into_iter().enumerate() {
            state
                .tasks
                .spawn(listen::accept_loop(Arc::clone(&state), i, socket));
        }
        Ok(Gateway {
            state,
            addrs,
            metrics_addr,
        })
    }
}

impl Gateway {
    /// The bound address of each listener, in config order.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The bound address of the metrics endpoint, when `[metrics]` is configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The audit log, to subscribe to.
    pub fn audit(&self) -> &AuditLog {
        &self.state.audit
    }

    /// A token that stops the gateway when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.state.shutdown.clone()
    }

    /// Stops accepting, sends every client a 1001 close, and waits up to the
    /// configured grace for connections to finish. Returns whether all did.
    pub async fn shutdown(self) -> bool {
        self.state.shutdown.cancel();
        self.wait().await
    }

    /// Waits until the shutdown token is cancelled and connections have drained
    /// (up to the grace period). Returns whether all connections finished.
    pub async fn wait(self) -> bool {
        self.state.shutdown.cancelled().await;
        self.state.tasks.close();
        let grace = self.state.grace;
        tokio::time::timeout(grace, self.state.tasks.wait())
            .await
            .is_ok()
    }
}
