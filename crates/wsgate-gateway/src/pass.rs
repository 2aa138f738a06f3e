//! HTTP pass-through: `kind = "http"` routes, and the CSP report endpoint.
//!
//! The application's pages, API and login go through the same listener,
//! TLS and `Host` allow-lists as its WebSockets. A request is rebuilt for
//! the upstream as a WebSocket handshake is (hop-by-hop headers, client
//! copies of `X-Forwarded-*`, `Client-Cert`, the route's identity headers
//! and the identity assertion's header dropped; the gateway's own set),
//! and both bodies stream through without being held. A WebSocket handshake sent to an HTTP route is
//! refused: it would reach the upstream without any of the WebSocket
//! checks.
//!
//! On a route with `csp`, every response gets one more
//! `Content-Security-Policy` (or `-Report-Only`) header: `connect-src` as
//! configured and a `report-uri` on the gateway. Browsers enforce every
//! policy a response carries, so the upstream's own policy stays in force
//! and can only be tightened. Reports posted to [`CSP_REPORT_PATH`] become
//! `csp_violation` audit events naming the blocked URL.

use std::num::NonZeroU32;
use std::sync::Arc;

use bytes::Bytes;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use wsgate_config::Route;
use wsgate_policy::Reason;
use wsgate_policy::admit::{HostField, check_host};

use crate::handshake::{Conn, elapsed_ms};
use crate::respond::{Body, boxed};
use crate::snapshot::Snapshot;
use crate::upstream;

/// Where browsers send CSP violation reports (the `report-uri` of every
/// policy the gateway adds).
pub(crate) const CSP_REPORT_PATH: &str = "/.wsgate/csp-report";

/// Largest report body read.
const MAX_REPORT_BODY: usize = 16 * 1024;

/// Longest string taken from a report into the log.
const MAX_REPORT_FIELD: usize = 512;

/// Headers of the upstream's response that describe its hop only.
const RESPONSE_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

/// Proxies one request on an HTTP route.
pub(crate) async fn forward(
    req: Request<Incoming>,
    conn: &Conn,
    policy: &Snapshot,
    index: usize,
    route: &Arc<Route>,
) -> Response<Body> {
    let started = tokio::time::Instant::now();
    let mut ev = conn.request_event("http", req.uri(), req.headers());
    ev.route = Some(route.path.clone());
    let refuse = |reason: Reason, detail: String| {
        let mut ev = ev.clone();
        ev.refuse(reason, detail);
        ev.duration_ms = elapsed_ms(started);
        conn.state.audit.write(ev);
        boxed(crate::respond::refusal(reason))
    };
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let listener_hosts = &policy.listeners[conn.listener].config.hosts;
    let host = HostField::parse(host);
    if let Err((reason, detail)) =
        check_host(listener_hosts, &host).and_then(|()| check_host(&route.hosts, &host))
    {
        return refuse(reason, detail);
    }
    if let Err(e) = wsgate_proto::handshake::check_target(req.uri()) {
        return refuse(Reason::BadHandshake, e.to_string());
    }
    if req.headers().contains_key(header::UPGRADE) {
        return refuse(
            Reason::BadHandshake,
            "an Upgrade request on a kind = \"http\" route: WebSockets go through WebSocket routes"
                .into(),
        );
    }
    let (parts, body) = req.into_parts();
    let assertion = policy.assertion.as_ref().map(|s| s.header());
    let request = match build_request(&parts, body, conn, route, assertion) {
        Ok(r) => r,
        Err(e) => return refuse(Reason::BadHandshake, format!("cannot forward: {e}")),
    };
    let tls = policy.upstream_tls[index].as_ref();
    let exchange = async {
        let stream = upstream::open(&route.upstream, tls).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            // Ends when the response body has been read to its end.
            let _ = connection.await;
        });
        Ok::<_, upstream::UpstreamError>(sender.send_request(request).await?)
    };
    let answered = match tokio::time::timeout(route.limits.connect_timeout, exchange).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return refuse(Reason::UpstreamUnavailable, e.to_string()),
        Err(_) => {
            let detail = format!(
                "no response head from the upstream within {:?}",
                route.limits.connect_timeout
            );
            return refuse(Reason::UpstreamUnavailable, detail);
        }
    };
    if answered.status() == StatusCode::SWITCHING_PROTOCOLS {
        return refuse(
            Reason::UpstreamUnavailable,
            "the upstream switched protocols on an HTTP route".into(),
        );
    }
    let (mut head, body) = answered.into_parts();
    // The gateway answers in its own HTTP version, not the upstream's: an
    // HTTP/1.0 upstream would otherwise end every client's keep-alive
    // (hyper still answers an HTTP/1.0 client in 1.0).
    head.version = http::Version::HTTP_11;
    // What the upstream's `Connection` names is hop-by-hop too, so it is
    // read before `Connection` itself goes.
    for name in upstream::connection_tokens(&head.headers) {
        head.headers.remove(name.as_str());
    }
    for name in RESPONSE_HOP {
        head.headers.remove(*name);
    }
    if let Some(csp) = &route.csp {
        let (name, value) = policy_header(csp);
        if let Ok(v) = HeaderValue::from_str(&value) {
            head.headers.append(name, v);
        }
    }
    Response::from_parts(head, body.boxed())
}

