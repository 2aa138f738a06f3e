//! wsgate in-process on 127.0.0.1:0, with its audit events to wait on.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;
use wsgate_gateway::{AuditEvent, AuditLog, Gateway};

use crate::WAIT;

/// A running gateway.
pub struct TestGateway {
    /// The first listener's address.
    pub addr: SocketAddr,
    gateway: Arc<Gateway>,
    /// The gateway's own wait, running from the start as in `wsgate
    /// serve`: cancelling the shutdown token stops it the way SIGTERM does.
    stopped: Option<tokio::task::JoinHandle<bool>>,
    events: broadcast::Receiver<Arc<AuditEvent>>,
    lines: Arc<Mutex<Vec<u8>>>,
    /// Where relative paths in the config resolve, and its environment.
    base: std::path::PathBuf,
    env: Vec<(String, String)>,
    _dir: tempfile::TempDir,
}

/// Collects what the audit log writes, so tests can read the JSON lines.
#[derive(Clone)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lines").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl TestGateway {
    /// Starts a gateway on a config given as TOML; relative paths resolve
    /// against `base` (or a fresh temporary directory).
    pub async fn start(toml: &str) -> TestGateway {
        Self::start_in(toml, None).await
    }

    /// Like [`TestGateway::start`], resolving relative paths against `base`.
    pub async fn start_in(toml: &str, base: Option<&std::path::Path>) -> TestGateway {
        Self::start_with_env(toml, base, &[]).await
    }

    /// Like [`TestGateway::start_in`], with environment variables from `env`
    /// only (tests cannot safely change the process environment).
    pub async fn start_with_env(
        toml: &str,
        base: Option<&std::path::Path>,
        env: &[(&str, &str)],
    ) -> TestGateway {
        let dir = tempfile::tempdir().expect("temp dir");
        let base = base.unwrap_or(dir.path()).to_owned();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let config =
            parse(toml, &base, &env).unwrap_or_else(|e| panic!("test config: {}", e.join("\n")));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let audit = AuditLog::new(Box::new(Lines(Arc::clone(&lines))));
        let events = audit.subscribe();
        let prepared =
            wsgate_gateway::prepare(config, audit).unwrap_or_else(|e| panic!("prepare: {e:?}"));
        let gateway = Arc::new(prepared.start().await.expect("start gateway"));
        TestGateway {
            addr: gateway.local_addrs()[0],
            stopped: Some(tokio::spawn({
                let gateway = Arc::clone(&gateway);
                async move { gateway.wait().await }
            })),
            gateway,
            events,
            lines,
            base,
            env,
            _dir: dir,
        }
    }

    /// Reloads the gateway with a config given as TOML (paths and
    /// environment as at start): the new generation, or every error, from
    /// parsing or from the gateway.
    pub async fn reload(&self, toml: &str) -> Result<u64, Vec<String>> {
        let config = parse(toml, &self.base, &self.env)?;
        self.gateway.reload(config).await
    }

    /// The next audit event matching `want`, waiting up to [`WAIT`].
    pub async fn event(&mut self, want: impl Fn(&AuditEvent) -> bool) -> Arc<AuditEvent> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Ok(e)) if want(&e) => return e,
                Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(broadcast::error::RecvError::Closed)) => panic!("audit log closed"),
                Err(_) => panic!(
                    "no matching audit event within {WAIT:?}; log so far:\n{}",
                    self.audit_text()
                ),
            }
        }
    }

    /// The next `handshake` event.
    pub async fn handshake_event(&mut self) -> Arc<AuditEvent> {
        self.event(|e| e.event == "handshake").await
    }

    /// The next `close` event.
    pub async fn close_event(&mut self) -> Arc<AuditEvent> {
        self.event(|e| e.event == "close").await
    }

    /// Asserts that a `close` line names its connection as the connection's
    /// `handshake` line did: who (and through which proxy), on which
    /// listener and route, the request's path, `Host` and `Origin`, the
    /// user and how they were verified, and whether the route enforced.
    pub fn assert_close_repeats(handshake: &AuditEvent, close: &AuditEvent) {
        let named = |e: &AuditEvent| {
            (
                e.conn,
                e.client.clone(),
                e.via.clone(),
                e.listener.clone(),
                e.route.clone(),
                e.path.clone(),
                e.host.clone(),
                e.origin.clone(),
                e.user.clone(),
                e.auth,
                e.enforced,
            )
        };
        assert_eq!(
            (handshake.event, close.event),
            ("handshake", "close"),
            "not a handshake line and a close line"
        );
        assert_eq!(named(close), named(handshake));
    }

    /// Where `/metrics`, `/healthz` and `/readyz` are served, if configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.gateway.metrics_addr()
    }

    /// Everything the audit log wrote, as text.
    pub fn audit_text(&self) -> String {
        String::from_utf8_lossy(&self.lines.lock().expect("lines")).into_owned()
    }

    /// Stops the gateway: 1001 to every client, then waits for the grace period.
    pub async fn shutdown(mut self) -> bool {
        self.gateway.shutdown_token().cancel();
        let stopped = self.stopped.take().expect("running");
        stopped.await.expect("the gateway's wait")
    }

    /// Resolves once a stop (see [`TestGateway::shutdown_token`]) has
    /// closed every listening socket.
    pub async fn stopped_accepting(&self) {
        self.gateway.stopped_accepting().await;
    }

    /// A token that stops the gateway.
    pub fn shutdown_token(&self) -> tokio_util_token::Token {
        tokio_util_token::Token(self.gateway.shutdown_token())
    }
}

fn parse(
    toml: &str,
    base: &std::path::Path,
    env: &[(String, String)],
) -> Result<wsgate_config::Config, Vec<String>> {
    let lookup = |name: &str| {
        env.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.to_string())
    };
    wsgate_config::parse_with_env(toml, base, &lookup)
        .map_err(|e| e.0.iter().map(ToString::to_string).collect())
}

/// A re-export wrapper so tests need not depend on tokio-util.
pub mod tokio_util_token {
    /// Cancels the gateway when [`Token::cancel`] is called.
    pub struct Token(pub(crate) tokio_util::sync::CancellationToken);
    impl Token {
        /// Starts the gateway's shutdown.
        pub fn cancel(&self) {
            self.0.cancel();
        }
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.gateway.shutdown_token().cancel();
    }
}
