//! `[auth.*]`: the ways a client can prove who it is, as configured.
//!
//! Parsed and checked at load: algorithms against the key kind (no RS/HS
//! confusion, never `none`), the HS256 secret read from its environment
//! variable, and every htpasswd line (only bcrypt and argon2 hashes; the
//! line number of anything else is reported).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::Collector;
use crate::reader::{At, Table};

/// JWT leeway on `exp` and `nbf`: clocks of issuer and gateway drift a little.
pub const DEFAULT_JWT_LEEWAY: Duration = Duration::from_secs(30);
/// After the credential that admitted a connection expires, it is closed
/// (1008 `session_expired`) once this grace has passed too.
pub const DEFAULT_SESSION_GRACE: Duration = Duration::from_secs(0);
/// Fetches of a JWKS URL are at least this far apart: a flood of tokens with
/// made-up `kid`s must not become a flood of requests to the issuer.
pub const DEFAULT_JWKS_REFRESH_MIN: Duration = Duration::from_secs(30);
/// JWKS keys are fetched again after this, so keys the issuer removed stop working.
pub const DEFAULT_JWKS_MAX_AGE: Duration = Duration::from_secs(600);
/// Shortest HS256 secret accepted: RFC 7518 section 3.2 requires a key at
/// least as long as the hash output (256 bits).
pub const MIN_HS256_SECRET: usize = 32;

/// Largest htpasswd file read (see [`crate::read_bounded`]): a million
/// users' argon2 lines.
const MAX_HTPASSWD_FILE: u64 = 128 << 20;

/// `[auth]`.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// `[auth.jwt]`.
    pub jwt: Option<JwtConfig>,
    /// `[auth.basic]`.
    pub basic: Option<BasicConfig>,
    /// `[auth.mtls]`.
    pub mtls: Option<MtlsConfig>,
    /// `[auth.ticket]`.
    pub ticket: Option<TicketConfig>,
    /// `[auth.forward]`.
    pub forward: Option<ForwardConfig>,
    /// Grace after a credential's expiry before its connection is closed.
    pub session_grace: Duration,
}

/// `[auth.jwt]`.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// Where verification keys come from.
    pub keys: JwtKeys,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Required `aud`, when set.
    pub audience: Option<String>,
    /// Algorithms accepted; all of one key kind.
    pub algorithms: Vec<JwtAlgorithm>,
    /// Where a token may be taken from.
    pub from: Vec<TokenSource>,
    /// The claim that names the user.
    pub user_claim: String,
    /// Leeway on `exp` and `nbf`.
    pub leeway: Duration,
}

/// JWT verification keys.
#[derive(Clone)]
pub enum JwtKeys {
    /// A JWKS document on disk.
    JwksFile(PathBuf),
    /// A JWKS document fetched from the issuer, cached and refreshed.
    JwksUrl {
        /// Where it is published (`https://`, or `http://` on loopback).
        url: url::Url,
        /// Fetches are at least this far apart, however many unknown `kid`s arrive.
        refresh_min: Duration,
        /// Keys older than this are fetched again on next use (removed keys stop working).
        max_age: Duration,
        /// `jwks_ca`: the CA that issued the endpoint's certificate, in place
        /// of the system's roots.
        ca: Option<PathBuf>,
    },
    /// An HMAC secret taken from an environment variable at load.
    Secret {
        /// The variable's name.
        env: String,
        /// Its value.
        secret: Vec<u8>,
    },
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwtKeys::JwksFile(p) => write!(f, "JwksFile({})", p.display()),
            JwtKeys::JwksUrl { url, .. } => write!(f, "JwksUrl({url})"),
            // Never the secret itself, not even in debug output.
            JwtKeys::Secret { env, .. } => write!(f, "Secret(from ${env})"),
        }
    }
}

