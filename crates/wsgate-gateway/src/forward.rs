//! Forward auth: the application judges the client's own cookie session.
//!
//! The gateway asks `[auth.forward].url` with the client's `Cookie` and
//! `Authorization`; a 2xx admits, naming the user in a response header; 401
//! and 403 refuse; anything else, or no answer in time, refuses as
//! `auth_unavailable` (it fails closed). Verdicts of 2xx, 401 and 403 are
//! reused for `cache_ttl` per credential, so a page opening several sockets
//! asks once; the cache is keyed by a hash (no cookie is kept) and bounded.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use http::header;
use rustls::ClientConfig;
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use wsgate_config::AuthMethod;
use wsgate_config::auth::ForwardConfig;
use wsgate_policy::verify::{AuthFailure, Identity};

/// Largest forward-auth answer body read (it is ignored anyway).
const MAX_ANSWER: usize = 64 * 1024;

/// Cached verdicts held at most; past this the cache is emptied.
const MAX_CACHED: usize = 10_000;

type Verdict = Result<String, String>;

/// The forward-auth client.
pub(crate) struct Forward {
    config: ForwardConfig,
    tls: Option<Arc<ClientConfig>>,
    cache: std::sync::Mutex<HashMap<[u8; 32], (Verdict, Instant)>>,
}

impl Forward {
    pub(crate) fn new(config: ForwardConfig, tls: Option<Arc<ClientConfig>>) -> Self {
        Forward {
            config,
            tls,
            cache: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Asks (or remembers) the application's verdict on these credentials.
    pub(crate) async fn check(
        &self,
        cookie: Option<&str>,
        authorization: Option<&str>,
    ) -> Result<Identity, AuthFailure> {
        let key: [u8; 32] = Sha256::new()
            .chain_update(cookie.unwrap_or(""))
            .chain_update([0u8])
            .chain_update(authorization.unwrap_or(""))
            .finalize()
            .into();
        let verdict = match self.cached(&key) {
            Some(v) => v,
            None => {
                let asked =
                    tokio::time::timeout(self.config.timeout, self.ask(cookie, authorization))
                        .await;
                let verdict = asked.unwrap_or_else(|_| {
                    Err(AuthFailure::Unavailable(
                        "forward auth did not answer in time".into(),
                    ))
                });
                match verdict {
                    Err(AuthFailure::Unavailable(why)) => {
                        return Err(AuthFailure::Unavailable(why));
                    }
                    Ok(user) => self.remember(key, Ok(user)),
                    Err(AuthFailure::Invalid(why)) => self.remember(key, Err(why)),
                    Err(other) => return Err(other),
                }
            }
        };
        let user = verdict.map_err(AuthFailure::Invalid)?;
        let expires = self.config.max_age.map(|d| SystemTime::now() + d);
        Ok(Identity {
            user,
            method: AuthMethod::Forward,
            expires,
        })
    }

    fn cached(&self, key: &[u8; 32]) -> Option<Verdict> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let (verdict, at) = cache.get(key)?;
        let fresh = self.config.cache.is_some_and(|ttl| at.elapsed() < ttl);
        fresh.then(|| verdict.clone())
    }

    fn remember(&self, key: [u8; 32], verdict: Verdict) -> Verdict {
        if self.config.cache.is_some() {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
            cache.insert(key, (verdict.clone(), Instant::now()));
        }
        verdict
    }

    async fn ask(
        &self,
        cookie: Option<&str>,
        authorization: Option<&str>,
    ) -> Result<String, AuthFailure> {
        let mut headers = Vec::new();
        headers.extend(cookie.map(|c| (header::COOKIE, c)));
        headers.extend(authorization.map(|a| (header::AUTHORIZATION, a)));
        let answer = crate::fetch::get(&self.config.url, self.tls.as_ref(), &headers, MAX_ANSWER)
            .await
            .map_err(|e| AuthFailure::Unavailable(format!("forward auth: {e}")))?;
        let status = answer.status;
        if status.is_success() {
            let user = answer
                .headers
                .get(self.config.user_header.as_str())
                .and_then(|v| v.to_str().ok())
                .filter(|u| !u.is_empty());
            return user.map(str::to_owned).ok_or_else(|| {
                AuthFailure::Invalid(format!(
                    "forward auth answered {status} without {}",
                    self.config.user_header
                ))
            });
        }
        match status.as_u16() {
            401 | 403 => Err(AuthFailure::Invalid(format!(
                "forward auth answered {status}"
            ))),
            _ => Err(AuthFailure::Unavailable(format!(
                "forward auth answered {status}"
            ))),
        }
    }
}
