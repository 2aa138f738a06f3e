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
use wsgate_config::origin::Origin;
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
}

/// Runs the checks that need only the request: route, host, origin.
pub fn admit(
    listener_hosts: &Hosts,
    router: &Router,
    auth: &AuthConfig,
    req: &Request<'_>,
) -> Result<Checked, Refused> {
    let Some((index, route)) = router.find(req.path) else {
        return Err(Refused {
            reason: Reason::RouteNotFound,
            route: None,
            detail: format!("no route serves {}", req.path),
        });
    };
    let mut report = None;
    if let Err((reason, detail)) = checks(listener_hosts, route, req) {
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
    let origin_listed = req
        .origin
        .and_then(|o| Origin::parse(o).ok())
        .is_some_and(|o| {
            matches!(o, Origin::Tuple(_)) && route.origins.iter().any(|p| p.matches(&o))
        });
    // Firefox sends Sec-Fetch-Site on WebSocket handshakes (Chromium does
    // not). A listed origin may well be on another site than the endpoint
    // (app.example.com using ws.example.net), so "cross-site" alone refuses
    // nothing; but from an origin on the very host being asked, it cannot
    // come from a browser, and ambient credentials are not taken with it.
    let same_host = match (req.origin.map(Origin::parse), HostHeader::parse(req.host)) {
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
                    Some(_) => {
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
        })
    }
}

/// Whether a client certificate is the route's only method (its refusal
/// then names the certificate: `client_cert_required`).
fn only_mtls(route: &Route) -> bool {
    matches!(&route.auth, Auth::Any(m) if m.as_slice() == [wsgate_config::AuthMethod::Mtls])
}

type Check = Result<(), (Reason, String)>;

fn checks(listener_hosts: &Hosts, route: &Route, req: &Request<'_>) -> Check {
    check_host(listener_hosts, req.host)?;
    check_host(&route.hosts, req.host)?;
    check_origin(route, req.origin)
}

/// The `Host` header against an allow-list (DNS rebinding).
pub fn check_host(hosts: &Hosts, host: &str) -> Check {
    let Hosts::Only(list) = hosts else {
        return Ok(());
    };
    let parsed = HostHeader::parse(host)
        .map_err(|e| (Reason::HostNotAllowed, format!("Host is malformed: {e}")))?;
    if list.iter().any(|p| p.matches(&parsed)) {
        Ok(())
    } else {
        Err((
            Reason::HostNotAllowed,
            format!("Host {host:?} is not on the allow-list"),
        ))
    }
}

/// The `Origin` header against the route's allow-list.
pub fn check_origin(route: &Route, origin: Option<&str>) -> Check {
    let Some(raw) = origin else {
        return if route.allow_missing_origin {
            Ok(())
        } else {
            Err((
                Reason::OriginMissing,
                "no Origin header and allow_missing_origin is false".into(),
            ))
        };
    };
    let parsed = Origin::parse(raw).map_err(|e| {
        (
            Reason::OriginNotAllowed,
            format!("Origin is malformed: {e}"),
        )
    })?;
    if route.origins.iter().any(|p| p.matches(&parsed)) {
        Ok(())
    } else {
        Err((
            Reason::OriginNotAllowed,
            format!("Origin {raw:?} is not on the allow-list"),
        ))
    }
}
