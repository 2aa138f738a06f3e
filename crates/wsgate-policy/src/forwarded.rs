//! Who the client is when a trusted proxy stands between it and the gateway.
//!
//! Behind a load balancer every connection comes from the balancer, so the
//! per-address limits would count the balancer, and the audit log would name
//! it. A listener's `trusted_proxies` lists the proxies whose
//! `X-Forwarded-For` the gateway believes. Each proxy appends the address it
//! was connected from; so the list is read from its right end, past every
//! trusted proxy, to the first address that is not one: that is the client.
//! Everything to its left was written by the client itself, or by proxies
//! nobody vouches for, and is ignored (RFC 7239 section 8.1 warns of the
//! same). A connection from an address not listed keeps its own address,
//! and its `X-Forwarded-For` is dropped as before.

use std::net::{IpAddr, SocketAddr};

pub use wsgate_config::IpNet;

/// Most addresses one request's `X-Forwarded-For` may hold: far more hops
/// than any real chain, and a bound on the work a request can ask for.
pub const MAX_HOPS: usize = 32;

/// The client behind a trusted proxy, as its `X-Forwarded-For` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    /// The client: the right-most address that is not a trusted proxy.
    pub client: IpAddr,
    /// The `X-Forwarded-For` to send on: the client and the trusted proxies
    /// after it, then the proxy that connected to the gateway.
    pub chain: String,
}

/// Why a trusted proxy's `X-Forwarded-For` cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardedError {
    /// An entry that had to be read is not an address.
    #[error("X-Forwarded-For from trusted proxy {proxy}: `{entry}` is not an address")]
    NotAnAddress {
        /// The proxy that sent it.
        proxy: IpAddr,
        /// The entry, cut to 64 bytes.
        entry: String,
    },
    /// More entries than [`MAX_HOPS`].
    #[error("X-Forwarded-For from trusted proxy {0} lists more than {MAX_HOPS} addresses")]
    TooLong(IpAddr),
}

/// Whether `ip` is one of `trusted`; IPv4 addresses written as IPv6
/// (`::ffff:a.b.c.d`, what a dual-stack listener sees) count as IPv4.
pub fn is_trusted(trusted: &[IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    trusted.iter().any(|net| net.contains(&ip))
}

/// The client behind `peer`: `None` when `peer` is not a trusted proxy, or
/// sent no `X-Forwarded-For` (a health check from the balancer itself); the
/// gateway then counts and names `peer`. `values` are the request's
/// `X-Forwarded-For` field values in order; empty list elements are
/// skipped (RFC 9110 section 5.6.1).
pub fn resolve<'a>(
    peer: IpAddr,
    trusted: &[IpNet],
    values: impl IntoIterator<Item = &'a str>,
) -> Result<Option<Forwarded>, ForwardedError> {
    let peer = peer.to_canonical();
    if !is_trusted(trusted, peer) {
        return Ok(None);
    }
    let mut entries = Vec::new();
    for entry in values
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        if entries.len() == MAX_HOPS {
            return Err(ForwardedError::TooLong(peer));
        }
        entries.push(entry);
    }
    let mut hops: Vec<IpAddr> = Vec::new();
    for entry in entries.iter().rev() {
        let ip = parse_entry(entry).ok_or_else(|| ForwardedError::NotAnAddress {
            proxy: peer,
            entry: entry.chars().take(64).collect(),
        })?;
        hops.push(ip);
        if !is_trusted(trusted, ip) {
            break;
        }
    }
    // Every address was a trusted proxy: the left-most is as far as the
    // chain can be followed.
    let Some(&client) = hops.last() else {
        return Ok(None);
    };
    let chain = hops
        .iter()
        .rev()
        .chain(std::iter::once(&peer))
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    Ok(Some(Forwarded { client, chain }))
}

