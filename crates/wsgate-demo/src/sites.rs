//! The demo's other servers: the attacker's site, the command-and-control
//! WebSocket server, and the console that shows the gateway's decisions as
//! they happen (server-sent events from the audit log).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use futures_util::StreamExt as _;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::broadcast;

use crate::url;

/// Every server's address, for the pages' links and scripts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pages {
    pub(crate) gateway: SocketAddr,
    pub(crate) backend: SocketAddr,
    pub(crate) attacker: SocketAddr,
    pub(crate) c2: SocketAddr,
    pub(crate) console: SocketAddr,
}

impl Pages {
    /// A page with its `{{NAME}}` placeholders filled in.
    pub(crate) fn fill(&self, page: &str) -> String {
        page.replace("{{GATEWAY}}", &url("http", self.gateway, ""))
            .replace("{{GATEWAY_WS}}", &url("ws", self.gateway, "/chat"))
            .replace("{{BACKEND}}", &url("http", self.backend, ""))
            .replace("{{BACKEND_WS}}", &url("ws", self.backend, "/chat"))
            .replace("{{ATTACKER}}", &url("http", self.attacker, ""))
            .replace("{{C2_WS}}", &url("ws", self.c2, "/bot"))
            .replace("{{CONSOLE}}", &url("http", self.console, ""))
    }
}

/// An HTML response.
pub(crate) fn html(body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_owned())));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

fn not_found() -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(b"not found")));
    *r.status_mut() = StatusCode::NOT_FOUND;
    r
}

/// The attacker's site: one page that tries to hijack the chat.
pub(crate) async fn serve_attacker(listener: TcpListener, pages: Pages) {
    serve(listener, move |req: Request<Incoming>| {
        let page = match req.uri().path() {
            "/" => html(&pages.fill(include_str!("../pages/attacker.html"))),
            _ => not_found(),
        };
        async move { page }
    })
    .await;
}

/// The command-and-control server: accepts any WebSocket and counts it.
/// With CSP in force, the chat page never reaches it.
pub(crate) async fn serve_c2(listener: TcpListener, hits: Arc<AtomicUsize>) {
    while let Ok((tcp, _)) = listener.accept().await {
        let hits = Arc::clone(&hits);
        tokio::spawn(async move {
            if let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await {
                hits.fetch_add(1, Ordering::SeqCst);
                let _ = ws.close(None).await;
            }
        });
    }
}

/// The console: links, the explanation, and `/events`, the gateway's audit
/// events as server-sent events.
pub(crate) async fn serve_console(
    listener: TcpListener,
    pages: Pages,
    audit: wsgate_gateway::AuditLog,
) {
    serve(listener, move |req: Request<Incoming>| {
        let events = audit.subscribe();
        let path = req.uri().path().to_owned();
        async move {
            match path.as_str() {
                "/" => html(&pages.fill(include_str!("../pages/console.html")))
                    .map(|b| b.map_err(|never| match never {}).boxed()),
                "/events" => stream(events),
                _ => not_found().map(|b| b.map_err(|never| match never {}).boxed()),
            }
        }
    })
    .await;
}

type Boxed = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

/// The audit events from now on, one `data:` line each.
fn stream(events: broadcast::Receiver<Arc<wsgate_gateway::AuditEvent>>) -> Response<Boxed> {
    let lines = tokio_stream_of(events).map(|ev| {
        let json = serde_json::to_string(&*ev).unwrap_or_default();
        Ok::<_, Infallible>(Frame::data(Bytes::from(format!("data: {json}\n\n"))))
    });
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(lines)));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A broadcast receiver as a stream; a lagging reader skips what it missed.
fn tokio_stream_of<T: Clone + Send + 'static>(
    rx: broadcast::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send {
    futures_util::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(v) => return Some((v, rx)),
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

/// Serves HTTP/1.1 with `handler` until the process ends.
async fn serve<F, Fut, B>(listener: TcpListener, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    while let Ok((tcp, _)) = listener.accept().await {
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let answer = handler(req);
                async move { Ok::<_, Infallible>(answer.await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}
