//! What every connection shares: the policy in force (one [`Snapshot`],
//! replaced whole by a reload), and what lives as long as the process: the
//! bound addresses, the store, the process limits, the audit log, the
//! metrics and the shutdown signal. Nothing in it is a global.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wsgate_config::Config;

use crate::audit::{AuditEvent, AuditLog};
use crate::snapshot::{Fixed, Snapshot};

/// Shared by all connections.
pub(crate) struct State {
    /// The policy in force; subscribers are the open connections.
    policy: watch::Sender<Arc<Snapshot>>,
    /// What the process started with and only a restart changes.
    fixed: Fixed,
    /// The file a reload reads, when the gateway was started from one.
    pub(crate) source: Option<PathBuf>,
    /// One reload at a time: generations are numbered in order.
    reloading: tokio::sync::Mutex<()>,
    /// The address each listener is bound to (the config may say port 0).
    pub(crate) bound: Vec<SocketAddr>,
    /// The same addresses as text, for the audit lines: formatted once, not
    /// twice for every handshake.
    pub(crate) bound_text: Vec<String>,
    pub(crate) audit: AuditLog,
    pub(crate) metrics: crate::metrics::Metrics,
    /// Where `[metrics]` asks the operator endpoints to be served.
    pub(crate) metrics_bind: Option<SocketAddr>,
    /// Handshake rates and connection counts per client and user.
    pub(crate) store: crate::store::Store,
    /// This process's connections by user, for revocation.
    pub(crate) live: Arc<crate::live::Live>,
    /// `[limits] max_connections`: one slot per handshake in progress or connection open.
    pub(crate) slots: Arc<crate::limits::Slots>,
    /// Connections speaking HTTP: from accept (PROXY header, TLS, request
    /// heads, `kind = "http"` exchanges, idle keep-alive) until they end or
    /// are upgraded, bounded by the same number. `slots` counts WebSocket
    /// handshakes and connections; these hold a socket and a task each too.
    pub(crate) at_http: Arc<crate::limits::Slots>,
    /// `[limits] max_http_conns_per_ip`: `at_http` per client address.
    pub(crate) at_http_per_address: Arc<crate::limits::PerAddress>,
    /// `[limits] assembly_memory`: bytes for messages being assembled.
    pub(crate) budget: Arc<crate::limits::Budget>,
    /// Read buffers, lent to connections while they have bytes to read.
    pub(crate) buffers: crate::buffers::Buffers,
    /// Stop accepting: the listeners close, `/readyz` fails, idle HTTP
    /// connections end. Open WebSocket connections go on (the drain).
    pub(crate) stop: CancellationToken,
    /// Close every open connection with 1001 (after the drain).
    pub(crate) shutdown: CancellationToken,
    /// Cancelled never: what a connection without a user to revoke waits
    /// on for revocation (one token for all, not one each).
    pub(crate) never_revoked: CancellationToken,
    /// The accept loops, which own the listening sockets.
    pub(crate) acceptors: TaskTracker,
    /// Every connection (and the operator endpoints).
    pub(crate) tasks: TaskTracker,
    /// How many CSP reports become audit lines.
    pub(crate) csp_reports: crate::audit::LineBudget,
    /// Bounds the audit lines of connections closed at accept.
    pub(crate) unread_lines: crate::audit::LineBudget,
    next_conn: AtomicU64,
}

/// What `prepare` found: notes for the operator, or every error.
pub(crate) struct Prepared {
    pub(crate) state: State,
    pub(crate) notes: Vec<String>,
}

/// What started a reload, for the log.
#[derive(Debug, Clone, Copy)]
pub enum Trigger {
    /// SIGHUP.
    Signal,
    /// `POST /reload` on the admin endpoint (`wsgate reload`).
    Admin(SocketAddr),
    /// The embedding program called `Gateway::reload`.
    Api,
}

