//! Turning a TOML document into a [`Config`], collecting every error.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use toml::de::DeTable;

use crate::error::{Collector, ConfigErrors};
use crate::host::HostPattern;
use crate::model::*;
use crate::origin::OriginPattern;
use crate::reader::{At, Table};

/// Largest JSON Schema file read (see [`crate::read_bounded`]).
const MAX_SCHEMA_FILE: u64 = 16 << 20;

/// Keys that mean something only where WebSocket connections are admitted.
const WEBSOCKET_ONLY: &[&str] = &[
    "origins",
    "allow_missing_origin",
    "subprotocols",
    "messages",
    "compression",
    "jwt_query_param",
];

/// Parses and validates a config; `base` resolves relative file paths.
pub(crate) fn parse(
    src: &str,
    base: &Path,
    env: crate::auth::Env<'_>,
) -> Result<Config, ConfigErrors> {
    let mut errs = Collector::new(src);
    let (doc, syntax) = DeTable::parse_recoverable(src);
    for e in syntax {
        let at = e.span().map(|s| s.start);
        errs.push("", at, e.message().to_owned());
    }
    let mut root = Table::root(&doc);
    // Each with its index and place in the file: a listener or route that
    // is refused is left out, and the checks across them below must still
    // name the others by their own index.
    let listeners: Vec<Placed<Listener>> = root
        .tables("listener", &mut errs)
        .into_iter()
        .enumerate()
        .filter_map(|(i, t)| {
            let at = t.at();
            listener(t, base, &mut errs).map(|l| (i, at, l))
        })
        .collect();
    let auth = root
        .table("auth", &mut errs)
        .map(|t| crate::auth::auth(t, base, env, &mut errs))
        .unwrap_or_default();
    let routes: Vec<Placed<Route>> = root
        .tables("route", &mut errs)
        .into_iter()
        .enumerate()
        .filter_map(|(i, t)| {
            let at = t.at();
            route(t, base, &auth, &mut errs).map(|r| (i, at, r))
        })
        .collect();
    let (metrics, admin_token, admin_hosts) = root
        .table("metrics", &mut errs)
        .map(|t| metrics(t, env, &mut errs))
        .unwrap_or_default();
    let assertion = root
        .table("assertion", &mut errs)
        .and_then(|t| assertion(t, base, &mut errs));
    let log = root
        .table("log", &mut errs)
        .map(|t| log(t, base, &mut errs));
    let shutdown = root
        .table("shutdown", &mut errs)
        .map(|t| shutdown(t, &mut errs));
    let store = root.table("store", &mut errs).map(|t| store(t, &mut errs));
    let global_limits = root
        .table("limits", &mut errs)
        .map(|t| global_limits(t, &mut errs));
    root.finish(&mut errs);
    if errs.is_empty() {
        if listeners.is_empty() {
            errs.push("listener", None, "at least one [[listener]] is required");
        }
        if routes.is_empty() {
            errs.push("route", None, "at least one [[route]] is required");
        }
        check_unique_paths(&routes, &mut errs);
        check_unique_binds(&listeners, &mut errs);
    }
    check_auth_methods(&routes, &listeners, &mut errs);
    if !errs.is_empty() {
        return Err(errs.finish());
    }
    Ok(Config {
        listeners: listeners.into_iter().map(|(_, _, l)| l).collect(),
        routes: routes.into_iter().map(|(_, _, r)| r).collect(),
        log: log.unwrap_or_default(),
        shutdown: shutdown.unwrap_or_default(),
        auth,
        assertion,
        metrics,
        admin_token,
        admin_hosts,
        limits: global_limits.unwrap_or_default(),
        store: store.unwrap_or_default(),
    })
}

fn listener(mut t: Table<'_, '_>, base: &Path, errs: &mut Collector<'_>) -> Option<Listener> {
    let bind = match t.string("bind", errs) {
        Some(b) => match b.value.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                let msg = format!(
                    "`{}` is not an address; write e.g. \"127.0.0.1:8443\" or \"[::]:443\"",
                    b.value
                );
                errs.push(&b.path, Some(b.at), msg);
                None
            }
        },
        None => {
            errs.push(&t.path_of("bind"), Some(t.at()), "is required");
            None
        }
    };
    let tls_path = t.path_of("tls");
    let tls = t
        .table("tls", errs)
        .and_then(|tls| tls_source(tls, base, errs));
    // Written, and refused with its own errors: not cleartext.
    let tls_refused = tls.is_none() && errs.any_under(&tls_path);
    let allow_cleartext = t
        .bool("allow_cleartext", errs)
        .map(|b| b.value)
        .unwrap_or(false);
    let hosts = hosts(&mut t, errs);
    let handshake_timeout = t
        .duration("handshake_timeout", errs, false)
        .and_then(|d| d.value)
        .unwrap_or(DEFAULT_HANDSHAKE_TIMEOUT);
    let max_header_bytes = match t.size("max_header_bytes", errs) {
        Some(s) if !(MIN_MAX_HEADER_BYTES..=MAX_MAX_HEADER_BYTES).contains(&s.value) => {
            let msg = format!(
                "{} bytes is outside {MIN_MAX_HEADER_BYTES}..={MAX_MAX_HEADER_BYTES}",
                s.value
            );
            errs.push(&s.path, Some(s.at), msg);
            None
        }
        Some(s) => Some(s.value),
        None => Some(DEFAULT_MAX_HEADER_BYTES),
    };
    let client_certs = client_certs(&mut t, tls.is_some() || tls_refused, base, errs);
    let reuse_port = t.bool("reuse_port", errs).map(|b| b.value).unwrap_or(false);
    let trusted_proxies = trusted_proxies(&mut t, errs);
    let proxy_protocol = match t.bool("proxy_protocol", errs) {
        Some(b) if b.value && trusted_proxies.is_empty() => {
            // Whoever may send the header may name any client.
            let msg = "needs `trusted_proxies`: the balancers allowed to send the header";
            errs.push(&b.path, Some(b.at), msg);
            true
        }
        Some(b) => b.value,
        None => false,
    };
    let path = t.path().to_owned();
    let at = t.at();
    t.finish(errs);
    let bind = bind?;
    if !tls_refused && t_has_no_tls_exposed(&tls, bind, allow_cleartext) {
        let msg = format!(
            "plain ws on non-loopback {bind} sends traffic and credentials in clear; \
             add `tls = {{ cert = ..., key = ... }}` or set `allow_cleartext = true`"
        );
        errs.push(&path, Some(at), msg);
    }
    let hosts = match hosts {
        Hosts::Any if bind.ip().is_loopback() => loopback_hosts(),
        other => other,
    };
    Some(Listener {
        bind,
        tls,
        hosts,
        handshake_timeout,
        max_header_bytes: max_header_bytes?,
        client_certs,
        reuse_port,
        trusted_proxies,
        proxy_protocol,
    })
}

