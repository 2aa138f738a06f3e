//! Web origins (RFC 6454) as the gateway compares them.
//!
//! An `Origin` header and an allow-list entry are both parsed into a
//! `(scheme, host, port)` tuple: scheme and host lower-cased, the host in
//! IDNA (punycode) form, the port made explicit from the scheme's default.
//! Comparison is on those tuples, never on strings, so
//! `https://app.example.com.evil.test` cannot pass for `https://app.example.com`.
//!
//! A trailing dot is kept: browsers treat `https://example.com.` as an origin
//! of its own (separate cookies, separate storage), so it does not match
//! `https://example.com`.

use std::fmt;

/// A parsed origin: the opaque `null` or a `(scheme, host, port)` tuple.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The serialisation of an opaque origin (sandboxed iframes, `file:` pages, redirects).
    Null,
    /// A tuple origin.
    Tuple(TupleOrigin),
}

/// The `(scheme, host, port)` of a tuple origin, normalised.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TupleOrigin {
    scheme: String,
    host: String,
    port: u16,
    /// Whether the host is an IP literal; subdomain patterns never match those.
    ip: bool,
}

impl TupleOrigin {
    /// The scheme, lower-case.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }
    /// The host: lower-case punycode, an IPv4 literal, or a bracketed IPv6 literal.
    pub fn host(&self) -> &str {
        &self.host
    }
    /// The port, the scheme's default when none was written (0 for schemes without one).
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// Why a string is not an origin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    /// Not of the form `scheme://host[:port]`.
    #[error("`{0}` is not an origin; an origin is scheme://host[:port] with nothing after it")]
    Malformed(String),
    /// Has a path, query, fragment or user info, which no origin has.
    #[error(
        "`{0}` has a path, query, fragment or user name; an origin is only scheme://host[:port]"
    )]
    HasExtra(String),
}

impl Origin {
    /// Parses an `Origin` header value or an allow-list entry.
    pub fn parse(text: &str) -> Result<Origin, OriginError> {
        Origin::parse_with(text, true)
    }

    /// [`Origin::parse`], every tuple through the URL parser: what the
    /// shortcut must give (the `origin` fuzz target compares the two).
    #[doc(hidden)]
    pub fn parse_without_shortcut(text: &str) -> Result<Origin, OriginError> {
        Origin::parse_with(text, false)
    }

    fn parse_with(text: &str, shortcut: bool) -> Result<Origin, OriginError> {
        if text == "null" {
            return Ok(Origin::Null);
        }
        let malformed = || OriginError::Malformed(text.to_owned());
        let (scheme, rest) = text.split_once("://").ok_or_else(malformed)?;
        if scheme.is_empty() || rest.is_empty() || text.chars().any(|c| c.is_whitespace()) {
            return Err(malformed());
        }
        if rest.contains(['/', '?', '#', '@', '\\']) {
            return Err(OriginError::HasExtra(text.to_owned()));
        }
        let short = shortcut
            .then(|| TupleOrigin::already_normal(scheme, rest))
            .flatten();
        match short {
            Some(tuple) => Ok(Origin::Tuple(tuple)),
            None => TupleOrigin::parse(text).map(Origin::Tuple),
        }
    }
}

