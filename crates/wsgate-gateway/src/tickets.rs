//! One-time tickets: issued at `[auth.ticket].issue_path`, redeemed once at
//! a WebSocket handshake.
//!
//! The pattern OWASP recommends against hijacking: the page fetches a ticket
//! over an authenticated, origin-checked request (CORS lets only listed
//! origins read the answer), then opens the socket with `?ticket=`. A hostile
//! page can neither read a ticket nor use one bound to another origin.
//!
//! Tickets live in the store: [`TicketStore`] in memory, bounded, for one
//! instance; Redis for several, where any instance redeems what another
//! issued, once.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};
use http_body_util::Full;
use tokio::time::Instant;
use wsgate_config::AuthMethod;
use wsgate_config::origin::Origin;
use wsgate_policy::limits::ClientKey;
use wsgate_policy::verify::TicketGrant;
use wsgate_policy::{Reason, admit};

use crate::audit::AuditEvent;
use crate::handshake::Conn;
use crate::snapshot::Snapshot;

/// Unused tickets held at most; past this, issuing answers 503.
const MAX_OUTSTANDING: usize = 100_000;

/// Tickets waiting to be used.
pub(crate) struct TicketStore {
    ttl: Duration,
    waiting: std::sync::Mutex<HashMap<String, (TicketGrant, Instant)>>,
}

impl TicketStore {
    pub(crate) fn new(ttl: Duration) -> Self {
        TicketStore {
            ttl,
            waiting: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// A new random ticket for `grant`; `None` when the store is full.
    pub(crate) fn issue(&self, grant: TicketGrant) -> Option<String> {
        let now = Instant::now();
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        if waiting.len() >= MAX_OUTSTANDING {
            waiting.retain(|_, (_, expires)| *expires > now);
            if waiting.len() >= MAX_OUTSTANDING {
                return None;
            }
        }
        let ticket = crate::store::new_ticket();
        waiting.insert(ticket.clone(), (grant, now + self.ttl));
        Some(ticket)
    }

    /// Takes a ticket out: it works once, and only before it expires.
    pub(crate) fn redeem(&self, ticket: &str) -> Option<TicketGrant> {
        let (grant, expires) = self
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(ticket)?;
        (Instant::now() < expires).then_some(grant)
    }
}

/// Answers a request to the issuing path: `OPTIONS` (CORS preflight) or `POST`.
pub(crate) async fn handle(
    conn: &Conn,
    policy: &Snapshot,
    parts: &http::request::Parts,
    ev: &mut AuditEvent,
) -> Response<Full<Bytes>> {
    ev.event = "ticket";
    let state = &conn.state;
    // Decoded: `URLSearchParams` and `encodeURIComponent` send `/chat` as
    // `%2Fchat`.
    let target = parts
        .uri
        .query()
        .and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes()).find_map(|(k, v)| (k == "path").then_some(v))
        })
        .unwrap_or_default();
    let target = target.as_ref();
    let route = match policy.router.find(target) {
        Ok((_, route)) => route,
        Err(none) => {
            let (reason, detail) = none.refusal(target);
            return refuse(ev, reason, detail);
        }
    };
    ev.route = Some(route.path.clone());
    if !route.auth.takes(AuthMethod::Ticket) {
        return refuse(ev, Reason::Forbidden, "the route takes no tickets".into());
    }
    let origin = parts
        .headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok());
    let listed = origin
        .and_then(|o| Origin::parse(o).ok())
        .is_some_and(|o| route.origins.iter().any(|p| p.matches(&o)));
    if parts.method == Method::OPTIONS {
        return preflight(ev, origin.filter(|_| listed));
    }
    if parts.method != Method::POST {
        return refuse(
            ev,
            Reason::BadHandshake,
            format!("{} on the ticket path; POST or OPTIONS", parts.method),
        );
    }
    // Buying a ticket verifies the same credentials a handshake does, so it
    // counts against the route's handshake rate as a handshake would:
    // otherwise guessing passwords or tokens here would go as fast as the
    // gateway answers.
    let client = ClientKey::new(conn.client.ip, route.limits.ipv6_prefix);
    if let Err(denied) = state.store.handshake(route, client).await {
        if let Some(kind) = denied.limit {
            state.metrics.limit_hit(kind);
        }
        let mut response = refuse(ev, denied.reason, denied.detail);
        if let Some(after) = denied.retry_after {
            crate::respond::retry_after(&mut response, after);
        }
        return response;
    }
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let request = wsgate_policy::Request {
        path: target,
        query: None,
        host,
        origin,
        protocols: &[],
        headers: &parts.headers,
        client_cert: conn.client_cert.as_ref(),
    };
    let hosts = &policy.listeners[conn.listener].config.hosts;
    let outcome = match admit(hosts, &policy.router, &policy.auth, &request) {
        Err(r) => Err(r),
        Ok(checked) => {
            let verified = policy.verifiers.verify(&checked, None, origin).await;
            checked.finish(verified)
        }
    };
    let identity = match outcome {
        Ok(admitted) => match admitted.identity() {
            Some(id) => id.clone(),
            None => {
                return refuse(
                    ev,
                    Reason::AuthMissing,
                    "report mode admitted without credentials".into(),
                );
            }
        },
        Err(r) => return refuse(ev, r.reason, r.detail),
    };
    ev.user = Some(identity.user.clone());
    ev.auth = Some(identity.method.name());
    let grant = TicketGrant {
        identity,
        route: route.path.clone(),
        origin: origin.and_then(|o| Origin::parse(o).ok()),
    };
    let Some(config) = &policy.auth.ticket else {
        return refuse(ev, Reason::Forbidden, "tickets are not configured".into());
    };
    let ticket = match state.store.issue_ticket(&grant).await {
        Ok(t) => t,
        Err(e) => return refuse(ev, Reason::StoreUnavailable, e.0),
    };
    ev.decision = Some("issued");
    ev.status = Some(200);
    let body =
        serde_json::json!({ "ticket": ticket, "expires_in": config.ttl.as_secs() }).to_string();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    cors(&mut response, origin.filter(|_| listed));
    response
}