fn client_certs(
    t: &mut Table<'_, '_>,
    tls: bool,
    base: &Path,
    errs: &mut Collector<'_>,
) -> Option<ClientCerts> {
    let ca = t.string("client_ca", errs);
    let mode = t.string("client_cert", errs);
    let crls = t.strings("client_crl", errs).unwrap_or_default();
    let mode_value = match &mode {
        None => Some(ClientCertMode::Optional),
        Some(m) => match m.value {
            "optional" => Some(ClientCertMode::Optional),
            "required" => Some(ClientCertMode::Required),
            "off" => None,
            other => {
                errs.push(
                    &m.path,
                    Some(m.at),
                    format!("`{other}`: write \"off\", \"optional\" or \"required\""),
                );
                return None;
            }
        },
    };
    let Some(ca) = ca else {
        if let Some(m) = mode.filter(|m| m.value != "off") {
            errs.push(
                &m.path,
                Some(m.at),
                "needs `client_ca`, the CAs that issue client certificates",
            );
        }
        return None;
    };
    if !tls {
        errs.push(
            &ca.path,
            Some(ca.at),
            "client certificates need TLS on this listener",
        );
        return None;
    }
    let mode = mode_value?;
    let ca_path = existing_file(ca.value, base, &ca.path, ca.at, errs);
    let crls: Vec<_> = crls
        .iter()
        .map(|c| existing_file(c.value, base, &c.path, c.at, errs))
        .collect();
    Some(ClientCerts {
        ca: ca_path?,
        mode,
        crls: crls.into_iter().collect::<Option<_>>()?,
    })
}

fn t_has_no_tls_exposed(tls: &Option<Tls>, bind: SocketAddr, allow_cleartext: bool) -> bool {
    tls.is_none() && !bind.ip().is_loopback() && !allow_cleartext
}

/// A loopback listener without a `hosts` list accepts only loopback names:
/// DNS rebinding is exactly how hostile pages reach services on 127.0.0.1.
fn loopback_hosts() -> Hosts {
    let names = ["localhost", "127.0.0.1", "[::1]"];
    Hosts::Only(
        names
            .iter()
            .filter_map(|n| HostPattern::parse(n).ok())
            .collect(),
    )
}

fn tls_source(mut t: Table<'_, '_>, base: &Path, errs: &mut Collector<'_>) -> Option<Tls> {
    let cert = t.string("cert", errs);
    let key = t.string("key", errs);
    let self_signed = t.bool("self_signed", errs);
    let path = t.path().to_owned();
    let at = t.at();
    t.finish(errs);
    match (cert, key, self_signed) {
        (None, None, Some(s)) if s.value => Some(Tls::SelfSigned),
        (Some(cert), Some(key), None) => {
            let cert_path = existing_file(cert.value, base, &cert.path, cert.at, errs);
            let key_path = existing_file(key.value, base, &key.path, key.at, errs);
            Some(Tls::Files {
                cert: cert_path?,
                key: key_path?,
            })
        }
        _ => {
            let msg = "write either `{ cert = \"gate.pem\", key = \"gate.key\" }` or `{ self_signed = true }`";
            errs.push(&path, Some(at), msg);
            None
        }
    }
}

pub(crate) fn existing_file(
    value: &str,
    base: &Path,
    path: &str,
    at: usize,
    errs: &mut Collector<'_>,
) -> Option<PathBuf> {
    let file = base.join(value);
    if file.is_file() {
        Some(file)
    } else {
        errs.push(path, Some(at), format!("no such file: {}", file.display()));
        None
    }
}

