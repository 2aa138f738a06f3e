//! The admission decision for one handshake.
//!
//! Order, as DESIGN.md fixes it: route, then host, then origin, then
//! credentials, then limits; the first failing check decides. [`admit`] runs
//! what needs only the request; the caller verifies the credentials it names
//! (I/O and slow hashes live outside this crate) and hands the outcome to
//! [`Checked::finish`]. On a route in `report` mode the same checks run and
//! the first refusal is recorded in [`Admitted::report`], but the handshake
//! is admitted.

use std::sync::Arc;

use http::HeaderMap;
use wsgate_config::auth::AuthConfig;
use wsgate_config::origin::{Origin, OriginError};
use wsgate_config::{Auth, Hosts, Mode, Route, host::HostHeader};

use crate::credentials::{self, Credential};
use crate::reason::Reason;
use crate::route::Router;
use crate::verify::{AuthFailure, Identity};

/// What admission looks at, already checked against RFC 6455.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Request path without the query.
    pub path: &'a str,
    /// The query string, if any.
    pub query: Option<&'a str>,
    /// `Host` header.
    pub host: &'a str,
    /// `Origin` header, if any.
    pub origin: Option<&'a str>,
    /// Subprotocols the client offered.
    pub protocols: &'a [String],
    /// All request headers (credentials, `Sec-Fetch-Site`).
    pub headers: &'a HeaderMap,
    /// The client certificate the TLS layer verified, if any.
    pub client_cert: Option<&'a credentials::ClientCert>,
}

/// A verified credential: who it proved, and its index in [`Checked::credentials`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Who the client is.
    pub identity: Identity,
    /// Which presented credential proved it.
    pub credential: usize,
}

/// A refusal, with what the log says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Why.
    pub reason: Reason,
    /// The route's index in the config, once known.
    pub route: Option<usize>,
    /// A sentence for the log (never for the client).
    pub detail: String,
}

/// A handshake that passed the request checks; its credentials are next.
#[derive(Debug)]
pub struct Checked {
    route_index: usize,
    route: Arc<Route>,
    protocols: Vec<String>,
    report: Option<Refused>,
    credentials: Vec<Credential>,
    /// Whether the origin is a tuple origin on the allow-list: the only kind
    /// of handshake that may carry ambient credentials.
    origin_listed: bool,
    /// The browser said the request comes from another site
    /// (`Sec-Fetch-Site: cross-site`) while the Origin claims the very host
    /// being asked: a contradiction no browser produces.
    fetch_cross_site: bool,
}

/// A handshake that passed admission (or, in report mode, was let through).
#[derive(Debug)]
pub struct Admitted {
    route_index: usize,
    route: Arc<Route>,
    protocols: Vec<String>,
    report: Option<Refused>,
    identity: Option<Identity>,
    /// The credential that proved the identity was ambient (cookie, Basic,
    /// client certificate).
    ambient: bool,
    fetch_cross_site: bool,
}

impl Admitted {
    /// The route, as configured.
    pub fn route(&self) -> &Arc<Route> {
        &self.route
    }
    /// The route's index in the config.
    pub fn route_index(&self) -> usize {
        self.route_index
    }
    /// The client's subprotocols that the route allows, in the client's order.
    pub fn protocols(&self) -> &[String] {
        &self.protocols
    }
    /// In report mode, the refusal that enforcing would have made.
    pub fn report(&self) -> Option<&Refused> {
        self.report.as_ref()
    }
    /// Who the client proved to be; `None` on `auth = "none"` routes.
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }
    /// The identity alone, for an open connection to keep once the
    /// handshake is answered (the offered protocols and the report are not
    /// needed after it).
    pub fn into_identity(self) -> Option<Identity> {
        self.identity
    }

    /// What a later policy judges this connection by (see [`recheck`]).
    pub fn seen(&self, req: &Request<'_>) -> Seen {
        Seen {
            path: req.path.to_owned(),
            host: req.host.to_owned(),
            origin: req.origin.map(str::to_owned),
            fetch_cross_site: self.fetch_cross_site,
            auth: self.identity.as_ref().map(|i| (i.method, self.ambient)),
        }
    }
}

