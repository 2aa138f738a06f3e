//! An HTTP application on 127.0.0.1:0, as a `kind = "http"` route's
//! upstream: it answers every request with what it received, as JSON
//! (`method`, `uri`, `headers`, `body`), so tests can see exactly what the
//! gateway forwarded. A path with `/csp` also sends a policy of its own, one
//! with `/hop` a field its `Connection` header names; `/login` sets a
//! session cookie.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The policy `/csp/...` answers with.
pub const OWN_CSP: &str = "default-src 'self'";

/// The running application.
pub struct HttpUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    requests: Arc<AtomicUsize>,
}

impl HttpUpstream {
    /// Starts it.
    pub async fn start() -> HttpUpstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind http upstream");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&requests);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let counted = Arc::clone(&counted);
                let service = hyper::service::service_fn(move |req| {
                    counted.fetch_add(1, Ordering::Relaxed);
                    mirror(req)
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        HttpUpstream { addr, requests }
    }

    /// An upstream that is down: an address bound and released, where
    /// nothing listens.
    pub fn dead() -> HttpUpstream {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind");
        HttpUpstream {
            addr,
            requests: Arc::default(),
        }
    }

    /// Requests it has received.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }

    /// Its URL with `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

async fn mirror(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let headers: serde_json::Map<String, serde_json::Value> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned().into(),
            )
        })
        .collect();
    let answer = serde_json::json!({
        "method": parts.method.as_str(),
        "uri": parts.uri.to_string(),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    let mut response = Response::new(Full::new(Bytes::from(answer.to_string())));
    let h = response.headers_mut();
    h.insert("content-type", "application/json".parse().expect("value"));
    if parts.uri.path().contains("/csp") {
        h.insert("content-security-policy", OWN_CSP.parse().expect("value"));
    }
    if parts.uri.path().contains("/hop") {
        // A field this hop only, named by `Connection` (RFC 9110 section
        // 7.6.1): a proxy must not pass it on.
        h.insert("connection", "x-hop-detail".parse().expect("value"));
        h.insert(
            "x-hop-detail",
            "for the next hop only".parse().expect("value"),
        );
    }
    if parts.uri.path() == "/login" {
        h.insert(
            "set-cookie",
            "session=alice-session; HttpOnly; SameSite=Lax; Path=/"
                .parse()
                .expect("value"),
        );
    }
    Ok(response)
}