/// `trusted_proxies`: addresses or networks, each exact (no host bits
/// set below the prefix, which would say something other than meant), and
/// none so wide that any client could name itself.
fn trusted_proxies(t: &mut Table<'_, '_>, errs: &mut Collector<'_>) -> Vec<IpNet> {
    let Some(items) = t.strings("trusted_proxies", errs) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        let parsed = match item.value.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(IpNet::from(ip)),
            Err(_) => item.value.parse::<IpNet>(),
        };
        let msg = match parsed {
            Err(_) => format!(
                "`{}` is not an address or a network; write e.g. \"10.0.0.0/8\" or \"192.0.2.7\"",
                item.value
            ),
            Ok(net) if net.prefix_len() == 0 => format!(
                "`{}` would believe every client's X-Forwarded-For; list the proxies in front of this listener",
                item.value
            ),
            Ok(IpNet::V6(net)) if net.network().to_ipv4_mapped().is_some() => {
                let v4 = net
                    .network()
                    .to_ipv4_mapped()
                    .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
                format!(
                    "`{}` is IPv4 written as IPv6, which a connection's address is never compared as; write \"{v4}/{}\"",
                    item.value,
                    net.prefix_len().saturating_sub(96)
                )
            }
            Ok(net) if net.trunc() != net => format!(
                "`{}` has bits set past its prefix; write \"{}\"",
                item.value,
                net.trunc()
            ),
            Ok(net) => {
                out.push(net);
                continue;
            }
        };
        errs.push(&item.path, Some(item.at), msg);
    }
    out
}

fn hosts(t: &mut Table<'_, '_>, errs: &mut Collector<'_>) -> Hosts {
    let Some(items) = t.strings("hosts", errs) else {
        return Hosts::Any;
    };
    let mut out = Vec::new();
    for item in items {
        match HostPattern::parse(item.value) {
            Ok(p) => out.push(p),
            Err(msg) => errs.push(&item.path, Some(item.at), msg),
        }
    }
    if out.is_empty() {
        errs.push(
            &t.path_of("hosts"),
            Some(t.at()),
            "an empty list would refuse every request; remove the key or list the host names",
        );
    }
    Hosts::Only(out)
}

fn route(
    mut t: Table<'_, '_>,
    base: &Path,
    auth_config: &crate::auth::AuthConfig,
    errs: &mut Collector<'_>,
) -> Option<Route> {
    let path = route_path(&mut t, errs);
    let kind = match t.string("kind", errs) {
        None => RouteKind::WebSocket,
        Some(k) => match k.value {
            "websocket" => RouteKind::WebSocket,
            "http" => RouteKind::Http,
            other => {
                let msg = format!("`{other}` is not a route kind; write \"websocket\" or \"http\"");
                errs.push(&k.path, Some(k.at), msg);
                RouteKind::WebSocket
            }
        },
    };
    if kind == RouteKind::Http {
        for key in WEBSOCKET_ONLY {
            if t.get(key).is_some() {
                let msg = "applies to WebSocket routes only; this route has kind = \"http\"";
                errs.push(&t.path_of(key), Some(t.at()), msg);
            }
        }
    }
    let csp = t.table("csp", errs).and_then(|c| csp(c, kind, errs));
    let hosts = hosts(&mut t, errs);
    let mode = match t.string("mode", errs) {
        None => Some(Mode::Enforce),
        Some(m) => match m.value {
            "enforce" => Some(Mode::Enforce),
            "report" => Some(Mode::Report),
            other => {
                errs.push(
                    &m.path,
                    Some(m.at),
                    format!("`{other}` is not a mode; write \"enforce\" or \"report\""),
                );
                None
            }
        },
    };
    let upstream = upstream(&mut t, kind, base, errs);
    let origins = origins(&mut t, errs);
    let allow_missing_origin = t
        .bool("allow_missing_origin", errs)
        .map(|b| b.value)
        .unwrap_or(false);
    let compression = t.bool("compression", errs).is_some_and(|b| b.value);
    let auth = auth(&mut t, auth_config, errs);
    let jwt_query_param = t.string("jwt_query_param", errs).and_then(|q| {
        if is_token(q.value) {
            Some(q.value.to_owned())
        } else {
            errs.push(
                &q.path,
                Some(q.at),
                format!("`{}` is not a query parameter name", q.value),
            );
            None
        }
    });
    let identity_headers = t
        .table("identity_headers", errs)
        .map(|h| identity_headers(h, errs))
        .unwrap_or_default();
    let messages = match t.table("messages", errs) {
        Some(m) => messages(m, base, errs),
        None => Some(Messages::default()),
    };
    let subprotocols = subprotocols(&mut t, errs);
    let limits = match t.table("limits", errs) {
        Some(l) => {
            if kind == RouteKind::Http {
                websocket_limits_refused(&l, errs);
            }
            limits(l, errs)
        }
        None => Some(Limits::default()),
    };
    let (route_at, route_path_key) = (t.at(), t.path().to_owned());
    t.finish(errs);
    if kind == RouteKind::Http && !matches!(auth, Some(Auth::None)) {
        let msg = "kind = \"http\" routes take auth = \"none\" in this version: the application authenticates its own pages and API; the gateway authenticates WebSocket handshakes";
        errs.push(&format!("{route_path_key}.auth"), Some(route_at), msg);
    }
    if kind == RouteKind::WebSocket
        && origins.as_ref().is_some_and(|o| o.is_empty())
        && !allow_missing_origin
    {
        errs.push(&route_path_key, Some(route_at), "with no `origins` and `allow_missing_origin = false` this route admits nobody; list the browser origins, or set allow_missing_origin = true for non-browser clients");
    }
    Some(Route {
        path: path?,
        hosts,
        mode: mode?,
        upstream: upstream?,
        origins: origins?,
        allow_missing_origin,
        compression,
        auth: auth?,
        jwt_query_param,
        identity_headers,
        subprotocols: subprotocols?,
        limits: limits?,
        messages: messages?,
        kind,
        csp,
    })
}