/// One `X-Forwarded-For` entry: an address, with or without a port
/// (`203.0.113.7`, `203.0.113.7:41234`, `2001:db8::7`, `[2001:db8::7]:443`).
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let ip = entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            let inner = entry.strip_prefix('[')?.strip_suffix(']')?;
            inner.parse::<IpAddr>().ok()
        })?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().expect("a network")).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    fn client(peer: &str, trusted: &[&str], xff: &[&str]) -> Option<(String, String)> {
        resolve(ip(peer), &nets(trusted), xff.iter().copied())
            .expect("readable")
            .map(|f| (f.client.to_string(), f.chain))
    }

    #[test]
    fn an_untrusted_peer_keeps_its_own_address_whatever_it_claims() {
        assert_eq!(client("198.51.100.4", &["10.0.0.0/8"], &["1.2.3.4"]), None);
        assert_eq!(client("198.51.100.4", &[], &["1.2.3.4"]), None);
        // Not read at all, so not refused either.
        assert_eq!(client("198.51.100.4", &["10.0.0.0/8"], &["junk"]), None);
    }

    #[test]
    fn the_client_is_the_right_most_address_that_is_not_a_trusted_proxy() {
        let trusted = &["10.0.0.0/8"];
        assert_eq!(
            client("10.0.0.5", trusted, &["203.0.113.7"]),
            Some(("203.0.113.7".into(), "203.0.113.7, 10.0.0.5".into()))
        );
        // A client's own forgery on the left is ignored and not passed on.
        assert_eq!(
            client("10.0.0.5", trusted, &["6.6.6.6, 203.0.113.7, 10.1.1.1"]),
            Some((
                "203.0.113.7".into(),
                "203.0.113.7, 10.1.1.1, 10.0.0.5".into()
            ))
        );
        // Several field lines are one list, in order.
        assert_eq!(
            client("10.0.0.5", trusted, &["6.6.6.6", "203.0.113.7", "10.1.1.1"]),
            Some((
                "203.0.113.7".into(),
                "203.0.113.7, 10.1.1.1, 10.0.0.5".into()
            ))
        );
    }

    #[test]
    fn a_chain_of_trusted_proxies_only_ends_at_its_left_most_address() {
        assert_eq!(
            client("10.0.0.5", &["10.0.0.0/8"], &["10.9.9.9, 10.1.1.1"]),
            Some(("10.9.9.9".into(), "10.9.9.9, 10.1.1.1, 10.0.0.5".into()))
        );
    }

    #[test]
    fn a_trusted_proxy_without_the_header_is_the_client() {
        assert_eq!(client("10.0.0.5", &["10.0.0.0/8"], &[]), None);
        assert_eq!(client("10.0.0.5", &["10.0.0.0/8"], &[" , "]), None);
    }

    #[test]
    fn ports_brackets_and_mapped_addresses_are_read() {
        let trusted = &["10.0.0.0/8", "2001:db8::/32"];
        assert_eq!(
            client("10.0.0.5", trusted, &["203.0.113.7:41234"]).map(|c| c.0),
            Some("203.0.113.7".into())
        );
        assert_eq!(
            client("10.0.0.5", trusted, &["[2001:db9::7]:443"]).map(|c| c.0),
            Some("2001:db9::7".into())
        );
        assert_eq!(
            client("10.0.0.5", trusted, &["[2001:db9::7]"]).map(|c| c.0),
            Some("2001:db9::7".into())
        );
        // A dual-stack listener sees an IPv4 proxy as ::ffff:a.b.c.d.
        assert_eq!(
            client("::ffff:10.0.0.5", trusted, &["::ffff:203.0.113.7"]),
            Some(("203.0.113.7".into(), "203.0.113.7, 10.0.0.5".into()))
        );
    }

    #[test]
    fn an_entry_that_must_be_read_and_is_not_an_address_is_refused() {
        let trusted = nets(&["10.0.0.0/8"]);
        let err = resolve(ip("10.0.0.5"), &trusted, ["203.0.113.7, unknown"]);
        assert_eq!(
            err,
            Err(ForwardedError::NotAnAddress {
                proxy: ip("10.0.0.5"),
                entry: "unknown".into()
            })
        );
        // Left of the client, nothing is read: a client's junk is no refusal.
        assert!(resolve(ip("10.0.0.5"), &trusted, ["junk, 203.0.113.7"]).is_ok());
        let long = vec!["10.1.1.1"; MAX_HOPS + 1];
        assert_eq!(
            resolve(ip("10.0.0.5"), &trusted, long),
            Err(ForwardedError::TooLong(ip("10.0.0.5")))
        );
    }
}
