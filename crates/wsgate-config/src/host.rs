//! `Host` header allow-lists, the defence against DNS rebinding.
//!
//! A rebinding attack points the attacker's own name at the gateway's address,
//! so the browser thinks the page and the socket share an origin; the only
//! trace is the attacker's name in `Host`. Entries are host names (optionally
//! with a port) or `*.suffix` patterns; comparison is on the normalised host
//! (lower case, IDNA, one trailing dot removed, since `chat.example.com.` is
//! the same DNS name and not an attacker's).

/// One entry of a `hosts` allow-list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPattern {
    host: HostMatch,
    port: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum HostMatch {
    Exact(String),
    /// Suffix with its leading dot.
    Subdomains(String),
}

/// A `Host` header value, normalised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostHeader {
    /// Lower-case host name or IP literal (IPv6 in brackets), no trailing dot.
    pub host: String,
    /// The port, when the header names one.
    pub port: Option<u16>,
}

impl HostHeader {
    /// Parses a `Host` header value (`name`, `name:port`, `[v6]:port`).
    pub fn parse(text: &str) -> Result<HostHeader, String> {
        HostHeader::parse_with(text, true)
    }

    /// [`HostHeader::parse`], the host always through the URL parser: what
    /// the shortcut must give (the `origin` fuzz target compares the two).
    #[doc(hidden)]
    pub fn parse_without_shortcut(text: &str) -> Result<HostHeader, String> {
        HostHeader::parse_with(text, false)
    }

    fn parse_with(text: &str, shortcut: bool) -> Result<HostHeader, String> {
        let (host, port) = split_port(text)?;
        Ok(HostHeader {
            host: normalise_host(host, shortcut)?,
            port,
        })
    }
}

impl HostPattern {
    /// Parses an allow-list entry such as `chat.example.com`, `*.example.com` or `localhost:8443`.
    pub fn parse(text: &str) -> Result<HostPattern, String> {
        let (host, port) = split_port(text)?;
        let host = if let Some(suffix) = host.strip_prefix("*.") {
            let suffix = normalise_host(suffix, true)?;
            if !suffix.contains('.') {
                return Err(format!(
                    "`{text}`: a wildcard host needs a domain of at least two labels after `*.`"
                ));
            }
            HostMatch::Subdomains(format!(".{suffix}"))
        } else if host.contains('*') {
            return Err(format!("`{text}`: `*` is only allowed as the first label"));
        } else {
            HostMatch::Exact(normalise_host(host, true)?)
        };
        Ok(HostPattern { host, port })
    }

    /// Whether a request's `Host` is admitted by this entry.
    pub fn matches(&self, got: &HostHeader) -> bool {
        let port_ok = self.port.is_none_or(|p| got.port == Some(p));
        let host_ok = match &self.host {
            HostMatch::Exact(h) => *h == got.host,
            HostMatch::Subdomains(s) => got.host.len() > s.len() && got.host.ends_with(s.as_str()),
        };
        port_ok && host_ok
    }
}

fn split_port(text: &str) -> Result<(&str, Option<u16>), String> {
    let bad = || format!("`{text}` is not a host name with an optional port");
    if text.is_empty()
        || text
            .chars()
            .any(|c| c.is_whitespace() || c == '/' || c == '@')
    {
        return Err(bad());
    }
    let (host, port) = if text.starts_with('[') {
        match text.find(']') {
            Some(end) if end + 1 == text.len() => (text, None),
            Some(end) => match text[end + 1..].strip_prefix(':') {
                Some(p) => (&text[..=end], Some(p)),
                None => return Err(bad()),
            },
            None => return Err(bad()),
        }
    } else {
        match text.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        }
    };
    let port = port.map(|p| port_number(p).ok_or_else(bad)).transpose()?;
    Ok((host, port))
}

/// A port as RFC 3986 writes one, digits only, read as a number: what
/// `u16::from_str` reads, without the leading `+` it also takes (and the
/// URL parser refuses; found by the `origin` fuzz target).
pub(crate) fn port_number(text: &str) -> Option<u16> {
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `host` in the form it is compared in; `shortcut: false` takes even a
/// host [`already_normal`] through the URL parser (for the fuzz target).
fn normalise_host(host: &str, shortcut: bool) -> Result<String, String> {
    let trimmed = host.strip_suffix('.').unwrap_or(host);
    if shortcut && already_normal(trimmed).is_some() {
        return Ok(trimmed.to_owned());
    }
    parse_host(host, trimmed)
}

/// `trimmed` (`host` without its trailing dot) through the URL standard's
/// host parser: IDNA, percent-decoding, IPv4 in its number forms, IPv6.
fn parse_host(host: &str, trimmed: &str) -> Result<String, String> {
    match url::Host::parse(trimmed) {
        Ok(url::Host::Domain(name)) if !is_ldh(&name) => {
            Err(format!("`{host}` has characters no DNS name has"))
        }
        Ok(parsed) => Ok(host_text(parsed)),
        Err(e) => Err(format!("`{host}` is not a host name ({e})")),
    }
}

/// A parsed host as `Host` headers and origins compare it: a domain in
/// lower case (`url` lowers it for special schemes only), an IPv6 address
/// in brackets. An owned domain is lowered in place, not copied.
pub(crate) fn host_text<S: Into<String>>(host: url::Host<S>) -> String {
    match host {
        url::Host::Domain(name) => {
            let mut name: String = name.into();
            name.make_ascii_lowercase();
            name
        }
        url::Host::Ipv4(addr) => addr.to_string(),
        url::Host::Ipv6(addr) => format!("[{addr}]"),
    }
}

/// What [`already_normal`] finds a host is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Normal {
    Domain,
    Ipv4,
}

