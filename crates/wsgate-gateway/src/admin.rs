//! The operator's endpoints on `[metrics].bind`: `/metrics` (Prometheus
//! text), `/healthz` (the process answers), `/readyz` (every listener is
//! bound; this server starts only after they are), `POST /revoke` (close a
//! user's connections on every instance and refuse them for a while; what
//! `wsgate revoke` calls) and `POST /reload` (read the config file again;
//! what `wsgate reload` calls).
//!
//! Every request must name an address, `localhost` or a name in `[metrics]
//! hosts` in its `Host`: a page rebound by DNS to this address names its
//! own. `/revoke` and `/reload` change state, so they refuse what a browser could send on a
//! hostile page's behalf: any request with an `Origin` header (browsers send
//! one on every POST), and any body that is not `application/json` (which a
//! cross-origin page cannot send without a preflight this server never
//! answers). With `[metrics] admin_token_env` they also need that token as
//! a bearer credential; the read-only endpoints stay open for scrapers and
//! probes. Keep the endpoint on loopback or a private network all the same.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use wsgate_config::host::HostHeader;

use crate::audit::AuditEvent;
use crate::state::State;

/// Serves until shutdown.
pub(crate) async fn serve(state: Arc<State>, listener: TcpListener) {
    loop {
        let accepted = tokio::select! {
            () = state.shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let Ok((tcp, peer)) = accepted else { continue };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let service = service_fn(move |req| answer(req, Arc::clone(&state), peer));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

async fn answer(
    req: Request<Incoming>,
    state: Arc<State>,
    peer: SocketAddr,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if let Err(refused) = named_for_this_endpoint(&req, &state) {
        tracing::warn!(
            client = %peer,
            path = req.uri().path(),
            answer = refused.1.trim_end(),
            "admin endpoint: request refused"
        );
        let (status, body, kind) = refused;
        return Ok(text(status, body, kind));
    }
    let (status, body, kind) = match req.uri().path() {
        "/revoke" => revoke(req, &state, peer).await,
        "/reload" => reload(&req, &state, peer).await,
        "/metrics" => (
            StatusCode::OK,
            state
                .metrics
                .encode(&state.slots, &state.at_http, &state.budget),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        "/healthz" => (StatusCode::OK, "ok\n".to_owned(), "text/plain"),
        "/readyz" if state.stop.is_cancelled() => (
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down\n".to_owned(),
            "text/plain",
        ),
        "/readyz" if !state.store.reachable() => (
            StatusCode::SERVICE_UNAVAILABLE,
            "store unreachable\n".to_owned(),
            "text/plain",
        ),
        "/readyz" => (StatusCode::OK, "ready\n".to_owned(), "text/plain"),
        _ => (
            StatusCode::NOT_FOUND,
            "not found\n".to_owned(),
            "text/plain",
        ),
    };
    Ok(text(status, body, kind))
}

fn text(status: StatusCode, body: String, kind: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    response
}

/// Largest `/revoke` body read.
const MAX_REVOKE_BODY: usize = 4096;
/// How long a revocation refuses new handshakes when the request does not say.
pub(crate) const DEFAULT_REVOKE_FOR: Duration = Duration::from_secs(15 * 60);

type Answer = (StatusCode, String, &'static str);

/// A JSON error answer.
fn refuse(status: StatusCode, why: &str) -> Answer {
    (
        status,
        format!("{{\"error\":{}}}\n", serde_json::json!(why)),
        "application/json",
    )
}

/// What a state-changing request must be: a POST with a JSON body and no
/// `Origin`, which no page in a browser can send here without a preflight,
/// and with the admin token when one is configured.
fn operator_post<B>(req: &Request<B>, state: &State) -> Result<(), Answer> {
    if req.method() != Method::POST {
        return Err(refuse(StatusCode::METHOD_NOT_ALLOWED, "POST a JSON body"));
    }
    if let Some(want) = &state.policy().admin_token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|given| same_secret(given, &want.token)) {
            return Err(refuse(
                StatusCode::UNAUTHORIZED,
                &format!("send Authorization: Bearer with the token in ${}", want.env),
            ));
        }
    }
    if req.headers().contains_key(header::ORIGIN) {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "requests from browsers are refused here",
        ));
    }
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
        });
    if !json {
        return Err(refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        ));
    }
    Ok(())
}

