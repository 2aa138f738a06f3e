//! TLS on both legs: the listeners' server configs and the upstreams' roots.
//!
//! TLS 1.2 and 1.3 only, with aws-lc-rs as the one crypto provider (two
//! providers in one process make rustls refuse to pick, see crates.md).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use sha2::{Digest, Sha256};
use wsgate_config::{ClientCertMode, ClientCerts, Tls};
use wsgate_policy::credentials::ClientCert;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The verifier of a listener's client certificates (its CAs and CRLs).
pub(crate) type ClientVerifier = Arc<dyn rustls::server::danger::ClientCertVerifier>;

/// A listener's TLS setup and, for a generated certificate, its fingerprint.
pub(crate) struct ServerTls {
    pub(crate) config: Arc<ServerConfig>,
    /// The verifier inside `config`, kept so a reload can judge the
    /// certificates of connections opened before it.
    pub(crate) client_verifier: Option<ClientVerifier>,
    /// Set when the certificate was generated now (not kept from before).
    pub(crate) self_signed_fingerprint: Option<String>,
    /// The generated certificate, for the next reload to keep.
    pub(crate) self_signed: Option<Arc<SelfSigned>>,
}

/// A generated certificate and its key. A reload keeps them, so the
/// fingerprint clients were told to trust stays valid, but builds the rest
/// of the listener's TLS anew: the client CAs and CRLs may have changed.
pub(crate) struct SelfSigned {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

/// Builds a listener's server config from PEM files or a self-signed
/// certificate: `keep`, the one an earlier config generated, or a fresh one.
pub(crate) fn server(
    tls: &Tls,
    bind: std::net::SocketAddr,
    client_certs: Option<&ClientCerts>,
    keep: Option<&Arc<SelfSigned>>,
) -> Result<ServerTls, String> {
    let (chain, key, fingerprint, generated) = match (tls, keep) {
        (Tls::Files { cert, key }, _) => (load_certs(cert)?, load_key(key)?, None, None),
        (Tls::SelfSigned, Some(kept)) => (
            vec![kept.cert.clone()],
            kept.key.clone_key(),
            None,
            Some(Arc::clone(kept)),
        ),
        (Tls::SelfSigned, None) => {
            let (cert, key) = self_signed(bind)?;
            let fp = fingerprint(&cert);
            let made = Arc::new(SelfSigned {
                cert: cert.clone(),
                key: key.clone_key(),
            });
            (vec![cert], key, Some(fp), Some(made))
        }
    };
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| e.to_string())?;
    let client_verifier = client_certs.map(client_verifier).transpose()?;
    let builder = match &client_verifier {
        None => builder.with_no_client_auth(),
        Some(v) => builder.with_client_cert_verifier(Arc::clone(v)),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("certificate and key do not fit together: {e}"))?;
    // WebSockets here are HTTP/1.1 upgrades (RFC 6455), not RFC 8441 over h2.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Stateless session tickets: any number of clients can resume (rustls's
    // default keeps 256 sessions in memory, and a busy gateway's clients
    // evict each other's: none of 300 resumed in the test). TLS 1.3 resumes
    // with a fresh key exchange (rustls offers no PSK-only mode), so a
    // ticket key does not open recorded traffic; the keys are new with every
    // config, so a reload ends resumption of the sessions before it. A
    // resumed session brings back its client certificate unchecked, for
    // hours: the listener checks it again (`still_trusted`).
    config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()
        .map_err(|e| format!("session ticket keys: {e}"))?;
    Ok(ServerTls {
        config: Arc::new(config),
        client_verifier,
        self_signed_fingerprint: fingerprint,
        self_signed: generated,
    })
}

fn self_signed(
    bind: std::net::SocketAddr,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), String> {
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if !bind.ip().is_unspecified() {
        names.push(bind.ip().to_string());
    }
    let certified = rcgen::generate_simple_self_signed(names).map_err(|e| e.to_string())?;
    let key = PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der());
    Ok((certified.cert.der().clone(), key.into()))
}

/// Verifies client certificates against the listener's CAs and CRLs: chain,
/// validity period, key usage and revocation are checked by webpki during the
/// TLS handshake; "optional" lets a client without a certificate through.
fn client_verifier(c: &ClientCerts) -> Result<ClientVerifier, String> {
    use rustls::pki_types::CertificateRevocationListDer;
    let mut roots = RootCertStore::empty();
    for cert in load_certs(&c.ca)? {
        roots
            .add(cert)
            .map_err(|e| format!("{}: not a usable CA certificate: {e}", c.ca.display()))?;
    }
    let mut crls = Vec::new();
    for path in &c.crls {
        let list = CertificateRevocationListDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("cannot read CRLs from {}: {e}", path.display()))?;
        crls.extend(list);
    }
    let builder =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .with_crls(crls);
    let builder = match c.mode {
        ClientCertMode::Optional => builder.allow_unauthenticated(),
        ClientCertMode::Required => builder,
    };
    builder
        .build()
        .map_err(|e| format!("client certificate verifier: {e}"))
}

/// Checks a client certificate chain accepted earlier against `verifier`,
/// as a new TLS handshake would at `now`: after a reload the CAs or CRLs
/// may have changed, and a resumed session's certificate may have expired
/// since it was verified. `chain` is the end entity, then the
/// intermediates the client sent.
pub(crate) fn still_trusted(
    verifier: &ClientVerifier,
    chain: &[CertificateDer<'static>],
    now: rustls::pki_types::UnixTime,
) -> Result<(), String> {
    let Some((end_entity, intermediates)) = chain.split_first() else {
        return Ok(());
    };
    verifier
        .verify_client_cert(end_entity, intermediates, now)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The fields of a verified client certificate that can name a user.
pub(crate) fn client_cert(der: &CertificateDer<'_>) -> Option<ClientCert> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let (mut emails, mut dns) = (Vec::new(), Vec::new());
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::RFC822Name(e) => emails.push((*e).to_owned()),
                GeneralName::DNSName(d) => dns.push((*d).to_owned()),
                _ => {}
            }
        }
    }
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .map(str::to_owned);
    let not_after = u64::try_from(cert.validity().not_after.timestamp())
        .ok()
        .map(|s| std::time::UNIX_EPOCH + std::time::Duration::from_secs(s));
    Some(ClientCert {
        der: der.as_ref().to_vec(),
        subject: cert.subject().to_string(),
        cn,
        emails,
        dns,
        not_after,
    })
}

/// SHA-256 of a certificate, as browsers and `openssl x509 -fingerprint -sha256` show it.
pub(crate) fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let digest = Sha256::digest(cert.as_ref());
    digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read certificates from {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| format!("cannot read a private key from {}: {e}", path.display()))
}

/// The client config for an upstream, a JWKS URL or a forward-auth
/// service: the CA the config names alone, else the system's roots. A private CA replaces the public ones, as
/// nginx's `proxy_ssl_trusted_certificate` and HAProxy's `ca-file` do: an
/// upstream inside the operator's PKI should not also be impersonable by
/// any public CA that will issue for its name.
pub(crate) fn upstream(ca: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(ca) => {
            for cert in load_certs(ca)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: not a usable CA certificate: {e}", ca.display()))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
        }
    }
    if roots.is_empty() {
        return Err("no trusted root certificates: install ca-certificates, or name the CA in the config (a route's upstream_ca, [auth.jwt] jwks_ca, [auth.forward] ca)".into());
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
