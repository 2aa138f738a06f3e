//! The validated configuration: what the gateway runs on.
//!
//! Every value here has been parsed and checked; nothing downstream parses
//! strings again. Defaults are named constants with the reason for each.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use ipnet::IpNet;

use crate::host::HostPattern;
use crate::origin::OriginPattern;

/// How long a client has to complete TLS and send its request head. Browsers
/// send the whole handshake at once; 5 s leaves room for slow mobile links
/// while bounding how long a slowloris client can hold a socket.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head accepted (431 above it). 16 KiB fits browsers' cookie
/// headers (nginx's default is 4 × 8 KiB buffers) without inviting abuse.
pub const DEFAULT_MAX_HEADER_BYTES: u64 = 16 * 1024;
/// Smallest `max_header_bytes` accepted: hyper's read buffer cannot be smaller.
pub const MIN_MAX_HEADER_BYTES: u64 = 8 * 1024;
/// Largest `max_header_bytes` accepted.
pub const MAX_MAX_HEADER_BYTES: u64 = 1024 * 1024;
/// Largest message a client may send: OWASP's WebSocket cheat sheet suggests
/// at most 64 KB for ordinary application messages.
pub const DEFAULT_MAX_MESSAGE: u64 = 64 * 1024;
/// A connection with no data frame either way for this long is closed (1001):
/// the value DESIGN.md's example uses; ping/pong alone does not count as use.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// The gateway pings each client this often; a client that has not answered
/// by the next ping is gone and is closed, freeing its slot.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(30);
/// Longest a connection may live, however busy: bounds how long a credential
/// checked once at the handshake stays in use.
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// How long the gateway waits for the upstream's TCP (and TLS) connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long open connections get to close after SIGTERM before the process exits.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Most connections one gateway process holds at once (`[limits]
/// max_connections`): far above one machine's ordinary load, well below what
/// exhausts file descriptors and memory.
pub const DEFAULT_MAX_CONNECTIONS: u64 = 10_000;

/// The default of `[limits] max_http_conns_per_ip`: what a browser opens
/// many times over (six per host), and what one hostile host holding idle
/// connections, or trickling requests, may take of `max_connections`.
pub const DEFAULT_MAX_HTTP_CONNS_PER_IP: u32 = 256;

/// Memory the whole process may hold for messages being assembled for a
/// message rule (`[limits] assembly_memory`): 1,024 connections each halfway
/// through a 64 KiB message.
pub const DEFAULT_ASSEMBLY_MEMORY: u64 = 64 * 1024 * 1024;
/// IPv6 clients are counted per /64: one host usually holds a whole /64, so
/// counting single addresses would let it take 2^64 slots.
pub const DEFAULT_IPV6_PREFIX: u8 = 64;

/// A whole, validated config.
#[derive(Debug, Clone)]
pub struct Config {
    /// Sockets the gateway accepts clients on.
    pub listeners: Vec<Listener>,
    /// Routes, in file order; the longest matching path wins.
    pub routes: Vec<Route>,
    /// Where log and audit lines go.
    pub log: Log,
    /// Graceful shutdown.
    pub shutdown: Shutdown,
    /// Authentication methods.
    pub auth: crate::auth::AuthConfig,
    /// The signed identity assertion, when configured.
    pub assertion: Option<Assertion>,
    /// `[metrics]`: where `/metrics`, `/healthz` and `/readyz` are served.
    pub metrics: Option<SocketAddr>,
    /// `[metrics] admin_token_env`: the token `POST /revoke` and `POST
    /// /reload` require, when set.
    pub admin_token: Option<AdminToken>,
    /// `[metrics] hosts`: the names, besides addresses and `localhost`,
    /// the admin endpoint answers to in `Host`.
    pub admin_hosts: Vec<HostPattern>,
    /// `[limits]`: bounds on the whole process.
    pub limits: GlobalLimits,
    /// `[store]`: where shared counts live.
    pub store: Store,
}

/// A bearer token for the admin endpoint's state-changing requests, taken
/// from an environment variable at load.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken {
    /// The variable's name.
    pub env: String,
    /// Its value.
    pub token: String,
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself, not even in debug output.
        write!(f, "AdminToken(from ${})", self.env)
    }
}

/// The shortest admin token accepted: one that cannot be guessed.
pub const MIN_ADMIN_TOKEN: usize = 32;

