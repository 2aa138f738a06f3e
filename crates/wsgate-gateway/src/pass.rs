//! HTTP pass-through: `kind = "http"` routes, and the CSP report endpoint.
//!
//! The application's pages, API and login go through the same listener,
//! TLS and `Host` allow-lists as its WebSockets. A request is rebuilt for
//! the upstream as a WebSocket handshake is (hop-by-hop headers, client
//! copies of `X-Forwarded-*`, `Client-Cert`, the route's identity headers
//! and the identity assertion's header dropped; the gateway's own set),
//! and both bodies stream through without being held, each allowed the
//! route's `idle_timeout` between bytes (a client that trickles its body,
//! an upstream that stops mid-answer), as is the upstream's response head
//! once the request is sent. A WebSocket handshake sent to an HTTP route is
//! refused: it would reach the upstream without any of the WebSocket
//! checks.
//!
//! On a route with `csp`, every response gets one more
//! `Content-Security-Policy` (or `-Report-Only`) header: `connect-src` as
//! configured and a `report-uri` on the gateway. Browsers enforce every
//! policy a response carries, so the upstream's own policy stays in force
//! and can only be tightened. Reports posted to [`CSP_REPORT_PATH`] become
//! `csp_violation` audit events naming the blocked URL.

use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use tokio::sync::Notify;
use wsgate_config::Route;
use wsgate_policy::Reason;
use wsgate_policy::admit::{HostField, check_host};

use crate::handshake::{Conn, elapsed_ms};
use crate::respond::{Body, boxed};
use crate::snapshot::Snapshot;
use crate::stall::Wait;
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
    let idle = route.limits.idle_timeout;
    let upload = Arc::new(Upload::default());
    let body = Idle::upload(body, idle, Arc::clone(&upload));
    let assertion = policy.assertion.as_ref().map(|s| s.header());
    let request = match build_request(&parts, body, conn, route, assertion) {
        Ok(r) => r,
        Err(e) => return refuse(Reason::BadHandshake, format!("cannot forward: {e}")),
    };
    let tls = policy.upstream_tls[index].as_ref();
    let connect = async {
        let stream = upstream::open(&route.upstream, tls).await?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            // Ends when the response body has been read to its end.
            let _ = connection.await;
        });
        Ok::<_, upstream::UpstreamError>(sender)
    };
    let mut sender = match tokio::time::timeout(route.limits.connect_timeout, connect).await {
        Ok(Ok(sender)) => sender,
        Ok(Err(e)) => return refuse(Reason::UpstreamUnavailable, e.to_string()),
        Err(_) => {
            let detail = format!(
                "no connection to the upstream within {:?} (connect_timeout)",
                route.limits.connect_timeout
            );
            return refuse(Reason::UpstreamUnavailable, detail);
        }
    };
    let answered = match response_head(sender.send_request(request), &upload, idle).await {
        Ok(r) => r,
        // The body's own timer ended the exchange: the client stopped.
        Err(_) if upload.stalled.load(Ordering::Acquire) => {
            let detail = format!(
                "the request body stopped for {:?} (idle_timeout)",
                idle.unwrap_or_default()
            );
            return refuse(Reason::RequestTimeout, detail);
        }
        Err(detail) => return refuse(Reason::UpstreamUnavailable, detail),
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
    Response::from_parts(head, Idle::download(body, idle, route).boxed())
}

/// Waits for the upstream's response head: without a bound while the
/// client's body is still coming (its own timer bounds each wait for it),
/// then at most `idle` once it has ended.
async fn response_head<F>(
    send: F,
    upload: &Upload,
    idle: Option<Duration>,
) -> Result<Response<Incoming>, String>
where
    F: Future<Output = Result<Response<Incoming>, hyper::Error>>,
{
    let failed = |e: hyper::Error| upstream::UpstreamError::from(e).to_string();
    tokio::pin!(send);
    while !upload.done.load(Ordering::Acquire) {
        tokio::select! {
            r = &mut send => return r.map_err(failed),
            // `notify_one` keeps a permit when nobody waits yet, so an end
            // between the check and this wait is not missed.
            () = upload.ended.notified() => {}
        }
    }
    let Some(idle) = idle else {
        return send.await.map_err(failed);
    };
    match tokio::time::timeout(idle, send).await {
        Ok(r) => r.map_err(failed),
        Err(_) => Err(format!(
            "no response head from the upstream within {idle:?} of the request (idle_timeout)"
        )),
    }
}

/// How far a request body has come, shared by the body (polled by the
/// upstream connection's task) and [`forward`] (waiting for the answer).
#[derive(Default)]
struct Upload {
    /// The body has ended: the upstream's turn.
    done: AtomicBool,
    /// The body stopped for `idle_timeout`: the client's fault.
    stalled: AtomicBool,
    ended: Notify,
}

