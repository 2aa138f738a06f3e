//! TLS for the harness: the echo upstream's server config, the load
//! generator's client config, and a throwaway CA and `localhost`
//! certificate for a run, made with rcgen.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsConnector;

/// A server config from PEM files.
pub fn server_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| anyhow::anyhow!("{}: {e}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()?;
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| anyhow::anyhow!("{}: {e}", key.display()))?;
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(Arc::new(config))
}

/// A client connector trusting `ca` (a PEM file), or the system's roots.
pub fn connector(ca: Option<&Path>) -> anyhow::Result<TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            for cert in CertificateDer::pem_file_iter(path)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
            {
                roots.add(cert?)?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// File names a run's PKI is written under.
pub struct Pki {
    /// The CA certificate the load generator trusts.
    pub ca: std::path::PathBuf,
    /// The server's certificate chain (leaf, then CA).
    pub cert: std::path::PathBuf,
    /// The server's private key.
    pub key: std::path::PathBuf,
    /// Certificate chain and key in one file, as HAProxy takes them.
    pub combined: std::path::PathBuf,
}

/// Makes a CA and a certificate for `localhost` and 127.0.0.1 under `dir`.
pub fn make_pki(dir: &Path) -> anyhow::Result<Pki> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "wsgate-perf CA");
    let ca = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate()?;
    let leaf_params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    let leaf = leaf_params.signed_by(&leaf_key, &issuer)?;
    let pki = Pki {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        combined: dir.join("server-combined.pem"),
    };
    let chain = format!("{}{}", leaf.pem(), ca.pem());
    std::fs::write(&pki.ca, ca.pem())?;
    std::fs::write(&pki.cert, &chain)?;
    std::fs::write(&pki.key, leaf_key.serialize_pem())?;
    std::fs::write(
        &pki.combined,
        format!("{chain}{}", leaf_key.serialize_pem()),
    )?;
    Ok(pki)
}