impl TupleOrigin {
    /// `scheme://rest` as browsers write an origin (`http` or `https`, a
    /// host [`already_normal`](crate::host::already_normal), a port of
    /// digits only without leading zeros) needs no URL parser: the tuple
    /// is the text.
    fn already_normal(scheme: &str, rest: &str) -> Option<TupleOrigin> {
        let default = match scheme {
            "https" => 443,
            "http" => 80,
            _ => return None,
        };
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) if !port.starts_with('0') => (host, crate::host::port_number(port)?),
            Some(_) => return None,
            None => (rest, default),
        };
        let ip = match crate::host::already_normal(host)? {
            crate::host::Normal::Ipv4 => true,
            crate::host::Normal::Domain => false,
        };
        Some(TupleOrigin {
            scheme: scheme.to_owned(),
            host: host.to_owned(),
            port,
            ip,
        })
    }

    /// The URL standard's parse of an origin that is not in that form.
    fn parse(text: &str) -> Result<TupleOrigin, OriginError> {
        let malformed = || OriginError::Malformed(text.to_owned());
        let url = url::Url::parse(text).map_err(|_| malformed())?;
        let host = url.host().ok_or_else(malformed)?;
        let ip = !matches!(host, url::Host::Domain(_));
        if let url::Host::Domain(name) = host
            && !crate::host::is_ldh(name)
        {
            return Err(malformed());
        }
        let host = crate::host::host_text(host);
        Ok(TupleOrigin {
            scheme: url.scheme().to_ascii_lowercase(),
            host,
            port: url.port_or_known_default().unwrap_or(0),
            ip,
        })
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Null => f.write_str("null"),
            Origin::Tuple(t) => write!(f, "{}://{}:{}", t.scheme, t.host, t.port),
        }
    }
}

/// One entry of a route's `origins` allow-list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OriginPattern {
    /// Exactly this origin.
    Exact(TupleOrigin),
    /// `scheme://*.suffix[:port]`: any host with at least one more label in front of `suffix`.
    Subdomains {
        /// Required scheme.
        scheme: String,
        /// The suffix with its leading dot, e.g. `.example.com`.
        suffix: String,
        /// Required port.
        port: u16,
    },
    /// The literal `null`: opaque origins, only when an operator lists it.
    Null,
}

impl OriginPattern {
    /// Parses an allow-list entry; refuses entries that would match far more than intended.
    pub fn parse(text: &str) -> Result<OriginPattern, String> {
        if text == "*" {
            return Err("`*` would admit every site; list the origins that may connect".into());
        }
        if let Some((scheme, rest)) = text.split_once("://*.") {
            let base = format!("{scheme}://{rest}");
            return match Origin::parse(&base).map_err(|e| e.to_string())? {
                Origin::Tuple(t) if !t.ip && t.host.contains('.') => {
                    Ok(OriginPattern::Subdomains {
                        scheme: t.scheme,
                        suffix: format!(".{}", t.host),
                        port: t.port,
                    })
                }
                _ => Err(format!(
                    "`{text}`: a subdomain pattern needs a registered domain of at least two labels after `*.`"
                )),
            };
        }
        if text.contains('*') {
            return Err(format!(
                "`{text}`: `*` is only allowed as the first label, as in https://*.example.com"
            ));
        }
        match Origin::parse(text).map_err(|e| e.to_string())? {
            Origin::Null => Ok(OriginPattern::Null),
            Origin::Tuple(t) => Ok(OriginPattern::Exact(t)),
        }
    }

