//! One generation of the policy: everything a reload replaces.
//!
//! The routes, the listeners' TLS and `Host` allow-lists, the upstreams'
//! TLS, the message rules, authentication and its verifiers, and the
//! identity assertion signer are built together from one validated config
//! and published as one [`Snapshot`]. A handshake takes the snapshot current
//! when it starts and decides by it alone, so it never sees half of a
//! reload; an open connection keeps what it was admitted with until a new
//! generation re-checks it (see `open::Open::recheck`).
//!
//! What a running process cannot change (the addresses it is bound to, the
//! store, `[limits]`, `[metrics]`, `[log]`) is [`Fixed`]: a reload that
//! changes any of it is refused as a whole, naming each key.

use std::sync::Arc;

use rustls::ClientConfig;
use tokio_rustls::TlsAcceptor;
use wsgate_config::{Config, Listener};
use wsgate_policy::Router;
use wsgate_policy::messages::MessageRules;

use crate::tls;

/// One listener's reloadable part: its settings and its TLS.
pub(crate) struct ListenerPolicy {
    pub(crate) config: Listener,
    pub(crate) tls: Option<TlsAcceptor>,
    /// The verifier of client certificates inside `tls`, if it asks for them.
    pub(crate) client_verifier: Option<tls::ClientVerifier>,
    /// A generated certificate, kept across reloads.
    self_signed: Option<Arc<tls::SelfSigned>>,
}

/// The policy in force, as one unit.
pub(crate) struct Snapshot {
    /// 1 for the config the process started with, +1 per accepted reload.
    pub(crate) generation: u64,
    pub(crate) router: Router,
    /// In config order, as bound.
    pub(crate) listeners: Vec<ListenerPolicy>,
    /// Per route, in config order: the TLS client config of a wss:// upstream.
    pub(crate) upstream_tls: Vec<Option<Arc<ClientConfig>>>,
    /// Per route, in config order: compiled message rules, when the route has any.
    pub(crate) rules: Vec<Option<Arc<MessageRules>>>,
    pub(crate) auth: wsgate_config::auth::AuthConfig,
    pub(crate) verifiers: crate::auth::Verifiers,
    /// Signs identity assertions, when `[assertion]` is configured.
    pub(crate) assertion: Option<crate::assertion::Signer>,
    /// The token `POST /revoke` and `POST /reload` require, when set
    /// (reloadable, so that it can be rotated).
    pub(crate) admin_token: Option<wsgate_config::AdminToken>,
    /// `[metrics] hosts`: the names, besides addresses and `localhost`,
    /// the admin endpoint answers to.
    pub(crate) admin_hosts: Vec<wsgate_config::host::HostPattern>,
    /// `[shutdown] drain`.
    pub(crate) drain: std::time::Duration,
    /// `[shutdown] grace`.
    pub(crate) grace: std::time::Duration,
}

/// What only a restart changes.
#[derive(Debug, Clone)]
pub(crate) struct Fixed {
    pub(crate) binds: Vec<std::net::SocketAddr>,
    pub(crate) reuse_ports: Vec<bool>,
    pub(crate) metrics: Option<std::net::SocketAddr>,
    pub(crate) store: wsgate_config::Store,
    pub(crate) limits: wsgate_config::GlobalLimits,
    pub(crate) log: wsgate_config::Log,
}

impl Fixed {
    pub(crate) fn of(config: &Config) -> Fixed {
        Fixed {
            binds: config.listeners.iter().map(|l| l.bind).collect(),
            reuse_ports: config.listeners.iter().map(|l| l.reuse_port).collect(),
            metrics: config.metrics,
            store: config.store.clone(),
            limits: config.limits,
            log: config.log.clone(),
        }
    }

    /// Every key whose change needs a restart, as an error naming it.
    pub(crate) fn changes(&self, new: &Fixed) -> Vec<String> {
        let mut errors = Vec::new();
        let restart = "a reload cannot change it; restart the gateway";
        if self.binds.len() != new.binds.len() {
            errors.push(format!(
                "listener: {} listeners instead of {}: {restart}",
                new.binds.len(),
                self.binds.len()
            ));
        } else {
            for (i, (old, new)) in self.binds.iter().zip(&new.binds).enumerate() {
                if old != new {
                    errors.push(format!(
                        "listener[{i}].bind: {new} instead of {old}: {restart}"
                    ));
                }
            }
            for (i, (old, new)) in self.reuse_ports.iter().zip(&new.reuse_ports).enumerate() {
                if old != new {
                    errors.push(format!("listener[{i}].reuse_port: changed: {restart}"));
                }
            }
        }
        if self.metrics != new.metrics {
            errors.push(format!("metrics.bind: changed: {restart}"));
        }
        if self.store != new.store {
            errors.push(format!("store: changed: {restart}"));
        }
        if self.limits != new.limits {
            errors.push(format!("limits: changed: {restart}"));
        }
        if self.log != new.log {
            errors.push(format!("log: changed: {restart}"));
        }
        errors
    }
}

/// A snapshot built from a config, with the notes for the operator.
pub(crate) struct Built {
    pub(crate) snapshot: Snapshot,
    pub(crate) notes: Vec<String>,
}