/// `[limits]`: what one gateway process holds at most, whatever the routes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GlobalLimits {
    /// Open client connections; handshakes beyond it get 429 `too_many_connections`.
    pub max_connections: u64,
    /// Connections at HTTP (not upgraded) from one client address (IPv6: one
    /// /64), trusted proxies excepted; beyond it new ones are closed at accept.
    pub max_http_conns_per_ip: u32,
    /// Bytes held for messages being assembled, across all connections; a
    /// message that would take more is closed with 1013 `overloaded`.
    pub assembly_memory: u64,
}

impl Default for GlobalLimits {
    fn default() -> Self {
        GlobalLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_http_conns_per_ip: DEFAULT_MAX_HTTP_CONNS_PER_IP,
            assembly_memory: DEFAULT_ASSEMBLY_MEMORY,
        }
    }
}

/// `[assertion]`: a short-lived JWT, signed by the gateway, that tells an
/// upstream who the client is in a way a forger cannot copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assertion {
    /// The request header it travels in (client copies are removed).
    pub header: String,
    /// ES256 private key (PEM, PKCS#8); `None`: one generated at start.
    pub key: Option<PathBuf>,
    /// Lifetime of each assertion.
    pub ttl: Duration,
    /// Path where the gateway publishes its public key as a JWKS.
    pub jwks_path: String,
}

/// An assertion is good this long: enough for the upstream to check it on
/// the handshake, too short to be worth stealing.
pub const DEFAULT_ASSERTION_TTL: Duration = Duration::from_secs(60);
/// Where the gateway's assertion key is published.
pub const DEFAULT_ASSERTION_JWKS_PATH: &str = "/.wsgate/jwks.json";

/// One `[[listener]]`.
#[derive(Debug, Clone)]
pub struct Listener {
    /// Address to bind; port 0 asks the OS for a free port.
    pub bind: SocketAddr,
    /// TLS, or `None` for cleartext ws.
    pub tls: Option<Tls>,
    /// `Host` values accepted on this listener (DNS rebinding defence).
    pub hosts: Hosts,
    /// Time allowed for TLS and the request head.
    pub handshake_timeout: Duration,
    /// Largest request head, in bytes.
    pub max_header_bytes: u64,
    /// Client certificates: asked for, verified against these CAs.
    pub client_certs: Option<ClientCerts>,
    /// Bind with `SO_REUSEPORT`, so a new wsgate process can bind the same
    /// address beside this one (a zero-downtime upgrade).
    pub reuse_port: bool,
    /// Proxies whose `X-Forwarded-For` names the client (a load balancer in
    /// front); empty: every connection is its own client.
    pub trusted_proxies: Vec<IpNet>,
    /// Every connection starts with a PROXY protocol header (v1 or v2) from
    /// one of `trusted_proxies`, naming the client: for balancers that relay
    /// TCP and cannot add `X-Forwarded-For`.
    pub proxy_protocol: bool,
}

/// `client_ca`, `client_cert` and `client_crl` on a TLS listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCerts {
    /// PEM file of the CAs that issue client certificates.
    pub ca: PathBuf,
    /// Whether a client may connect without one.
    pub mode: ClientCertMode,
    /// PEM CRLs: certificates they list are refused.
    pub crls: Vec<PathBuf>,
}

/// `client_cert`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCertMode {
    /// Asked for; a client without one still connects (routes decide).
    Optional,
    /// A client without a valid certificate fails the TLS handshake.
    Required,
}

/// Where a listener's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tls {
    /// PEM files, resolved relative to the config file.
    Files {
        /// Certificate chain.
        cert: PathBuf,
        /// Private key.
        key: PathBuf,
    },
    /// A certificate generated at start, for development.
    SelfSigned,
}

/// A `hosts` allow-list.
#[derive(Debug, Clone, Default)]
pub enum Hosts {
    /// No list: any `Host` (only possible on non-loopback listeners).
    #[default]
    Any,
    /// Only these.
    Only(Vec<HostPattern>),
}

/// Whether a route enforces its decisions or only reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Refuse what the policy refuses.
    #[default]
    Enforce,
    /// Decide and log as when enforcing, but admit.
    Report,
}

/// How a route authenticates clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// Written out as `auth = "none"`: no authentication.
    None,
    /// Any one of these methods is enough.
    Any(Vec<AuthMethod>),
}

