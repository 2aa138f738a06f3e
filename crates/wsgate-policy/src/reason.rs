//! Why a handshake was refused or a connection closed, and what the client
//! is told: the single table of DESIGN.md. Logs, metrics, response bodies
//! and close frames all use [`Reason::code`].

use wsgate_proto::frame::FrameError;
use wsgate_proto::handshake::HandshakeError;

/// Every reason wsgate refuses or closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    // Handshake refusals.
    /// The request breaks RFC 6455's handshake rules.
    BadHandshake,
    /// `Sec-WebSocket-Version` is not 13.
    VersionUnsupported,
    /// The request head is larger than the listener's `max_header_bytes`.
    HeadersTooLarge,
    /// No route for the path.
    RouteNotFound,
    /// No `Origin`, and the route does not allow that.
    OriginMissing,
    /// `Origin` is not on the route's allow-list.
    OriginNotAllowed,
    /// `Host` is not on the listener's or route's allow-list.
    HostNotAllowed,
    /// The route needs credentials and none it accepts were presented.
    AuthMissing,
    /// Credentials were presented and are not valid.
    AuthInvalid,
    /// Credentials were valid once and have expired.
    AuthExpired,
    /// A one-time ticket that is unknown, used, expired, or bound elsewhere.
    TicketInvalid,
    /// Authenticated, but not allowed this (a ticket for a route that takes none).
    Forbidden,
    /// The forward-auth service could not be asked: refused, not admitted.
    AuthUnavailable,
    /// The state store (tickets, counters) cannot take the request.
    StoreUnavailable,
    /// The route authenticates only by client certificate and none was presented.
    ClientCertRequired,
    /// The TLS handshake failed (a client certificate that is expired,
    /// revoked or from another CA, or no certificate where one is required).
    TlsFailed,
    /// Ambient credentials (cookie, Basic) on a handshake whose origin is not
    /// a listed origin: the cross-site WebSocket hijacking pattern.
    CrossSiteCredentials,
    /// The upstream could not be reached or did not answer a correct 101.
    UpstreamUnavailable,
    /// The client did not finish TLS and its request head in time.
    HandshakeTimeout,
    /// On a `kind = "http"` route, the client's request body stopped for the
    /// route's `idle_timeout`.
    RequestTimeout,
    /// On a listener that takes the PROXY protocol: a connection from an
    /// address not in `trusted_proxies`, or without a readable header.
    ProxyHeaderRefused,
    /// Too many handshakes from one client address on this route in the last minute.
    RateLimited,
    /// The client address, the user, or the whole gateway holds as many
    /// connections as it may.
    TooManyConnections,
    // Closes after the upgrade.
    /// The client broke the framing rules.
    ProtocolError,
    /// A text message that is not UTF-8.
    InvalidUtf8,
    /// A frame or message over the route's limit.
    MessageTooBig,
    /// A message type (text, binary) the route does not allow.
    MessageTypeNotAllowed,
    /// A text message that is not JSON on a route that requires it.
    InvalidJson,
    /// A JSON message that breaks the route's schema.
    SchemaViolation,
    /// No data either way for the route's `idle_timeout`.
    IdleTimeout,
    /// The client did not answer the gateway's ping before the next one was due.
    PongTimeout,
    /// The connection reached the route's `max_lifetime`.
    LifetimeExceeded,
    /// The gateway is stopping.
    ShuttingDown,
    /// The credential that admitted the connection expired (after the grace).
    SessionExpired,
    /// The upstream broke the framing rules.
    UpstreamError,
    /// The upstream closed its connection without a close frame.
    UpstreamGone,
    /// The client sent more messages or bytes per second than the route allows.
    MessageRateExceeded,
    /// The gateway's memory for assembling messages is used up: this message
    /// would take more, and the client may try again later.
    Overloaded,
    /// An operator revoked the connection's user (`wsgate revoke`).
    Revoked,
    /// A reloaded config no longer admits the connection (its origin, host,
    /// route or user).
    PolicyChanged,
}

/// What the client is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response {
    /// An HTTP response with this status and the reason code as its body.
    Http(u16),
    /// A close frame with this code and the reason code as its reason.
    Close(u16),
    /// The connection is dropped without a word (the client never finished its request).
    Drop,
}

