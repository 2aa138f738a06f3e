//! Verifying credentials: pure computation, the clock passed in.
//!
//! JWTs: signature and algorithm by jsonwebtoken, against the configured
//! algorithms only (never `none`; HS and RS/ES keys never mixed), with `iss`
//! and `aud` required when configured. A JWKS key verifies only the
//! algorithm its JWK names, if it names one; keys for encryption are left
//! out. `exp` is required and, like `nbf`, checked here against the
//! caller's clock with the configured leeway; both must be numbers (a
//! mistyped claim once skipped validation, CVE-2026-25537).
//!
//! Basic: bcrypt or argon2 verification, which is slow by design: callers run
//! it off the async threads. An unknown user costs the same as a wrong
//! password, so timing does not reveal which users exist.

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::PublicKeyUse;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use wsgate_config::AuthMethod;
use wsgate_config::auth::{BasicConfig, JwtConfig, JwtKeys};

/// Who a credential proved the client to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User name.
    pub user: String,
    /// How it was proved.
    pub method: AuthMethod,
    /// When the credential stops being valid, if it does.
    pub expires: Option<SystemTime>,
}

/// Why authentication did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    /// Nothing the route accepts was presented.
    Missing,
    /// Presented but not valid; the detail is for the log.
    Invalid(String),
    /// Valid once, expired now.
    Expired,
    /// A ticket that is unknown, used, expired, or used elsewhere than issued for.
    Ticket(String),
    /// The service that judges credentials could not be asked.
    Unavailable(String),
    /// The state store that holds tickets could not be asked.
    StoreUnavailable(String),
}

/// One verification key: its `kid`, the one algorithm its JWK names (if it
/// names one), the key.
struct Key {
    kid: Option<String>,
    alg: Option<Algorithm>,
    key: DecodingKey,
}

/// Verifies JWTs for `[auth.jwt]`.
pub struct JwtVerifier {
    keys: Vec<Key>,
    /// The accepted algorithms, each with the rules a token signed with it
    /// is checked by (built once: they allocate).
    validations: Vec<(Algorithm, Validation)>,
    user_claim: String,
    leeway: Duration,
}