/// The upstream request: the client's method, path, query and end-to-end
/// headers, the gateway's forwarding headers, the client's body as it comes.
/// `assertion` is the identity assertion's header, when one is configured:
/// no assertion is signed for an HTTP route, and a client's copy is dropped
/// here as on WebSocket routes, since the same application may trust it.
fn build_request(
    parts: &http::request::Parts,
    body: Incoming,
    conn: &Conn,
    route: &Route,
    assertion: Option<&str>,
) -> Result<Request<Incoming>, http::Error> {
    let up = &route.upstream;
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or(parts.uri.path(), |p| p.as_str());
    let uri = upstream::upstream_path(up, &route.path, path_and_query);
    let mut request = Request::builder()
        .method(parts.method.clone())
        .uri(uri)
        .body(body)?;
    let headers = request.headers_mut();
    let named = upstream::connection_tokens(&parts.headers);
    let ids = &route.identity_headers;
    let identity: Vec<String> = [&ids.user, &ids.method, &ids.client_cert]
        .into_iter()
        .flatten()
        .map(|n| n.to_ascii_lowercase())
        .chain(assertion.map(str::to_owned))
        .collect();
    for (name, value) in &parts.headers {
        let n = name.as_str();
        let dropped = upstream::NOT_FORWARDED.contains(&n)
            || named.iter().any(|t| t == n)
            || identity.iter().any(|t| t == n);
        if !dropped {
            headers.append(name, value.clone());
        }
    }
    headers.insert(
        header::HOST,
        HeaderValue::from_str(&upstream::host_header(up))?,
    );
    upstream::forwarding(
        headers,
        &conn.client.forwarded_for,
        conn.tls,
        &parts.headers,
    )?;
    if let Some(name) = &ids.method {
        let name = http::HeaderName::from_bytes(name.as_bytes())?;
        headers.insert(name, HeaderValue::from_static("none"));
    }
    if let (Some(name), Some(cert)) = (&ids.client_cert, &conn.client_cert) {
        let name = http::HeaderName::from_bytes(name.as_bytes())?;
        headers.insert(name, HeaderValue::from_str(&cert.subject)?);
    }
    Ok(request)
}

/// The header a route's `csp` adds.
fn policy_header(csp: &wsgate_config::Csp) -> (header::HeaderName, String) {
    let name = if csp.report_only {
        header::CONTENT_SECURITY_POLICY_REPORT_ONLY
    } else {
        header::CONTENT_SECURITY_POLICY
    };
    let value = format!(
        "connect-src {}; report-uri {CSP_REPORT_PATH}",
        csp.connect_src.join(" ")
    );
    (name, value)
}

/// Bounds the audit lines reports can cause: any page on the web can post
/// them.
pub(crate) struct ReportBudget(DefaultDirectRateLimiter);

impl ReportBudget {
    /// 20 reports a second, bursts of 100.
    pub(crate) fn new() -> Self {
        let rate = NonZeroU32::new(20).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(100).unwrap_or(NonZeroU32::MIN);
        ReportBudget(RateLimiter::direct(
            Quota::per_second(rate).allow_burst(burst),
        ))
    }
}

/// `POST /.wsgate/csp-report`: a browser's violation report (the
/// `report-uri` format, or the Reporting API's) becomes a `csp_violation`
/// audit event. 204 when taken, 429 when reports come faster than the log
/// should take them.
pub(crate) async fn csp_report(req: Request<Incoming>, conn: &Conn) -> Response<Body> {
    let answer = |status: StatusCode| {
        let mut r = Response::new(crate::respond::full(Full::new(Bytes::new())));
        *r.status_mut() = status;
        r
    };
    if req.method() != Method::POST {
        return answer(StatusCode::METHOD_NOT_ALLOWED);
    }
    if conn.state.csp_reports.0.check().is_err() {
        return answer(StatusCode::TOO_MANY_REQUESTS);
    }
    // The report's own request says who posted it; the page is in the body.
    let posted = conn.request_event("csp_violation", req.uri(), req.headers());
    let Ok(body) = Limited::new(req.into_body(), MAX_REPORT_BODY)
        .collect()
        .await
    else {
        return answer(StatusCode::PAYLOAD_TOO_LARGE);
    };
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(&body.to_bytes()) else {
        return answer(StatusCode::BAD_REQUEST);
    };
    let reports = violations(&json);
    if reports.is_empty() {
        return answer(StatusCode::BAD_REQUEST);
    }
    for v in reports {
        let mut ev = posted.clone();
        ev.path = v.document_path;
        ev.blocked = Some(v.blocked);
        ev.decision = Some(if v.enforced { "blocked" } else { "reported" });
        ev.enforced = v.enforced;
        ev.detail = Some(format!("{} violated", v.directive));
        conn.state.audit.write(ev);
    }
    answer(StatusCode::NO_CONTENT)
}

