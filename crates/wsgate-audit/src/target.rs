//! What the operator asked to audit: the URL, the legitimate origin, the
//! credentials a logged-in browser would hold, and the bounds of the run.
//! Everything is checked before the first connection, so bad arguments are
//! one clear error and exit 2, never a half-run audit.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use url::Url;

use crate::wire::{Dialer, Request};

/// The operator's options, as given on the command line.
#[derive(Debug, Clone)]
pub struct Options {
    /// `ws://` or `wss://` URL of the endpoint.
    pub url: String,
    /// The legitimate page origin; default: derived from the URL.
    pub origin: Option<String>,
    /// Cookies, `name=value`.
    pub cookies: Vec<String>,
    /// Extra headers, `Name: value`.
    pub headers: Vec<String>,
    /// A bearer token, sent as `Authorization: Bearer`.
    pub bearer: Option<String>,
    /// A client certificate and key (PEM).
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// The endpoint should require credentials.
    pub expect_auth: bool,
    /// A legitimate message to send after connecting.
    pub message: Option<String>,
    /// Deadline for each answer.
    pub timeout: Duration,
    /// Run only these checks (ids).
    pub checks: Vec<String>,
    /// Skip these checks (ids).
    pub skip: Vec<String>,
    /// Also run the checks that stress the endpoint.
    pub aggressive: bool,
    /// Accept a certificate that does not verify (and report it).
    pub insecure: bool,
    /// New connections per second, at most.
    pub rate: u32,
    /// Largest message the size and inflate probes send.
    pub max_probe: u64,
    /// How long the slow and idle probes wait before calling a connection held.
    pub hold_wait: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            url: String::new(),
            origin: None,
            cookies: Vec::new(),
            headers: Vec::new(),
            bearer: None,
            client_cert: None,
            expect_auth: false,
            message: None,
            timeout: Duration::from_secs(5),
            checks: Vec::new(),
            skip: Vec::new(),
            aggressive: false,
            insecure: false,
            rate: 10,
            max_probe: 16 << 20,
            hold_wait: Duration::from_secs(30),
        }
    }
}

/// Why the audit cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unusable(pub String);

/// The parsed target and everything derived from it.
#[derive(Clone)]
pub struct Target {
    /// The options it was made from.
    pub options: Options,
    /// The URL.
    pub url: Url,
    /// `wss`.
    pub tls: bool,
    /// Host as written in the URL (brackets kept for IPv6).
    pub host: String,
    /// Port (the scheme's default when the URL has none).
    pub port: u16,
    /// The `Host` header value.
    pub host_header: String,
    /// The legitimate origin.
    pub origin: String,
    /// How to connect.
    pub dialer: Dialer,
    /// How to connect without the client certificate (the auth checks).
    pub anonymous: Dialer,
}

impl Target {
    /// Checks the options and builds the target.
    pub fn new(options: Options) -> Result<Target, Unusable> {
        let url = Url::parse(&options.url)
            .map_err(|e| Unusable(format!("{}: not a URL ({e})", options.url)))?;
        let tls = match url.scheme() {
            "wss" => true,
            "ws" => false,
            other => {
                return Err(Unusable(format!(
                    "{}: the scheme is {other}; give a ws:// or wss:// URL",
                    options.url
                )));
            }
        };
        let host = url
            .host_str()
            .ok_or_else(|| Unusable(format!("{}: no host", options.url)))?
            .to_owned();
        let default_port = if tls { 443 } else { 80 };
        let port = url.port().unwrap_or(default_port);
        let host_header = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        let origin = match &options.origin {
            Some(o) => {
                let parsed = Url::parse(o).map_err(|e| Unusable(format!("--origin {o}: {e}")))?;
                if parsed.origin().ascii_serialization() == "null" {
                    return Err(Unusable(format!("--origin {o}: not a tuple origin")));
                }
                o.trim_end_matches('/').to_owned()
            }
            None => {
                let scheme = if tls { "https" } else { "http" };
                format!("{scheme}://{host_header}")
            }
        };
        for h in &options.headers {
            if h.split_once(':').is_none_or(|(k, _)| k.trim().is_empty()) {
                return Err(Unusable(format!(
                    "--header {h:?}: write it as \"Name: value\""
                )));
            }
        }
        for c in &options.cookies {
            if !c.contains('=') {
                return Err(Unusable(format!("--cookie {c:?}: write it as name=value")));
            }
        }
        if options.rate == 0 {
            return Err(Unusable(
                "--rate must be at least 1 connection per second".into(),
            ));
        }
        let cert_problem = Arc::new(Mutex::new(None));
        let (tls_config, anonymous_tls) = if tls {
            let name = ServerName::try_from(
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned(),
            )
            .map_err(|e| Unusable(format!("{host}: {e}")))?;
            let config = client_config(&options, Arc::clone(&cert_problem))?;
            let without_cert = Options {
                client_cert: None,
                ..options.clone()
            };
            let anonymous = client_config(&without_cert, Arc::new(Mutex::new(None)))?;
            (Some((config, name.clone())), Some((anonymous, name)))
        } else {
            (None, None)
        };
        let dialer = Dialer {
            host: host.clone(),
            port,
            tls: tls_config,
            timeout: options.timeout,
            cert_problem,
        };
        let anonymous = Dialer {
            tls: anonymous_tls,
            cert_problem: Arc::new(Mutex::new(None)),
            ..dialer.clone()
        };
        Ok(Target {
            options,
            url,
            tls,
            host,
            port,
            host_header,
            origin,
            dialer,
            anonymous,
        })
    }