impl State {
    /// Loads certificates and keys; collects every problem instead of stopping at the first.
    pub(crate) fn prepare(config: Config, audit: AuditLog) -> Result<Prepared, Vec<String>> {
        let built = Snapshot::build(&config, 1, None);
        let metrics = crate::metrics::Metrics::new();
        let ticket_ttl = config
            .auth
            .ticket
            .as_ref()
            .map_or(std::time::Duration::from_secs(30), |t| t.ttl);
        let mut errors = Vec::new();
        let store = match &config.store {
            wsgate_config::Store::Memory => crate::store::Store::memory(ticket_ttl),
            wsgate_config::Store::Redis(r) => {
                match crate::store::redis::Redis::new(
                    r,
                    ticket_ttl,
                    (metrics.store_up.clone(), metrics.store_errors.clone()),
                ) {
                    Ok(redis) => crate::store::Store::Redis {
                        redis,
                        on_error: r.on_error,
                    },
                    Err(e) => {
                        errors.push(e);
                        crate::store::Store::memory(ticket_ttl)
                    }
                }
            }
        };
        let built = match built {
            Ok(b) if errors.is_empty() => b,
            Ok(_) => return Err(errors),
            Err(mut e) => {
                e.append(&mut errors);
                return Err(e);
            }
        };
        metrics.config_generation.set(1);
        let state = State {
            policy: watch::Sender::new(Arc::new(built.snapshot)),
            fixed: Fixed::of(&config),
            source: None,
            reloading: tokio::sync::Mutex::new(()),
            bound: config.listeners.iter().map(|l| l.bind).collect(),
            bound_text: Vec::new(),
            store,
            live: Arc::new(crate::live::Live::default()),
            slots: crate::limits::Slots::new(config.limits.max_connections),
            at_http: crate::limits::Slots::new(config.limits.max_connections),
            at_http_per_address: crate::limits::PerAddress::new(
                config.limits.max_http_conns_per_ip,
            ),
            budget: crate::limits::Budget::new(config.limits.assembly_memory),
            buffers: crate::buffers::Buffers::default(),
            audit,
            metrics,
            metrics_bind: config.metrics,
            stop: CancellationToken::new(),
            shutdown: CancellationToken::new(),
            never_revoked: CancellationToken::new(),
            acceptors: TaskTracker::new(),
            tasks: TaskTracker::new(),
            csp_reports: crate::pass::report_budget(),
            unread_lines: crate::audit::LineBudget::new(50, 200),
            next_conn: AtomicU64::new(1),
        };
        Ok(Prepared {
            state,
            notes: built.notes,
        })
    }

    pub(crate) fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// The policy in force now.
    pub(crate) fn policy(&self) -> Arc<Snapshot> {
        Arc::clone(&self.policy.borrow())
    }

    /// Wakes when a reload publishes a new policy.
    pub(crate) fn watch_policy(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.policy.subscribe()
    }

    /// Reads the config file again and reloads it.
    pub(crate) async fn reload_source(&self, trigger: Trigger) -> Result<u64, Vec<String>> {
        let Some(path) = self.source.clone() else {
            let errors = vec!["the gateway was not started from a config file".to_owned()];
            self.reloaded(trigger, Err(&errors));
            return Err(errors);
        };
        let loaded = tokio::task::spawn_blocking(move || wsgate_config::load(&path)).await;
        match loaded {
            Ok(Ok(config)) => self.reload(config, trigger).await,
            Ok(Err(errors)) => {
                let errors: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
                self.reloaded(trigger, Err(&errors));
                Err(errors)
            }
            Err(e) => {
                let errors = vec![format!("reading the config failed: {e}")];
                self.reloaded(trigger, Err(&errors));
                Err(errors)
            }
        }
    }

    /// Validates `config` in full and, only if all of it is valid and it
    /// changes nothing that needs a restart, puts it in force: new
    /// handshakes use it at once and every open connection is re-checked.
    /// Returns the new generation, or every error (the old policy stays).
    pub(crate) async fn reload(
        &self,
        config: Config,
        trigger: Trigger,
    ) -> Result<u64, Vec<String>> {
        let _one = self.reloading.lock().await;
        let generation = self.policy.borrow().generation + 1;
        let mut errors = self.fixed.changes(&Fixed::of(&config));
        // Reading keys and hashing the Basic decoy are blocking work.
        let previous = self.policy();
        let built = tokio::task::spawn_blocking(move || {
            Snapshot::build(&config, generation, Some(&previous))
        })
        .await;
        let built = match built {
            Ok(Ok(b)) => Some(b),
            Ok(Err(mut e)) => {
                errors.append(&mut e);
                None
            }
            Err(e) => {
                errors.push(format!("building the policy failed: {e}"));
                None
            }
        };
        match built {
            Some(b) if errors.is_empty() => {
                self.policy.send_replace(Arc::new(b.snapshot));
                self.metrics
                    .config_generation
                    .set(generation.try_into().unwrap_or(i64::MAX));
                self.reloaded(trigger, Ok(generation));
                for note in b.notes {
                    tracing::warn!("{note}");
                }
                Ok(generation)
            }
            _ => {
                self.reloaded(trigger, Err(&errors));
                Err(errors)
            }
        }
    }

    /// The audit line, the metrics and the operational log of one reload.
    fn reloaded(&self, trigger: Trigger, result: Result<u64, &Vec<String>>) {
        let client = match trigger {
            Trigger::Signal => "signal".to_owned(),
            Trigger::Admin(peer) => peer.to_string(),
            Trigger::Api => "api".to_owned(),
        };
        let mut ev = AuditEvent::new("reload", 0, client, "admin".into());
        match result {
            Ok(generation) => {
                ev.decision = Some("applied");
                ev.generation = Some(generation);
                self.metrics.reload(true);
                tracing::info!(generation, "config reloaded");
            }
            Err(errors) => {
                ev.decision = Some("refused");
                ev.generation = Some(self.policy.borrow().generation);
                ev.detail = Some(errors.join("; "));
                self.metrics.reload(false);
                tracing::error!(errors = %errors.join("; "), "config reload refused; the old config stays in force");
            }
        }
        self.audit.write(ev);
    }
}