/// A JWS algorithm wsgate accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtAlgorithm {
    /// HMAC SHA-256.
    HS256,
    /// HMAC SHA-384.
    HS384,
    /// HMAC SHA-512.
    HS512,
    /// RSASSA-PKCS1-v1_5 SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 SHA-512.
    RS512,
    /// RSASSA-PSS SHA-256.
    PS256,
    /// RSASSA-PSS SHA-384.
    PS384,
    /// RSASSA-PSS SHA-512.
    PS512,
    /// ECDSA P-256 SHA-256.
    ES256,
    /// ECDSA P-384 SHA-384.
    ES384,
    /// Ed25519.
    EdDSA,
}

impl JwtAlgorithm {
    const ALL: [JwtAlgorithm; 12] = {
        use JwtAlgorithm::*;
        [
            HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA,
        ]
    };

    /// The `alg` name.
    pub fn name(self) -> &'static str {
        use JwtAlgorithm::*;
        match self {
            HS256 => "HS256",
            HS384 => "HS384",
            HS512 => "HS512",
            RS256 => "RS256",
            RS384 => "RS384",
            RS512 => "RS512",
            PS256 => "PS256",
            PS384 => "PS384",
            PS512 => "PS512",
            ES256 => "ES256",
            ES384 => "ES384",
            EdDSA => "EdDSA",
        }
    }

    /// Whether it is an HMAC (shared secret) algorithm.
    pub fn is_hmac(self) -> bool {
        matches!(
            self,
            JwtAlgorithm::HS256 | JwtAlgorithm::HS384 | JwtAlgorithm::HS512
        )
    }

    fn parse(name: &str) -> Option<JwtAlgorithm> {
        JwtAlgorithm::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// Where a bearer token may come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `Authorization: Bearer ...`.
    Header,
    /// A named cookie.
    Cookie(String),
    /// A `Sec-WebSocket-Protocol` entry `bearer.<token>`, never echoed back.
    Subprotocol,
}

/// How long the gateway waits for the forward-auth service.
pub const DEFAULT_FORWARD_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a forward-auth verdict is reused for the same credentials: a
/// page that opens several sockets asks once.
pub const DEFAULT_FORWARD_CACHE: Duration = Duration::from_secs(5);

/// `[auth.forward]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardConfig {
    /// The endpoint asked (`http://` or `https://`).
    pub url: url::Url,
    /// Response header naming the user.
    pub user_header: String,
    /// Time allowed for the answer.
    pub timeout: Duration,
    /// How long a verdict is reused; `None` is off.
    pub cache: Option<Duration>,
    /// How long a connection admitted this way may live before it is closed
    /// (1008 `session_expired`); `None` is off.
    pub max_age: Option<Duration>,
    /// `ca`: the CA that issued an `https://` endpoint's certificate, in
    /// place of the system's roots.
    pub ca: Option<PathBuf>,
}

/// Where tickets are issued unless `issue_path` says otherwise.
pub const DEFAULT_TICKET_PATH: &str = "/.wsgate/ticket";
/// How long a ticket may wait to be used: long enough for a page to open its
/// socket, short enough that a leaked one is stale.
pub const DEFAULT_TICKET_TTL: Duration = Duration::from_secs(30);

/// `[auth.ticket]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketConfig {
    /// Path of the issuing endpoint (`POST`, `OPTIONS`).
    pub issue_path: String,
    /// Lifetime of an unused ticket.
    pub ttl: Duration,
}

/// `[auth.mtls]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MtlsConfig {
    /// Which part of the verified certificate names the user.
    pub user_from: CertField,
}

/// A certificate field that can name a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertField {
    /// The first `rfc822Name` subject alternative name.
    SanEmail,
    /// The first `dNSName` subject alternative name.
    SanDns,
    /// The subject's common name.
    Cn,
}

