//! What a handshake presents as credentials, and which of it is ambient.
//!
//! Ambient credentials are the ones a browser attaches by itself to a
//! handshake that a hostile page starts: cookies and cached HTTP Basic
//! credentials (and, later, TLS client certificates). A token in the
//! `Authorization` header, in a subprotocol entry or in the query is put
//! there by the page's own script, which a foreign page does not have.

use http::{HeaderMap, header};
use wsgate_config::auth::{AuthConfig, CertField, TokenSource};
use wsgate_config::{Auth, AuthMethod, Route};

/// The query parameter a one-time ticket comes in. A query is acceptable
/// here, unlike for tokens: a ticket is single-use and lives seconds.
pub const TICKET_PARAM: &str = "ticket";

/// The subprotocol prefix that carries a bearer token (`bearer.<jwt>`).
pub const BEARER_PROTOCOL_PREFIX: &str = "bearer.";

/// A client certificate the TLS layer has verified, as the fields that can
/// name a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// The certificate (DER), for RFC 9440 `Client-Cert`.
    pub der: Vec<u8>,
    /// The subject, as a distinguished name.
    pub subject: String,
    /// The subject's common name.
    pub cn: Option<String>,
    /// `rfc822Name` subject alternative names.
    pub emails: Vec<String>,
    /// `dNSName` subject alternative names.
    pub dns: Vec<String>,
    /// When it stops being valid.
    pub not_after: Option<std::time::SystemTime>,
}

impl ClientCert {
    /// The field `user_from` names, if the certificate has it.
    pub fn user(&self, field: CertField) -> Option<&str> {
        match field {
            CertField::SanEmail => self.emails.first(),
            CertField::SanDns => self.dns.first(),
            CertField::Cn => self.cn.as_ref(),
        }
        .map(String::as_str)
    }
}

/// Where a credential was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `Authorization: Bearer`.
    Header,
    /// A cookie, by name.
    Cookie(String),
    /// A `bearer.<token>` subprotocol entry.
    Subprotocol,
    /// A query parameter, by name.
    Query(String),
    /// `Authorization: Basic`.
    Basic,
}

/// One credential to verify.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// A JWT.
    Bearer {
        /// The token.
        token: String,
        /// Where it came from.
        source: Source,
    },
    /// HTTP Basic.
    Basic {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
    /// The client's `Cookie` and `Authorization`, for the application to judge.
    Forward {
        /// `Cookie`, all copies joined.
        cookie: Option<String>,
        /// `Authorization`.
        authorization: Option<String>,
    },
    /// A one-time ticket from the `ticket` query parameter.
    Ticket {
        /// The ticket.
        ticket: String,
    },
    /// A TLS client certificate, verified during the TLS handshake.
    ClientCert {
        /// The user its `user_from` field names, if present.
        user: Option<String>,
        /// When it expires.
        not_after: Option<std::time::SystemTime>,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret: this type reaches logs through `Debug` all too easily.
        match self {
            Credential::Bearer { source, .. } => write!(f, "Bearer(from {source:?})"),
            Credential::Basic { user, .. } => write!(f, "Basic({user})"),
            Credential::ClientCert { user, .. } => write!(f, "ClientCert({user:?})"),
            Credential::Ticket { .. } => f.write_str("Ticket"),
            Credential::Forward { cookie, .. } => {
                write!(
                    f,
                    "Forward({})",
                    if cookie.is_some() {
                        "cookie"
                    } else {
                        "authorization"
                    }
                )
            }
        }
    }
}

impl Credential {
    /// Whether a browser would attach it to a cross-site handshake by itself.
    pub fn is_ambient(&self) -> bool {
        if let Credential::Forward {
            cookie,
            authorization,
        } = self
        {
            // A cookie or cached Basic credentials come with any page's handshake.
            let basic = authorization
                .as_deref()
                .is_some_and(|a| a.get(..6).is_some_and(|s| s.eq_ignore_ascii_case("basic ")));
            return cookie.is_some() || basic;
        }
        matches!(
            self,
            Credential::Basic { .. }
                | Credential::ClientCert { .. }
                | Credential::Bearer {
                    source: Source::Cookie(_),
                    ..
                }
        )
    }
}