/// Whether `host` is already in the form the URL parser and [`host_text`]
/// would give it, and so needs neither: a dotted-quad IPv4 address, or a
/// lower-case name of letters, digits, `-` and `_` whose last label starts
/// with a letter (so it is no number), with no empty and no punycode
/// (`xn--`) label. Browsers send hosts in this form; the parser's IDNA
/// mapping and number rules cost a handshake about 3 % of its
/// instructions each for the `Host` and the `Origin`. The tests hold the
/// shortcut to the parser over every short string of the characters
/// that matter. `None` is not a refusal: the full parse decides.
pub(crate) fn already_normal(host: &str) -> Option<Normal> {
    // The standard library's parser takes four decimal parts without
    // leading zeros, exactly the form an IPv4 address is written back in.
    if host.parse::<std::net::Ipv4Addr>().is_ok() {
        return Some(Normal::Ipv4);
    }
    let name_label = |label: &str| {
        !label.is_empty()
            && !label.starts_with("xn--")
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    };
    let last_is_no_number = host
        .rsplit('.')
        .next()
        .is_some_and(|last| last.as_bytes().first().is_some_and(u8::is_ascii_lowercase));
    (last_is_no_number && host.split('.').all(name_label)).then_some(Normal::Domain)
}

/// Whether a (punycode) domain uses only letters, digits, `-`, `_` and `.`.
/// The URL standard lets through characters such as a backtick or `$` that no
/// DNS name has; origin checks that split on them were bypassed (socket.io
/// WS-2020-0443), so they are refused outright.
pub(crate) fn is_ldh(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn ok(pattern: &str, host: &str) -> bool {
        let p = HostPattern::parse(pattern).unwrap();
        HostHeader::parse(host).is_ok_and(|h| p.matches(&h))
    }

    /// Every string of up to `len` characters from `alphabet`.
    pub(crate) fn every_string(alphabet: &[&str], len: usize) -> Vec<String> {
        let mut all = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..len {
            last = last
                .iter()
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            all.extend(last.iter().cloned());
        }
        all
    }

    /// Hosts the shortcut might get wrong: numbers in every form the URL
    /// standard reads as IPv4, punycode, empty labels, upper case.
    pub(crate) const TRICKY: &[&str] = &[
        "127.0.0.1",
        "127.0.0.01",
        "0127.0.0.1",
        "127.1",
        "0x7f.0.0.1",
        "2130706433",
        "1.2.3.4.5",
        "256.0.0.1",
        "1.2.3.256",
        "255.255.255.255",
        "0.0.0.0",
        "1.2.3.4a",
        "a.1",
        "a.0x1",
        "a.1a",
        "a.b1",
        "1a.b",
        "xn--nxasmq6b.com",
        "a.xn--",
        "xn--a",
        "a..b",
        ".a",
        "a.",
        "A.b",
        "a-.b",
        "-a.b",
        "a_b.c",
        "chat.example.com",
        "localhost",
        "a.b-",
        "\u{00e9}.com",
        "a%41.com",
        "a.0",
        "a.00",
        "a.09",
    ];

    #[test]
    fn the_shortcut_gives_what_the_url_parser_gives() {
        let generated = every_string(&["a", "1", "0", "x", "-", "_", ".", "9", "A"], 6);
        let mut taken = 0;
        for host in TRICKY.iter().map(|h| h.to_string()).chain(generated) {
            let Some(kind) = already_normal(&host) else {
                continue;
            };
            taken += 1;
            assert_eq!(parse_host(&host, &host), Ok(host.clone()), "{host:?}");
            let parsed_kind = match url::Host::parse(&host) {
                Ok(url::Host::Ipv4(_)) => Normal::Ipv4,
                _ => Normal::Domain,
            };
            assert_eq!(kind, parsed_kind, "{host:?}");
        }
        // The shortcut is taken for the common forms, not for nothing.
        assert!(taken > 50_000, "{taken}");
        for common in ["chat.example.com", "127.0.0.1", "localhost", "a_b.c"] {
            assert!(already_normal(common).is_some(), "{common}");
        }
        for full in [
            "127.0.0.01",
            "127.1",
            "a.1",
            "xn--nxasmq6b.com",
            "A.b",
            "a..b",
            "a.",
        ] {
            assert_eq!(already_normal(full), None, "{full}");
        }
    }

    #[test]
    fn host_allow_list() {
        assert!(ok("chat.example.com", "chat.example.com"));
        assert!(ok("chat.example.com", "CHAT.example.com:8443"));
        assert!(ok("chat.example.com", "chat.example.com."));
        assert!(!ok("chat.example.com", "evil.test"));
        assert!(!ok("chat.example.com", "chat.example.com.evil.test"));
        assert!(ok("localhost:8443", "localhost:8443"));
        assert!(!ok("localhost:8443", "localhost:8444"));
        assert!(!ok("localhost:8443", "localhost"));
        assert!(ok("*.example.com", "a.example.com"));
        assert!(!ok("*.example.com", "example.com"));
        assert!(ok("[::1]", "[::1]:9000"));
        assert!(ok("127.0.0.1", "127.0.0.1:9000"));
        assert!(HostHeader::parse("a b").is_err());
        assert!(HostHeader::parse("[::1").is_err());
        assert!(HostHeader::parse("host:99999").is_err());
        assert!(HostHeader::parse("host:+80").is_err());
        assert!(HostPattern::parse("host:+80").is_err());
        assert!(HostPattern::parse("*.com").is_err());
    }
}