    /// Path and query of the URL.
    pub fn path_and_query(&self) -> String {
        match self.url.query() {
            Some(q) => format!("{}?{q}", self.url.path()),
            None => self.url.path().to_owned(),
        }
    }

    /// Whether any credential was given.
    pub fn has_credentials(&self) -> bool {
        !self.options.cookies.is_empty()
            || self.options.bearer.is_some()
            || self.options.client_cert.is_some()
            || self.options.headers.iter().any(|h| {
                let name = h.split(':').next().unwrap_or_default().trim();
                name.eq_ignore_ascii_case("authorization") || name.eq_ignore_ascii_case("cookie")
            })
    }

    /// Whether a credential the browser attaches by itself was given: a
    /// cookie, Basic credentials or a client certificate (the ones a
    /// hostile page gets to use).
    pub fn has_ambient_credentials(&self) -> bool {
        !self.options.cookies.is_empty()
            || self.options.client_cert.is_some()
            || self.options.headers.iter().any(|h| {
                let (name, value) = h.split_once(':').unwrap_or((h, ""));
                let name = name.trim();
                name.eq_ignore_ascii_case("cookie")
                    || (name.eq_ignore_ascii_case("authorization")
                        && value
                            .trim()
                            .get(..6)
                            .is_some_and(|s| s.eq_ignore_ascii_case("basic ")))
            })
    }

    /// The legitimate handshake: the given origin and every credential.
    pub fn request(&self) -> Request {
        let mut r = self.bare_request();
        r.set("Origin", &self.origin);
        if !self.options.cookies.is_empty() {
            r.set("Cookie", &self.options.cookies.join("; "));
        }
        if let Some(t) = &self.options.bearer {
            r.set("Authorization", &format!("Bearer {t}"));
        }
        for h in &self.options.headers {
            if let Some((k, v)) = h.split_once(':') {
                r.headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
        r
    }

    /// A handshake with no Origin and no credentials.
    pub fn bare_request(&self) -> Request {
        let key = base64_key();
        Request {
            target: self.path_and_query(),
            headers: vec![
                ("Host".into(), self.host_header.clone()),
                ("Upgrade".into(), "websocket".into()),
                ("Connection".into(), "Upgrade".into()),
                ("Sec-WebSocket-Key".into(), key),
                ("Sec-WebSocket-Version".into(), "13".into()),
                ("User-Agent".into(), "wsgate-audit".into()),
            ],
        }
    }
}

fn base64_key() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>())
}

fn client_config(
    options: &Options,
    problem: Arc<Mutex<Option<String>>>,
) -> Result<Arc<ClientConfig>, Unusable> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let webpki =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
            .build()
            .map_err(|e| Unusable(format!("system trust store: {e}")))?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Unusable(e.to_string()))?;
    let builder = if options.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Recording {
                inner: webpki,
                problem,
            }))
    } else {
        builder.with_webpki_verifier(webpki)
    };
    let config = match &options.client_cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let certs = read_pem_certs(cert)?;
            let key = read_pem_key(key)?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| Unusable(format!("--client-cert: {e}")))?
        }
    };
    Ok(Arc::new(config))
}

fn read_pem_certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, Unusable> {
    use rustls_pki_types::pem::PemObject as _;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| Unusable(format!("--client-cert {}: {e}", path.display())))?
        .collect();
    let certs = certs.map_err(|e| Unusable(format!("--client-cert {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Unusable(format!(
            "--client-cert {}: no certificate in it",
            path.display()
        )));
    }
    Ok(certs)
}

fn read_pem_key(path: &std::path::Path) -> Result<PrivateKeyDer<'static>, Unusable> {
    use rustls_pki_types::pem::PemObject as _;
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| Unusable(format!("--client-key {}: {e}", path.display())))
}

/// `--insecure`: verifies as usual, records what failed, and lets it pass.
#[derive(Debug)]
struct Recording {
    inner: Arc<WebPkiServerVerifier>,
    problem: Arc<Mutex<Option<String>>>,
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Err(e) =
            self.inner
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            *self.problem.lock().unwrap_or_else(PoisonError::into_inner) = Some(e.to_string());
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
