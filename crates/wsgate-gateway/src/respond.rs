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

/// The 101 that completes an admitted handshake.
pub(crate) fn switching(accept: &str, protocol: Option<&str>) -> Response<Full<Bytes>> {
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
    response
}
