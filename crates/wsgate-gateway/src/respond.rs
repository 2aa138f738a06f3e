//! Refusals as HTTP responses: [`Reason::response`] applied to a handshake.
//!
//! The body is the reason code and nothing else: the client learns what rule
//! it broke, never the allow-list or the upstream's address. Details go to
//! the audit log.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use wsgate_policy::{Reason, Response as Answer};
use wsgate_proto::handshake::VERSION;

/// Every response body the gateway sends: its own, or an HTTP upstream's
/// streamed through.
pub(crate) type Body =
    http_body_util::combinators::BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// One of the gateway's own responses, as a [`Body`].
pub(crate) fn boxed(response: Response<Full<Bytes>>) -> Response<Body> {
    response.map(full)
}

/// A body of the gateway's own, as a [`Body`].
pub(crate) fn full(body: Full<Bytes>) -> Body {
    use http_body_util::BodyExt as _;
    body.map_err(|never| match never {}).boxed()
}

/// The response that refuses a handshake for `reason`.
pub(crate) fn refusal(reason: Reason) -> Response<Full<Bytes>> {
    let status = match reason.response() {
        Answer::Http(code) => StatusCode::from_u16(code).unwrap_or(StatusCode::FORBIDDEN),
        // Only post-upgrade reasons are close codes; before the upgrade they
        // cannot occur, but a refusal is still a refusal.
        Answer::Close(_) | Answer::Drop => StatusCode::FORBIDDEN,
    };
    let mut response = Response::new(Full::new(Bytes::from(format!("{}\n", reason.code()))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if reason == Reason::VersionUnsupported {
        headers.insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static(VERSION),
        );
    }
    response
}

/// Adds `Retry-After` (RFC 9110 section 10.2.3) in whole seconds, rounded up.
pub(crate) fn retry_after(response: &mut Response<Full<Bytes>>, after: std::time::Duration) {
    let secs = crate::store::retry_secs(after);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
}

/// Adds `WWW-Authenticate` to a 401: one challenge per method the route
/// accepts (RFC 9110 section 11.6.1; RFC 6750 section 3 for Bearer).
pub(crate) fn challenge(
    response: &mut Response<Full<Bytes>>,
    reason: Reason,
    route: &wsgate_config::Route,
    auth: &wsgate_config::auth::AuthConfig,
) {
    let wsgate_config::Auth::Any(methods) = &route.auth else {
        return;
    };
    if !matches!(
        reason,
        Reason::AuthMissing | Reason::AuthInvalid | Reason::AuthExpired
    ) {
        return;
    }
    for m in methods {
        let value = match m {
            wsgate_config::AuthMethod::Jwt if reason == Reason::AuthMissing => {
                "Bearer realm=\"wsgate\"".to_owned()
            }
            wsgate_config::AuthMethod::Jwt => {
                "Bearer realm=\"wsgate\", error=\"invalid_token\"".to_owned()
            }
            wsgate_config::AuthMethod::Basic => {
                let realm = auth.basic.as_ref().map_or("wsgate", |b| b.realm.as_str());
                format!("Basic realm=\"{realm}\", charset=\"UTF-8\"")
            }
            // No HTTP challenge asks for a certificate: TLS does that.
            wsgate_config::AuthMethod::Mtls
            | wsgate_config::AuthMethod::Ticket
            | wsgate_config::AuthMethod::Forward => continue,
        };
        if let Ok(v) = HeaderValue::from_str(&value) {
            response.headers_mut().append(header::WWW_AUTHENTICATE, v);
        }
    }
}

/// The gateway's public JWKS (for upstreams checking identity assertions).
pub(crate) fn jwks(body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_owned())));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/jwk-set+json"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=300"),
    );
    response
}

/// The 101 that completes an admitted handshake.
pub(crate) fn switching(
    accept: &str,
    protocol: Option<&str>,
    extensions: Option<&str>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Some(v) = protocol.and_then(|p| HeaderValue::from_str(p).ok()) {
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, v);
    }
    if let Some(v) = extensions.and_then(|e| HeaderValue::from_str(e).ok()) {
        headers.insert(header::SEC_WEBSOCKET_EXTENSIONS, v);
    }
    response
}
