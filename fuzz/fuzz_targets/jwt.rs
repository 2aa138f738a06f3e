//! JWT verification of tokens whose header and claims are any JSON the
//! fuzzer writes, signed with the right HS256 secret, so that everything
//! past the signature is reached: the algorithm, `crit`, `aud`, `iss`,
//! `exp`, `nbf` and the user claim. Properties: no panic; a token is
//! admitted only if its header says HS256 and has no `crit`, its `aud` is
//! (or contains) the audience, its `iss` is the issuer, its `exp` has not
//! passed and its `nbf` has come (each within the leeway), and the user is
//! its `sub`: a non-empty string without control characters.
#![no_main]

use std::sync::LazyLock;
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use wsgate_policy::verify::JwtVerifier;

const SECRET: &str = "0123456789abcdef0123456789abcdef";
const NOW: u64 = 1_800_000_000;
const LEEWAY: f64 = 30.0;

static VERIFIER: LazyLock<JwtVerifier> = LazyLock::new(|| {
    let src = r#"
[[listener]]
bind = "127.0.0.1:0"

[auth.jwt]
hs256_secret_env = "S"
algorithms = ["HS256"]
audience = "chat"
issuer = "https://id.example.com"
leeway = "30s"

[[route]]
path = "/"
upstream = "ws://127.0.0.1:9/"
allow_missing_origin = true
auth = "jwt"
"#;
    let secret = |_: &str| Some(SECRET.to_owned());
    let config = wsgate_config::parse_with_env(src, std::path::Path::new("."), &secret)
        .expect("fuzz config");
    JwtVerifier::new(config.auth.jwt.as_ref().expect("[auth.jwt]"), None).expect("verifier")
});

static KEY: LazyLock<jsonwebtoken::EncodingKey> =
    LazyLock::new(|| jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()));

fuzz_target!(|data: &[u8]| {
    let (header, claims) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&br#"{"alg":"HS256","typ":"JWT"}"#[..], data),
    };
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let message = format!("{}.{}", b64.encode(header), b64.encode(claims));
    let Ok(signature) =
        jsonwebtoken::crypto::sign(message.as_bytes(), &KEY, jsonwebtoken::Algorithm::HS256)
    else {
        return;
    };
    let token = format!("{message}.{signature}");
    let now = UNIX_EPOCH + Duration::from_secs(NOW);
    let Ok(identity) = VERIFIER.verify(&token, now) else {
        return;
    };
    let header: Value = serde_json::from_slice(header).expect("an admitted header is JSON");
    let claims: Value = serde_json::from_slice(claims).expect("admitted claims are JSON");
    assert_eq!(header["alg"], "HS256", "{header}");
    assert!(header.get("crit").is_none(), "{header}");
    let audience_ok = match &claims["aud"] {
        Value::String(a) => a == "chat",
        Value::Array(all) => all.iter().any(|a| a == "chat"),
        _ => false,
    };
    assert!(audience_ok, "{claims}");
    assert_eq!(claims["iss"], "https://id.example.com", "{claims}");
    let seconds = |name: &str| claims[name].as_f64();
    let exp = seconds("exp").expect("an admitted token has a numeric exp");
    assert!(exp + LEEWAY >= NOW as f64, "{claims}");
    if let Some(nbf) = claims.get("nbf") {
        let nbf = nbf.as_f64().expect("a numeric nbf");
        assert!(nbf <= NOW as f64 + LEEWAY, "{claims}");
    }
    assert_eq!(claims["sub"], identity.user.as_str(), "{claims}");
    assert!(!identity.user.is_empty());
    assert!(!identity.user.chars().any(char::is_control), "{claims}");
});