/// The request's `Host`: an address, `localhost`, or a name in
/// `[metrics] hosts`. A hostile page whose name the attacker rebinds to
/// this endpoint's address is same-origin with it in the browser's eyes,
/// and could read `/metrics`; its name in `Host` is what gives it away. No
/// page can be served under an address or `localhost` without already
/// running on this machine.
fn named_for_this_endpoint<B>(req: &Request<B>, state: &State) -> Result<(), Answer> {
    let raw = req.headers().get(header::HOST).map(HeaderValue::to_str);
    let why = match raw {
        None => "no Host header".to_owned(),
        Some(Err(_)) => "Host is not text".to_owned(),
        Some(Ok(raw)) => match HostHeader::parse(raw) {
            Err(e) => format!("Host is malformed: {e}"),
            Ok(host) => {
                let address = host.host.starts_with('[') || host.host.parse::<Ipv4Addr>().is_ok();
                if address
                    || host.host == "localhost"
                    || state.policy().admin_hosts.iter().any(|p| p.matches(&host))
                {
                    return Ok(());
                }
                format!("Host {raw:?} is a name not in [metrics] hosts (DNS rebinding?)")
            }
        },
    };
    Err(refuse(
        StatusCode::MISDIRECTED_REQUEST,
        &format!("{why}: use the address, or list the name in [metrics] hosts"),
    ))
}

/// Whether two secrets are equal, in time that does not depend on where
/// they differ: their digests are compared, and a digest's prefix says
/// nothing about the secret's.
fn same_secret(given: &str, want: &str) -> bool {
    use sha2::{Digest, Sha256};
    Sha256::digest(given.as_bytes()) == Sha256::digest(want.as_bytes())
}

/// `POST /reload`: reads the config file again and puts it in force if all
/// of it is valid; 200 with the new generation, or 422 with every error
/// (the old config stays).
async fn reload(req: &Request<Incoming>, state: &State, peer: SocketAddr) -> Answer {
    if let Err(refused) = operator_post(req, state) {
        return refused;
    }
    match state
        .reload_source(crate::state::Trigger::Admin(peer))
        .await
    {
        Ok(generation) => {
            let body = serde_json::json!({ "generation": generation });
            (StatusCode::OK, format!("{body}\n"), "application/json")
        }
        Err(errors) => {
            let body = serde_json::json!({ "errors": errors });
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("{body}\n"),
                "application/json",
            )
        }
    }
}

/// `POST /revoke` with `{"user": "alice", "for": "15m"}` or `{"user": "alice", "until": 1767225600}`.
async fn revoke(req: Request<Incoming>, state: &State, peer: SocketAddr) -> Answer {
    if let Err(refused) = operator_post(&req, state) {
        return refused;
    }
    let body = match Limited::new(req.into_body(), MAX_REVOKE_BODY)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the body is too large or broken",
            );
        }
    };
    let asked: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, &format!("not JSON: {e}")),
    };
    let Some(user) = asked["user"].as_str().filter(|u| !u.is_empty()) else {
        return refuse(StatusCode::BAD_REQUEST, "`user` is required");
    };
    // `SystemTime` ends long before `u64` seconds do: past its end, adding
    // would panic, so the sum is checked.
    let too_far = |key: &str| {
        refuse(
            StatusCode::BAD_REQUEST,
            &format!("`{key}` is past the end of the system's clock"),
        )
    };
    let until = match (&asked["for"], &asked["until"]) {
        (serde_json::Value::Null, serde_json::Value::Null) => {
            SystemTime::now() + DEFAULT_REVOKE_FOR
        }
        (serde_json::Value::String(d), serde_json::Value::Null) => {
            // As durations in the config: the same syntax, the same bound.
            match wsgate_config::units::parse_duration(d) {
                Ok(d) => match SystemTime::now().checked_add(d) {
                    Some(until) => until,
                    None => return too_far("for"),
                },
                Err(e) => return refuse(StatusCode::BAD_REQUEST, &format!("`for`: {e}")),
            }
        }
        (serde_json::Value::Null, u) if u.is_u64() => {
            let secs = Duration::from_secs(u.as_u64().unwrap_or(0));
            match UNIX_EPOCH.checked_add(secs) {
                Some(until) => until,
                None => return too_far("until"),
            }
        }
        _ => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "give `for` (a duration such as \"15m\") or `until` (Unix seconds), not both",
            );
        }
    };
    let mut ev = AuditEvent::new("revoke", 0, peer.to_string(), "admin".into());
    ev.user = Some(user.to_owned());
    let unix = until.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let answer = match state.store.revoke(user, until, &state.live).await {
        Ok(closed) => {
            ev.decision = Some("revoked");
            ev.detail = Some(format!("until {unix}; {closed} connection(s) closed here"));
            let body = serde_json::json!({ "user": user, "until": unix, "closed_here": closed });
            (StatusCode::OK, format!("{body}\n"), "application/json")
        }
        Err(e) => {
            ev.decision = Some("failed");
            ev.detail = Some(e.0.clone());
            refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("the store cannot be reached: {}", e.0),
            )
        }
    };
    state.audit.write(ev);
    answer
}
