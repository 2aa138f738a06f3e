//! The signed identity assertion: a short-lived ES256 JWT the gateway adds to
//! each upstream handshake, naming what it verified. Its public key is served
//! as a JWKS at `[assertion].jwks_path`, so an upstream that can also be
//! reached around the gateway can tell the gateway's requests from forged
//! ones: identity headers alone cannot do that.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use serde_json::json;
use sha2::{Digest, Sha256};
use wsgate_config::Assertion;
use wsgate_policy::verify::Identity;

/// Signs assertions with the gateway's key.
pub(crate) struct Signer {
    key: EncodingKey,
    kid: String,
    jwks: String,
    config: Assertion,
}

impl Signer {
    /// Loads the configured key, or makes one (it then changes at each start).
    pub(crate) fn new(config: &Assertion) -> Result<Signer, String> {
        let pem = match &config.key {
            Some(path) => {
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                .map_err(|e| e.to_string())?
                .serialize_pem(),
        };
        let key = EncodingKey::from_ec_pem(pem.as_bytes())
            .map_err(|e| format!("not an ES256 (P-256) private key: {e}"))?;
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).map_err(|e| e.to_string())?;
        // RFC 7638-style: the kid follows from the public key, so instances
        // sharing a key file publish the same kid.
        let public = serde_json::to_string(&jwk.algorithm).map_err(|e| e.to_string())?;
        let kid: String = Sha256::digest(public.as_bytes())
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect();
        jwk.common.key_id = Some(kid.clone());
        let jwks = json!({ "keys": [jwk] }).to_string();
        Ok(Signer {
            key,
            kid,
            jwks,
            config: config.clone(),
        })
    }

    /// The header assertions travel in.
    pub(crate) fn header(&self) -> &str {
        &self.config.header
    }

    /// The path the JWKS is served at.
    pub(crate) fn jwks_path(&self) -> &str {
        &self.config.jwks_path
    }

    /// The public JWKS document.
    pub(crate) fn jwks(&self) -> &str {
        &self.jwks
    }

    /// An assertion for one upstream handshake.
    pub(crate) fn sign(
        &self,
        identity: Option<&Identity>,
        route: &str,
        client: IpAddr,
    ) -> Option<String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
        let mut claims = json!({
            "iss": "wsgate",
            "iat": now,
            "exp": now + self.config.ttl.as_secs().max(1),
            "jti": format!("{:032x}", rand::random::<u128>()),
            "route": route,
            "client_ip": client.to_string(),
            "auth": identity.map_or("none", |i| i.method.name()),
        });
        if let Some(id) = identity {
            claims["sub"] = id.user.clone().into();
        }
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.key).ok()
    }
}