/// `csp = { connect_src = [...], report_only = false }`.
fn csp(mut t: Table<'_, '_>, kind: RouteKind, errs: &mut Collector<'_>) -> Option<Csp> {
    let (path, at) = (t.path().to_owned(), t.at());
    let report_only = t.bool("report_only", errs).is_some_and(|b| b.value);
    let sources = t.strings("connect_src", errs);
    t.finish(errs);
    if kind != RouteKind::Http {
        let msg =
            "applies to kind = \"http\" routes only: a policy for the pages that open WebSockets";
        errs.push(&path, Some(at), msg);
        return None;
    }
    let Some(sources) = sources else {
        let msg = "needs `connect_src`: where the pages' scripts may connect, e.g. [\"'self'\", \"wss://chat.example.com\"]";
        errs.push(&path, Some(at), msg);
        return None;
    };
    let mut ok = !sources.is_empty();
    if !ok {
        errs.push(
            &format!("{path}.connect_src"),
            Some(at),
            "an empty list; write [\"'none'\"] to allow no connections",
        );
    }
    for s in &sources {
        // A source expression is one token: anything that could end the
        // directive or the header (`;`, `,`, whitespace, controls) would let
        // a config change the policy's meaning.
        let bad = s.value.is_empty()
            || s.value
                .bytes()
                .any(|b| b == b';' || b == b',' || !(0x21..0x7f).contains(&b));
        if bad {
            ok = false;
            let msg = format!(
                "`{}` is not a CSP source expression (one token, no `;` or `,`)",
                s.value
            );
            errs.push(&s.path, Some(s.at), msg);
        }
    }
    ok.then(|| Csp {
        connect_src: sources.iter().map(|s| s.value.to_owned()).collect(),
        report_only,
    })
}

fn messages(mut t: Table<'_, '_>, base: &Path, errs: &mut Collector<'_>) -> Option<Messages> {
    let mut m = Messages::default();
    let mut ok = true;
    if let Some(types) = t.strings("types", errs) {
        m.text = false;
        m.binary = false;
        for ty in types {
            match ty.value {
                "text" => m.text = true,
                "binary" => m.binary = true,
                other => {
                    ok = false;
                    errs.push(
                        &ty.path,
                        Some(ty.at),
                        format!("`{other}`: write \"text\" or \"binary\""),
                    );
                }
            }
        }
    }
    if let Some(j) = t.bool("json", errs) {
        m.json = j.value;
    }
    if let Some(s) = t.string("schema", errs) {
        let path = base.join(s.value);
        match crate::read_bounded(&path, MAX_SCHEMA_FILE) {
            Err(e) => {
                ok = false;
                errs.push(
                    &s.path,
                    Some(s.at),
                    format!("cannot read {}: {e}", path.display()),
                );
            }
            Ok(text) => match serde_json::from_str(&text) {
                Ok(value) => m.schema = Some((path, value)),
                Err(e) => {
                    ok = false;
                    errs.push(
                        &s.path,
                        Some(s.at),
                        format!("{} is not JSON: {e}", path.display()),
                    );
                }
            },
        }
    }
    if let Some(v) = t.string("on_violation", errs) {
        m.on_violation = match v.value {
            "close" => OnViolation::Close,
            "drop" => OnViolation::Drop,
            other => {
                ok = false;
                errs.push(
                    &v.path,
                    Some(v.at),
                    format!("`{other}`: write \"close\" or \"drop\""),
                );
                OnViolation::Close
            }
        };
    }
    if m.assembles_text() && !m.text {
        ok = false;
        errs.push(
            t.path(),
            Some(t.at()),
            "`json` and `schema` apply to text messages, which `types` does not allow",
        );
    }
    t.finish(errs);
    ok.then_some(m)
}

fn route_path(t: &mut Table<'_, '_>, errs: &mut Collector<'_>) -> Option<String> {
    let Some(p) = t.string("path", errs) else {
        errs.push(&t.path_of("path"), Some(t.at()), "is required");
        return None;
    };
    let ok = p.value.starts_with('/')
        && !p.value.contains(['?', '#', ' '])
        && (p.value == "/" || !p.value.ends_with('/'));
    if !ok {
        let msg = format!(
            "`{}` is not a route path; write an absolute path without query or trailing slash, e.g. \"/chat\"",
            p.value
        );
        errs.push(&p.path, Some(p.at), msg);
        return None;
    }
    Some(p.value.to_owned())
}

fn upstream(
    t: &mut Table<'_, '_>,
    kind: RouteKind,
    base: &Path,
    errs: &mut Collector<'_>,
) -> Option<Upstream> {
    let ca = t
        .string("upstream_ca", errs)
        .and_then(|c| existing_file(c.value, base, &c.path, c.at, errs));
    let Some(u) = t.string("upstream", errs) else {
        errs.push(
            &t.path_of("upstream"),
            Some(t.at()),
            "is required, e.g. \"ws://127.0.0.1:9001/chat\"",
        );
        return None;
    };
    let url = match url::Url::parse(u.value) {
        Ok(url) => url,
        Err(e) => {
            errs.push(
                &u.path,
                Some(u.at),
                format!("`{}` is not a URL ({e})", u.value),
            );
            return None;
        }
    };
    let tls = match (kind, url.scheme()) {
        (RouteKind::WebSocket, "ws") | (RouteKind::Http, "http") => false,
        (RouteKind::WebSocket, "wss") | (RouteKind::Http, "https") => true,
        (RouteKind::Http, other) => {
            let msg = format!(
                "scheme `{other}` is not an HTTP upstream; write http:// or https:// (this route has kind = \"http\")"
            );
            errs.push(&u.path, Some(u.at), msg);
            return None;
        }
        (RouteKind::WebSocket, other) => {
            let msg =
                format!("scheme `{other}` is not a WebSocket upstream; write ws:// or wss://");
            errs.push(&u.path, Some(u.at), msg);
            return None;
        }
    };
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        errs.push(&u.path, Some(u.at), "the upstream URL needs a host");
        return None;
    };
    if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
        errs.push(
            &u.path,
            Some(u.at),
            "the upstream URL may not carry user info or a fragment",
        );
        return None;
    }
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    Some(Upstream {
        url,
        tls,
        host,
        port,
        ca,
    })
}

