//! A forward-auth service on 127.0.0.1:0, as an application would run one.
//!
//! `Cookie: session=<user>-session` is that user (200, `X-User`);
//! `session=broken` answers 500; `session=silent` never answers;
//! `Authorization: Bearer letmein` is the user `bot`; anything else is 401.
//! Both it and the JWKS endpoint below serve plain HTTP, or HTTPS as
//! `localhost` with a certificate the test made.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Serves each connection accepted on `listener` with the service `make`
/// returns, over TLS when `tls` is given.
fn serve<F, S>(listener: TcpListener, tls: Option<Arc<rustls::ServerConfig>>, make: F)
where
    F: Fn() -> S + Send + 'static,
    S: hyper::service::Service<
            Request<Incoming>,
            Response = Response<Full<Bytes>>,
            Error = Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let service = make();
            let tls = tls.clone();
            tokio::spawn(async move {
                let http = hyper::server::conn::http1::Builder::new();
                match tls {
                    None => {
                        let _ = http.serve_connection(TokioIo::new(tcp), service).await;
                    }
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(tcp).await {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                }
            });
        }
    });
}

/// `http://127.0.0.1:PORT`, or `https://localhost:PORT` (the name the
/// test's certificates carry).
fn origin(addr: SocketAddr, tls: bool) -> String {
    if tls {
        format!("https://localhost:{}", addr.port())
    } else {
        format!("http://{addr}")
    }
}

/// The running service.
pub struct AuthServer {
    /// Where it listens.
    pub addr: SocketAddr,
    tls: bool,
    asked: Arc<AtomicUsize>,
}

impl AuthServer {
    /// Starts the service.
    pub async fn start() -> AuthServer {
        AuthServer::start_with(None).await
    }

    /// Starts the service on HTTPS with `tls`.
    pub async fn start_tls(tls: Arc<rustls::ServerConfig>) -> AuthServer {
        AuthServer::start_with(Some(tls)).await
    }

    async fn start_with(tls: Option<Arc<rustls::ServerConfig>>) -> AuthServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind auth server");
        let addr = listener.local_addr().expect("addr");
        let asked = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&asked);
        let https = tls.is_some();
        serve(listener, tls, move || {
            let counter = Arc::clone(&counter);
            hyper::service::service_fn(move |req| judge(req, Arc::clone(&counter)))
        });
        AuthServer {
            addr,
            tls: https,
            asked,
        }
    }

    /// The URL of its check endpoint.
    pub fn url(&self) -> String {
        format!("{}/auth/check", origin(self.addr, self.tls))
    }

    /// How many requests it has answered or received.
    pub fn asked(&self) -> usize {
        self.asked.load(Ordering::SeqCst)
    }
}

async fn judge(
    req: Request<Incoming>,
    asked: Arc<AtomicUsize>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    asked.fetch_add(1, Ordering::SeqCst);
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let (cookie, authorization) = (header("cookie"), header("authorization"));
    let session = cookie
        .split(';')
        .map(str::trim)
        .find_map(|c| c.strip_prefix("session="))
        .unwrap_or("");
    let user = match (session, authorization.as_str()) {
        ("silent", _) => std::future::pending().await,
        ("broken", _) => return Ok(status(StatusCode::INTERNAL_SERVER_ERROR)),
        (s, _) if s.ends_with("-session") => Some(s.trim_end_matches("-session").to_owned()),
        (_, "Bearer letmein") => Some("bot".to_owned()),
        _ => None,
    };
    Ok(match user {
        Some(user) => {
            let mut r = status(StatusCode::OK);
            r.headers_mut()
                .insert("x-user", user.parse().expect("user header"));
            r
        }
        None => status(StatusCode::UNAUTHORIZED),
    })
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = code;
    r
}

/// An issuer's JWKS endpoint on 127.0.0.1:0, whose key set the test swaps
/// and which can be taken down (it then answers 503).
pub struct JwksServer {
    /// Where it listens.
    pub addr: SocketAddr,
    tls: bool,
    body: Arc<std::sync::Mutex<String>>,
    down: Arc<std::sync::atomic::AtomicBool>,
    asked: Arc<AtomicUsize>,
}

impl JwksServer {
    /// Serves `jwks`.
    pub async fn start(jwks: String) -> JwksServer {
        JwksServer::start_with(jwks, None).await
    }

    /// Serves `jwks` on HTTPS with `tls`.
    pub async fn start_tls(jwks: String, tls: Arc<rustls::ServerConfig>) -> JwksServer {
        JwksServer::start_with(jwks, Some(tls)).await
    }

    async fn start_with(jwks: String, tls: Option<Arc<rustls::ServerConfig>>) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind JWKS server");
        let addr = listener.local_addr().expect("addr");
        let body = Arc::new(std::sync::Mutex::new(jwks));
        let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let asked = Arc::new(AtomicUsize::new(0));
        let (b, d, a) = (Arc::clone(&body), Arc::clone(&down), Arc::clone(&asked));
        let https = tls.is_some();
        serve(listener, tls, move || {
            let (b, d, a) = (Arc::clone(&b), Arc::clone(&d), Arc::clone(&a));
            hyper::service::service_fn(move |_req: Request<Incoming>| {
                a.fetch_add(1, Ordering::SeqCst);
                let r = if d.load(Ordering::SeqCst) {
                    status(StatusCode::SERVICE_UNAVAILABLE)
                } else {
                    Response::new(Full::new(Bytes::from(b.lock().expect("body").clone())))
                };
                async move { Ok::<_, Infallible>(r) }
            })
        });
        JwksServer {
            addr,
            tls: https,
            body,
            down,
            asked,
        }
    }

    /// The JWKS URL.
    pub fn url(&self) -> String {
        format!("{}/.well-known/jwks.json", origin(self.addr, self.tls))
    }

    /// Serves another key set from now on.
    pub fn set(&self, jwks: String) {
        *self.body.lock().expect("body") = jwks;
    }

    /// Takes the endpoint down (503) or back up.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// How many requests it has received.
    pub fn asked(&self) -> usize {
        self.asked.load(Ordering::SeqCst)
    }
}