impl Snapshot {
    /// Loads what `config` refers to (certificates, keys, schemas, JWKS,
    /// htpasswd); collects every problem instead of stopping at the first.
    /// On a reload, `previous` is the policy in force: a self-signed
    /// listener whose TLS settings did not change keeps its certificate, so
    /// a reload does not change the fingerprint clients were told to trust.
    pub(crate) fn build(
        config: &Config,
        generation: u64,
        previous: Option<&Snapshot>,
    ) -> Result<Built, Vec<String>> {
        let mut errors = Vec::new();
        let mut notes = Vec::new();
        let verifiers = crate::auth::Verifiers::new(config, &mut errors);
        let assertion = config.assertion.as_ref().and_then(|a| {
            crate::assertion::Signer::new(a)
                .map_err(|e| errors.push(format!("assertion.key: {e}")))
                .ok()
        });
        let mut listeners = Vec::new();
        for (i, l) in config.listeners.iter().enumerate() {
            // A generated certificate is kept while the listener stays
            // self-signed; everything around it (client CAs, CRLs) is built
            // anew, as for a listener with certificate files.
            let keep = previous
                .and_then(|p| p.listeners.get(i))
                .filter(|p| l.tls == Some(wsgate_config::Tls::SelfSigned) && p.config.tls == l.tls)
                .and_then(|p| p.self_signed.as_ref());
            let (tls, client_verifier, self_signed) = match &l.tls {
                None => (None, None, None),
                Some(t) => match tls::server(t, l.bind, l.client_certs.as_ref(), keep) {
                    Ok(server) => {
                        if let Some(fp) = server.self_signed_fingerprint {
                            notes.push(format!(
                                "listener[{i}] ({}) uses a self-signed certificate, SHA-256 {fp}",
                                l.bind
                            ));
                        }
                        (
                            Some(TlsAcceptor::from(server.config)),
                            server.client_verifier,
                            server.self_signed,
                        )
                    }
                    Err(e) => {
                        errors.push(format!("listener[{i}].tls: {e}"));
                        (None, None, None)
                    }
                },
            };
            listeners.push(ListenerPolicy {
                config: l.clone(),
                tls,
                client_verifier,
                self_signed,
            });
        }
        for (i, r) in config.routes.iter().enumerate() {
            if let Some(param) = &r.jwt_query_param {
                notes.push(format!(
                    "route[{i}] accepts JWTs in the query parameter `{param}`: URLs end up in browser history and in the logs of every proxy on the way; wsgate's own log omits query strings"
                ));
            }
            // Passwords can be guessed; signed tokens and certificates cannot.
            if r.auth.takes(wsgate_config::AuthMethod::Basic)
                && r.limits.handshakes_per_ip_per_min.is_none()
            {
                notes.push(format!(
                    "route[{i}] ({}) takes Basic credentials and sets no `handshakes_per_ip_per_min`: passwords can be tried as fast as handshakes come; limit them (refused handshakes count)",
                    r.path
                ));
            }
            if r.kind == wsgate_config::RouteKind::Http && r.limits.idle_timeout.is_none() {
                notes.push(format!(
                    "route[{i}] ({}) is kind = \"http\" with idle_timeout = \"off\": a client that trickles its request body or stops reading its answer holds its connection, its place at HTTP and the upstream's connection for as long as it likes",
                    r.path
                ));
            }
        }
        if let Some(bind) = config.metrics
            && !bind.ip().is_loopback()
            && config.admin_token.is_none()
        {
            notes.push(format!(
                "metrics.bind {bind} is not loopback and names no `admin_token_env`: whoever can reach it can revoke users and reload the config; set a token, or bind to loopback"
            ));
        }
        if let Some(jwt) = &config.auth.jwt {
            for source in &jwt.from {
                if let wsgate_config::auth::TokenSource::Cookie(name) = source
                    && !name.starts_with("__Host-")
                {
                    notes.push(format!(
                        "auth.jwt.from takes the cookie `{name}`: a page on a sibling subdomain can set a cookie of that name that browsers send first (cookie tossing); name it `__Host-{name}` where the application can"
                    ));
                }
            }
        }
        if let Some(jwt) = &config.auth.jwt
            && jwt.audience.is_none()
        {
            notes.push(
                "auth.jwt names no `audience`: a token its issuer signed for any other service is accepted here too; set the audience these tokens are issued for (RFC 8725 3.9)".to_owned(),
            );
        }
        if let Some(basic) = &config.auth.basic {
            let mut kinds: Vec<String> = Vec::new();
            for user in &basic.users {
                let kind = wsgate_policy::verify::hash_kind(&user.hash);
                if !kinds.contains(&kind) {
                    kinds.push(kind);
                }
            }
            if kinds.len() > 1 {
                notes.push(format!(
                    "auth.basic.htpasswd holds hashes of {} kinds ({}): an unknown user is checked against a decoy of the first's kind, so the time a refusal takes can tell that a user of another kind exists; hash every password alike",
                    kinds.len(),
                    kinds.join(", ")
                ));
            }
        }
        let mut rules = Vec::new();
        for (i, r) in config.routes.iter().enumerate() {
            if r.messages == wsgate_config::Messages::default() {
                rules.push(None);
                continue;
            }
            match MessageRules::new(&r.messages) {
                Ok(compiled) => rules.push(Some(Arc::new(compiled))),
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
        if !errors.is_empty() {
            return Err(errors);
        }
        let snapshot = Snapshot {
            generation,
            router: Router::new(config.routes.clone()),
            listeners,
            upstream_tls,
            rules,
            auth: config.auth.clone(),
            verifiers,
            assertion,
            admin_token: config.admin_token.clone(),
            admin_hosts: config.admin_hosts.clone(),
            drain: config.shutdown.drain,
            grace: config.shutdown.grace,
        };
        Ok(Built { snapshot, notes })
    }
}
