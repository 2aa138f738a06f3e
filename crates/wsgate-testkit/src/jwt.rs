//! JWTs for tests: signed here, with keys generated here.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk};
use serde_json::{Value, json};

/// Seconds since the epoch, now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// Claims for `user`, expiring `ttl` seconds from now (negative: already expired).
pub fn claims(user: &str, ttl: i64) -> Value {
    let exp = now() as i64 + ttl;
    json!({ "sub": user, "exp": exp, "iat": now(), "aud": "chat", "iss": "https://id.example.com" })
}

/// An HS256 token.
pub fn hs256(secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign HS256")
}

/// A signing key of one algorithm, with its public JWKS.
pub struct Signer {
    alg: Algorithm,
    key: EncodingKey,
    kid: String,
}

impl Signer {
    /// A new ES256 (P-256) key.
    pub fn es256(kid: &str) -> Signer {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key");
        let key = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).expect("EC key");
        Signer {
            alg: Algorithm::ES256,
            key,
            kid: kid.into(),
        }
    }

    /// A new RS256 (2048-bit) key.
    pub fn rs256(kid: &str) -> Signer {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("RSA key");
        let key = EncodingKey::from_rsa_pem(pair.serialize_pem().as_bytes()).expect("RSA key");
        Signer {
            alg: Algorithm::RS256,
            key,
            kid: kid.into(),
        }
    }

    /// A token with these claims, naming this key's `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key).expect("sign")
    }

    /// The public key as one JWK.
    pub fn jwk(&self) -> Value {
        let mut jwk = jwk::Jwk::from_encoding_key(&self.key, self.alg).expect("JWK");
        jwk.common.key_id = Some(self.kid.clone());
        serde_json::to_value(jwk).expect("JWK JSON")
    }
}

/// A JWKS document of these public keys.
pub fn jwks(signers: &[&Signer]) -> String {
    json!({ "keys": signers.iter().map(|s| s.jwk()).collect::<Vec<_>>() }).to_string()
}

/// A token with `alg: none` and no signature.
pub fn unsigned(claims: &Value) -> String {
    use base64::Engine as _;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(claims)
    )
}

/// An htpasswd line with a real bcrypt hash (cost 4: fast in tests).
pub fn htpasswd_line(user: &str, password: &str) -> String {
    format!("{user}:{}", bcrypt::hash(password, 4).expect("bcrypt"))
}