impl JwtVerifier {
    /// Builds a verifier; `jwks` is the text of the JWKS file when the keys come from one.
    pub fn new(config: &JwtConfig, jwks: Option<&str>) -> Result<JwtVerifier, String> {
        let keys = match (&config.keys, jwks) {
            (JwtKeys::Secret { secret, .. }, _) => vec![Key {
                kid: None,
                alg: None,
                key: DecodingKey::from_secret(secret),
            }],
            (JwtKeys::JwksFile(_) | JwtKeys::JwksUrl { .. }, Some(text)) => {
                let source = match &config.keys {
                    JwtKeys::JwksUrl { url, .. } => url.to_string(),
                    JwtKeys::JwksFile(path) => path.display().to_string(),
                    JwtKeys::Secret { .. } => String::new(),
                };
                let set: jsonwebtoken::jwk::JwkSet = serde_json::from_str(text)
                    .map_err(|e| format!("{source}: not a JWKS document: {e}"))?;
                let mut keys = Vec::new();
                for (i, jwk) in set.keys.iter().enumerate() {
                    // A key for encryption (`use: enc`, or an `alg` that is
                    // not a signature algorithm) verifies nothing here: a
                    // set may hold both kinds (RFC 7517 4.2, 4.4). A key
                    // for a signature algorithm jsonwebtoken lacks (ES512)
                    // is left out alike: no token of it could verify.
                    let alg = match &jwk.common.key_algorithm {
                        None => None,
                        Some(named) => match Algorithm::try_from(*named) {
                            Ok(alg) => Some(alg),
                            Err(_) => continue,
                        },
                    };
                    if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature)
                    {
                        continue;
                    }
                    let key = DecodingKey::from_jwk(jwk)
                        .map_err(|e| format!("{source}: key {i} is not usable: {e}"))?;
                    keys.push(Key {
                        kid: jwk.common.key_id.clone(),
                        alg,
                        key,
                    });
                }
                if set.keys.is_empty() {
                    return Err(format!("{source} holds no keys"));
                }
                if keys.is_empty() {
                    return Err(format!(
                        "{source} holds no signing key this gateway can use ({} for encryption, for other uses, or of an algorithm not supported here)",
                        set.keys.len()
                    ));
                }
                keys
            }
            (_, None) => return Err("JWKS not loaded".into()),
        };
        let validations = config
            .algorithms
            .iter()
            .map(|a| {
                a.name()
                    .parse::<Algorithm>()
                    .map(|alg| (alg, validation(alg, config)))
                    .map_err(|e| format!("{}: {e}", a.name()))
            })
            .collect::<Result<_, _>>()?;
        Ok(JwtVerifier {
            keys,
            validations,
            user_claim: config.user_claim.clone(),
            leeway: config.leeway,
        })
    }

    /// Verifies a token at time `now`.
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<Identity, AuthFailure> {
        let claims = match self.verify_with_the_only_key(token) {
            Some(claims) => claims,
            None => self.verify_signature(token)?,
        };
        self.identity(&claims, now)
    }

    /// With one key and one algorithm (an HS secret, a JWKS of one key),
    /// the key and the rules do not depend on the header, so it is parsed
    /// once, by `decode`, instead of once more here to choose them: the
    /// same tokens pass. `None` when there is a choice, or when the token
    /// fails: then [`Self::verify_signature`] finds the reason to give.
    fn verify_with_the_only_key(&self, token: &str) -> Option<Map<String, Value>> {
        let ([key], [(alg, validation)]) = (&self.keys[..], &self.validations[..]) else {
            return None;
        };
        if key.alg.is_some_and(|named| named != *alg) {
            return None;
        }
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, validation).ok()?;
        // A `kid` must still name the key, by the rule that chooses one.
        (self.knows(data.header.kid.as_deref()) && data.header.crit.is_none())
            .then_some(data.claims)
    }

    /// The header chooses the rules and the key; then the signature and
    /// the claims jsonwebtoken checks.
    fn verify_signature(&self, token: &str) -> Result<Map<String, Value>, AuthFailure> {
        let invalid = |why: String| AuthFailure::Invalid(why);
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| invalid(format!("malformed token: {e}")))?;
        // `crit` lists extensions the token is invalid without; this
        // verifier understands none (RFC 7515 4.1.11).
        if let Some(crit) = &header.crit {
            return Err(invalid(format!(
                "the header's crit names extensions not supported here: {crit:?}"
            )));
        }
        let Some((_, validation)) = self.validations.iter().find(|(a, _)| *a == header.alg) else {
            return Err(invalid(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        };
        let key = self.key(header.kid.as_deref())?;
        // A JWK that names an algorithm is used with that one only (RFC 8725 3.1).
        if let Some(named) = key.alg
            && named != header.alg
        {
            return Err(invalid(format!(
                "the key for kid {:?} is for {named:?}, not {:?}",
                header.kid, header.alg
            )));
        }
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, validation)
            .map_err(|e| invalid(format!("rejected: {e}")))?;
        Ok(data.claims)
    }

    /// The identity verified claims name, if they are in force at `now`.
    fn identity(
        &self,
        claims: &Map<String, Value>,
        now: SystemTime,
    ) -> Result<Identity, AuthFailure> {
        let invalid = |why: String| AuthFailure::Invalid(why);
        let expires = numeric_date(claims, "exp")?.ok_or_else(|| invalid("no exp claim".into()))?;
        if now > expires + self.leeway {
            return Err(AuthFailure::Expired);
        }
        if let Some(nbf) = numeric_date(claims, "nbf")?
            && now + self.leeway < nbf
        {
            return Err(invalid("not valid yet (nbf)".into()));
        }
        let user = claims
            .get(&self.user_claim)
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
            .ok_or_else(|| {
                invalid(format!(
                    "no string claim {:?} to name the user",
                    self.user_claim
                ))
            })?;
        // The user goes to the upstream in a header, which cannot carry a
        // control character: admitted, such a user would reach the upstream
        // unnamed.
        if user.chars().any(char::is_control) {
            return Err(invalid(format!(
                "the claim {:?} names a user with a control character",
                self.user_claim
            )));
        }
        Ok(Identity {
            user: user.to_owned(),
            method: AuthMethod::Jwt,
            expires: Some(expires),
        })
    }

    /// Whether a token's `kid` names a key this verifier holds (or, without
    /// a `kid`, whether there is exactly one key).
    pub fn knows(&self, kid: Option<&str>) -> bool {
        self.key(kid).is_ok()
    }

    /// The `kid` in a token's header, if it has one and parses.
    pub fn kid_of(token: &str) -> Option<String> {
        jsonwebtoken::decode_header(token).ok()?.kid
    }

    fn key(&self, kid: Option<&str>) -> Result<&Key, AuthFailure> {
        let found = match kid {
            Some(kid) => self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)),
            None if self.keys.len() == 1 => self.keys.first(),
            None => None,
        };
        found.ok_or_else(|| AuthFailure::Invalid(format!("no key for kid {kid:?}")))
    }
}

