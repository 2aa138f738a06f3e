//! Certificates made in the test: a CA, and leaf certificates it signs.

use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{CertificateParams, Issuer, KeyPair};
use rustls::pki_types::CertificateDer;

/// A throwaway CA whose files live in a temporary directory.
pub struct Pki {
    dir: tempfile::TempDir,
    ca_cert: rcgen::Certificate,
    ca_issuer: Issuer<'static, KeyPair>,
}

/// A leaf certificate and key on disk.
#[derive(Clone)]
pub struct Leaf {
    /// PEM certificate.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

impl Leaf {
    /// The certificate chain and key, read from their files.
    fn chain_and_key(
        &self,
    ) -> (
        Vec<CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    ) {
        use rustls::pki_types::pem::PemObject;
        let chain = CertificateDer::pem_file_iter(&self.cert)
            .expect("read")
            .collect::<Result<Vec<_>, _>>()
            .expect("certs");
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&self.key).expect("key");
        (chain, key)
    }
}

impl Pki {
    /// A new CA.
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "wsgate test CA");
        let key = KeyPair::generate().expect("key");
        let ca_cert = params.self_signed(&key).expect("CA");
        let ca_issuer = Issuer::new(params, key);
        Pki {
            dir,
            ca_cert,
            ca_issuer,
        }
    }

    /// The directory certificates are written to.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Writes the CA certificate and returns its path.
    pub fn ca_path(&self) -> PathBuf {
        let path = self.dir.path().join("ca.pem");
        std::fs::write(&path, self.ca_cert.pem()).expect("write CA");
        path
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    pub fn server(&self, file_stem: &str, names: &[&str]) -> Leaf {
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.ca_issuer).expect("sign");
        let leaf = Leaf {
            cert: self.dir.path().join(format!("{file_stem}.pem")),
            key: self.dir.path().join(format!("{file_stem}.key")),
        };
        std::fs::write(&leaf.cert, cert.pem()).expect("write cert");
        std::fs::write(&leaf.key, key.serialize_pem()).expect("write key");
        leaf
    }

    /// A client certificate for `email` (SAN) and `cn`, with serial `serial`;
    /// `expired` makes it one that ran out in 2021.
    pub fn client(
        &self,
        file_stem: &str,
        email: &str,
        cn: &str,
        serial: u64,
        expired: bool,
    ) -> Leaf {
        self.client_valid(file_stem, email, cn, serial, |params| {
            if expired {
                params.not_before = rcgen::date_time_ymd(2020, 1, 1);
                params.not_after = rcgen::date_time_ymd(2021, 1, 1);
            }
        })
    }

    /// A client certificate like [`Pki::client`]'s, valid from an hour ago
    /// until `until` (whole seconds, as certificates count them).
    pub fn client_until(
        &self,
        file_stem: &str,
        email: &str,
        cn: &str,
        serial: u64,
        until: std::time::SystemTime,
    ) -> Leaf {
        let epoch = rcgen::date_time_ymd(1970, 1, 1);
        let since =
            |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).expect("after 1970");
        let now = std::time::SystemTime::now();
        self.client_valid(file_stem, email, cn, serial, |params| {
            params.not_before = epoch + since(now - std::time::Duration::from_secs(3600));
            params.not_after = epoch + since(until);
        })
    }

    /// A client certificate with the given names and serial, its validity
    /// set by `validity` (else rcgen's default, valid now).
    fn client_valid(
        &self,
        file_stem: &str,
        email: &str,
        cn: &str,
        serial: u64,
        validity: impl FnOnce(&mut CertificateParams),
    ) -> Leaf {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.subject_alt_names.push(rcgen::SanType::Rfc822Name(
            email.to_owned().try_into().expect("email"),
        ));
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        params.serial_number = Some(rcgen::SerialNumber::from(serial));
        validity(&mut params);
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.ca_issuer).expect("sign");
        let leaf = Leaf {
            cert: self.dir.path().join(format!("{file_stem}.pem")),
            key: self.dir.path().join(format!("{file_stem}.key")),
        };
        std::fs::write(&leaf.cert, cert.pem()).expect("write cert");
        std::fs::write(&leaf.key, key.serialize_pem()).expect("write key");
        leaf
    }

    /// Writes a CRL revoking the certificates with these serials; returns its path.
    pub fn crl(&self, revoked: &[u64]) -> PathBuf {
        let params = rcgen::CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2024, 1, 1),
            next_update: rcgen::date_time_ymd(2099, 1, 1),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|&serial| rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from(serial),
                    revocation_time: rcgen::date_time_ymd(2025, 1, 1),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.ca_issuer).expect("sign CRL");
        let path = self.dir.path().join("clients.crl.pem");
        std::fs::write(&path, crl.pem().expect("CRL PEM")).expect("write CRL");
        path
    }

    /// A TLS client config that trusts this CA and presents `leaf`.
    pub fn client_config_with_cert(&self, leaf: &Leaf) -> Arc<rustls::ClientConfig> {
        self.client_config_with_cert_from(leaf)
    }

    /// A TLS client config that trusts this CA and presents `leaf`, which
    /// may come from another [`Pki`].
    pub fn client_config_with_cert_from(&self, leaf: &Leaf) -> Arc<rustls::ClientConfig> {
        let roots = self.roots();
        let (chain, key) = leaf.chain_and_key();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .expect("client cert");
        Arc::new(config)
    }

    /// A TLS client config that presents `leaf` and accepts whatever
    /// certificate the server shows (signatures still checked): for a
    /// gateway listening with a self-signed certificate.
    pub fn pinned_client_config_with_cert(&self, leaf: &Leaf) -> Arc<rustls::ClientConfig> {
        let (chain, key) = leaf.chain_and_key();
        let config = accepting_any_server()
            .with_client_auth_cert(chain, key)
            .expect("client cert");
        Arc::new(config)
    }

    /// A TLS client config that trusts only this CA.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let roots = self.roots();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }

    /// A TLS server config for a leaf (for upstreams under test).
    pub fn server_config(&self, leaf: &Leaf) -> Arc<rustls::ServerConfig> {
        let (certs, key) = leaf.chain_and_key();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server config");
        Arc::new(config)
    }
}

impl Pki {
    /// A root store holding only this CA.
    fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(self.ca_cert.der().to_vec()))
            .expect("add CA");
        roots
    }
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}

/// SHA-256 of a certificate, upper-case hex with colons.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(cert.as_ref());
    digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Connects over TLS accepting whatever certificate the server shows, and
/// returns it so the test can compare its fingerprint with what was printed.
pub async fn connect_pinned(
    tcp: tokio::net::TcpStream,
    name: &str,
) -> (
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    CertificateDer<'static>,
) {
    let config = accepting_any_server().with_no_client_auth();
    let server_name = rustls::pki_types::ServerName::try_from(name.to_owned()).expect("name");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(server_name, tcp)
        .await
        .expect("TLS");
    let cert = tls.get_ref().1.peer_certificates().expect("certificate")[0]
        .clone()
        .into_owned();
    (tls, cert)
}

/// A client config, but for the client's own certificate, that accepts
/// whatever certificate the server shows (see [`AnyCert`]).
fn accepting_any_server()
-> rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
}

/// Accepts any certificate (signatures still checked): for pinning by fingerprint in tests.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