/// What admission saw of a handshake, kept for the life of its connection
/// so that a new policy (a reload) can judge it again. No credential is
/// kept: the method that proved the client is, not the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Request path.
    pub path: String,
    /// `Host` header.
    pub host: String,
    /// `Origin` header, if any.
    pub origin: Option<String>,
    /// `Sec-Fetch-Site: cross-site` from an origin on the endpoint's own host.
    pub fetch_cross_site: bool,
    /// How the client was authenticated, and whether that credential was ambient.
    pub auth: Option<(wsgate_config::AuthMethod, bool)>,
}

/// An open connection that a new policy still admits: its route now, and
/// in report mode the refusal that enforcing would make.
#[derive(Debug)]
pub struct Rechecked {
    /// The route's index in the new config.
    pub route_index: usize,
    /// The route, as now configured.
    pub route: Arc<Route>,
    /// In report mode, the refusal that enforcing would have made.
    pub report: Option<Refused>,
}

/// Judges an open connection by a new policy: the route its path finds now,
/// the host and origin allow-lists, and the route's authentication. The
/// credential itself is not verified again (the gateway keeps no secrets);
/// the method that proved it must still be one the route accepts, and an
/// ambient credential still needs a listed origin. The refusal names what
/// the connection would be refused for if it came now.
pub fn recheck(listener_hosts: &Hosts, router: &Router, seen: &Seen) -> Result<Rechecked, Refused> {
    let (index, route) = router.find(&seen.path).map_err(|none| {
        let (reason, detail) = none.refusal(&seen.path);
        Refused {
            reason,
            route: None,
            detail: format!("{detail} (under the new config)"),
        }
    })?;
    let mut report = None;
    let refuse = |(reason, detail)| Refused {
        reason,
        route: Some(index),
        detail,
    };
    let host = HostField::parse(&seen.host);
    let origin = seen.origin.as_deref().map(OriginHeader::parse);
    if let Err(e) = checks(listener_hosts, route, &host, origin.as_ref()) {
        record(&mut report, route, refuse(e))?;
    }
    if let Err(e) = recheck_auth(route, seen, origin.as_ref()) {
        record(&mut report, route, refuse(e))?;
    }
    Ok(Rechecked {
        route_index: index,
        route: Arc::clone(route),
        report,
    })
}

fn recheck_auth(route: &Route, seen: &Seen, origin: Option<&OriginHeader<'_>>) -> Check {
    let Auth::Any(methods) = &route.auth else {
        return Ok(());
    };
    let Some((method, ambient)) = seen.auth else {
        return Err((
            Reason::AuthMissing,
            "the route now requires authentication".into(),
        ));
    };
    if !methods.contains(&method) {
        return Err((
            Reason::AuthMissing,
            format!(
                "authenticated by {}, which the route no longer accepts",
                method.name()
            ),
        ));
    }
    if ambient && (!listed(route, origin) || seen.fetch_cross_site) {
        return Err((
            Reason::CrossSiteCredentials,
            "an ambient credential on a handshake whose Origin the route no longer lists".into(),
        ));
    }
    Ok(())
}