/// What jsonwebtoken checks of a token signed with `alg`: the signature,
/// with that algorithm only; the audience and issuer when configured.
fn validation(alg: Algorithm, config: &JwtConfig) -> Validation {
    let mut validation = Validation::new(alg);
    // exp and nbf are checked by `verify` against the caller's clock.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    // jsonwebtoken compares `aud` and `iss` only when the token has them,
    // as strings: a token without them, or with a number in their place,
    // passes unless they are also required. A configured audience or
    // issuer must be in every token, or it restricts nothing.
    validation.required_spec_claims = HashSet::new();
    validation.validate_aud = config.audience.is_some();
    if let Some(aud) = &config.audience {
        validation.set_audience(&[aud]);
        validation.required_spec_claims.insert("aud".to_owned());
    }
    if let Some(iss) = &config.issuer {
        validation.set_issuer(&[iss]);
        validation.required_spec_claims.insert("iss".to_owned());
    }
    validation
}

/// A NumericDate claim: absent, or a non-negative number of seconds.
fn numeric_date(
    claims: &Map<String, Value>,
    name: &str,
) -> Result<Option<SystemTime>, AuthFailure> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e12)
            .map(|s| Some(UNIX_EPOCH + Duration::from_secs_f64(s)))
            .ok_or_else(|| {
                AuthFailure::Invalid(format!("claim {name} is not a number of seconds"))
            }),
    }
}

/// The identity a client certificate proves: the TLS layer verified the
/// chain, expiry and revocation; what is left is the field naming the user.
pub fn client_cert(
    user: Option<&str>,
    not_after: Option<SystemTime>,
) -> Result<Identity, AuthFailure> {
    let user = user.filter(|u| !u.is_empty()).ok_or_else(|| {
        AuthFailure::Invalid("the certificate lacks the field `user_from` names".into())
    })?;
    // As for a JWT's user: no header could name it to the upstream.
    if user.chars().any(char::is_control) {
        return Err(AuthFailure::Invalid(
            "the certificate's `user_from` field has a control character".into(),
        ));
    }
    Ok(Identity {
        user: user.to_owned(),
        method: AuthMethod::Mtls,
        expires: not_after,
    })
}

/// What a ticket was issued for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketGrant {
    /// Who bought it.
    pub identity: Identity,
    /// The route it opens, by path: the same route on every instance and
    /// after a reload, whatever the order of the config's routes.
    pub route: String,
    /// The origin that bought it (`None`: no Origin header).
    pub origin: Option<wsgate_config::origin::Origin>,
}

/// Checks that a redeemed ticket is used where it was issued for: the same
/// route, from the same origin. Single use and expiry are the store's part.
pub fn ticket(
    grant: TicketGrant,
    route: &str,
    origin: Option<&str>,
) -> Result<Identity, AuthFailure> {
    let origin = origin
        .map(wsgate_config::origin::Origin::parse)
        .transpose()
        .ok()
        .flatten();
    if grant.route != route {
        return Err(AuthFailure::Ticket("issued for another route".into()));
    }
    if grant.origin != origin {
        return Err(AuthFailure::Ticket("issued to another origin".into()));
    }
    Ok(Identity {
        method: AuthMethod::Ticket,
        ..grant.identity
    })
}

/// Verifies HTTP Basic credentials against `[auth.basic]`.
pub struct BasicVerifier {
    users: Vec<(String, String)>,
    /// Verified against on unknown users: a hash of the kind and cost of
    /// the file's first, so an unknown user takes as long as a known one.
    decoy: String,
}

/// The password the decoy hash is of; no user can have it, since unknown
/// users never reach a real hash.
const DECOY_PASSWORD: &str = "wsgate decoy password";

