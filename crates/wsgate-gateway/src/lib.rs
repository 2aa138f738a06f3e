//! wsgate's runtime: a WebSocket reverse proxy that enforces its policy.
//!
//! A connection flows through one module per stage, in call order:
//!
//! ```text
//! listen     TCP accept, a PROXY protocol header (proxy_header), TLS,
//!            request head (timeouts, size limits); answers' writes
//!            bounded in time while the connection speaks HTTP (stall)
//! handshake  the gateway's own paths (JWKS, tickets, CSP reports); a
//!            `kind = "http"` route goes to pass (HTTP pass-through, CSP);
//!            else a process slot (limits) -> RFC 6455 checks -> the route's
//!            handshake rate (store) -> admission (wsgate-policy) ->
//!            credentials (auth) -> connection counts, revocation (store)
//!            -> upstream -> 101
//! upstream   connect, handshake, verify the upstream's 101
//! open       the admitted connection's task: the upgrade, registration
//!            for revocation, the re-check on reload, the close line
//! relay      both directions, frame by frame (pump, sink): message rates,
//!            inflating, assembly within the process budget; timers, closing
//! ```
//!
//! [`respond`] applies the refusal table of `wsgate_policy::Reason` to HTTP;
//! [`audit`] writes the one log line per decision and per close. The policy
//! those stages apply is one [`snapshot`], replaced whole by a reload; open
//! connections are re-checked against each new one. The
//! invariant the stages keep: no byte reaches an upstream before admission
//! has decided, and no byte reaches the client before the upstream has
//! answered a correct 101.

mod admin;
mod assertion;
pub mod audit;
mod auth;
mod buffers;
mod fetch;
mod forward;
mod halves;
mod handshake;
mod jwks;
mod limits;
mod listen;
mod live;
mod metrics;
mod open;
mod pass;
mod proxy_header;
mod pump;
pub mod relay;
mod respond;
mod sink;
mod snapshot;
mod stall;
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
pub use state::Trigger;

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

impl Prepared {
    /// Names the file this config came from: a reload (SIGHUP, `POST
    /// /reload`) reads it again.
    pub fn reload_from(mut self, path: std::path::PathBuf) -> Self {
        self.state.source = Some(path);
        self
    }
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
        let policy = self.state.policy();
        for (bound, l) in self.state.bound.iter_mut().zip(&policy.listeners) {
            let bind = *bound;
            let socket = listen::bind(bind, l.config.reuse_port)
                .map_err(|e| std::io::Error::new(e.kind(), format!("cannot bind {bind}: {e}")))?;
            *bound = socket.local_addr()?;
            sockets.push(socket);
        }
        self.state.bound_text = self.state.bound.iter().map(ToString::to_string).collect();
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
        let addrs = state.bound.clone();
        for (i, socket) in sockets.into_iter().enumerate() {
            state
                .acceptors
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

    /// Validates `config` in full and puts it in force if all of it is
    /// valid: new handshakes use it at once, open connections are
    /// re-checked (closed with 1008 `policy_changed` if it refuses them).
    /// Returns the new generation, or every error (nothing changes).
    pub async fn reload(&self, config: Config) -> Result<u64, Vec<String>> {
        self.state.reload(config, Trigger::Api).await
    }

    /// A handle that reloads the config file the gateway was started from
    /// (see [`Prepared::reload_from`]), for a signal handler.
    pub fn reloader(&self) -> Reloader {
        Reloader(Arc::clone(&self.state))
    }

    /// A token that stops the gateway when cancelled (see [`Gateway::wait`]).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.state.stop.clone()
    }

    /// Resolves once a stop has closed every listening socket.
    pub async fn stopped_accepting(&self) {
        self.state.acceptors.wait().await;
    }

    /// Stops the gateway as [`Gateway::wait`] describes.
    pub async fn shutdown(&self) -> bool {
        self.state.stop.cancel();
        self.wait().await
    }

    /// Waits until the shutdown token is cancelled, then stops: the
    /// listeners close at once (with `reuse_port`, a new process bound
    /// beside this one takes every new connection from then on); open
    /// connections run on for up to `[shutdown] drain`, then every client
    /// is sent 1001 and gets up to `grace` to finish. Returns whether all
    /// connections finished.
    pub async fn wait(&self) -> bool {
        let state = &self.state;
        state.stop.cancelled().await;
        state.acceptors.close();
        state.acceptors.wait().await;
        state.tasks.close();
        let policy = state.policy();
        tracing::info!(
            drain_ms = u64::try_from(policy.drain.as_millis()).unwrap_or(u64::MAX),
            "listeners closed; draining open connections"
        );
        if !policy.drain.is_zero()
            && tokio::time::timeout(policy.drain, state.tasks.wait())
                .await
                .is_ok()
        {
            state.shutdown.cancel();
            return true;
        }
        state.shutdown.cancel();
        tokio::time::timeout(policy.grace, state.tasks.wait())
            .await
            .is_ok()
    }
}

/// Reloads a running gateway's config file (see [`Gateway::reloader`]).
#[derive(Clone)]
pub struct Reloader(Arc<State>);

impl Reloader {
    /// Reads the file again and puts it in force if all of it is valid;
    /// every outcome is logged and counted.
    pub async fn reload(&self, trigger: Trigger) -> Result<u64, Vec<String>> {
        self.0.reload_source(trigger).await
    }
}