impl Auth {
    /// Whether `method` is one of the route's.
    pub fn takes(&self, method: AuthMethod) -> bool {
        matches!(self, Auth::Any(methods) if methods.contains(&method))
    }
}

/// One way to authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// A JWT, per `[auth.jwt]`.
    Jwt,
    /// HTTP Basic, per `[auth.basic]`.
    Basic,
    /// A TLS client certificate, per `[auth.mtls]`.
    Mtls,
    /// A one-time ticket, per `[auth.ticket]`.
    Ticket,
    /// The application's own verdict on the client's cookie or `Authorization`, per `[auth.forward]`.
    Forward,
}

impl AuthMethod {
    /// The name used in config and logs.
    pub fn name(self) -> &'static str {
        match self {
            AuthMethod::Jwt => "jwt",
            AuthMethod::Basic => "basic",
            AuthMethod::Mtls => "mtls",
            AuthMethod::Ticket => "ticket",
            AuthMethod::Forward => "forward",
        }
    }
}

/// Headers the gateway sets for the upstream from what it verified; client
/// copies of them are always removed first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityHeaders {
    /// Carries the verified user name.
    pub user: Option<String>,
    /// Carries the method that verified it (`jwt`, `basic`, `none`).
    pub method: Option<String>,
    /// Carries the verified TLS client certificate's subject (RFC 4514 form).
    pub client_cert: Option<String>,
}

/// One `[[route]]`.
#[derive(Debug, Clone)]
pub struct Route {
    /// Path prefix, matched on `/` boundaries.
    pub path: String,
    /// `Host` values accepted on this route, on top of the listener's.
    pub hosts: Hosts,
    /// Enforce or report.
    pub mode: Mode,
    /// Where admitted connections go.
    pub upstream: Upstream,
    /// Origins that may connect; empty refuses every handshake that has an Origin.
    pub origins: Vec<OriginPattern>,
    /// Whether a handshake without `Origin` (a non-browser client) is admitted.
    pub allow_missing_origin: bool,
    /// Authentication.
    pub auth: Auth,
    /// A query parameter a JWT may come in (opt-in: URLs end up in logs).
    pub jwt_query_param: Option<String>,
    /// Identity headers for the upstream.
    pub identity_headers: IdentityHeaders,
    /// Subprotocols a client may negotiate; others it offers are not passed on.
    pub subprotocols: Vec<String>,
    /// Limits.
    pub limits: Limits,
    /// Rules every client message must follow.
    pub messages: Messages,
    /// Accept permessage-deflate from clients (inflated, with `max_message`
    /// bounding the inflated size, before any rule sees a message).
    pub compression: bool,
    /// What the route carries: WebSocket connections, or plain HTTP.
    pub kind: RouteKind,
    /// The `Content-Security-Policy` added to an HTTP route's responses.
    pub csp: Option<Csp>,
}

/// `kind` of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RouteKind {
    /// WebSocket handshakes, admitted and relayed frame by frame.
    #[default]
    WebSocket,
    /// Plain HTTP requests (pages, the application's API, its login),
    /// proxied to an http:// or https:// upstream.
    Http,
}

/// `csp` on an HTTP route: a policy added to every response, on top of any
/// the upstream sends (browsers enforce every policy a response carries,
/// so adding one can only tighten).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Csp {
    /// `connect-src` source expressions: where the page's scripts may
    /// open WebSockets (and fetch), e.g. `'self'`, `wss://chat.example.com`.
    pub connect_src: Vec<String>,
    /// Report violations without blocking (`Content-Security-Policy-Report-Only`).
    pub report_only: bool,
}

/// `[route.messages]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Messages {
    /// Text messages are allowed.
    pub text: bool,
    /// Binary messages are allowed.
    pub binary: bool,
    /// Every text message must be JSON.
    pub json: bool,
    /// A JSON Schema every text message must satisfy (implies `json`): the file and its content.
    pub schema: Option<(PathBuf, serde_json::Value)>,
    /// What happens to a message that breaks a rule.
    pub on_violation: OnViolation,
}

impl Default for Messages {
    fn default() -> Self {
        Messages {
            text: true,
            binary: true,
            json: false,
            schema: None,
            on_violation: OnViolation::Close,
        }
    }
}

impl Messages {
    /// Whether text messages must be seen whole before any of it is forwarded.
    pub fn assembles_text(&self) -> bool {
        self.json || self.schema.is_some()
    }
}

