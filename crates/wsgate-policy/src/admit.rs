//! The admission decision for one handshake.
//!
//! Order, as DESIGN.md fixes it: route, then host, then origin, then
//! credentials, then limits; the first failing check decides. On a route in
//! `report` mode the same checks run and the refusal is recorded in
//! [`Admitted::report`], but the handshake is admitted.

use std::sync::Arc;

use wsgate_config::origin::Origin;
use wsgate_config::{Auth, Hosts, Mode, Route, host::HostHeader};

use crate::reason::Reason;
use crate::route::Router;

/// What admission looks at, already checked against RFC 6455.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Request path without the query.
    pub path: &'a str,
    /// `Host` header.
    pub host: &'a str,
    /// `Origin` header, if any.
    pub origin: Option<&'a str>,
    /// Subprotocols the client offered.
    pub protocols: &'a [String],
}

/// A handshake that passed admission (or, in report mode, was let through).
///
/// Only [`admit`] makes one, and the gateway's upstream stage accepts nothing
/// else, so no code path reaches an upstream without a decision.
#[derive(Debug)]
pub struct Admitted {
    route_index: usize,
    route: Arc<Route>,
    protocols: Vec<String>,
    report: Option<Refused>,
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

/// Decides a handshake.
pub fn admit(
    listener_hosts: &Hosts,
    router: &Router,
    req: &Request<'_>,
) -> Result<Admitted, Refused> {
    let Some((index, route)) = router.find(req.path) else {
        return Err(Refused {
            reason: Reason::RouteNotFound,
            route: None,
            detail: format!("no route serves {}", req.path),
        });
    };
    let report = match checks(listener_hosts, route, req) {
        Ok(()) => None,
        Err((reason, detail)) => {
            let refused = Refused {
                reason,
                route: Some(index),
                detail,
            };
            match route.mode {
                Mode::Enforce => return Err(refused),
                Mode::Report => Some(refused),
            }
        }
    };
    let protocols = req
        .protocols
        .iter()
        .filter(|p| route.subprotocols.contains(p))
        .cloned()
        .collect();
    Ok(Admitted {
        route_index: index,
        route: Arc::clone(route),
        protocols,
        report,
    })
}

type Check = Result<(), (Reason, String)>;

fn checks(listener_hosts: &Hosts, route: &Route, req: &Request<'_>) -> Check {
    check_host(listener_hosts, req.host)?;
    check_host(&route.hosts, req.host)?;
    check_origin(route, req.origin)?;
    match route.auth {
        Auth::None => {}
    }
    Ok(())
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