impl BasicVerifier {
    /// Builds a verifier: hashes the decoy password once, with the
    /// algorithm and parameters of the file's first hash.
    pub fn new(config: &BasicConfig) -> Result<BasicVerifier, String> {
        let first = config.users.first().map(|u| u.hash.as_str()).unwrap_or("");
        let decoy = if first.starts_with("$argon2") {
            argon2_like(first)?
        } else {
            let cost = bcrypt_cost(first).unwrap_or(bcrypt::DEFAULT_COST);
            bcrypt::hash(DECOY_PASSWORD, cost).map_err(|e| e.to_string())?
        };
        let users = config
            .users
            .iter()
            .map(|u| (u.user.clone(), u.hash.clone()))
            .collect();
        Ok(BasicVerifier { users, decoy })
    }

    /// Whether the file names `user` (a reload re-checks Basic users by it).
    pub fn knows(&self, user: &str) -> bool {
        self.users.iter().any(|(u, _)| u == user)
    }

    /// Verifies a user and password. Slow by design: run it off the async threads.
    pub fn verify(&self, user: &str, password: &str) -> Result<Identity, AuthFailure> {
        let Some((_, hash)) = self.users.iter().find(|(u, _)| u == user) else {
            let _ = password_matches(password, &self.decoy);
            return Err(AuthFailure::Invalid(format!("unknown user {user:?}")));
        };
        if password_matches(password, hash) {
            Ok(Identity {
                user: user.to_owned(),
                method: AuthMethod::Basic,
                expires: None,
            })
        } else {
            Err(AuthFailure::Invalid(format!("wrong password for {user:?}")))
        }
    }
}

/// The algorithm and cost a bcrypt or argon2 hash was made with, as text
/// (`bcrypt cost 12`, `$argon2id$v=19$m=19456,t=2,p=1`): hashes of one
/// kind take one time to verify.
pub fn hash_kind(hash: &str) -> String {
    if let Some(cost) = bcrypt_cost(hash) {
        return format!("bcrypt cost {cost:02}");
    }
    // `$argon2id$v=19$m=..,t=..,p=..$salt$hash`: all but the last two fields.
    hash.rsplitn(3, '$').nth(2).unwrap_or(hash).to_owned()
}

/// The cost of a bcrypt hash (`$2b$12$...`: 12); `None` for any other.
fn bcrypt_cost(hash: &str) -> Option<u32> {
    hash.starts_with("$2")
        .then(|| hash.get(4..6)?.parse().ok())
        .flatten()
}

