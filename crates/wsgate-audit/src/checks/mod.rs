//! The checks: [`catalog`] says what each is; this module runs them.
//!
//! Every probe is bounded: a deadline on each answer (`--timeout`), a cap
//! on new connections per second (`--rate`), a largest message
//! (`--max-probe`) and a longest hold (`--hold-wait`); each loop has a fixed
//! number of steps, and the bound a check used is in its evidence.

pub mod catalog;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::Ordering;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;

pub use catalog::{CATALOG, Check};

use crate::report::Outcome;
use crate::target::Target;
use crate::wire::{After, Conn, Request, Response, WireError, frame, header};

/// An Origin nobody can own.
const FOREIGN: &str = "https://wsgate-audit.invalid";

/// Everything the checks share.
pub struct Ctx {
    /// The target.
    pub target: Target,
    pacer: DefaultDirectRateLimiter,
    /// Whether the endpoint accepted permessage-deflate (set by `deflate-offered`).
    deflate: std::sync::atomic::AtomicBool,
    /// Set when a handshake of the running check was answered 429: the
    /// endpoint refused the audit's pace, not what the check sent.
    throttled: std::sync::atomic::AtomicBool,
}

impl Ctx {
    /// A context for `target`.
    pub fn new(target: Target) -> Ctx {
        let rate = NonZeroU32::new(target.options.rate).unwrap_or(NonZeroU32::MIN);
        Ctx {
            target,
            pacer: RateLimiter::direct(Quota::per_second(rate)),
            deflate: std::sync::atomic::AtomicBool::new(false),
            throttled: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// A new connection, no faster than `--rate`.
    async fn connect(&self) -> Result<Conn, WireError> {
        self.pacer.until_ready().await;
        self.target.dialer.connect().await
    }

    /// Sends `req` on a new connection; returns the answer and the
    /// connection (open on a 101).
    async fn try_request(&self, req: &Request) -> Result<(Response, Conn), WireError> {
        let mut conn = self.connect().await?;
        let response = conn.handshake(req).await?;
        self.note(&response);
        Ok((response, conn))
    }

    /// The answer to `req`; a 101 is closed politely at once.
    async fn status(&self, req: &Request) -> Result<Response, WireError> {
        let (response, conn) = self.try_request(req).await?;
        if response.status == 101 {
            conn.close().await;
        }
        Ok(response)
    }

    /// A legitimate connection, upgraded.
    async fn open(&self) -> Result<Conn, Outcome> {
        let req = self.target.request();
        match self.try_request(&req).await {
            Ok((r, conn)) if r.status == 101 => Ok(conn),
            Ok((r, _)) => Err(Outcome::Error {
                reason: format!("the legitimate handshake was answered {}", r.status_line),
            }),
            Err(e) => Err(Outcome::Error {
                reason: format!("the legitimate handshake failed: {e}"),
            }),
        }
    }

    /// The legitimate handshake with its Origin replaced (or removed).
    fn with_origin(&self, origin: Option<&str>) -> Request {
        let mut r = self.target.request();
        match origin {
            Some(o) => r.set("Origin", o),
            None => r.remove("Origin"),
        }
        r
    }

    /// Tries each origin with the given credentials; any 101 is a finding.
    async fn origins(&self, origins: &[String]) -> Outcome {
        let mut accepted = Vec::new();
        let mut refused = Vec::new();
        for o in origins {
            match self.status(&self.with_origin(Some(o))).await {
                Ok(r) if r.status == 101 => accepted.push(o.clone()),
                Ok(r) => refused.push(format!("{o} → {}", r.status)),
                Err(e) => refused.push(format!("{o} → {e}")),
            }
        }
        if accepted.is_empty() {
            Outcome::Pass {
                evidence: format!("refused: {}", refused.join(", ")),
            }
        } else {
            Outcome::Finding {
                evidence: format!(
                    "101 Switching Protocols for Origin {}{}",
                    accepted.join(", "),
                    self.with_credentials()
                ),
            }
        }
    }

    fn with_credentials(&self) -> &'static str {
        if self.target.has_credentials() {
            " with the given credentials"
        } else {
            ""
        }
    }

    /// Sends `bytes` on a legitimate connection and judges how it ends.
    async fn frame_probe(&self, bytes: &[u8], expected: &[u16]) -> Outcome {
        let mut conn = match self.open().await {
            Ok(c) => c,
            Err(o) => return o,
        };
        if let Err(e) = conn.send(bytes).await {
            return Outcome::Pass {
                evidence: format!("the connection ended while sending: {e}"),
            };
        }
        match conn.after(self.target.options.timeout).await {
            After::Closed(code) if expected.contains(&code) => Outcome::Pass {
                evidence: format!("closed with {code}"),
            },
            After::Dropped => Outcome::Pass {
                evidence: "the connection was dropped (no close frame)".into(),
            },
            other => Outcome::Finding {
                evidence: format!(
                    "{other} (expected a close with {})",
                    expected
                        .iter()
                        .map(u16::to_string)
                        .collect::<Vec<_>>()
                        .join(" or ")
                ),
            },
        }
    }

    /// Notes an answer that throttles the audit itself.
    fn note(&self, response: &Response) {
        if response.status == 429 {
            self.throttled.store(true, Ordering::Relaxed);
        }
    }

    /// Runs one check. A pass made while the endpoint was answering 429
    /// means nothing (a throttled origin probe was refused for its pace,
    /// not its origin), so it becomes an error that says so; a finding
    /// stands, as the probe that found it got through.
    pub async fn run(&self, check: &Check) -> Outcome {
        self.throttled.store(false, Ordering::Relaxed);
        let outcome = self.judge(check).await;
        let throttled = self.throttled.load(Ordering::Relaxed);
        match outcome {
            // A limit's 429 is what these two look for (wsgate answers a
            // client over its connection cap with 429 too).
            Outcome::Pass { .. }
                if throttled && !matches!(check.id, "auth-guessing" | "connection-limit") =>
            {
                Outcome::Error {
                    reason: "the endpoint answered 429 Too Many Requests during this check, so a refusal may be its throttle's and not a verdict; audit again later, with a lower --rate, or from an address the throttle exempts".into(),
                }
            }
            other => other,
        }
    }

    async fn judge(&self, check: &Check) -> Outcome {
        let t = &self.target;
        let o = &t.options;
        if check.aggressive && !o.aggressive {
            return Outcome::Skipped {
                reason: "stresses the endpoint; runs with --aggressive".into(),
            };
        }
        match check.id {
            "origin-foreign" => self.origins(&[FOREIGN.to_owned()]).await,
            "origin-null" => self.origins(&["null".to_owned()]).await,
            "origin-missing" => match self.status(&self.with_origin(None)).await {
                Ok(r) if r.status == 101 && t.has_ambient_credentials() => Outcome::Finding {
                    evidence: "101 Switching Protocols with the given cookie, Basic credentials or client certificate and no Origin".into(),
                },
                Ok(r) if r.status == 101 => Outcome::Pass {
                    evidence: "101 without Origin, with no ambient credential (cookie, Basic, client certificate) to test with".into(),
                },
                Ok(r) => Outcome::Pass {
                    evidence: format!("refused: {}", r.status_line),
                },
                Err(e) => Outcome::Pass {
                    evidence: format!("refused: {e}"),
                },
            },
            "origin-lookalike" => self.origins(&lookalikes(&t.origin)).await,
            "origin-sibling" => match sibling(&t.origin) {
                Some(s) => self.origins(&[s]).await,
                None => Outcome::Skipped {
                    reason: "the origin's host has no parent domain to have siblings in".into(),
                },
            },
            "origin-scheme" => self.origins(&[other_scheme(&t.origin)]).await,
            "origin-port" => self.origins(&[other_port(&t.origin)]).await,
            "origin-ip-literal" => {
                let ips: Vec<String> = ["http://127.0.0.1", "http://[::1]", "http://192.168.0.1"]
                    .into_iter()
                    .filter(|ip| !t.origin.starts_with(ip))
                    .map(str::to_owned)
                    .collect();
                self.origins(&ips).await
            }
            "origin-file" => self.origins(&["file://".to_owned()]).await,
            "origin-extension" => {
                self.origins(&[
                    "chrome-extension://abcdefghijklmnopabcdefghijklmnop".to_owned(),
                    "moz-extension://00000000-0000-4000-8000-000000000000".to_owned(),
                ])
                .await
            }
            "host-rebinding" => {
                let mut r = self.target.request();
                r.set("Host", "wsgate-audit.invalid");
                r.set("Origin", "http://wsgate-audit.invalid");
                judge_refusal(self.status(&r).await, "Host and Origin wsgate-audit.invalid")
            }
            "sec-fetch-site" => {
                let mut r = self.target.request();
                r.set("Sec-Fetch-Site", "cross-site");
                r.set("Sec-Fetch-Mode", "websocket");
                if !t.has_ambient_credentials() {
                    return Outcome::Skipped {
                        reason: "only matters with ambient credentials (--cookie, Basic, --client-cert)".into(),
                    };
                }
                if split_origin(&t.origin).1 != t.host {
                    return Outcome::Skipped {
                        reason: "the origin is on another host than the endpoint, where cross-site can be legitimate".into(),
                    };
                }
                judge_refusal(self.status(&r).await, "Sec-Fetch-Site: cross-site")
            }
            "auth-missing" | "auth-invalid-token" if !o.expect_auth => Outcome::Skipped {
                reason: "give --expect-auth when the endpoint should require credentials".into(),
            },
            "auth-missing" => {
                let mut r = t.bare_request();
                r.set("Origin", &t.origin);
                judge_refusal(self.anonymous(&r).await, "no credentials")
            }
            "auth-invalid-token" => {
                let mut r = t.bare_request();
                r.set("Origin", &t.origin);
                r.set("Authorization", &format!("Bearer {}", forged_jwt()));
                judge_refusal(self.anonymous(&r).await, "a JWT signed with a key of the auditor's")
            }
            "auth-query-token" => self.query_token().await,
            "transport-cleartext" => self.cleartext().await,
            "tls-certificate" => match (t.tls, t.dialer.cert_problem()) {
                (false, _) => Outcome::Skipped {
                    reason: "ws:// has no certificate".into(),
                },
                (true, Some(p)) => Outcome::Finding {
                    evidence: format!("certificate verification failed: {p} (accepted because of --insecure)"),
                },
                (true, None) => Outcome::Pass {
                    evidence: "the certificate verifies against the system's roots for this name".into(),
                },
            },
            "tls-old-versions" => self.old_tls().await,
            "version-unsupported" => self.versions().await,
            "subprotocol-echo" => {
                let mut r = t.request();
                r.set("Sec-WebSocket-Protocol", "wsgate-audit.unlisted");
                match self.status(&r).await {
                    Ok(resp) if resp.status == 101
                        && resp.header("sec-websocket-protocol") == Some("wsgate-audit.unlisted") =>
                    {
                        Outcome::Finding {
                            evidence: "101 selecting Sec-WebSocket-Protocol: wsgate-audit.unlisted".into(),
                        }
                    }
                    Ok(resp) => Outcome::Pass {
                        evidence: format!(
                            "{} without selecting it",
                            resp.status_line
                        ),
                    },
                    Err(e) => Outcome::Error { reason: e.to_string() },
                }
            }
            "frame-unmasked" => self.frame_probe(&frame(0x81, b"unmasked", false), &[1002]).await,
            "frame-reserved-bits" => self.frame_probe(&frame(0xF1, b"rsv", true), &[1002]).await,
            "frame-reserved-opcode" => {
                let a = self.frame_probe(&frame(0x83, b"op3", true), &[1002]).await;
                if matches!(a, Outcome::Finding { .. }) {
                    return a;
                }
                self.frame_probe(&frame(0x8B, b"opB", true), &[1002]).await
            }
            "frame-control-too-long" => self.frame_probe(&frame(0x89, &[b'p'; 126], true), &[1002]).await,
            "frame-control-fragmented" => self.frame_probe(&frame(0x09, b"ping", true), &[1002]).await,
            "frame-length-overflow" => {
                let mut bytes = header(0x82, 1 << 63, true);
                bytes.extend_from_slice(&rand::random::<[u8; 4]>());
                self.frame_probe(&bytes, &[1002, 1009]).await
            }
            "frame-invalid-utf8" => self.frame_probe(&frame(0x81, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xff\xfe", true), &[1007]).await,
            "error-disclosure" => self.error_disclosure().await,
            "survives-malformed-frames" => match self.open().await {
                Ok(c) => {
                    c.close().await;
                    Outcome::Pass {
                        evidence: "a fresh legitimate handshake still gets 101".into(),
                    }
                }
                Err(Outcome::Error { reason }) => Outcome::Finding { evidence: reason },
                Err(other) => other,
            },
            "deflate-offered" => {
                let mut r = t.request();
                r.set("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits");
                match self.status(&r).await {
                    Ok(resp) if resp.status == 101 => match resp.header("sec-websocket-extensions") {
                        Some(ext) if ext.contains("permessage-deflate") => {
                            self.deflate.store(true, std::sync::atomic::Ordering::Relaxed);
                            Outcome::Finding {
                                evidence: format!("accepted: Sec-WebSocket-Extensions: {ext}"),
                            }
                        }
                        _ => Outcome::Pass {
                            evidence: "101 without an extension".into(),
                        },
                    },
                    Ok(resp) => Outcome::Error {
                        reason: format!("the legitimate handshake with an offer was answered {}", resp.status_line),
                    },
                    Err(e) => Outcome::Error { reason: e.to_string() },
                }
            }
            "limit-message-size" => self.message_size().await,
            "limit-continuation" => self.continuation().await,
            "limit-deflate-bomb" => self.bomb().await,
            "slow-handshake" => self.slow_handshake().await,
            "idle-timeout" => match self.open().await {
                Ok(mut c) => match c.after(o.hold_wait).await {
                    After::Open { .. } => Outcome::Finding {
                        evidence: format!("still open after {:?} with no data and no pongs", o.hold_wait),
                    },
                    other => Outcome::Pass {
                        evidence: format!("{other} within {:?}", o.hold_wait),
                    },
                },
                Err(e) => e,
            },
            "message-rate" => self.message_rate().await,
            "connection-limit" => self.connection_limit().await,
            "auth-guessing" if !o.expect_auth => Outcome::Skipped {
                reason: "give --expect-auth when the endpoint should require credentials".into(),
            },
            "auth-guessing" => self.guessing().await,
            other => Outcome::Error {
                reason: format!("no runner for {other}"),
            },
        }
    }

    /// Sends without the client certificate (the credential under test is absent).
    async fn anonymous(&self, req: &Request) -> Result<Response, WireError> {
        self.pacer.until_ready().await;
        let mut conn = self.target.anonymous.connect().await?;
        let response = conn.handshake(req).await?;
        self.note(&response);
        if response.status == 101 {
            conn.close().await;
        }
        Ok(response)
    }

    async fn query_token(&self) -> Outcome {
        let t = &self.target;
        const NAMES: [&str; 8] = [
            "token",
            "access_token",
            "jwt",
            "auth",
            "apikey",
            "api_key",
            "key",
            "session",
        ];
        if let Some((name, _)) = t
            .url
            .query_pairs()
            .find(|(k, _)| NAMES.contains(&k.to_ascii_lowercase().as_str()))
        {
            return Outcome::Finding {
                evidence: format!("the URL carries a credential-like query parameter `{name}`"),
            };
        }
        let (Some(token), true) = (&t.options.bearer, t.options.expect_auth) else {
            return Outcome::Pass {
                evidence: "no credential in the URL (give --bearer and --expect-auth to probe query tokens)".into(),
            };
        };
        for name in ["access_token", "token"] {
            let mut r = t.bare_request();
            r.set("Origin", &t.origin);
            let sep = if r.target.contains('?') { '&' } else { '?' };
            r.target = format!("{}{sep}{name}={token}", r.target);
            if let Ok(resp) = self.anonymous(&r).await
                && resp.status == 101
            {
                return Outcome::Finding {
                    evidence: format!(
                        "101 with the bearer token in ?{name}= and no Authorization header"
                    ),
                };
            }
        }
        Outcome::Pass {
            evidence: "the token is refused in ?access_token= and ?token=".into(),
        }
    }

    async fn cleartext(&self) -> Outcome {
        let t = &self.target;
        if !t.tls {
            let loopback = t
                .host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
                || t.host == "localhost";
            return if loopback {
                Outcome::Pass {
                    evidence: "ws:// on a loopback address never crosses a network".into(),
                }
            } else {
                Outcome::Finding {
                    evidence: format!("the endpoint is served over ws:// on {}", t.host),
                }
            };
        }
        let mut ports = vec![80, t.port];
        ports.dedup();
        let mut tried = Vec::new();
        for port in ports {
            let mut d = t.dialer.clone();
            d.tls = None;
            d.port = port;
            self.pacer.until_ready().await;
            let mut r = t.request();
            r.set("Host", &t.host_header);
            match d.connect().await {
                Ok(mut c) => match c.handshake(&r).await.inspect(|r| self.note(r)) {
                    Ok(resp) if resp.status == 101 => {
                        c.close().await;
                        return Outcome::Finding {
                            evidence: format!("ws://{}:{port} answered 101", t.host),
                        };
                    }
                    Ok(resp) => tried.push(format!("ws://{}:{port} → {}", t.host, resp.status)),
                    Err(e) => tried.push(format!("ws://{}:{port} → {e}", t.host)),
                },
                Err(e) => tried.push(format!("ws://{}:{port} → {e}", t.host)),
            }
        }
        Outcome::Pass {
            evidence: format!("no cleartext WebSocket: {}", tried.join("; ")),
        }
    }

    async fn old_tls(&self) -> Outcome {
        if !self.target.tls {
            return Outcome::Skipped {
                reason: "ws:// has no TLS".into(),
            };
        }
        let mut refused = Vec::new();
        for (version, name) in [(0x0301, "TLS 1.0"), (0x0302, "TLS 1.1")] {
            self.pacer.until_ready().await;
            match crate::wire::legacy_tls(&self.target.dialer, version).await {
                Ok(true) => {
                    return Outcome::Finding {
                        evidence: format!("a ServerHello for {name}"),
                    };
                }
                Ok(false) => refused.push(name),
                Err(e) => {
                    return Outcome::Error {
                        reason: format!("{name}: {e}"),
                    };
                }
            }
        }
        Outcome::Pass {
            evidence: format!("refused: {}", refused.join(", ")),
        }
    }

    async fn versions(&self) -> Outcome {
        let mut seen = Vec::new();
        for v in ["8", ""] {
            let mut r = self.target.request();
            r.set("Sec-WebSocket-Version", v);
            match self.status(&r).await {
                Ok(resp)
                    if resp.status == 426
                        && resp
                            .header("sec-websocket-version")
                            .is_some_and(|h| h.split(',').any(|x| x.trim() == "13")) =>
                {
                    seen.push(format!("version {v:?} → 426 naming 13"));
                }
                Ok(resp) => {
                    return Outcome::Finding {
                        evidence: format!(
                            "Sec-WebSocket-Version: {v:?} was answered {}{}",
                            resp.status_line,
                            if resp.status == 426 {
                                " without naming 13"
                            } else {
                                ""
                            }
                        ),
                    };
                }
                Err(e) => {
                    return Outcome::Finding {
                        evidence: format!(
                            "Sec-WebSocket-Version: {v:?} got no answer ({e}), not 426 naming 13"
                        ),
                    };
                }
            }
        }
        Outcome::Pass {
            evidence: seen.join(", "),
        }
    }

    /// Malformed messages on the legitimate connection, then every answer
    /// read until the timeout or a close: a finding when one carries what
    /// only a stack trace or a parser's exception would.
    async fn error_disclosure(&self) -> Outcome {
        let mut conn = match self.open().await {
            Ok(c) => c,
            Err(o) => return o,
        };
        for probe in MALFORMED {
            if conn
                .send(&frame(0x81, probe.as_bytes(), true))
                .await
                .is_err()
            {
                break;
            }
        }
        let deadline = Instant::now() + self.target.options.timeout;
        let mut answers = 0;
        while let Ok(f) = conn.read_frame(deadline).await {
            let text = match f.opcode() {
                0x1 | 0x2 => &f.payload[..],
                // A close frame's reason follows its code.
                0x8 => f.payload.get(2..).unwrap_or_default(),
                _ => continue,
            };
            answers += 1;
            if let Some((what, marker)) = disclosure(text) {
                return Outcome::Finding {
                    evidence: format!(
                        "an answer to a malformed message holds {what} ({marker:?}): {}",
                        excerpt(text)
                    ),
                };
            }
            if f.opcode() == 0x8 {
                break;
            }
        }
        conn.close().await;
        Outcome::Pass {
            evidence: format!(
                "{answers} answers to {} malformed messages within {:?}, none with a stack trace or a parser's exception",
                MALFORMED.len(),
                self.target.options.timeout
            ),
        }
    }

    async fn message_size(&self) -> Outcome {
        let max = self.target.options.max_probe;
        let mut size: u64 = 64 * 1024;
        loop {
            let mut conn = match self.open().await {
                Ok(c) => c,
                Err(o) => return o,
            };
            let payload = vec![b'a'; usize::try_from(size).unwrap_or(usize::MAX)];
            let sent = conn.send(&frame(0x82, &payload, true)).await;
            let after = match sent {
                Err(_) => After::Dropped,
                Ok(()) => conn.after(self.target.options.timeout).await,
            };
            if !matches!(after, After::Open { .. }) {
                return Outcome::Pass {
                    evidence: format!("a {} message was refused: {after}", bytes(size)),
                };
            }
            conn.close().await;
            if size >= max {
                return Outcome::Finding {
                    evidence: format!(
                        "messages up to {} were accepted (the probe's bound, --max-probe)",
                        bytes(size)
                    ),
                };
            }
            size = (size * 4).min(max);
        }
    }

    async fn continuation(&self) -> Outcome {
        let max = self.target.options.max_probe;
        let mut conn = match self.open().await {
            Ok(c) => c,
            Err(o) => return o,
        };
        let chunk = vec![b'a'; 64 * 1024];
        let mut sent: u64 = 0;
        let mut first = true;
        while sent < max {
            let op = if first { 0x01 } else { 0x00 };
            first = false;
            if conn.send(&frame(op, &chunk, true)).await.is_err() {
                return Outcome::Pass {
                    evidence: format!("the connection ended after {} of fragments", bytes(sent)),
                };
            }
            sent += chunk.len() as u64;
        }
        match conn.after(self.target.options.timeout).await {
            After::Open { .. } => Outcome::Finding {
                evidence: format!(
                    "{} of fragments without FIN were accepted (the probe's bound)",
                    bytes(sent)
                ),
            },
            other => Outcome::Pass {
                evidence: format!("{other} after {} of fragments", bytes(sent)),
            },
        }
    }

    async fn bomb(&self) -> Outcome {
        if !self.deflate.load(std::sync::atomic::Ordering::Relaxed) {
            return Outcome::Skipped {
                reason: "permessage-deflate was not accepted (deflate-offered)".into(),
            };
        }
        let inflated = self.target.options.max_probe.saturating_mul(4);
        let mut r = self.target.request();
        r.set("Sec-WebSocket-Extensions", "permessage-deflate");
        let mut conn = match self.try_request(&r).await {
            Ok((resp, c)) if resp.status == 101 => c,
            Ok((resp, _)) => {
                return Outcome::Error {
                    reason: format!(
                        "the handshake with the offer was answered {}",
                        resp.status_line
                    ),
                };
            }
            Err(e) => {
                return Outcome::Error {
                    reason: e.to_string(),
                };
            }
        };
        let compressed = zeros(inflated);
        if conn.send(&frame(0xC2, &compressed, true)).await.is_err() {
            return Outcome::Pass {
                evidence: "the connection ended while the bomb was sent".into(),
            };
        }
        match conn.after(self.target.options.timeout).await {
            After::Open { .. } => Outcome::Finding {
                evidence: format!(
                    "{} compressed, inflating to {}, was accepted",
                    bytes(compressed.len() as u64),
                    bytes(inflated)
                ),
            },
            other => Outcome::Pass {
                evidence: format!(
                    "{other} on {} inflating to {}",
                    bytes(compressed.len() as u64),
                    bytes(inflated)
                ),
            },
        }
    }

    async fn slow_handshake(&self) -> Outcome {
        let wait = self.target.options.hold_wait;
        let mut conn = match self.connect().await {
            Ok(c) => c,
            Err(e) => {
                return Outcome::Error {
                    reason: e.to_string(),
                };
            }
        };
        let bytes = self.target.request().bytes();
        let start = Instant::now();
        for (i, b) in bytes.iter().enumerate() {
            if start.elapsed() >= wait {
                return Outcome::Finding {
                    evidence: format!(
                        "still open after {wait:?}, {i} bytes of the head sent one a second"
                    ),
                };
            }
            // A byte, then a second in which the endpoint may hang up.
            if conn.send(&[*b]).await.is_err() || conn.hangs_up_within(Duration::from_secs(1)).await
            {
                return Outcome::Pass {
                    evidence: format!(
                        "closed after {:.1?} ({} bytes sent)",
                        start.elapsed(),
                        i + 1
                    ),
                };
            }
        }
        Outcome::Finding {
            evidence: format!(
                "the whole head, sent one byte a second over {:?}, was read",
                start.elapsed()
            ),
        }
    }

    async fn message_rate(&self) -> Outcome {
        const MAX: u64 = 2000;
        let bound = Duration::from_secs(5);
        let mut conn = match self.open().await {
            Ok(c) => c,
            Err(o) => return o,
        };
        let text = self
            .target
            .options
            .message
            .clone()
            .unwrap_or_else(|| "wsgate-audit".into());
        // Fifty messages a write, built once.
        let batch: Vec<u8> = (0..50)
            .flat_map(|_| frame(0x81, text.as_bytes(), true))
            .collect();
        let start = Instant::now();
        let mut sent = 0u64;
        while sent < MAX && start.elapsed() < bound {
            if conn.send(&batch).await.is_err() {
                return Outcome::Pass {
                    evidence: format!("the connection ended after {sent} messages"),
                };
            }
            sent += 50;
        }
        let elapsed = start.elapsed();
        match conn.after(self.target.options.timeout).await {
            After::Open { .. } => Outcome::Finding {
                evidence: format!(
                    "{sent} messages in {elapsed:.1?} were taken without a close (the probe's bound: {MAX} messages or {bound:?})"
                ),
            },
            other => Outcome::Pass {
                evidence: format!("{other} after {sent} messages in {elapsed:.1?}"),
            },
        }
    }

    async fn connection_limit(&self) -> Outcome {
        const MAX: usize = 64;
        let mut held = Vec::new();
        for i in 0..MAX {
            match self.try_request(&self.target.request()).await {
                Ok((r, c)) if r.status == 101 => held.push(c),
                Ok((r, _)) => {
                    release(held).await;
                    return Outcome::Pass {
                        evidence: format!("connection {} was refused: {}", i + 1, r.status_line),
                    };
                }
                Err(e) => {
                    release(held).await;
                    // A limit refuses the connections over it; an endpoint
                    // that fell over refuses the next one too, with the
                    // others closed (so does one that bans this client, which
                    // the auditor cannot tell apart: no verdict then).
                    return match self.try_request(&self.target.request()).await {
                        Ok((r, c)) if r.status == 101 => {
                            c.close().await;
                            Outcome::Pass {
                                evidence: format!(
                                    "connection {} failed: {e}; with the others closed, a new one was accepted",
                                    i + 1
                                ),
                            }
                        }
                        _ => Outcome::Error {
                            reason: format!(
                                "connection {} failed: {e}; with the others closed, a new one failed too: the endpoint stopped answering (it fell over, or it bans this client)",
                                i + 1
                            ),
                        },
                    };
                }
            }
        }
        release(held).await;
        Outcome::Finding {
            evidence: format!("{MAX} concurrent connections were accepted (the probe's bound)"),
        }
    }

    /// Forged bearer tokens, one handshake each, until something throttles
    /// them or the bound is reached.
    async fn guessing(&self) -> Outcome {
        const MAX: usize = 100;
        let mut r = self.target.bare_request();
        r.set("Origin", &self.target.origin);
        let start = Instant::now();
        let mut answers = BTreeSet::new();
        for i in 1..=MAX {
            // A new signature each time, as a guesser would send.
            r.set("Authorization", &format!("Bearer {}", forged_jwt()));
            match self.anonymous(&r).await {
                Ok(a) if matches!(a.status, 429 | 503) => {
                    return Outcome::Pass {
                        evidence: format!("forged token {i} was answered {}", a.status_line),
                    };
                }
                Ok(a) if a.status == 101 => {
                    return Outcome::Error {
                        reason: format!(
                            "forged token {i} was accepted (auth-invalid-token's finding): nothing to throttle"
                        ),
                    };
                }
                Ok(a) => {
                    answers.insert(a.status_line);
                }
                // A ban closes the door without an answer; so does an
                // endpoint that fell over. The auditor cannot tell which.
                Err(e) => {
                    return Outcome::Error {
                        reason: format!(
                            "forged token {i} got no answer: {e} (a ban, or the endpoint stopped answering)"
                        ),
                    };
                }
            }
        }
        let answers: Vec<String> = answers.into_iter().collect();
        Outcome::Finding {
            evidence: format!(
                "{MAX} forged bearer tokens in {:.1?} were all answered ({}), none throttled (the probe's bound)",
                start.elapsed(),
                answers.join(", ")
            ),
        }
    }
}

/// What `error-disclosure` sends: JSON cut short, and text that breaks
/// naive string handling. None holds a marker of [`disclosure`], so an
/// endpoint that echoes them is not a finding.
const MALFORMED: [&str; 3] = [
    "{\"wsgate-audit\": [1, ",
    "wsgate-audit'\"\\",
    "{\"wsgate-audit\": }",
];

/// What a stack trace or a parser's exception looks like in text, by
/// language: specific enough that an application's own words do not match.
/// An entry matches when its text holds every one of its markers.
fn disclosure(text: &[u8]) -> Option<(&'static str, &'static str)> {
    const MARKERS: &[(&str, &[&str])] = &[
        ("a Python traceback", &["Traceback (most recent call last)"]),
        ("a Python parser's exception", &["JSONDecodeError"]),
        ("a Java exception", &["Exception in thread"]),
        ("a Java stack", &["\n\tat "]),
        ("a Java parser's exception", &["com.fasterxml.jackson"]),
        ("a .NET stack", &["   at System."]),
        ("a Node.js stack", &["    at JSON.parse"]),
        // A file position is a marker only inside a stack line.
        ("a Node.js stack", &[".js:", "    at "]),
        ("a JavaScript parser's exception", &["SyntaxError: "]),
        ("a Go panic", &["goroutine "]),
        ("a Rust panic", &["panicked at"]),
        ("a PHP stack trace", &["Stack trace:"]),
    ];
    let text = String::from_utf8_lossy(text);
    MARKERS.iter().find_map(|&(what, markers)| {
        markers
            .iter()
            .all(|m| text.contains(m))
            .then_some((what, markers[0]))
    })
}

/// The first 120 characters of an answer, for the evidence.
fn excerpt(text: &[u8]) -> String {
    let text = String::from_utf8_lossy(text);
    let cut: String = text.chars().take(120).collect();
    let more = if cut.len() < text.len() { "…" } else { "" };
    format!("{:?}{more}", cut)
}

async fn release(held: Vec<Conn>) {
    for c in held {
        c.close().await;
    }
}

/// A refusal is a pass, a 101 a finding.
fn judge_refusal(answer: Result<Response, WireError>, what: &str) -> Outcome {
    match answer {
        Ok(r) if r.status == 101 => Outcome::Finding {
            evidence: format!("101 Switching Protocols with {what}"),
        },
        Ok(r) => Outcome::Pass {
            evidence: format!("refused with {what}: {}", r.status_line),
        },
        Err(e) => Outcome::Pass {
            evidence: format!("refused with {what}: {e}"),
        },
    }
}

fn split_origin(origin: &str) -> (&str, &str, Option<&str>) {
    let (scheme, rest) = origin.split_once("://").unwrap_or(("https", origin));
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || rest.starts_with('[') => match p.parse::<u16>() {
            Ok(_) => (h, Some(p)),
            Err(_) => (rest, None),
        },
        _ => (rest, None),
    };
    (scheme, host, port)
}

/// Origins an attacker can own that contain the legitimate host.
fn lookalikes(origin: &str) -> Vec<String> {
    let (scheme, host, port) = split_origin(origin);
    let port = port.map(|p| format!(":{p}")).unwrap_or_default();
    let evil = "wsgate-audit.invalid";
    let mut out = vec![
        format!("{scheme}://{host}.{evil}{port}"),
        format!("{scheme}://evil{host}{port}"),
        format!("{scheme}://{}{port}", host.replace('.', "x")),
        format!("{scheme}://{host}@{evil}{port}"),
        format!("{scheme}://{}.{evil}{port}", host.to_ascii_uppercase()),
        format!("{scheme}://{host}.{evil}.{port}"),
        format!("{scheme}://{host}`{evil}{port}"),
    ];
    out.dedup();
    out
}

/// Another subdomain of the origin's parent domain.
fn sibling(origin: &str) -> Option<String> {
    let (scheme, host, port) = split_origin(origin);
    if host.parse::<IpAddr>().is_ok() || host.starts_with('[') {
        return None;
    }
    let (_, parent) = host.split_once('.')?;
    parent.contains('.').then(|| {
        let port = port.map(|p| format!(":{p}")).unwrap_or_default();
        format!("{scheme}://wsgate-audit-sibling.{parent}{port}")
    })
}

fn other_scheme(origin: &str) -> String {
    match origin.strip_prefix("https://") {
        Some(rest) => format!("http://{rest}"),
        None => format!("https://{}", origin.trim_start_matches("http://")),
    }
}

/// The legitimate host on another port: 8443, a common second HTTPS port,
/// or 8444 when the origin is on 8443 itself (the probe must never be the
/// legitimate origin, which the endpoint rightly accepts).
fn other_port(origin: &str) -> String {
    let (scheme, host, port) = split_origin(origin);
    let other = if port == Some("8443") { 8444 } else { 8443 };
    format!("{scheme}://{host}:{other}")
}

/// A well-formed HS256 JWT signed with a random key: no server can verify it.
fn forged_jwt() -> String {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let header = b64(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = b64(format!(
        r#"{{"sub":"wsgate-audit","iat":{now},"exp":{}}}"#,
        now + 600
    )
    .as_bytes());
    let signature = b64(&rand::random::<[u8; 32]>());
    format!("{header}.{claims}.{signature}")
}

/// `n` zero bytes as one permessage-deflate message (raw DEFLATE, sync
/// flush, tail removed), compressed without holding them.
fn zeros(n: u64) -> Vec<u8> {
    use std::io::Write as _;
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    let block = vec![0u8; 64 * 1024];
    let mut left = n;
    while left > 0 {
        let k = usize::try_from(left).map_or(block.len(), |l| l.min(block.len()));
        if e.write_all(&block[..k]).is_err() {
            break;
        }
        left -= k as u64;
    }
    let _ = e.flush();
    let mut out = e.get_ref().clone();
    if out.ends_with(&[0x00, 0x00, 0xff, 0xff]) {
        out.truncate(out.len() - 4);
    }
    out
}

/// A size in words.
fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookalikes_contain_the_host_and_are_never_the_origin() {
        let all = lookalikes("https://app.example.com");
        assert!(all.contains(&"https://app.example.com.wsgate-audit.invalid".to_owned()));
        assert!(all.contains(&"https://evilapp.example.com".to_owned()));
        assert!(all.contains(&"https://appxexamplexcom".to_owned()));
        assert!(all.iter().all(|o| o != "https://app.example.com"));
        let with_port = lookalikes("http://127.0.0.1:8080");
        assert!(with_port.contains(&"http://127.0.0.1.wsgate-audit.invalid:8080".to_owned()));
    }

    #[test]
    fn siblings_scheme_and_port_variants() {
        assert_eq!(
            sibling("https://app.example.com").as_deref(),
            Some("https://wsgate-audit-sibling.example.com")
        );
        assert_eq!(sibling("https://example.com"), None);
        assert_eq!(sibling("http://127.0.0.1:80"), None);
        assert_eq!(other_scheme("https://a.example"), "http://a.example");
        assert_eq!(other_scheme("http://a.example:81"), "https://a.example:81");
        assert_eq!(other_port("https://a.example"), "https://a.example:8443");
        assert_eq!(other_port("http://[::1]:80"), "http://[::1]:8443");
        // wsgate's own example listens on 8443: its origin is not "another port".
        assert_eq!(
            other_port("https://127.0.0.1:8443"),
            "https://127.0.0.1:8444"
        );
    }

    #[test]
    fn stack_traces_are_recognised_and_an_echo_or_a_plain_error_is_not() {
        // An endpoint that echoes the probes is not a finding.
        for probe in MALFORMED {
            assert_eq!(disclosure(probe.as_bytes()), None, "{probe}");
        }
        for plain in [
            r#"{"error": "invalid message"}"#,
            "bad request: expected JSON",
            "at least 3 characters, please",
        ] {
            assert_eq!(disclosure(plain.as_bytes()), None, "{plain}");
        }
        for (leak, what) in [
            (
                "Traceback (most recent call last):\n  File \"app.py\", line 7",
                "a Python traceback",
            ),
            (
                "json.decoder.JSONDecodeError: Expecting value",
                "a Python parser's exception",
            ),
            (
                "SyntaxError: Unexpected end of JSON input",
                "a JavaScript parser's exception",
            ),
            (
                "Error\n    at Object.<anonymous> (/srv/app/server.js:12:9)",
                "a Node.js stack",
            ),
            (
                "com.example.Chat.onMessage(Chat.java:42)\n\tat org.eclipse.jetty",
                "a Java stack",
            ),
            (
                "thread 'tokio-runtime-worker' panicked at src/main.rs:3:5",
                "a Rust panic",
            ),
            ("goroutine 7 [running]:", "a Go panic"),
        ] {
            assert_eq!(
                disclosure(leak.as_bytes()).map(|d| d.0),
                Some(what),
                "{leak}"
            );
        }
        assert_eq!(
            excerpt(&[b'a'; 200]).chars().count(),
            123,
            "120 characters, quotes, ellipsis"
        );
    }

    #[test]
    fn the_forged_token_looks_like_a_jwt() {
        let t = forged_jwt();
        assert_eq!(t.split('.').count(), 3);
        assert!(t.starts_with("eyJ"));
    }
}