/// `on_violation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnViolation {
    /// Close the connection with the rule's close code.
    Close,
    /// Drop the message, count it, keep the connection.
    Drop,
}

/// A WebSocket upstream.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// The URL as written.
    pub url: url::Url,
    /// `wss://`.
    pub tls: bool,
    /// Host name or IP to connect to.
    pub host: String,
    /// Port to connect to.
    pub port: u16,
    /// Extra CA certificates (PEM) trusted for this upstream, besides the system roots.
    pub ca: Option<PathBuf>,
}

/// Per-route limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest single frame from the client.
    pub max_frame: u64,
    /// Largest message (all fragments) from the client.
    pub max_message: u64,
    /// Close after this long without data frames; `None` is off.
    pub idle_timeout: Option<Duration>,
    /// Ping the client this often; `None` is off.
    pub ping_interval: Option<Duration>,
    /// Close after this long whatever happens; `None` is off.
    pub max_lifetime: Option<Duration>,
    /// Time allowed to connect to the upstream.
    pub connect_timeout: Duration,
    /// Messages per second a client may send, on average; `None` is off.
    pub messages_per_sec: Option<u32>,
    /// Messages a client may send at once above the average rate.
    pub burst: Option<u32>,
    /// Frame bytes per second a client may send (one second's worth at once); `None` is off.
    pub bytes_per_sec: Option<u64>,
    /// Open connections from one client address (IPv6: one prefix) on this route.
    pub max_conns_per_ip: Option<u32>,
    /// Open connections of one authenticated user on this route.
    pub max_conns_per_user: Option<u32>,
    /// Handshakes from one client address (IPv6: one prefix) per minute on this route.
    pub handshakes_per_ip_per_min: Option<u32>,
    /// The IPv6 prefix length that counts as one client address.
    pub ipv6_prefix: u8,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame: DEFAULT_MAX_MESSAGE,
            max_message: DEFAULT_MAX_MESSAGE,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            ping_interval: Some(DEFAULT_PING_INTERVAL),
            max_lifetime: Some(DEFAULT_MAX_LIFETIME),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            messages_per_sec: None,
            burst: None,
            bytes_per_sec: None,
            max_conns_per_ip: None,
            max_conns_per_user: None,
            handshakes_per_ip_per_min: None,
            ipv6_prefix: DEFAULT_IPV6_PREFIX,
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Log {
    /// Format of operational log lines.
    pub format: LogFormat,
    /// Where audit events (decisions and closes) are written.
    pub audit: AuditTarget,
}

/// Format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One JSON object per line.
    #[default]
    Json,
    /// Human-readable.
    Pretty,
}

/// Destination of audit events.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AuditTarget {
    /// Standard output.
    #[default]
    Stdout,
    /// Appended to a file.
    File(PathBuf),
}

/// `[store]`: where counts, tickets and revocations live.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Store {
    /// In this process: right for one instance.
    #[default]
    Memory,
    /// In Redis, shared by every instance that names the same server and prefix.
    Redis(RedisStore),
}

/// `[store] kind = "redis"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisStore {
    /// `redis://` or `rediss://` URL (with database number, user and password if any).
    pub url: String,
    /// What handshakes get while Redis cannot be reached.
    pub on_error: OnStoreError,
    /// Longest wait for one Redis operation before it counts as unreachable.
    pub timeout: Duration,
    /// How long a connection's count outlives the instance that stops renewing it.
    pub lease: Duration,
    /// Prefix of every key and channel, so several deployments can share a server.
    pub prefix: String,
}

/// `[store] on_error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStoreError {
    /// Refuse handshakes that need the store: 503 `store_unavailable`.
    Deny,
    /// Admit them without counting (and without tickets, which cannot be checked).
    Allow,
}

/// A Redis operation that takes longer than this counts as a failure: a
/// handshake should not wait on a dying server.
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_millis(500);
/// A crashed instance's connections stop counting within this time; the
/// live instance renews its leases every third of it.
pub const DEFAULT_STORE_LEASE: Duration = Duration::from_secs(30);

/// `[shutdown]`.
#[derive(Debug, Clone)]
pub struct Shutdown {
    /// After the listeners close, how long open connections keep running
    /// (a new process beside this one takes the new ones) before they are
    /// sent 1001.
    pub drain: Duration,
    /// Time open connections get to finish their close handshake.
    pub grace: Duration,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown {
            drain: Duration::ZERO,
            grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}
