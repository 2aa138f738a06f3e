//! `wsgate demo`: the attack and the defence, live, in one process.
//!
//! Five servers on loopback, each on a port of its own (port 0 unless asked):
//!
//! ```text
//! gateway   http://localhost:G   wsgate, strict: the chat page through an HTTP route with
//!                                CSP connect-src 'self', the chat WebSocket with an origin
//!                                allow-list and the application's cookie session (forward auth)
//! backend   http://localhost:B   the chat application itself: a login form, a session cookie,
//!                                a WebSocket that trusts the cookie and checks no Origin
//!                                (what most servers do)
//! attacker  http://localhost:A   another origin on the same site: its page opens the chat's
//!                                WebSocket with the victim's cookie, through the gateway and
//!                                directly, and from a sandboxed iframe (Origin null)
//! c2        ws://localhost:E     the server an injected script would report to; CSP keeps the
//!                                chat page from reaching it
//! console   http://localhost:C   links to the above and the gateway's decisions as they happen
//! ```
//!
//! `localhost` on every port is one *site* (ports do not count for
//! cookies or SameSite), so the browser attaches the chat's `SameSite=Lax`
//! session cookie to the attacker page's WebSocket: exactly the cross-site
//! WebSocket hijacking the gateway refuses. The e2e tests drive the same
//! pages in headless Chromium.

mod backend;
mod sites;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

/// Where each server binds; port 0 takes a free port.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// The gateway's listener.
    pub gateway: SocketAddr,
    /// The console with the live decisions.
    pub console: SocketAddr,
}

impl Default for Options {
    fn default() -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Options {
            gateway: any,
            console: any,
        }
    }
}

/// A running demo.
pub struct Demo {
    /// The gateway's listener.
    pub gateway: SocketAddr,
    /// The chat application, reachable directly (to show the attack succeed without wsgate).
    pub backend: SocketAddr,
    /// The attacker's site.
    pub attacker: SocketAddr,
    /// The command-and-control WebSocket server an injected script would reach.
    pub c2: SocketAddr,
    /// The console.
    pub console: SocketAddr,
    gateway_handle: wsgate_gateway::Gateway,
    c2_hits: Arc<std::sync::atomic::AtomicUsize>,
}

/// The URL of `path` on `addr`, named `localhost` (one site for all of the demo's origins).
pub fn url(scheme: &str, addr: SocketAddr, path: &str) -> String {
    format!("{scheme}://localhost:{}{path}", addr.port())
}

impl Demo {
    /// Starts every server; returns once all of them listen.
    pub async fn start(options: Options) -> anyhow::Result<Demo> {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let backend_listener = TcpListener::bind(any).await?;
        let attacker_listener = TcpListener::bind(any).await?;
        let c2_listener = TcpListener::bind(any).await?;
        let console_listener = TcpListener::bind(options.console).await?;
        let backend = backend_listener.local_addr()?;
        let attacker = attacker_listener.local_addr()?;
        let c2 = c2_listener.local_addr()?;
        let console = console_listener.local_addr()?;

        // The gateway binds first: the pages need its port.
        let gateway_handle = start_gateway(options.gateway, backend).await?;
        let gateway = gateway_handle.local_addrs()[0];

        let pages = sites::Pages {
            gateway,
            backend,
            attacker,
            c2,
            console,
        };
        tokio::spawn(backend::serve(backend_listener, pages));
        tokio::spawn(sites::serve_attacker(attacker_listener, pages));
        let c2_hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        tokio::spawn(sites::serve_c2(c2_listener, Arc::clone(&c2_hits)));
        let audit = gateway_handle.audit().clone();
        tokio::spawn(sites::serve_console(console_listener, pages, audit));
        Ok(Demo {
            gateway,
            backend,
            attacker,
            c2,
            console,
            gateway_handle,
            c2_hits,
        })
    }

    /// The gateway's audit log, to follow its decisions.
    pub fn audit(&self) -> &wsgate_gateway::AuditLog {
        self.gateway_handle.audit()
    }

    /// How many WebSocket connections reached the command-and-control server.
    pub fn c2_hits(&self) -> usize {
        self.c2_hits.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// What to open, one line each.
    pub fn urls(&self) -> Vec<(&'static str, String)> {
        vec![
            ("console (start here)", url("http", self.console, "/")),
            ("chat, through wsgate", url("http", self.gateway, "/")),
            ("attacker's page", url("http", self.attacker, "/")),
            ("chat, without wsgate", url("http", self.backend, "/")),
        ]
    }

    /// Stops the gateway (1001 to its clients).
    pub async fn shutdown(self) -> bool {
        self.gateway_handle.shutdown().await
    }
}

/// The gateway's config: strict, as an operator would write it for this chat.
pub fn gateway_config(gateway: SocketAddr, backend: SocketAddr) -> String {
    format!(
        r#"
[[listener]]
bind = "{gateway}"

[auth.forward]
url = "http://{backend}/auth/check"
user_header = "X-User"

# The chat's pages and login, with a policy that lets them connect only
# to their own origin.
[[route]]
path = "/"
kind = "http"
upstream = "http://{backend}/"
auth = "none"
csp = {{ connect_src = ["'self'"] }}

# The chat's WebSocket: only from the chat's own pages, only with a session.
[[route]]
path = "/chat"
upstream = "ws://{backend}/chat"
origins = ["http://localhost:{port}", "http://127.0.0.1:{port}"]
auth = "forward"
identity_headers = {{ user = "X-Wsgate-User" }}

[route.limits]
max_message = "4KiB"
messages_per_sec = 10
burst = 20

[route.messages]
types = ["text"]
json = true
"#,
        port = gateway.port()
    )
}

async fn start_gateway(
    bind: SocketAddr,
    backend: SocketAddr,
) -> anyhow::Result<wsgate_gateway::Gateway> {
    // Port 0 must become a real port before the config can name the
    // allowed origin: take one, then give it to the gateway.
    let bind = if bind.port() == 0 {
        std::net::TcpListener::bind(bind)?.local_addr()?
    } else {
        bind
    };
    let text = gateway_config(bind, backend);
    let config = wsgate_config::parse(&text, std::path::Path::new("."))
        .map_err(|e| anyhow::anyhow!("the demo's gateway config: {e}"))?;
    let audit = wsgate_gateway::AuditLog::new(Box::new(std::io::sink()));
    let prepared = wsgate_gateway::prepare(config, audit)
        .map_err(|e| anyhow::anyhow!("the demo's gateway: {}", e.join("; ")))?;
    Ok(prepared.start().await?)
}