/// One violation, as the log shows it.
#[derive(Debug, PartialEq, Eq)]
struct Violation {
    blocked: String,
    directive: String,
    document_path: Option<String>,
    enforced: bool,
}

/// The violations in a report body: `{"csp-report": {...}}` (report-uri)
/// or `[{"type": "csp-violation", "body": {...}}]` (Reporting API).
fn violations(json: &serde_json::Value) -> Vec<Violation> {
    let one = |r: &serde_json::Value, blocked: &str, directive: &[&str], document: &str| {
        let field = |k: &str| r.get(k).and_then(|v| v.as_str());
        let directive = directive.iter().find_map(|k| field(k))?;
        Some(Violation {
            blocked: clean_url(field(blocked).unwrap_or("")),
            directive: cap(directive),
            document_path: field(document)
                .and_then(|d| url::Url::parse(d).ok())
                .map(|u| cap(u.path())),
            enforced: field("disposition") != Some("report"),
        })
    };
    if let Some(r) = json.get("csp-report") {
        return one(
            r,
            "blocked-uri",
            &["effective-directive", "violated-directive"],
            "document-uri",
        )
        .into_iter()
        .collect();
    }
    json.as_array()
        .into_iter()
        .flatten()
        .take(32)
        .filter(|r| r.get("type").and_then(|t| t.as_str()) == Some("csp-violation"))
        .filter_map(|r| {
            let body = r.get("body")?;
            one(body, "blockedURL", &["effectiveDirective"], "documentURL")
        })
        .collect()
}

/// A blocked URL for the log: no query or fragment (they may carry what a
/// script tried to send away), capped in length.
fn clean_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) => {
            let had_query = u.query().is_some();
            u.set_query(None);
            u.set_fragment(None);
            let _ = u.set_password(None);
            let _ = u.set_username("");
            let mut s = cap(u.as_str());
            if had_query {
                s.push_str("?[query omitted]");
            }
            s
        }
        // "inline", "eval", "self" and the like.
        Err(_) => cap(raw),
    }
}

fn cap(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(MAX_REPORT_FIELD)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_report_formats_give_the_blocked_url_without_its_query() {
        let old = serde_json::json!({"csp-report": {
            "document-uri": "https://app.example.com/chat?room=1",
            "blocked-uri": "wss://evil.example:9999/bot?id=secret#x",
            "violated-directive": "connect-src",
            "effective-directive": "connect-src",
            "disposition": "enforce"
        }});
        assert_eq!(
            violations(&old),
            [Violation {
                blocked: "wss://evil.example:9999/bot?[query omitted]".into(),
                directive: "connect-src".into(),
                document_path: Some("/chat".into()),
                enforced: true,
            }]
        );
        let new = serde_json::json!([
            {"type": "csp-violation", "body": {
                "documentURL": "https://app.example.com/",
                "blockedURL": "wss://evil.example/",
                "effectiveDirective": "connect-src",
                "disposition": "report"
            }},
            {"type": "deprecation", "body": {}}
        ]);
        let got = violations(&new);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].blocked, "wss://evil.example/");
        assert!(!got[0].enforced);
        assert!(violations(&serde_json::json!({"other": 1})).is_empty());
        assert!(violations(&serde_json::json!([{"type": "csp-violation"}])).is_empty());
    }

    #[test]
    fn the_added_policy_names_connect_src_and_the_report_endpoint() {
        let csp = wsgate_config::Csp {
            connect_src: vec!["'self'".into(), "wss://chat.example.com".into()],
            report_only: false,
        };
        let (name, value) = policy_header(&csp);
        assert_eq!(name, header::CONTENT_SECURITY_POLICY);
        assert_eq!(
            value,
            "connect-src 'self' wss://chat.example.com; report-uri /.wsgate/csp-report"
        );
        let report_only = wsgate_config::Csp {
            report_only: true,
            ..csp
        };
        assert_eq!(
            policy_header(&report_only).0,
            header::CONTENT_SECURITY_POLICY_REPORT_ONLY
        );
    }
}