/// Runs the checks that need only the request: route, host, origin.
pub fn admit(
    listener_hosts: &Hosts,
    router: &Router,
    auth: &AuthConfig,
    req: &Request<'_>,
) -> Result<Checked, Refused> {
    let (index, route) = router.find(req.path).map_err(|none| {
        let (reason, detail) = none.refusal(req.path);
        Refused {
            reason,
            route: None,
            detail,
        }
    })?;
    let mut report = None;
    let host = HostField::parse(req.host);
    let origin = req.origin.map(OriginHeader::parse);
    if let Err((reason, detail)) = checks(listener_hosts, route, &host, origin.as_ref()) {
        record(
            &mut report,
            route,
            Refused {
                reason,
                route: Some(index),
                detail,
            },
        )?;
    }
    let protocols = req
        .protocols
        .iter()
        .filter(|p| route.subprotocols.contains(p))
        .cloned()
        .collect();
    let origin_listed = listed(route, origin.as_ref());
    // Firefox sends Sec-Fetch-Site on WebSocket handshakes (Chromium does
    // not). A listed origin may well be on another site than the endpoint
    // (app.example.com using ws.example.net), so "cross-site" alone refuses
    // nothing; but from an origin on the very host being asked, it cannot
    // come from a browser, and ambient credentials are not taken with it.
    let same_host = match (origin.as_ref().map(|o| &o.parsed), &host.parsed) {
        (Some(Ok(Origin::Tuple(o))), Ok(h)) => o.host() == h.host,
        _ => false,
    };
    let fetch_cross_site = same_host
        && req
            .headers
            .get_all("sec-fetch-site")
            .iter()
            .any(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"));
    Ok(Checked {
        fetch_cross_site,
        route_index: index,
        route: Arc::clone(route),
        protocols,
        report,
        credentials: credentials::presented(
            route,
            auth,
            req.headers,
            req.query,
            req.protocols,
            req.client_cert,
        ),
        origin_listed,
    })
}

/// Keeps the first refusal in report mode; returns it in enforce mode.
fn record(report: &mut Option<Refused>, route: &Route, refused: Refused) -> Result<(), Refused> {
    match route.mode {
        Mode::Enforce => Err(refused),
        Mode::Report => {
            report.get_or_insert(refused);
            Ok(())
        }
    }
}

impl Checked {
    /// The route, as configured.
    pub fn route(&self) -> &Arc<Route> {
        &self.route
    }

    /// The route's index in the config.
    pub fn route_index(&self) -> usize {
        self.route_index
    }

    /// The credentials to verify, non-ambient first; empty when the route
    /// needs none or none were presented.
    pub fn credentials(&self) -> &[Credential] {
        &self.credentials
    }

    /// Finishes admission with the outcome of verifying [`Checked::credentials`]:
    /// the identity and which credential proved it, or why none did.
    pub fn finish(self, outcome: Result<Verified, AuthFailure>) -> Result<Admitted, Refused> {
        let mut report = self.report;
        let mut identity = None;
        let mut ambient = false;
        if let Auth::Any(_) = self.route.auth {
            let refusal = match outcome {
                Ok(v) => match self.credentials.get(v.credential) {
                    None => Some((
                        Reason::AuthInvalid,
                        "verified a credential that was not presented".into(),
                    )),
                    Some(c) if c.is_ambient() && !self.origin_listed => Some((
                        Reason::CrossSiteCredentials,
                        format!("{c:?} on a handshake whose Origin is missing, null or not listed"),
                    )),
                    Some(c) if c.is_ambient() && self.fetch_cross_site => Some((
                        Reason::CrossSiteCredentials,
                        format!(
                            "{c:?} with Sec-Fetch-Site: cross-site from an origin on the endpoint's own host"
                        ),
                    )),
                    Some(c) => {
                        ambient = c.is_ambient();
                        identity = Some(v.identity);
                        None
                    }
                },
                Err(AuthFailure::Missing) if only_mtls(&self.route) => {
                    Some((Reason::ClientCertRequired, "no client certificate".into()))
                }
                Err(AuthFailure::Missing) => Some((
                    Reason::AuthMissing,
                    "no credentials the route accepts".into(),
                )),
                Err(AuthFailure::Invalid(why)) => Some((Reason::AuthInvalid, why)),
                Err(AuthFailure::Ticket(why)) => Some((Reason::TicketInvalid, why)),
                Err(AuthFailure::Unavailable(why)) => Some((Reason::AuthUnavailable, why)),
                Err(AuthFailure::StoreUnavailable(why)) => Some((Reason::StoreUnavailable, why)),
                Err(AuthFailure::Expired) => {
                    Some((Reason::AuthExpired, "credential expired".into()))
                }
            };
            if let Some((reason, detail)) = refusal {
                let refused = Refused {
                    reason,
                    route: Some(self.route_index),
                    detail,
                };
                record(&mut report, &self.route, refused)?;
            }
        }
        Ok(Admitted {
            route_index: self.route_index,
            route: self.route,
            protocols: self.protocols,
            report,
            identity,
            ambient,
            fetch_cross_site: self.fetch_cross_site,
        })
    }
}

/// Whether a client certificate is the route's only method (its refusal
/// then names the certificate: `client_cert_required`).
fn only_mtls(route: &Route) -> bool {
    matches!(&route.auth, Auth::Any(m) if m.as_slice() == [wsgate_config::AuthMethod::Mtls])
}

type Check = Result<(), (Reason, String)>;

/// An `Origin` header, parsed once for every check that looks at it.
pub struct OriginHeader<'a> {
    raw: &'a str,
    parsed: Result<Origin, OriginError>,
}