impl Reason {
    /// The stable snake_case name used in logs, metrics, bodies and close reasons.
    pub fn code(self) -> &'static str {
        self.row().0
    }

    /// What the client is told.
    pub fn response(self) -> Response {
        self.row().1
    }

    /// The table. One row per reason; nothing else decides a status or close code.
    fn row(self) -> (&'static str, Response) {
        use Reason::*;
        use Response::{Close, Drop, Http};
        match self {
            BadHandshake => ("bad_handshake", Http(400)),
            VersionUnsupported => ("version_unsupported", Http(426)),
            HeadersTooLarge => ("headers_too_large", Http(431)),
            RouteNotFound => ("route_not_found", Http(404)),
            OriginMissing => ("origin_missing", Http(403)),
            OriginNotAllowed => ("origin_not_allowed", Http(403)),
            HostNotAllowed => ("host_not_allowed", Http(421)),
            AuthMissing => ("auth_missing", Http(401)),
            AuthInvalid => ("auth_invalid", Http(401)),
            AuthExpired => ("auth_expired", Http(401)),
            CrossSiteCredentials => ("cross_site_credentials", Http(403)),
            ClientCertRequired => ("client_cert_required", Http(401)),
            TicketInvalid => ("ticket_invalid", Http(401)),
            StoreUnavailable => ("store_unavailable", Http(503)),
            AuthUnavailable => ("auth_unavailable", Http(503)),
            Forbidden => ("forbidden", Http(403)),
            TlsFailed => ("tls_failed", Drop),
            UpstreamUnavailable => ("upstream_unavailable", Http(502)),
            HandshakeTimeout => ("handshake_timeout", Drop),
            RequestTimeout => ("request_timeout", Http(408)),
            // Before TLS and HTTP: there is nobody to answer in either.
            ProxyHeaderRefused => ("proxy_header_refused", Drop),
            RateLimited => ("rate_limited", Http(429)),
            TooManyConnections => ("too_many_connections", Http(429)),
            ProtocolError => ("protocol_error", Close(1002)),
            InvalidUtf8 => ("invalid_utf8", Close(1007)),
            MessageTooBig => ("message_too_big", Close(1009)),
            MessageTypeNotAllowed => ("message_type_not_allowed", Close(1003)),
            InvalidJson => ("invalid_json", Close(1008)),
            SchemaViolation => ("schema_violation", Close(1008)),
            IdleTimeout => ("idle_timeout", Close(1001)),
            PongTimeout => ("pong_timeout", Close(1001)),
            LifetimeExceeded => ("lifetime_exceeded", Close(1001)),
            ShuttingDown => ("shutting_down", Close(1001)),
            SessionExpired => ("session_expired", Close(1008)),
            // 1014 ("bad gateway") is not accepted by every client library
            // (tungstenite refuses it), so upstream failures close with 1011.
            UpstreamError => ("upstream_error", Close(1011)),
            UpstreamGone => ("upstream_gone", Close(1011)),
            MessageRateExceeded => ("message_rate_exceeded", Close(1008)),
            // RFC 6455's registry: 1013 "Try Again Later".
            Overloaded => ("overloaded", Close(1013)),
            Revoked => ("revoked", Close(1008)),
            PolicyChanged => ("policy_changed", Close(1008)),
        }
    }

    /// The close code, for reasons answered after the upgrade.
    pub fn close_code(self) -> Option<u16> {
        match self.response() {
            Response::Close(code) => Some(code),
            _ => None,
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

impl From<&HandshakeError> for Reason {
    fn from(e: &HandshakeError) -> Self {
        if e.is_version() {
            Reason::VersionUnsupported
        } else {
            Reason::BadHandshake
        }
    }
}

impl From<&FrameError> for Reason {
    fn from(e: &FrameError) -> Self {
        match e {
            FrameError::InvalidUtf8(_) | FrameError::CloseReasonNotUtf8 => Reason::InvalidUtf8,
            FrameError::FrameTooBig { .. } | FrameError::MessageTooBig { .. } => {
                Reason::MessageTooBig
            }
            _ => Reason::ProtocolError,
        }
    }
}

impl Reason {
    /// Every reason, in the order of DESIGN.md's tables.
    pub const ALL: [Reason; 40] = {
        use Reason::*;
        [
            BadHandshake,
            VersionUnsupported,
            HeadersTooLarge,
            RouteNotFound,
            OriginMissing,
            OriginNotAllowed,
            HostNotAllowed,
            AuthMissing,
            AuthInvalid,
            AuthExpired,
            TicketInvalid,
            Forbidden,
            ClientCertRequired,
            TlsFailed,
            CrossSiteCredentials,
            UpstreamUnavailable,
            HandshakeTimeout,
            ProtocolError,
            InvalidUtf8,
            MessageTooBig,
            IdleTimeout,
            PongTimeout,
            LifetimeExceeded,
            ShuttingDown,
            SessionExpired,
            UpstreamError,
            UpstreamGone,
            StoreUnavailable,
            AuthUnavailable,
            MessageTypeNotAllowed,
            InvalidJson,
            SchemaViolation,
            RateLimited,
            TooManyConnections,
            MessageRateExceeded,
            Overloaded,
            Revoked,
            PolicyChanged,
            ProxyHeaderRefused,
            RequestTimeout,
        ]
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails to compile when a variant is added without a number here, and
    /// the test fails when it is numbered but missing from [`Reason::ALL`].
    fn ordinal(r: Reason) -> usize {
        use Reason::*;
        match r {
            BadHandshake => 0,
            VersionUnsupported => 1,
            HeadersTooLarge => 2,
            RouteNotFound => 3,
            OriginMissing => 4,
            OriginNotAllowed => 5,
            HostNotAllowed => 6,
            AuthMissing => 7,
            AuthInvalid => 8,
            AuthExpired => 9,
            TicketInvalid => 10,
            Forbidden => 11,
            ClientCertRequired => 12,
            TlsFailed => 13,
            CrossSiteCredentials => 14,
            UpstreamUnavailable => 15,
            HandshakeTimeout => 16,
            ProtocolError => 17,
            InvalidUtf8 => 18,
            MessageTooBig => 19,
            IdleTimeout => 20,
            PongTimeout => 21,
            LifetimeExceeded => 22,
            ShuttingDown => 23,
            SessionExpired => 24,
            UpstreamError => 25,
            UpstreamGone => 26,
            StoreUnavailable => 27,
            AuthUnavailable => 28,
            MessageTypeNotAllowed => 29,
            InvalidJson => 30,
            SchemaViolation => 31,
            RateLimited => 32,
            TooManyConnections => 33,
            MessageRateExceeded => 34,
            Overloaded => 35,
            Revoked => 36,
            PolicyChanged => 37,
            ProxyHeaderRefused => 38,
            RequestTimeout => 39,
        }
    }

    #[test]
    fn all_lists_every_reason_once_with_a_unique_snake_case_code() {
        let mut seen: Vec<usize> = Reason::ALL.iter().map(|r| ordinal(*r)).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..Reason::ALL.len()).collect::<Vec<_>>());
        let mut codes: Vec<_> = Reason::ALL.iter().map(|r| r.code()).collect();
        assert!(codes.iter().all(|c| {
            c.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        }));
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), Reason::ALL.len());
    }
}