fn origins(t: &mut Table<'_, '_>, errs: &mut Collector<'_>) -> Option<Vec<OriginPattern>> {
    let Some(items) = t.strings("origins", errs) else {
        return Some(Vec::new());
    };
    let mut out = Vec::new();
    let mut ok = true;
    for item in items {
        match OriginPattern::parse(item.value) {
            Ok(p) => out.push(p),
            Err(msg) => {
                ok = false;
                errs.push(&item.path, Some(item.at), msg);
            }
        }
    }
    ok.then_some(out)
}

fn auth(
    t: &mut Table<'_, '_>,
    config: &crate::auth::AuthConfig,
    errs: &mut Collector<'_>,
) -> Option<Auth> {
    let Some(items) = t.strings("auth", errs) else {
        let msg = "is required: name the methods, or write auth = \"none\" to run this route without authentication";
        errs.push(&t.path_of("auth"), Some(t.at()), msg);
        return None;
    };
    let mut methods = Vec::new();
    let mut none = false;
    let mut ok = true;
    for item in &items {
        match item.value {
            "none" => none = true,
            "jwt" | "basic" | "mtls" | "ticket" | "forward" => {
                let (method, configured) = match item.value {
                    "jwt" => (AuthMethod::Jwt, config.jwt.is_some()),
                    "basic" => (AuthMethod::Basic, config.basic.is_some()),
                    "mtls" => (AuthMethod::Mtls, config.mtls.is_some()),
                    "ticket" => (AuthMethod::Ticket, config.ticket.is_some()),
                    _ => (AuthMethod::Forward, config.forward.is_some()),
                };
                if !configured {
                    ok = false;
                    // A table written but refused has its errors already.
                    if !errs.any_under(&format!("auth.{}", item.value)) {
                        let msg = format!("`{0}` needs an [auth.{0}] table", item.value);
                        errs.push(&item.path, Some(item.at), msg);
                    }
                }
                methods.push(method);
            }
            other => {
                ok = false;
                let msg = format!(
                    "`{other}` is not an auth method; write \"none\", or one of jwt, basic, forward, mtls, ticket"
                );
                errs.push(&item.path, Some(item.at), msg);
            }
        }
    }
    if none && !methods.is_empty() {
        let at = items.first().map(|i| i.at);
        errs.push(
            &t.path_of("auth"),
            at,
            "\"none\" cannot be combined with other methods",
        );
        return None;
    }
    match (ok, none) {
        (false, _) => None,
        (true, true) => Some(Auth::None),
        (true, false) if methods.is_empty() => None,
        (true, false) => Some(Auth::Any(methods)),
    }
}

fn identity_headers(mut t: Table<'_, '_>, errs: &mut Collector<'_>) -> IdentityHeaders {
    let mut out = IdentityHeaders::default();
    for (key, slot) in [
        ("user", &mut out.user),
        ("method", &mut out.method),
        ("client_cert", &mut out.client_cert),
    ] {
        if let Some(h) = t.string(key, errs) {
            let lower = h.value.to_ascii_lowercase();
            let reserved = lower.starts_with("sec-")
                || [
                    "host",
                    "cookie",
                    "authorization",
                    "origin",
                    "connection",
                    "upgrade",
                ]
                .contains(&lower.as_str());
            if !is_token(h.value) || reserved {
                errs.push(&h.path, Some(h.at), format!("`{}` cannot carry an identity: use a header name of your own, e.g. X-Wsgate-User", h.value));
            } else {
                *slot = Some(lower);
            }
        }
    }
    t.finish(errs);
    out
}

/// Each method a route names needs its `[auth.*]` table; Basic credentials
/// travel in clear on a cleartext listener, so that needs loopback.
/// A listener or route as parsed, with its index among those written and
/// its place in the file, for errors found by comparing several.
type Placed<T> = (usize, usize, T);