impl<'a> OriginHeader<'a> {
    /// Parses the header's value.
    pub fn parse(raw: &'a str) -> OriginHeader<'a> {
        OriginHeader {
            raw,
            parsed: Origin::parse(raw),
        }
    }
}

/// A `Host` header, parsed once for every check that looks at it.
pub struct HostField<'a> {
    raw: &'a str,
    parsed: Result<HostHeader, String>,
}

impl<'a> HostField<'a> {
    /// Parses the header's value.
    pub fn parse(raw: &'a str) -> HostField<'a> {
        HostField {
            raw,
            parsed: HostHeader::parse(raw),
        }
    }
}

fn checks(
    listener_hosts: &Hosts,
    route: &Route,
    host: &HostField<'_>,
    origin: Option<&OriginHeader<'_>>,
) -> Check {
    check_host(listener_hosts, host)?;
    check_host(&route.hosts, host)?;
    check_origin(route, origin)
}

/// Whether `origin` is a tuple origin on the route's allow-list: the only
/// kind of handshake that may carry ambient credentials.
fn listed(route: &Route, origin: Option<&OriginHeader<'_>>) -> bool {
    origin.is_some_and(|o| match &o.parsed {
        Ok(o @ Origin::Tuple(_)) => route.origins.iter().any(|p| p.matches(o)),
        _ => false,
    })
}

/// The `Host` header against an allow-list (DNS rebinding).
pub fn check_host(hosts: &Hosts, host: &HostField<'_>) -> Check {
    let Hosts::Only(list) = hosts else {
        return Ok(());
    };
    let parsed = host
        .parsed
        .as_ref()
        .map_err(|e| (Reason::HostNotAllowed, format!("Host is malformed: {e}")))?;
    if list.iter().any(|p| p.matches(parsed)) {
        Ok(())
    } else {
        Err((
            Reason::HostNotAllowed,
            format!("Host {:?} is not on the allow-list", host.raw),
        ))
    }
}

/// The `Origin` header against the route's allow-list.
pub fn check_origin(route: &Route, origin: Option<&OriginHeader<'_>>) -> Check {
    let Some(OriginHeader { raw, parsed }) = origin else {
        return if route.allow_missing_origin {
            Ok(())
        } else {
            Err((
                Reason::OriginMissing,
                "no Origin header and allow_missing_origin is false".into(),
            ))
        };
    };
    let parsed = parsed.as_ref().map_err(|e| {
        (
            Reason::OriginNotAllowed,
            format!("Origin is malformed: {e}"),
        )
    })?;
    if route.origins.iter().any(|p| p.matches(parsed)) {
        Ok(())
    } else {
        Err((
            Reason::OriginNotAllowed,
            format!("Origin {raw:?} is not on the allow-list"),
        ))
    }
}
