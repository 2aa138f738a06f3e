//! What every connection shares: the routes, the listeners' TLS, the
//! upstreams' TLS, the audit log, and the shutdown signal. Built once at
//! start from a validated config; nothing in it is a global.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rustls::ClientConfig;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wsgate_config::{Config, Listener};
use wsgate_policy::Router;

use crate::audit::AuditLog;
use crate::tls;

/// One listener's settings and TLS.
pub(crate) struct ListenerState {
    pub(crate) config: Listener,
    pub(crate) tls: Option<TlsAcceptor>,
    /// The address actually bound (the config may say port 0).
    pub(crate) local: std::net::SocketAddr,
}

/// Shared by all connections.
pub(crate) struct State {
    pub(crate) router: Router,
    pub(crate) listeners: Vec<ListenerState>,
    /// Per route, in config order: the TLS client config of a wss:// upstream.
    pub(crate) upstream_tls: Vec<Option<Arc<ClientConfig>>>,
    pub(crate) audit: AuditLog,
    pub(crate) metrics: crate::metrics::Metrics,
    /// Per route, in config order: compiled message rules, when the route has any.
    pub(crate) rules: Vec<Option<std::sync::Arc<wsgate_policy::messages::MessageRules>>>,
    /// Where `[metrics]` asks the operator endpoints to be served.
    pub(crate) metrics_bind: Option<std::net::SocketAddr>,
    pub(crate) auth: wsgate_config::auth::AuthConfig,
    pub(crate) verifiers: crate::auth::Verifiers,
    /// Signs identity assertions, when `[assertion]` is configured.
    pub(crate) assertion: Option<crate::assertion::Signer>,
    /// Handshake rates and connection counts per client and user.
    pub(crate) store: crate::store::Store,
    /// This process's connections by user, for revocation.
    pub(crate) live: Arc<crate::live::Live>,
    /// `[limits] max_connections`: one slot per handshake in progress or connection open.
    pub(crate) slots: Arc<crate::limits::Slots>,
    /// `[limits] assembly_memory`: bytes for messages being assembled.
    pub(crate) budget: Arc<crate::limits::Budget>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tasks: TaskTracker,
    pub(crate) grace: std::time::Duration,
    next_conn: AtomicU64,
}

/// What `prepare` found: notes for the operator, or every error.
pub(crate) struct Prepared {
    pub(crate) state: State,
    pub(crate) notes: Vec<String>,
}

impl State {
    /// Loads certificates and keys; collects every problem instead of stopping at the first.
    pub(crate) fn prepare(config: Config, audit: AuditLog) -> Result<Prepared, Vec<String>> {
        let mut errors = Vec::new();
        let mut notes = Vec::new();
        let verifiers = crate::auth::Verifiers::new(&config, &mut errors);
        let assertion = config.assertion.as_ref().and_then(|a| {
            crate::assertion::Signer::new(a)
                .map_err(|e| errors.push(format!("assertion.key: {e}")))
                .ok()
        });
        let mut listeners = Vec::new();
        for (i, l) in config.listeners.into_iter().enumerate() {
            let tls = match &l.tls {
                None => None,
                Some(t) => {
                    match tls::server(t, l.bind, l.client_certs.as_ref()) {
                        Ok(server) => {
                            if let Some(fp) = server.self_signed_fingerprint {
                                notes.push(format!("listener[{i}] ({}) uses a self-signed certificate, SHA-256 {fp}", l.bind));
                            }
                            Some(TlsAcceptor::from(server.config))
                        }
                        Err(e) => {
                            errors.push(format!("listener[{i}].tls: {e}"));
                            None
                        }
                    }
                }
            };
            let local = l.bind;
            listeners.push(ListenerState {
                config: l,
                tls,
                local,
            });
        }
        for (i, r) in config.routes.iter().enumerate() {
            if let Some(param) = &r.jwt_query_param {
                notes.push(format!(
                    "route[{i}] accepts JWTs in the query parameter `{param}`: URLs end up in browser history and in the logs of every proxy on the way; wsgate's own log omits query strings"
                ));
            }
        }
        let mut rules = Vec::new();
        for (i, r) in config.routes.iter().enumerate() {
            if r.messages == wsgate_config::Messages::default() {
                rules.push(None);
                continue;
            }
            match wsgate_policy::messages::MessageRules::new(&r.messages) {
                Ok(compiled) => rules.push(Some(std::sync::Arc::new(compiled))),
                Err(e) => {
                    errors.push(format!("route[{i}].messages.schema: {e}"));
                    rules.push(None);
                }
            }
        }
        let mut upstream_tls = Vec::new();
        for (i, r) in config.routes.iter().enumerate() {
            if !r.upstream.tls {
                upstream_tls.push(None);
                continue;
            }
            match tls::upstream(r.upstream.ca.as_deref()) {
                Ok(c) => upstream_tls.push(Some(c)),
                Err(e) => {
                    errors.push(format!("route[{i}].upstream: {e}"));
                    upstream_tls.push(None);
                }
            }
        }
        let router = Router::new(config.routes);
        let metrics = crate::metrics::Metrics::new();
        let ticket_ttl = config
            .auth
            .ticket
            .as_ref()
            .map_or(std::time::Duration::from_secs(30), |t| t.ttl);
        let store = match &config.store {
            wsgate_config::Store::Memory => {
                crate::store::Store::memory(router.routes(), ticket_ttl)
            }
            wsgate_config::Store::Redis(r) => {
                match crate::store::redis::Redis::new(
                    r,
                    router.routes(),
                    ticket_ttl,
                    (metrics.store_up.clone(), metrics.store_errors.clone()),
                ) {
                    Ok(redis) => crate::store::Store::Redis {
                        redis,
                        on_error: r.on_error,
                    },
                    Err(e) => {
                        errors.push(e);
                        crate::store::Store::memory(router.routes(), ticket_ttl)
                    }
                }
            }
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let state = State {
            store,
            live: Arc::new(crate::live::Live::default()),
            slots: crate::limits::Slots::new(config.limits.max_connections),
            budget: crate::limits::Budget::new(config.limits.assembly_memory),
            router,
            listeners,
            upstream_tls,
            audit,
            metrics,
            rules,
            metrics_bind: config.metrics,
            auth: config.auth,
            verifiers,
            assertion,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            grace: config.shutdown.grace,
            next_conn: AtomicU64::new(1),
        };
        Ok(Prepared { state, notes })
    }

    pub(crate) fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }
}