/// The credentials a route's methods look for, non-ambient ones first so a
/// valid header token is not shadowed by a stale cookie.
///
/// At most one of each kind: the first `Authorization: Bearer`, the first
/// `bearer.` subprotocol entry, the first `Authorization: Basic`, as for
/// the cookie and the query. Each credential costs a verification, a
/// password one a bcrypt or argon2 run, so a handshake repeating them
/// would otherwise buy that work as many times as its headers have room
/// for. (`Authorization` is not a list; a second one has no meaning.)
pub fn presented(
    route: &Route,
    auth: &AuthConfig,
    headers: &HeaderMap,
    query: Option<&str>,
    protocols: &[String],
    client_cert: Option<&ClientCert>,
) -> Vec<Credential> {
    let Auth::Any(methods) = &route.auth else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if methods.contains(&AuthMethod::Jwt)
        && let Some(jwt) = &auth.jwt
    {
        for source in &jwt.from {
            match source {
                TokenSource::Header => out.extend(bearer_header(headers)),
                TokenSource::Subprotocol => out.extend(protocols.iter().find_map(|p| {
                    let token = p.strip_prefix(BEARER_PROTOCOL_PREFIX)?;
                    Some(Credential::Bearer {
                        token: token.to_owned(),
                        source: Source::Subprotocol,
                    })
                })),
                TokenSource::Cookie(name) => {
                    out.extend(cookie(headers, name).map(|token| Credential::Bearer {
                        token,
                        source: Source::Cookie(name.clone()),
                    }))
                }
            }
        }
        if let (Some(param), Some(q)) = (&route.jwt_query_param, query) {
            out.extend(query_param(q, param).map(|token| Credential::Bearer {
                token,
                source: Source::Query(param.clone()),
            }));
        }
    }
    if methods.contains(&AuthMethod::Basic) {
        out.extend(basic(headers));
    }
    if methods.contains(&AuthMethod::Forward) {
        let joined = |name| {
            let parts: Vec<&str> = headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            (!parts.is_empty()).then(|| parts.join("; "))
        };
        let (cookie, authorization) = (joined(header::COOKIE), joined(header::AUTHORIZATION));
        if cookie.is_some() || authorization.is_some() {
            out.push(Credential::Forward {
                cookie,
                authorization,
            });
        }
    }
    if methods.contains(&AuthMethod::Ticket)
        && let Some(q) = query
    {
        out.extend(query_param(q, TICKET_PARAM).map(|ticket| Credential::Ticket { ticket }));
    }
    if methods.contains(&AuthMethod::Mtls)
        && let (Some(mtls), Some(cert)) = (&auth.mtls, client_cert)
    {
        out.push(Credential::ClientCert {
            user: cert.user(mtls.user_from).map(str::to_owned),
            not_after: cert.not_after,
        });
    }
    out.sort_by_key(Credential::is_ambient);
    out
}

fn authorization<'h>(headers: &'h HeaderMap, scheme: &str) -> impl Iterator<Item = &'h str> {
    headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(move |v| {
            let v = v.to_str().ok()?;
            let (s, rest) = v.split_once(' ')?;
            s.eq_ignore_ascii_case(scheme).then_some(rest.trim())
        })
}

fn bearer_header(headers: &HeaderMap) -> Option<Credential> {
    authorization(headers, "bearer")
        .map(|t| Credential::Bearer {
            token: t.to_owned(),
            source: Source::Header,
        })
        .next()
}

fn basic(headers: &HeaderMap) -> Option<Credential> {
    use base64::Engine as _;
    authorization(headers, "basic").next().and_then(|b64| {
        let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (user, password) = text.split_once(':')?;
        Some(Credential::Basic {
            user: user.to_owned(),
            password: password.to_owned(),
        })
    })
}

/// The value of cookie `name`, from every `Cookie` header.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"').to_owned())
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_and_queries() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            "a=1; session=tok.en; b=2"
                .parse()
                .unwrap_or_else(|_| unreachable!()),
        );
        assert_eq!(cookie(&h, "session").as_deref(), Some("tok.en"));
        assert_eq!(cookie(&h, "sess"), None);
        assert_eq!(
            query_param("x=1&access_token=abc", "access_token").as_deref(),
            Some("abc")
        );
    }
}
