//! The chat application behind the gateway, written the way most are: a
//! login form that sets a session cookie, and a WebSocket that trusts that
//! cookie and never looks at `Origin`. Without wsgate in front, any page on
//! the same site can open it with the victim's cookie and read the chat.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::sites::{Pages, html};

/// Messages kept for those who join later (the attacker reads them too).
const HISTORY: usize = 20;

/// The application's state.
struct App {
    pages: Pages,
    /// Session token to user.
    sessions: Mutex<HashMap<String, String>>,
    history: Mutex<Vec<String>>,
    chat: broadcast::Sender<String>,
}

/// Serves the application until the process ends.
pub(crate) async fn serve(listener: TcpListener, pages: Pages) {
    let (chat, _) = broadcast::channel(64);
    let app = Arc::new(App {
        pages,
        sessions: Mutex::new(HashMap::new()),
        history: Mutex::new(vec![
            r#"{"user":"bob","text":"the launch code is 0000, keep it quiet"}"#.to_owned(),
        ]),
        chat,
    });
    while let Ok((tcp, _)) = listener.accept().await {
        let app = Arc::clone(&app);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| answer(req, Arc::clone(&app)));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .with_upgrades()
                .await;
        });
    }
}

fn plain(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_owned())));
    *r.status_mut() = status;
    r
}

impl App {
    /// The user of the request's session cookie.
    fn user(&self, headers: &http::HeaderMap) -> Option<String> {
        let cookies = headers.get_all(header::COOKIE);
        let token = cookies
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| c.trim().strip_prefix("session="))?;
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(token)
            .cloned()
    }
}

async fn answer(
    req: Request<Incoming>,
    app: Arc<App>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let user = app.user(req.headers());
    let response = match (req.method(), req.uri().path()) {
        (&Method::GET, "/") => html(&app.pages.fill(include_str!("../pages/chat.html"))),
        (&Method::GET, "/me") => match user {
            Some(u) => plain(StatusCode::OK, &u),
            None => plain(StatusCode::UNAUTHORIZED, "log in first"),
        },
        // What the gateway's forward auth asks.
        (&Method::GET, "/auth/check") => match user {
            Some(u) => {
                let mut r = plain(StatusCode::OK, "ok");
                if let Ok(v) = HeaderValue::from_str(&u) {
                    r.headers_mut().insert("x-user", v);
                }
                r
            }
            None => plain(StatusCode::UNAUTHORIZED, "no session"),
        },
        (&Method::POST, "/login") => login(req, &app).await,
        (&Method::GET, "/chat") => match user {
            // The flaw on purpose: a cookie is all it asks for; Origin is never read.
            Some(u) => chat(req, &app, u),
            None => plain(StatusCode::UNAUTHORIZED, "log in first"),
        },
        _ => plain(StatusCode::NOT_FOUND, "not found"),
    };
    Ok(response)
}

/// `POST /login` with `user=NAME`: a session cookie for NAME, no password
/// (it is a demo of the transport, not of passwords).
async fn login(req: Request<Incoming>, app: &App) -> Response<Full<Bytes>> {
    let Ok(body) = Limited::new(req.into_body(), 1024).collect().await else {
        return plain(StatusCode::PAYLOAD_TOO_LARGE, "too large");
    };
    let body = body.to_bytes();
    let text = String::from_utf8_lossy(&body);
    let name: String = text
        .split('&')
        .find_map(|kv| kv.strip_prefix("user="))
        .unwrap_or("")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(20)
        .collect();
    if name.is_empty() {
        return plain(StatusCode::BAD_REQUEST, "a user name, letters and digits");
    }
    let token = format!("{:032x}", rand::random::<u128>());
    app.sessions
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(token.clone(), name);
    let mut r = plain(StatusCode::SEE_OTHER, "");
    let cookie = format!("session={token}; Path=/; HttpOnly; SameSite=Lax");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("/"));
    r
}

/// Upgrades to the chat: every message goes to everyone, with the sender's
/// name; a newcomer gets the recent history.
fn chat(mut req: Request<Incoming>, app: &Arc<App>, user: String) -> Response<Full<Bytes>> {
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return plain(StatusCode::BAD_REQUEST, "a WebSocket handshake");
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let upgrade = hyper::upgrade::on(&mut req);
    let app = Arc::clone(app);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            Role::Server,
            None,
        )
        .await;
        let (mut tx, mut rx) = ws.split();
        let history = app
            .history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for line in history {
            if tx.send(Message::text(line)).await.is_err() {
                return;
            }
        }
        let mut feed = app.chat.subscribe();
        loop {
            tokio::select! {
                incoming = rx.next() => match incoming {
                    Some(Ok(Message::Text(t))) => {
                        let text = serde_json::from_str::<serde_json::Value>(t.as_str())
                            .ok()
                            .and_then(|v| v["text"].as_str().map(str::to_owned))
                            .unwrap_or_else(|| t.to_string());
                        let line = serde_json::json!({"user": user, "text": text}).to_string();
                        {
                            let mut h = app.history.lock().unwrap_or_else(PoisonError::into_inner);
                            h.push(line.clone());
                            let excess = h.len().saturating_sub(HISTORY);
                            h.drain(..excess);
                        }
                        let _ = app.chat.send(line);
                    }
                    Some(Ok(_)) => {}
                    _ => return,
                },
                line = feed.recv() => match line {
                    Ok(line) => {
                        if tx.send(Message::text(line)).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return,
                },
            }
        }
    });
    let mut r = plain(StatusCode::SWITCHING_PROTOCOLS, "");
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    r
}