/// `[auth.basic]`.
#[derive(Debug, Clone)]
pub struct BasicConfig {
    /// Users and their bcrypt or argon2 hashes, in file order.
    pub users: Vec<HtpasswdEntry>,
    /// `realm` in `WWW-Authenticate`.
    pub realm: String,
}

/// One htpasswd line.
#[derive(Clone)]
pub struct HtpasswdEntry {
    /// User name.
    pub user: String,
    /// bcrypt (`$2b$...`) or argon2 (`$argon2id$...`) hash.
    pub hash: String,
}

impl std::fmt::Debug for HtpasswdEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HtpasswdEntry({})", self.user)
    }
}

/// Looks up environment variables (the process's, or a test's map).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

pub(crate) fn auth(
    mut t: Table<'_, '_>,
    base: &Path,
    env: Env<'_>,
    errs: &mut Collector<'_>,
) -> AuthConfig {
    let mut auth = AuthConfig {
        session_grace: DEFAULT_SESSION_GRACE,
        ..AuthConfig::default()
    };
    auth.jwt = t.table("jwt", errs).and_then(|j| jwt(j, base, env, errs));
    auth.basic = t.table("basic", errs).and_then(|b| basic(b, base, errs));
    auth.mtls = t.table("mtls", errs).and_then(|m| mtls(m, errs));
    auth.ticket = t.table("ticket", errs).and_then(|m| ticket(m, errs));
    auth.forward = t
        .table("forward", errs)
        .and_then(|m| forward(m, base, errs));
    if let Some(g) = t
        .duration("session_grace", errs, false)
        .and_then(|g| g.value)
    {
        auth.session_grace = g;
    }
    t.finish(errs);
    auth
}

/// A `ca` key (named `key`): a PEM file that replaces the system's roots for
/// an `https://` URL, and means nothing for any other.
fn https_ca(
    t: &mut Table<'_, '_>,
    key: &str,
    url: Option<&url::Url>,
    base: &Path,
    errs: &mut Collector<'_>,
) -> Option<PathBuf> {
    let ca = t.string(key, errs)?;
    if url.is_some_and(|u| u.scheme() != "https") {
        let msg = "applies to an https:// URL only; this one is not";
        errs.push(&ca.path, Some(ca.at), msg);
        return None;
    }
    crate::load::existing_file(ca.value, base, &ca.path, ca.at, errs)
}

fn forward(mut t: Table<'_, '_>, base: &Path, errs: &mut Collector<'_>) -> Option<ForwardConfig> {
    let url = match t.string("url", errs) {
        None => {
            errs.push(
                &t.path_of("url"),
                Some(t.at()),
                "is required: the endpoint that judges a client's cookie",
            );
            None
        }
        Some(u) => match url::Url::parse(u.value) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                Some(url)
            }
            _ => {
                errs.push(
                    &u.path,
                    Some(u.at),
                    format!("`{}` is not an http:// or https:// URL", u.value),
                );
                None
            }
        },
    };
    let user_header = t
        .string("user_header", errs)
        .map_or("x-user".to_owned(), |h| h.value.to_ascii_lowercase());
    let timeout = t
        .duration("timeout", errs, false)
        .and_then(|d| d.value)
        .unwrap_or(DEFAULT_FORWARD_TIMEOUT);
    let cache = t
        .duration("cache_ttl", errs, true)
        .map_or(Some(DEFAULT_FORWARD_CACHE), |d| d.value);
    let max_age = t.duration("max_age", errs, true).and_then(|d| d.value);
    let ca = https_ca(&mut t, "ca", url.as_ref(), base, errs);
    t.finish(errs);
    Some(ForwardConfig {
        url: url?,
        user_header,
        timeout,
        cache,
        max_age,
        ca,
    })
}