fn refuse(ev: &mut AuditEvent, reason: Reason, detail: String) -> Response<Full<Bytes>> {
    ev.refuse(reason, detail);
    crate::respond::refusal(reason)
}

fn preflight(ev: &mut AuditEvent, origin: Option<&str>) -> Response<Full<Bytes>> {
    let Some(origin) = origin else {
        return refuse(
            ev,
            Reason::OriginNotAllowed,
            "preflight from an origin not on the route's list".into(),
        );
    };
    ev.decision = Some("preflight");
    ev.status = Some(204);
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    let h = response.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    cors(&mut response, Some(origin));
    response
}

/// Lets a listed origin's script read the answer, cookies included.
fn cors(response: &mut Response<Full<Bytes>>, origin: Option<&str>) {
    let h = response.headers_mut();
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(v) = origin.and_then(|o| HeaderValue::from_str(o).ok()) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wsgate_policy::verify::Identity;

    fn grant() -> TicketGrant {
        let identity = Identity {
            user: "alice".into(),
            method: AuthMethod::Jwt,
            expires: None,
        };
        TicketGrant {
            identity,
            route: "/".into(),
            origin: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_ticket_works_once_and_only_within_its_ttl() {
        let store = TicketStore::new(Duration::from_secs(30));
        let once = store.issue(grant()).unwrap();
        assert!(store.redeem(&once).is_some());
        assert!(store.redeem(&once).is_none(), "a ticket worked twice");
        let late = store.issue(grant()).unwrap();
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(store.redeem(&late).is_none(), "an expired ticket worked");
        let a = store.issue(grant()).unwrap();
        let b = store.issue(grant()).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43, "256 random bits, base64url");
    }
}