/// Whether `password` is the one `hash` (bcrypt or argon2) is of.
fn password_matches(password: &str, hash: &str) -> bool {
    if hash.starts_with("$argon2") {
        use argon2::PasswordVerifier as _;
        argon2::PasswordHash::new(hash).is_ok_and(|parsed| {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
    } else {
        bcrypt::verify(password, hash).unwrap_or(false)
    }
}

/// The decoy password hashed with the argon2 variant, version and
/// parameters of `template`.
fn argon2_like(template: &str) -> Result<String, String> {
    use argon2::CustomizedPasswordHasher as _;
    let unusable = |e: argon2::password_hash::Error| {
        format!("the first user's argon2 hash is not usable as a template for the decoy: {e}")
    };
    let parsed = argon2::PasswordHash::new(template).map_err(|e| unusable(e.into()))?;
    let params = argon2::Params::try_from(&parsed).map_err(unusable)?;
    argon2::Argon2::default()
        .hash_password_customized(
            DECOY_PASSWORD.as_bytes(),
            b"wsgate decoy salt",
            Some(parsed.algorithm.as_str()),
            parsed.version,
            params,
        )
        .map(|h| h.to_string())
        .map_err(unusable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use jsonwebtoken::{EncodingKey, Header};
    use wsgate_config::auth::JwtAlgorithm;

    const SECRET: &[u8] = b"a test secret of thirty-two bytes!";

    fn config(keys: JwtKeys) -> JwtConfig {
        JwtConfig {
            keys,
            issuer: None,
            audience: Some("app".into()),
            algorithms: vec![JwtAlgorithm::HS256],
            from: Vec::new(),
            user_claim: "sub".into(),
            leeway: Duration::ZERO,
        }
    }

    fn token(alg: Algorithm, kid: Option<&str>, secret: &[u8], claims: Value) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret)).unwrap()
    }

    /// Tokens that pass, and tokens that fail for each reason `verify` names.
    fn tokens(now: u64) -> Vec<(&'static str, String)> {
        let good = serde_json::json!({"sub": "ann", "aud": "app", "exp": now + 60});
        let hs256 = |kid, secret, claims| token(Algorithm::HS256, kid, secret, claims);
        vec![
            ("good", hs256(None, SECRET, good.clone())),
            ("kid a", hs256(Some("a"), SECRET, good.clone())),
            ("kid b", hs256(Some("b"), SECRET, good.clone())),
            (
                "kid b, wrong secret",
                hs256(Some("b"), b"another secret", good.clone()),
            ),
            ("wrong secret", hs256(None, b"another secret", good.clone())),
            ("HS384", token(Algorithm::HS384, None, SECRET, good.clone())),
            (
                "expired",
                hs256(
                    None,
                    SECRET,
                    serde_json::json!({"sub": "ann", "aud": "app", "exp": now - 60}),
                ),
            ),
            (
                "no exp",
                hs256(
                    None,
                    SECRET,
                    serde_json::json!({"sub": "ann", "aud": "app"}),
                ),
            ),
            (
                "wrong aud",
                hs256(
                    None,
                    SECRET,
                    serde_json::json!({"sub": "ann", "aud": "other", "exp": now + 60}),
                ),
            ),
            (
                "no user",
                hs256(
                    None,
                    SECRET,
                    serde_json::json!({"aud": "app", "exp": now + 60}),
                ),
            ),
            ("garbage", "not.a.token".into()),
        ]
    }

    /// A configured audience and issuer are required: a token that lacks
    /// them, or carries them as anything but strings, is refused, as one
    /// naming another audience or issuer is (jsonwebtoken alone lets the
    /// first two kinds through). A user with a control character is
    /// refused: no header could name it to the upstream.
    #[test]
    fn a_configured_audience_and_issuer_must_be_in_the_token() {
        let at = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let verifier = JwtVerifier::new(
            &JwtConfig {
                issuer: Some("https://id.example.com".into()),
                ..config(JwtKeys::Secret {
                    env: "S".into(),
                    secret: SECRET.to_vec(),
                })
            },
            None,
        )
        .unwrap();
        // The token's claims with `claim` set to `value`, or removed (`None`).
        let answer = |claim: &str, value: Option<Value>| {
            let mut claims = serde_json::json!({
                "sub": "ann",
                "exp": 2_000_000_060u64,
                "aud": "app",
                "iss": "https://id.example.com",
            });
            let claims_map = claims.as_object_mut().unwrap();
            match value {
                Some(value) => drop(claims_map.insert(claim.into(), value)),
                None => drop(claims_map.remove(claim)),
            }
            let token = token(Algorithm::HS256, None, SECRET, claims);
            verifier.verify(&token, at).map(|id| id.user)
        };
        let invalid = |why: &str| Err(AuthFailure::Invalid(format!("rejected: {why}")));
        let missing = |claim: &str| invalid(&format!("Missing required claim: {claim}"));
        let json = |text: &str| Some(serde_json::from_str::<Value>(text).unwrap());

        for (claim, value, want) in [
            ("aud", json(r#""app""#), Ok("ann".to_owned())),
            ("aud", json(r#"["x", "app"]"#), Ok("ann".to_owned())),
            ("aud", None, missing("aud")),
            ("aud", json("5"), missing("aud")),
            ("aud", json("null"), missing("aud")),
            ("aud", json("[1]"), missing("aud")),
            ("aud", json("[]"), invalid("InvalidAudience")),
            ("aud", json(r#""other""#), invalid("InvalidAudience")),
            ("iss", None, missing("iss")),
            ("iss", json("7"), missing("iss")),
            ("iss", json("null"), missing("iss")),
            (
                "iss",
                json(r#""https://evil.example""#),
                invalid("InvalidIssuer"),
            ),
            (
                "sub",
                json(r#""ann\r\nX-Admin: 1""#),
                Err(AuthFailure::Invalid(
                    r#"the claim "sub" names a user with a control character"#.into(),
                )),
            ),
            ("sub", json(r#""José""#), Ok("José".to_owned())),
        ] {
            let what = format!("{claim} = {value:?}");
            assert_eq!(answer(claim, value), want, "{what}");
        }
    }

    /// In a JWKS, keys for encryption are left out, and a key that names an
    /// algorithm verifies tokens of that algorithm only.
    #[test]
    fn jwks_keys_for_encryption_are_left_out_and_a_named_algorithm_binds() {
        let at = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let b64 = |k: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(k);
        let (k, other) = (b64(SECRET), b64(b"another secret of thirty-two bytes"));
        let verifier = |algorithms: Vec<JwtAlgorithm>, keys: &str| {
            JwtVerifier::new(
                &JwtConfig {
                    algorithms,
                    ..config(JwtKeys::JwksFile("keys.json".into()))
                },
                Some(&format!(r#"{{"keys":[{keys}]}}"#)),
            )
        };
        let set = verifier(
            vec![JwtAlgorithm::HS256, JwtAlgorithm::HS384],
            &format!(
                r#"{{"kty":"oct","kid":"enc","use":"enc","k":"{other}"}},
                   {{"kty":"oct","kid":"oaep","alg":"RSA-OAEP","k":"{other}"}},
                   {{"kty":"oct","kid":"a","alg":"HS256","use":"sig","k":"{k}"}},
                   {{"kty":"oct","kid":"b","k":"{k}"}}"#
            ),
        )
        .unwrap();
        let good = serde_json::json!({"sub": "ann", "aud": "app", "exp": 2_000_000_060u64});
        let answer = |v: &JwtVerifier, alg, kid, secret: &[u8]| {
            v.verify(&token(alg, Some(kid), secret, good.clone()), at)
                .map(|id| id.user)
        };
        let invalid = |why: &str| Err(AuthFailure::Invalid(why.to_owned()));
        let other_secret = b"another secret of thirty-two bytes";
        assert_eq!(
            answer(&set, Algorithm::HS256, "a", SECRET),
            Ok("ann".into())
        );
        assert_eq!(
            answer(&set, Algorithm::HS384, "b", SECRET),
            Ok("ann".into())
        );
        assert_eq!(
            answer(&set, Algorithm::HS256, "b", SECRET),
            Ok("ann".into())
        );
        assert_eq!(
            answer(&set, Algorithm::HS384, "a", SECRET),
            invalid(r#"the key for kid Some("a") is for HS256, not HS384"#)
        );
        for kid in ["enc", "oaep"] {
            assert_eq!(
                answer(&set, Algorithm::HS256, kid, other_secret),
                invalid(&format!("no key for kid Some({kid:?})")),
            );
        }
        // One key and one algorithm take the short path; the binding holds there too.
        let one = verifier(
            vec![JwtAlgorithm::HS256],
            &format!(r#"{{"kty":"oct","kid":"a","alg":"HS384","k":"{k}"}}"#),
        )
        .unwrap();
        assert_eq!(
            answer(&one, Algorithm::HS256, "a", SECRET),
            invalid(r#"the key for kid Some("a") is for HS384, not HS256"#)
        );
        let only_encryption = verifier(
            vec![JwtAlgorithm::HS256],
            &format!(r#"{{"kty":"oct","kid":"enc","use":"enc","k":"{k}"}}"#),
        );
        assert_eq!(
            only_encryption.err().as_deref(),
            Some(
                "keys.json holds no signing key this gateway can use (1 for encryption, for other uses, or of an algorithm not supported here)"
            )
        );
    }

    /// A token whose header lists critical extensions is refused: none is
    /// understood here, so the token is invalid (RFC 7515 4.1.11).
    #[test]
    fn a_header_with_crit_is_refused() {
        let at = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let verifier = JwtVerifier::new(
            &config(JwtKeys::Secret {
                env: "S".into(),
                secret: SECRET.to_vec(),
            }),
            None,
        )
        .unwrap();
        let mut header = Header::new(Algorithm::HS256);
        header.crit = Some(vec!["b64".into()]);
        let good = serde_json::json!({"sub": "ann", "aud": "app", "exp": 2_000_000_060u64});
        let token =
            jsonwebtoken::encode(&header, &good, &EncodingKey::from_secret(SECRET)).unwrap();
        assert_eq!(
            verifier.verify(&token, at),
            Err(AuthFailure::Invalid(
                r#"the header's crit names extensions not supported here: ["b64"]"#.into()
            ))
        );
        header.crit = None;
        let token =
            jsonwebtoken::encode(&header, &good, &EncodingKey::from_secret(SECRET)).unwrap();
        assert_eq!(
            verifier.verify(&token, at).map(|id| id.user),
            Ok("ann".into())
        );
    }

    /// Whatever a token is, the one-key path answers as choosing the key
    /// from the header does, to the detail in the log.
    #[test]
    fn the_only_key_path_answers_as_the_header_path_does() {
        let at = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let secret = JwtKeys::Secret {
            env: "S".into(),
            secret: SECRET.to_vec(),
        };
        let k = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(SECRET);
        let jwks = format!(r#"{{"keys":[{{"kty":"oct","kid":"a","alg":"HS256","k":"{k}"}}]}}"#);
        let from_secret = JwtVerifier::new(&config(secret), None).unwrap();
        let from_jwks =
            JwtVerifier::new(&config(JwtKeys::JwksFile("keys.json".into())), Some(&jwks)).unwrap();
        let mut passed = Vec::new();
        for (name, verifier) in [("secret", &from_secret), ("jwks", &from_jwks)] {
            for (what, token) in tokens(2_000_000_000) {
                let got = verifier.verify(&token, at);
                let by_header = verifier
                    .verify_signature(&token)
                    .and_then(|claims| verifier.identity(&claims, at));
                assert_eq!(got, by_header, "{name}: {what}");
                if got.is_ok() {
                    passed.push(format!("{name}: {what}"));
                }
            }
        }
        // A secret has no kid, so a token naming one is refused; the JWKS's
        // one key is named `a`, and a token may leave the kid out.
        assert_eq!(passed, ["secret: good", "jwks: good", "jwks: kid a"]);
        let refused = |v: &JwtVerifier, what: &str| {
            let token = tokens(2_000_000_000)
                .into_iter()
                .find(|(w, _)| *w == what)
                .unwrap()
                .1;
            v.verify(&token, at).unwrap_err()
        };
        assert_eq!(
            refused(&from_secret, "kid a"),
            AuthFailure::Invalid("no key for kid Some(\"a\")".into())
        );
        assert_eq!(
            refused(&from_jwks, "kid b, wrong secret"),
            AuthFailure::Invalid("no key for kid Some(\"b\")".into())
        );
        assert_eq!(
            refused(&from_secret, "HS384"),
            AuthFailure::Invalid("algorithm HS384 is not accepted".into())
        );
        assert_eq!(refused(&from_secret, "expired"), AuthFailure::Expired);
    }

    /// An unknown user is verified against a decoy of the file's kind and
    /// cost, so answering takes as long as for a known user.
    #[test]
    fn the_decoy_hash_is_of_the_kind_and_cost_of_the_files_first() {
        use argon2::PasswordHasher as _;
        use wsgate_config::auth::HtpasswdEntry;
        let params = argon2::Params::new(64, 2, 1, None).unwrap();
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
                .hash_password_with_salt(b"pw", b"a salt of sixteen")
                .unwrap()
                .to_string();
        let bcrypt4 = bcrypt::hash("pw", 4).unwrap();
        let verifier = |hashes: &[&str]| {
            BasicVerifier::new(&BasicConfig {
                users: hashes
                    .iter()
                    .enumerate()
                    .map(|(i, h)| HtpasswdEntry {
                        user: format!("u{i}"),
                        hash: (*h).to_owned(),
                    })
                    .collect(),
                realm: "r".into(),
            })
            .unwrap()
        };
        let head = |h: &str| hash_kind(h);
        let argon_first = verifier(&[&argon, &bcrypt4]);
        assert_eq!(head(&argon_first.decoy), "$argon2id$v=19$m=64,t=2,p=1");
        assert_eq!(head(&argon_first.decoy), head(&argon));
        let bcrypt_first = verifier(&[&bcrypt4, &argon]);
        assert_eq!(head(&bcrypt_first.decoy), "bcrypt cost 04");
        // Both kinds still verify, and an unknown user is refused as such.
        for v in [&argon_first, &bcrypt_first] {
            assert_eq!(v.verify("u0", "pw").map(|id| id.user), Ok("u0".into()));
            assert_eq!(v.verify("u1", "pw").map(|id| id.user), Ok("u1".into()));
            assert_eq!(
                v.verify("u1", "wrong"),
                Err(AuthFailure::Invalid(r#"wrong password for "u1""#.into()))
            );
            assert_eq!(
                v.verify("nobody", "pw"),
                Err(AuthFailure::Invalid(r#"unknown user "nobody""#.into()))
            );
        }
    }

    /// A certificate's user field is held to the JWT user's rule.
    #[test]
    fn a_certificate_user_with_a_control_character_is_refused() {
        assert_eq!(
            client_cert(Some("ann@example.com"), None).map(|id| id.user),
            Ok("ann@example.com".to_owned())
        );
        assert_eq!(
            client_cert(Some("ann\n"), None),
            Err(AuthFailure::Invalid(
                "the certificate's `user_from` field has a control character".into()
            ))
        );
    }
}