fn ticket(mut t: Table<'_, '_>, errs: &mut Collector<'_>) -> Option<TicketConfig> {
    let mut config = TicketConfig {
        issue_path: DEFAULT_TICKET_PATH.to_owned(),
        ttl: DEFAULT_TICKET_TTL,
    };
    let mut ok = true;
    if let Some(p) = t.string("issue_path", errs) {
        if p.value.starts_with('/') && !p.value.contains(['?', '#', ' ']) {
            config.issue_path = p.value.to_owned();
        } else {
            ok = false;
            errs.push(
                &p.path,
                Some(p.at),
                format!("`{}` is not an absolute path", p.value),
            );
        }
    }
    if let Some(d) = t.duration("ttl", errs, false).and_then(|d| d.value) {
        config.ttl = d;
    }
    t.finish(errs);
    ok.then_some(config)
}

fn mtls(mut t: Table<'_, '_>, errs: &mut Collector<'_>) -> Option<MtlsConfig> {
    let user_from = match t.string("user_from", errs) {
        None => Some(CertField::SanEmail),
        Some(u) => match u.value {
            "san_email" => Some(CertField::SanEmail),
            "san_dns" => Some(CertField::SanDns),
            "cn" => Some(CertField::Cn),
            other => {
                errs.push(
                    &u.path,
                    Some(u.at),
                    format!("`{other}`: write \"san_email\", \"san_dns\" or \"cn\""),
                );
                None
            }
        },
    };
    t.finish(errs);
    Some(MtlsConfig {
        user_from: user_from?,
    })
}