/// The error a body ends with when its next bytes are `idle_timeout` late.
#[derive(Debug, thiserror::Error)]
#[error("no bytes for {0:?} (idle_timeout)")]
struct Stalled(Duration);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A body whose next frame may be at most `limit` late; past it the body
/// fails, and hyper ends the exchange it belongs to (a request body: the
/// upstream request; a response body: the client's connection).
struct Idle {
    inner: Incoming,
    limit: Option<Duration>,
    wait: Wait,
    /// For a request body: where its end and its stall are told.
    upload: Option<Arc<Upload>>,
    /// For a response body: its route, for the log line of a stall.
    route: Option<Arc<Route>>,
}

impl Idle {
    fn upload(inner: Incoming, limit: Option<Duration>, upload: Arc<Upload>) -> Idle {
        let idle = Idle {
            inner,
            limit,
            wait: Wait::default(),
            upload: Some(upload),
            route: None,
        };
        // hyper does not poll a body that says it is empty (a GET's).
        if hyper::body::Body::is_end_stream(&idle.inner) {
            idle.ended();
        }
        idle
    }

    fn download(inner: Incoming, limit: Option<Duration>, route: &Arc<Route>) -> Idle {
        Idle {
            inner,
            limit,
            wait: Wait::default(),
            upload: None,
            route: Some(Arc::clone(route)),
        }
    }

    fn ended(&self) {
        if let Some(u) = &self.upload
            && !u.done.swap(true, Ordering::AcqRel)
        {
            u.ended.notify_one();
        }
    }
}

impl hyper::body::Body for Idle {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.wait.progressed();
            // hyper stops polling a body of known length after its last
            // bytes, so its end is seen here too, not only as `None`.
            if frame.is_none() || this.inner.is_end_stream() {
                this.ended();
            }
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let Some(limit) = this.limit else {
            return Poll::Pending;
        };
        ready!(this.wait.poll_over(cx, limit));
        if let Some(u) = &this.upload {
            u.stalled.store(true, Ordering::Release);
        }
        if let Some(route) = &this.route {
            // The answer has begun, so there is no refusal to log; the
            // client sees its connection end before the body does.
            tracing::warn!(
                route = %route.path,
                idle_timeout = ?limit,
                "the upstream stopped sending its response body; the client's connection is closed"
            );
        }
        Poll::Ready(Some(Err(Stalled(limit).into())))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// The upstream request: the client's method, path, query and end-to-end
/// headers, the gateway's forwarding headers, the client's body as it comes.
/// `assertion` is the identity assertion's header, when one is configured:
/// no assertion is signed for an HTTP route, and a client's copy is dropped
/// here as on WebSocket routes, since the same application may trust it.
fn build_request<B>(
    parts: &http::request::Parts,
    body: B,
    conn: &Conn,
    route: &Route,
    assertion: Option<&str>,
) -> Result<Request<B>, http::Error> {
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

/// The audit lines reports may cause: any page on the web can post them.
pub(crate) fn report_budget() -> crate::audit::LineBudget {
    crate::audit::LineBudget::new(REPORTS_PER_SEC, 100)
}

/// CSP reports logged a second, after a burst of 100.
const REPORTS_PER_SEC: u32 = 20;

/// `POST /.wsgate/csp-report`: a browser's violation report (the
/// `report-uri` format, or the Reporting API's) becomes a `csp_violation`
/// audit event. 204 when taken, 429 when reports come faster than the log
/// should take them; the next line logged says how many were refused.
pub(crate) async fn csp_report(req: Request<Incoming>, conn: &Conn) -> Response<Body> {
    let answer = |status: StatusCode| {
        let mut r = Response::new(crate::respond::full(Full::new(Bytes::new())));
        *r.status_mut() = status;
        r
    };
    if req.method() != Method::POST {
        return answer(StatusCode::METHOD_NOT_ALLOWED);
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
    // Taken once a report is known to be one, so that the count of those
    // refused is of reports.
    let Some(mut refused) = conn.state.csp_reports.take() else {
        return answer(StatusCode::TOO_MANY_REQUESTS);
    };
    for v in reports {
        let mut ev = posted.clone();
        ev.path = v.document_path;
        ev.blocked = Some(v.blocked);
        ev.decision = Some(if v.enforced { "blocked" } else { "reported" });
        ev.enforced = v.enforced;
        let mut detail = format!("{} violated", v.directive);
        if refused > 0 {
            let _ = write!(
                detail,
                " ({refused} more reports refused since the last one logged: more than {REPORTS_PER_SEC} a second, answered 429)"
            );
            refused = 0;
        }
        ev.detail = Some(detail);
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