fn check_auth_methods(
    routes: &[Placed<Route>],
    listeners: &[Placed<Listener>],
    errs: &mut Collector<'_>,
) {
    // A listener whose `tls` or client certificate keys were refused
    // already has its errors: it is not also said to lack them.
    let tls_refused = |j: usize| errs.any_under(&format!("listener[{j}].tls"));
    let asks_for_certs = listeners.iter().any(|(j, _, l)| {
        l.client_certs.is_some()
            || ["client_ca", "client_cert", "client_crl"]
                .iter()
                .any(|k| errs.any_under(&format!("listener[{j}].{k}")))
    });
    let mut found = Vec::new();
    for (i, at, r) in routes {
        let at = Some(*at);
        let Auth::Any(methods) = &r.auth else {
            if r.limits.max_conns_per_user.is_some() {
                let msg = "needs an authenticated user to count; this route has auth = \"none\" (use max_conns_per_ip)";
                found.push((
                    format!("route[{i}].limits.max_conns_per_user"),
                    at,
                    msg.into(),
                ));
            }
            continue;
        };
        if r.jwt_query_param.is_some() && !methods.contains(&AuthMethod::Jwt) {
            let msg = "only means something with auth = [\"jwt\", ...]";
            found.push((format!("route[{i}].jwt_query_param"), at, msg.into()));
        }
        if methods.contains(&AuthMethod::Mtls) && !asks_for_certs {
            let msg = "`mtls` needs a listener with `client_ca` to ask for certificates";
            found.push((format!("route[{i}].auth"), at, msg.into()));
        }
        if methods == &[AuthMethod::Ticket] {
            let msg = "a ticket is bought with another credential: name one beside it, e.g. [\"ticket\", \"jwt\"]";
            found.push((format!("route[{i}].auth"), at, msg.into()));
        }
        if methods.contains(&AuthMethod::Basic) {
            for (j, l_at, l) in listeners {
                if l.tls.is_none() && !l.bind.ip().is_loopback() && !tls_refused(*j) {
                    let msg = format!(
                        "route[{i}] takes Basic credentials, which listener[{j}] ({}) would carry in clear; give it TLS",
                        l.bind
                    );
                    found.push((format!("listener[{j}]"), Some(*l_at), msg));
                }
            }
        }
    }
    for (path, at, msg) in found {
        errs.push(&path, at, msg);
    }
}

fn subprotocols(t: &mut Table<'_, '_>, errs: &mut Collector<'_>) -> Option<Vec<String>> {
    let items = t.strings("subprotocols", errs).unwrap_or_default();
    let mut out = Vec::new();
    let mut ok = true;
    for item in items {
        if is_token(item.value) {
            out.push(item.value.to_owned());
        } else {
            ok = false;
            errs.push(
                &item.path,
                Some(item.at),
                format!(
                    "`{}` is not a valid subprotocol token (RFC 6455 §4.1)",
                    item.value
                ),
            );
        }
    }
    ok.then_some(out)
}

/// RFC 7230 `token`: what a subprotocol name must be.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The one `[route.limits]` key an HTTP route uses: the others bound
/// WebSocket connections and handshakes, and pass-through counts none of
/// them, so a key such as `handshakes_per_ip_per_min` written there would
/// protect nothing while seeming to.
const HTTP_LIMITS: &[&str] = &["connect_timeout", "idle_timeout"];

fn websocket_limits_refused(t: &Table<'_, '_>, errs: &mut Collector<'_>) {
    for (key, at) in t.written() {
        if !HTTP_LIMITS.contains(&key) {
            let msg = "applies to WebSocket routes only; this route has kind = \"http\" (only connect_timeout and idle_timeout apply)";
            errs.push(&t.path_of(key), Some(at), msg);
        }
    }
}

fn limits(mut t: Table<'_, '_>, errs: &mut Collector<'_>) -> Option<Limits> {
    let mut l = Limits::default();
    let max_message = t.size("max_message", errs);
    let max_frame = t.size("max_frame", errs);
    if let Some(m) = &max_message {
        l.max_message = m.value;
        l.max_frame = m.value;
    }
    if let Some(f) = &max_frame {
        l.max_frame = f.value;
    }
    for (key, at) in [("max_message", &max_message), ("max_frame", &max_frame)] {
        if let Some(v) = at.as_ref().filter(|v| v.value == 0) {
            errs.push(
                &v.path,
                Some(v.at),
                format!("`{key}` must be at least 1 byte"),
            );
        }
    }
    if let Some(f) = max_frame.as_ref().filter(|f| f.value > l.max_message) {
        let msg = format!(
            "max_frame ({} bytes) is larger than max_message ({} bytes)",
            f.value, l.max_message
        );
        errs.push(&f.path, Some(f.at), msg);
    }
    if let Some(d) = t.duration("idle_timeout", errs, true) {
        l.idle_timeout = d.value;
    }
    if let Some(d) = t.duration("ping_interval", errs, true) {
        l.ping_interval = d.value;
    }
    if let Some(d) = t.duration("max_lifetime", errs, true) {
        l.max_lifetime = d.value;
    }
    if let Some(d) = t
        .duration("connect_timeout", errs, false)
        .and_then(|d| d.value)
    {
        l.connect_timeout = d;
    }
    if let Some(h) = t.get("handshake_timeout") {
        let msg = "moved to [[listener]]: the route is only known once the request head is read, which is what this timeout bounds";
        errs.push(&t.path_of("handshake_timeout"), Some(h.span().start), msg);
    }
    rates(&mut t, &mut l, errs);
    t.finish(errs);
    Some(l)
}

fn log(mut t: Table<'_, '_>, base: &Path, errs: &mut Collector<'_>) -> Log {
    let mut log = Log::default();
    if let Some(f) = t.string("format", errs) {
        match f.value {
            "json" => log.format = LogFormat::Json,
            "pretty" => log.format = LogFormat::Pretty,
            other => errs.push(
                &f.path,
                Some(f.at),
                format!("`{other}` is not a log format; write \"json\" or \"pretty\""),
            ),
        }
    }
    if let Some(a) = t.string("audit", errs) {
        log.audit = match a.value {
            "stdout" => AuditTarget::Stdout,
            file => AuditTarget::File(base.join(file)),
        };
    }
    t.finish(errs);
    log
}