fn jwt(
    mut t: Table<'_, '_>,
    base: &Path,
    env: Env<'_>,
    errs: &mut Collector<'_>,
) -> Option<JwtConfig> {
    let file = t.string("keys", errs);
    let secret_env = t.string("hs256_secret_env", errs);
    let jwks_url = t.string("jwks_url", errs);
    let refresh_min = t
        .duration("jwks_refresh_min", errs, false)
        .and_then(|d| d.value);
    let max_age = t
        .duration("jwks_max_age", errs, false)
        .and_then(|d| d.value);
    let parsed_url = jwks_url
        .as_ref()
        .and_then(|u| url::Url::parse(u.value).ok());
    let ca = https_ca(&mut t, "jwks_ca", parsed_url.as_ref(), base, errs);
    if let (Some(c), None) = (&ca, &jwks_url) {
        let msg = "names the CA of a `jwks_url`, and there is none";
        errs.push(
            &t.path_of("jwks_ca"),
            None,
            format!("{msg} ({})", c.display()),
        );
    }
    let keys = match (file, secret_env, jwks_url) {
        (None, None, Some(u)) => match url::Url::parse(u.value) {
            Ok(url) if url.scheme() == "https" || (url.scheme() == "http" && is_loopback(&url)) => {
                Some(JwtKeys::JwksUrl {
                    url,
                    refresh_min: refresh_min.unwrap_or(DEFAULT_JWKS_REFRESH_MIN),
                    max_age: max_age.unwrap_or(DEFAULT_JWKS_MAX_AGE),
                    ca,
                })
            }
            _ => {
                let msg = format!(
                    "`{}`: keys are fetched over https:// (http:// only on loopback)",
                    u.value
                );
                errs.push(&u.path, Some(u.at), msg);
                None
            }
        },
        (Some(f), None, None) => {
            let path = base.join(f.value);
            if path.is_file() {
                Some(JwtKeys::JwksFile(path))
            } else {
                errs.push(
                    &f.path,
                    Some(f.at),
                    format!("no such file: {}", path.display()),
                );
                None
            }
        }
        (None, Some(e), None) => secret(e, env, errs),
        _ => {
            errs.push(
                t.path(),
                Some(t.at()),
                "give exactly one of `keys` (a JWKS file), `jwks_url` or `hs256_secret_env`",
            );
            None
        }
    };
    let algorithms = algorithms(&mut t, keys.as_ref(), errs);
    let from = sources(&mut t, errs);
    let issuer = t.string("issuer", errs).map(|s| s.value.to_owned());
    let audience = t.string("audience", errs).map(|s| s.value.to_owned());
    let user_claim = t
        .string("user_claim", errs)
        .map_or("sub".to_owned(), |s| s.value.to_owned());
    let leeway = t
        .duration("leeway", errs, false)
        .and_then(|d| d.value)
        .unwrap_or(DEFAULT_JWT_LEEWAY);
    t.finish(errs);
    Some(JwtConfig {
        keys: keys?,
        issuer,
        audience,
        algorithms: algorithms?,
        from: from?,
        user_claim,
        leeway,
    })
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

fn secret(e: At<&str>, env: Env<'_>, errs: &mut Collector<'_>) -> Option<JwtKeys> {
    let secret = secret_from_env(&e, env, MIN_HS256_SECRET, "an HS256 secret", errs)?;
    Some(JwtKeys::Secret {
        env: e.value.to_owned(),
        secret: secret.into_bytes(),
    })
}

/// The value of the environment variable `name` names, if it is set and
/// holds at least `min` bytes; otherwise an error at `name`'s key saying
/// which. `what` names the secret in that error.
pub(crate) fn secret_from_env(
    name: &At<&str>,
    env: Env<'_>,
    min: usize,
    what: &str,
    errs: &mut Collector<'_>,
) -> Option<String> {
    let msg = match env(name.value) {
        Some(s) if s.len() >= min => return Some(s),
        Some(s) => format!(
            "${} holds {} bytes; {what} needs at least {min} (e.g. `openssl rand -hex 32`)",
            name.value,
            s.len()
        ),
        None => format!("environment variable ${} is not set", name.value),
    };
    errs.push(&name.path, Some(name.at), msg);
    None
}

fn algorithms(
    t: &mut Table<'_, '_>,
    keys: Option<&JwtKeys>,
    errs: &mut Collector<'_>,
) -> Option<Vec<JwtAlgorithm>> {
    let Some(items) = t.strings("algorithms", errs) else {
        let msg = "is required: name the algorithms your issuer signs with, e.g. [\"RS256\"]";
        errs.push(&t.path_of("algorithms"), Some(t.at()), msg);
        return None;
    };
    let hmac_keys = matches!(keys, Some(JwtKeys::Secret { .. }));
    let mut out = Vec::new();
    let mut ok = true;
    for item in items {
        let problem = match JwtAlgorithm::parse(item.value) {
            None if item.value.eq_ignore_ascii_case("none") => {
                Some("`none` means an unsigned token; it is never accepted".to_owned())
            }
            None => Some(format!("`{}` is not a supported JWS algorithm", item.value)),
            // Mixing kinds is how the RS256/HS256 key-confusion attack works.
            Some(a) if keys.is_some() && a.is_hmac() != hmac_keys => Some(format!(
                "`{}` does not fit the keys: HS* algorithms need `hs256_secret_env`, others need `keys`",
                item.value
            )),
            Some(a) => {
                out.push(a);
                None
            }
        };
        if let Some(msg) = problem {
            ok = false;
            errs.push(&item.path, Some(item.at), msg);
        }
    }
    (ok && !out.is_empty()).then_some(out)
}

fn sources(t: &mut Table<'_, '_>, errs: &mut Collector<'_>) -> Option<Vec<TokenSource>> {
    let Some(items) = t.strings("from", errs) else {
        return Some(vec![TokenSource::Header]);
    };
    let mut out = Vec::new();
    let mut ok = true;
    for item in items {
        let source = match item.value {
            "header" => Some(TokenSource::Header),
            "subprotocol" => Some(TokenSource::Subprotocol),
            v => v
                .strip_prefix("cookie:")
                .filter(|name| crate::load::is_token(name))
                .map(|name| TokenSource::Cookie(name.to_owned())),
        };
        match source {
            Some(s) => out.push(s),
            None => {
                ok = false;
                let msg = format!(
                    "`{}`: write \"header\", \"subprotocol\" or \"cookie:NAME\" (query tokens are set per route with `jwt_query_param`)",
                    item.value
                );
                errs.push(&item.path, Some(item.at), msg);
            }
        }
    }
    ok.then_some(out)
}

fn basic(mut t: Table<'_, '_>, base: &Path, errs: &mut Collector<'_>) -> Option<BasicConfig> {
    let realm = t
        .string("realm", errs)
        .map_or("wsgate".to_owned(), |r| r.value.to_owned());
    if realm.contains(['"', '\\']) || realm.chars().any(char::is_control) {
        errs.push(
            &t.path_of("realm"),
            Some(t.at()),
            "the realm may not contain quotes, backslashes or control characters",
        );
    }
    let Some(file) = t.string("htpasswd", errs) else {
        errs.push(
            &t.path_of("htpasswd"),
            Some(t.at()),
            "is required: an htpasswd file with bcrypt or argon2 hashes",
        );
        t.finish(errs);
        return None;
    };
    let path = base.join(file.value);
    t.finish(errs);
    let text = match crate::read_bounded(&path, MAX_HTPASSWD_FILE) {
        Ok(text) => text,
        Err(e) => {
            errs.push(
                &file.path,
                Some(file.at),
                format!("cannot read {}: {e}", path.display()),
            );
            return None;
        }
    };
    let users = htpasswd(&text, &path, &file, errs)?;
    Some(BasicConfig { users, realm })
}

/// Parses an htpasswd file; refuses every hash that is not bcrypt or argon2.
fn htpasswd(
    text: &str,
    path: &Path,
    file: &At<&str>,
    errs: &mut Collector<'_>,
) -> Option<Vec<HtpasswdEntry>> {
    let mut users: Vec<HtpasswdEntry> = Vec::new();
    let mut ok = true;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let problem = match line.split_once(':') {
            None => Some("is not `user:hash`".to_owned()),
            Some(("", _)) => Some("has an empty user name".to_owned()),
            Some((user, _)) if users.iter().any(|u| u.user == user) => {
                Some(format!("repeats user `{user}`"))
            }
            Some((user, hash)) => match hash_kind(hash) {
                Ok(()) => {
                    users.push(HtpasswdEntry {
                        user: user.to_owned(),
                        hash: hash.to_owned(),
                    });
                    None
                }
                Err(why) => Some(format!("user `{user}`: {why}")),
            },
        };
        if let Some(msg) = problem {
            ok = false;
            errs.push(
                &file.path,
                Some(file.at),
                format!("{} line {}: {msg}", path.display(), i + 1),
            );
        }
    }
    if ok && users.is_empty() {
        errs.push(
            &file.path,
            Some(file.at),
            format!("{} has no users", path.display()),
        );
        return None;
    }
    ok.then_some(users)
}

fn hash_kind(hash: &str) -> Result<(), &'static str> {
    let weak = "refused: only bcrypt (htpasswd -B) and argon2 hashes are accepted";
    match hash {
        h if ["$2a$", "$2b$", "$2y$"].iter().any(|p| h.starts_with(p)) && h.len() == 60 => Ok(()),
        h if h.starts_with("$argon2id$")
            || h.starts_with("$argon2i$")
            || h.starts_with("$argon2d$") =>
        {
            Ok(())
        }
        h if h.starts_with("$apr1$") || h.starts_with("$1$") => {
            Err("MD5-crypt hash refused: only bcrypt (htpasswd -B) and argon2 hashes are accepted")
        }
        h if h.starts_with("{SHA}") => {
            Err("SHA-1 hash refused: only bcrypt (htpasswd -B) and argon2 hashes are accepted")
        }
        h if !h.starts_with('$') => Err(
            "plain-text or crypt(3) password refused: only bcrypt (htpasswd -B) and argon2 hashes are accepted",
        ),
        _ => Err(weak),
    }
}
