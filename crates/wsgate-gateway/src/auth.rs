//! The credentials stage, between the request checks and the upstream: it
//! verifies what [`Checked::credentials`] names and hands the outcome back to
//! policy. JWTs verify inline (microseconds); Basic passwords verify on the
//! blocking pool, a few at a time, since bcrypt and argon2 are slow on
//! purpose and a flood of guesses must not starve the relay's threads.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::Semaphore;
use wsgate_config::Config;
use wsgate_config::auth::JwtKeys;
use wsgate_policy::credentials::Credential;
use wsgate_policy::verify::{AuthFailure, BasicVerifier, Identity, JwtVerifier};

use wsgate_policy::{Checked, Verified};

/// Password hashes verified at once; more wait. Two cores' worth, doubled.
const BASIC_CONCURRENCY: usize = 4;

/// The verifiers a config asks for.
pub(crate) struct Verifiers {
    jwt: Option<JwtVerifier>,
    jwks: Option<crate::jwks::RemoteJwks>,
    basic: Option<Arc<BasicVerifier>>,
    basic_permits: Semaphore,
    forward: Option<crate::forward::Forward>,
}

impl Verifiers {
    /// Whether `[auth.basic]` names `user`: an open connection of a user
    /// taken out of the file is closed on reload.
    pub(crate) fn knows_basic_user(&self, user: &str) -> bool {
        self.basic.as_ref().is_some_and(|b| b.knows(user))
    }

    /// Builds them, reading the JWKS file; every problem is reported.
    pub(crate) fn new(config: &Config, errors: &mut Vec<String>) -> Verifiers {
        let jwks = config.auth.jwt.as_ref().and_then(|j| {
            let tls = match &j.keys {
                JwtKeys::JwksUrl { url, ca, .. } if url.scheme() == "https" => {
                    Some(crate::tls::upstream(ca.as_deref()))
                }
                _ => None,
            };
            let tls = match tls {
                Some(Err(e)) => {
                    errors.push(format!("auth.jwt.jwks_url: {e}"));
                    return None;
                }
                Some(Ok(c)) => Some(c),
                None => None,
            };
            crate::jwks::RemoteJwks::new(j, tls)
        });
        let jwt = config.auth.jwt.as_ref().and_then(|j| {
            let jwks = match &j.keys {
                JwtKeys::JwksFile(path) => match std::fs::read_to_string(path) {
                    Ok(text) => Some(text),
                    Err(e) => {
                        errors.push(format!(
                            "auth.jwt.keys: cannot read {}: {e}",
                            path.display()
                        ));
                        return None;
                    }
                },
                JwtKeys::Secret { .. } => None,
                JwtKeys::JwksUrl { .. } => return None,
            };
            JwtVerifier::new(j, jwks.as_deref())
                .map_err(|e| errors.push(format!("auth.jwt.keys: {e}")))
                .ok()
        });
        let basic = config.auth.basic.as_ref().and_then(|b| {
            BasicVerifier::new(b)
                .map(Arc::new)
                .map_err(|e| errors.push(format!("auth.basic: {e}")))
                .ok()
        });
        let forward = config.auth.forward.as_ref().and_then(|f| {
            let tls = match f.url.scheme() {
                "https" => match crate::tls::upstream(f.ca.as_deref()) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        errors.push(format!("auth.forward.url: {e}"));
                        return None;
                    }
                },
                _ => None,
            };
            Some(crate::forward::Forward::new(f.clone(), tls))
        });
        Verifiers {
            jwt,
            jwks,
            basic,
            basic_permits: Semaphore::new(BASIC_CONCURRENCY),
            forward,
        }
    }

    /// Verifies the presented credentials in order; the first that proves an
    /// identity wins, else the first failure is the answer.
    /// `tickets` is `None` where a ticket must not count (buying a ticket).
    pub(crate) async fn verify(
        &self,
        checked: &Checked,
        tickets: Option<&crate::store::Store>,
        origin: Option<&str>,
    ) -> Result<Verified, AuthFailure> {
        let mut first_failure = None;
        for (i, credential) in checked.credentials().iter().enumerate() {
            let result = match credential {
                Credential::Ticket { ticket } => match tickets {
                    None => Err(AuthFailure::Ticket("a ticket cannot buy a ticket".into())),
                    Some(store) => match store.redeem_ticket(ticket).await {
                        Ok(None) => Err(AuthFailure::Ticket("unknown, used or expired".into())),
                        Ok(Some(grant)) => {
                            wsgate_policy::verify::ticket(grant, &checked.route().path, origin)
                        }
                        Err(e) => Err(AuthFailure::StoreUnavailable(format!(
                            "the ticket store cannot be reached: {}",
                            e.0
                        ))),
                    },
                },
                other => self.one(other).await,
            };
            match result {
                Ok(identity) => {
                    return Ok(Verified {
                        identity,
                        credential: i,
                    });
                }
                Err(e) => {
                    first_failure.get_or_insert(e);
                }
            }
        }
        Err(first_failure.unwrap_or(AuthFailure::Missing))
    }

    async fn one(&self, credential: &Credential) -> Result<Identity, AuthFailure> {
        let unavailable = || AuthFailure::Invalid("method not configured".into());
        match credential {
            Credential::Bearer { token, .. } => match (&self.jwt, &self.jwks) {
                (Some(fixed), _) => fixed.verify(token, SystemTime::now()),
                (None, Some(remote)) => remote.verify(token).await,
                (None, None) => Err(unavailable()),
            },
            Credential::Forward {
                cookie,
                authorization,
            } => {
                let forward = self.forward.as_ref().ok_or_else(unavailable)?;
                forward
                    .check(cookie.as_deref(), authorization.as_deref())
                    .await
            }
            Credential::Ticket { .. } => Err(AuthFailure::Ticket(
                "tickets are redeemed by the store".into(),
            )),
            Credential::ClientCert { user, not_after } => {
                wsgate_policy::verify::client_cert(user.as_deref(), *not_after)
            }
            Credential::Basic { user, password } => {
                let verifier = Arc::clone(self.basic.as_ref().ok_or_else(unavailable)?);
                let _permit = self
                    .basic_permits
                    .acquire()
                    .await
                    .map_err(|_| unavailable())?;
                let (user, password) = (user.clone(), password.clone());
                tokio::task::spawn_blocking(move || verifier.verify(&user, &password))
                    .await
                    .unwrap_or_else(|_| Err(AuthFailure::Invalid("verification failed".into())))
            }
        }
    }
}