fn metrics(
    mut t: Table<'_, '_>,
    env: crate::auth::Env<'_>,
    errs: &mut Collector<'_>,
) -> (Option<SocketAddr>, Option<AdminToken>, Vec<HostPattern>) {
    let bind = match t.string("bind", errs) {
        Some(b) => match b.value.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                errs.push(
                    &b.path,
                    Some(b.at),
                    format!("`{}` is not an address, e.g. \"127.0.0.1:9090\"", b.value),
                );
                None
            }
        },
        None => {
            errs.push(
                &t.path_of("bind"),
                Some(t.at()),
                "is required, e.g. \"127.0.0.1:9090\"",
            );
            None
        }
    };
    let admin_token = t.string("admin_token_env", errs).and_then(|e| {
        let token = crate::auth::secret_from_env(&e, env, MIN_ADMIN_TOKEN, "an admin token", errs)?;
        Some(AdminToken {
            env: e.value.to_owned(),
            token,
        })
    });
    let hosts = t
        .strings("hosts", errs)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|item| {
            HostPattern::parse(item.value)
                .map_err(|msg| errs.push(&item.path, Some(item.at), msg))
                .ok()
        })
        .collect();
    t.finish(errs);
    (bind, admin_token, hosts)
}

/// The admin endpoint a config file names, `[metrics] bind`, and the name
/// of the variable its token is in, read without validating the rest:
/// `wsgate revoke` and `wsgate reload` run in an operator's shell, which
/// may lack the service's secrets and files, and must still find the
/// gateway (which checks its own config).
pub(crate) fn admin_endpoint(src: &str) -> Result<(SocketAddr, Option<String>), String> {
    let (doc, syntax) = DeTable::parse_recoverable(src);
    if let Some(e) = syntax.first() {
        return Err(e.message().to_owned());
    }
    let metrics = doc
        .get_ref()
        .get("metrics")
        .and_then(|m| m.get_ref().as_table())
        .ok_or("no [metrics] table: the admin endpoint is its `bind`")?;
    let text = |key: &str| {
        metrics
            .get(key)
            .and_then(|v| v.get_ref().as_str())
            .map(str::to_owned)
    };
    let bind = text("bind").ok_or("no string `bind` in [metrics]")?;
    let bind = bind
        .parse()
        .map_err(|_| format!("[metrics] bind `{bind}` is not an address"))?;
    Ok((bind, text("admin_token_env")))
}

fn assertion(mut t: Table<'_, '_>, base: &Path, errs: &mut Collector<'_>) -> Option<Assertion> {
    let header = match t.string("header", errs) {
        Some(h) if is_token(h.value) && !h.value.to_ascii_lowercase().starts_with("sec-") => {
            Some(h.value.to_ascii_lowercase())
        }
        Some(h) => {
            errs.push(
                &h.path,
                Some(h.at),
                format!("`{}` is not a header name of your own", h.value),
            );
            None
        }
        None => Some("x-wsgate-assertion".to_owned()),
    };
    let key = t
        .string("key", errs)
        .map(|k| existing_file(k.value, base, &k.path, k.at, errs));
    let ttl = t
        .duration("ttl", errs, false)
        .and_then(|d| d.value)
        .unwrap_or(DEFAULT_ASSERTION_TTL);
    let jwks_path = match t.string("jwks_path", errs) {
        Some(p) if p.value.starts_with('/') && !p.value.contains(['?', '#']) => {
            Some(p.value.to_owned())
        }
        Some(p) => {
            errs.push(
                &p.path,
                Some(p.at),
                format!("`{}` is not an absolute path", p.value),
            );
            None
        }
        None => Some(DEFAULT_ASSERTION_JWKS_PATH.to_owned()),
    };
    t.finish(errs);
    let key = match key {
        Some(found) => Some(found?),
        None => None,
    };
    Some(Assertion {
        header: header?,
        key,
        ttl,
        jwks_path: jwks_path?,
    })
}

/// The per-client rates and counts of `[route.limits]`.
fn rates(t: &mut Table<'_, '_>, l: &mut Limits, errs: &mut Collector<'_>) {
    const MAX: u64 = u32::MAX as u64;
    let small = |v: At<u64>| u32::try_from(v.value).ok();
    let per_sec = t.count("messages_per_sec", errs, 1, MAX);
    let burst = t.count("burst", errs, 1, MAX);
    if let (Some(b), None) = (&burst, &per_sec) {
        errs.push(
            &b.path,
            Some(b.at),
            "`burst` needs `messages_per_sec`: it is how far above that rate a client may go at once",
        );
    }
    if let (Some(b), Some(r)) = (&burst, &per_sec)
        && b.value < r.value
    {
        let msg = format!(
            "`burst` ({}) is below `messages_per_sec` ({}): a client could never send one second's worth at once; leave it out to use the rate",
            b.value, r.value
        );
        errs.push(&b.path, Some(b.at), msg);
    }
    l.messages_per_sec = per_sec.and_then(small);
    l.burst = burst.and_then(small);
    if let Some(b) = t.size("bytes_per_sec", errs) {
        if b.value == 0 {
            errs.push(&b.path, Some(b.at), "must be at least 1 byte");
        }
        l.bytes_per_sec = Some(b.value);
    }
    l.max_conns_per_ip = t.count("max_conns_per_ip", errs, 1, MAX).and_then(small);
    l.max_conns_per_user = t.count("max_conns_per_user", errs, 1, MAX).and_then(small);
    l.handshakes_per_ip_per_min = t
        .count("handshakes_per_ip_per_min", errs, 1, MAX)
        .and_then(small);
    if let Some(p) = t.count("ipv6_prefix", errs, 1, 128) {
        l.ipv6_prefix = u8::try_from(p.value).unwrap_or(128);
    }
}