    /// Whether `origin` is admitted by this entry.
    pub fn matches(&self, origin: &Origin) -> bool {
        match (self, origin) {
            (OriginPattern::Null, Origin::Null) => true,
            (OriginPattern::Exact(want), Origin::Tuple(got)) => want == got,
            (
                OriginPattern::Subdomains {
                    scheme,
                    suffix,
                    port,
                },
                Origin::Tuple(got),
            ) => {
                !got.ip
                    && got.scheme == *scheme
                    && got.port == *port
                    && got.host.len() > suffix.len()
                    && got.host.ends_with(suffix.as_str())
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(pattern: &str, origin: &str) -> bool {
        let pattern = OriginPattern::parse(pattern).unwrap();
        Origin::parse(origin).is_ok_and(|o| pattern.matches(&o))
    }

    #[test]
    fn the_shortcut_gives_what_the_url_parser_gives() {
        use crate::host::tests::{TRICKY, every_string};
        let hosts = every_string(&["a", "1", "0", "x", "-", "_", ".", "A"], 5);
        let ports = [
            "", ":80", ":443", ":8443", ":0", ":080", ":65535", ":65536", ":", ":+80", ":-1",
        ];
        let mut taken = 0;
        for host in TRICKY.iter().map(|h| h.to_string()).chain(hosts) {
            for scheme in ["https", "http", "HTTPS", "wss", "ftp"] {
                for port in ports {
                    let rest = format!("{host}{port}");
                    let Some(short) = TupleOrigin::already_normal(scheme, &rest) else {
                        continue;
                    };
                    taken += 1;
                    let text = format!("{scheme}://{rest}");
                    assert_eq!(TupleOrigin::parse(&text), Ok(short), "{text}");
                }
            }
        }
        assert!(taken > 20_000, "{taken}");
        for full in [
            "HTTPS://a.b",
            "https://a.b:0443",
            "https://a.b:",
            "https://a.b:+443",
            "wss://a.b",
        ] {
            let (scheme, rest) = full.split_once("://").unwrap();
            assert_eq!(TupleOrigin::already_normal(scheme, rest), None, "{full}");
        }
    }

    #[test]
    fn exact_origins_compare_as_tuples() {
        assert!(allowed(
            "https://app.example.com",
            "https://app.example.com"
        ));
        assert!(allowed(
            "https://app.example.com",
            "https://app.example.com:443"
        ));
        assert!(allowed(
            "https://app.example.com",
            "HTTPS://APP.EXAMPLE.COM"
        ));
        assert!(!allowed(
            "https://app.example.com",
            "http://app.example.com"
        ));
        assert!(!allowed(
            "https://app.example.com",
            "https://app.example.com:8443"
        ));
        assert!(!allowed(
            "https://app.example.com",
            "https://app.example.com."
        ));
        assert!(!allowed(
            "https://app.example.com",
            "https://app.example.com.evil.test"
        ));
        assert!(!allowed(
            "https://app.example.com",
            "https://evilapp.example.com"
        ));
        assert!(!allowed(
            "https://app.example.com",
            "https://app-example.com"
        ));
        assert!(!allowed("https://app.example.com", "null"));
    }

    #[test]
    fn idna_hosts_are_compared_in_punycode() {
        assert!(allowed(
            "https://bücher.example",
            "https://xn--bcher-kva.example"
        ));
    }

    #[test]
    fn subdomain_patterns_need_a_label_boundary() {
        let p = "https://*.example.com";
        assert!(allowed(p, "https://a.example.com"));
        assert!(allowed(p, "https://a.b.example.com"));
        assert!(!allowed(p, "https://example.com"));
        assert!(!allowed(p, "https://evilexample.com"));
        assert!(!allowed(p, "https://a.example.com.evil.test"));
        assert!(!allowed(p, "http://a.example.com"));
        assert!(!allowed(p, "https://a.example.com:444"));
    }

    #[test]
    fn null_only_when_listed() {
        assert!(allowed("null", "null"));
        assert!(!allowed("https://a.example.com", "null"));
        assert!(Origin::parse("NULL").is_err());
    }

    #[test]
    fn malformed_origins_are_errors() {
        for bad in [
            "",
            "example.com",
            "https://",
            "https://a.example.com/",
            "https://a.example.com/path",
            "https://user@a.example.com",
            "https://a.example.com?x",
            "https://a.example.com#x",
            "https:// a.example.com",
            "https://a.example.com`google.com",
            "https://a.example.com$google.com",
            "file://",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn ip_literals_are_origins_but_never_subdomains() {
        assert!(allowed("http://127.0.0.1:8080", "http://127.0.0.1:8080"));
        assert!(allowed("http://[::1]:8080", "http://[0:0::1]:8080"));
        assert!(
            OriginPattern::parse("https://*.1.2.3").is_err()
                || !allowed("https://*.2.3", "https://1.2.3.4")
        );
    }

    #[test]
    fn over_wide_patterns_are_refused() {
        assert!(OriginPattern::parse("*").is_err());
        assert!(OriginPattern::parse("https://*").is_err());
        assert!(OriginPattern::parse("https://*.com").is_err());
        assert!(OriginPattern::parse("https://a.*.com").is_err());
    }
}