fn store(mut t: Table<'_, '_>, errs: &mut Collector<'_>) -> Store {
    let kind = t.string("kind", errs);
    let url = t.string("url", errs);
    let on_error = t.string("on_error", errs);
    let timeout = t.duration("timeout", errs, false).and_then(|d| d.value);
    let lease = t.duration("lease", errs, false);
    let prefix = t.string("prefix", errs);
    let redis = match kind.as_ref().map(|k| k.value) {
        None | Some("memory") => false,
        Some("redis") => true,
        Some(other) => {
            let k = kind.as_ref().map_or(0, |k| k.at);
            errs.push(
                &t.path_of("kind"),
                Some(k),
                format!("`{other}` is not a store; write \"memory\" or \"redis\""),
            );
            false
        }
    };
    if !redis {
        let given = [
            ("url", url.is_some()),
            ("on_error", on_error.is_some()),
            ("prefix", prefix.is_some()),
        ];
        for (key, present) in given {
            if present {
                errs.push(
                    &t.path_of(key),
                    Some(t.at()),
                    "only means something with kind = \"redis\"",
                );
            }
        }
        t.finish(errs);
        return Store::Memory;
    }
    let url = match url {
        Some(u) if u.value.starts_with("redis://") || u.value.starts_with("rediss://") => {
            Some(u.value.to_owned())
        }
        Some(u) => {
            errs.push(
                &u.path,
                Some(u.at),
                "must be a redis:// or rediss:// URL, e.g. \"redis://127.0.0.1:6379/0\"",
            );
            None
        }
        None => {
            errs.push(
                &t.path_of("url"),
                Some(t.at()),
                "is required with kind = \"redis\"",
            );
            None
        }
    };
    let on_error = match on_error.as_ref().map(|o| o.value) {
        None | Some("deny") => OnStoreError::Deny,
        Some("allow") => OnStoreError::Allow,
        Some(other) => {
            let at = on_error.as_ref().map_or(0, |o| o.at);
            errs.push(
                &t.path_of("on_error"),
                Some(at),
                format!("`{other}` is not a choice; write \"deny\" (refuse while Redis is unreachable) or \"allow\""),
            );
            OnStoreError::Deny
        }
    };
    let lease = match lease {
        Some(At { value: Some(l), .. }) if l >= std::time::Duration::from_secs(1) => l,
        Some(l) => {
            errs.push(
                &l.path,
                Some(l.at),
                "must be at least 1s: it is renewed every third of it",
            );
            DEFAULT_STORE_LEASE
        }
        None => DEFAULT_STORE_LEASE,
    };
    let prefix = match prefix {
        Some(p) if !p.value.is_empty() && p.value.bytes().all(|b| b.is_ascii_graphic()) => {
            p.value.to_owned()
        }
        Some(p) => {
            errs.push(
                &p.path,
                Some(p.at),
                "must be non-empty printable ASCII without spaces",
            );
            String::new()
        }
        None => "wsgate".to_owned(),
    };
    t.finish(errs);
    match url {
        Some(url) => Store::Redis(RedisStore {
            url,
            on_error,
            timeout: timeout.unwrap_or(DEFAULT_STORE_TIMEOUT),
            lease,
            prefix,
        }),
        None => Store::Memory,
    }
}

fn global_limits(mut t: Table<'_, '_>, errs: &mut Collector<'_>) -> GlobalLimits {
    let mut g = GlobalLimits::default();
    if let Some(m) = t.count("max_connections", errs, 1, u64::from(u32::MAX)) {
        g.max_connections = m.value;
    }
    if let Some(m) = t.count("max_http_conns_per_ip", errs, 1, u64::from(u32::MAX)) {
        g.max_http_conns_per_ip = u32::try_from(m.value).unwrap_or(u32::MAX);
    }
    if let Some(m) = t.size("assembly_memory", errs) {
        if m.value == 0 {
            errs.push(&m.path, Some(m.at), "must be at least 1 byte");
        }
        g.assembly_memory = m.value;
    }
    t.finish(errs);
    g
}

fn shutdown(mut t: Table<'_, '_>, errs: &mut Collector<'_>) -> Shutdown {
    let mut s = Shutdown::default();
    if let Some(g) = t.duration("grace", errs, false).and_then(|g| g.value) {
        s.grace = g;
    }
    if let Some(d) = t.duration("drain", errs, true).and_then(|d| d.value) {
        s.drain = d;
    }
    t.finish(errs);
    s
}

fn check_unique_paths(routes: &[Placed<Route>], errs: &mut Collector<'_>) {
    for (n, (i, at, r)) in routes.iter().enumerate() {
        if routes[..n].iter().any(|(_, _, o)| o.path == r.path) {
            errs.push(
                &format!("route[{i}].path"),
                Some(*at),
                format!("`{}` is already the path of an earlier route", r.path),
            );
        }
    }
}

fn check_unique_binds(listeners: &[Placed<Listener>], errs: &mut Collector<'_>) {
    for (n, (i, at, l)) in listeners.iter().enumerate() {
        if l.bind.port() != 0 && listeners[..n].iter().any(|(_, _, o)| o.bind == l.bind) {
            errs.push(
                &format!("listener[{i}].bind"),
                Some(*at),
                format!("{} is already bound by an earlier listener", l.bind),
            );
        }
    }
}
