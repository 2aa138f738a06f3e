//! JWKS fetched from the issuer's URL, cached, and refreshed when a token
//! names a key the cache lacks (key rotation) or the keys are older than
//! `jwks_max_age` (key removal); never more often than `jwks_refresh_min`,
//! and one fetch at a time, so tokens with made-up `kid`s cannot turn the
//! gateway against the issuer. When a fetch fails the last good keys stay.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::header;
use rustls::ClientConfig;
use tokio::time::Instant;
use wsgate_config::auth::{JwtConfig, JwtKeys};
use wsgate_policy::verify::{AuthFailure, Identity, JwtVerifier};

/// Time allowed for one fetch.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest JWKS document read.
const MAX_JWKS: usize = 1024 * 1024;

/// Keys from a JWKS URL.
pub(crate) struct RemoteJwks {
    config: JwtConfig,
    url: url::Url,
    refresh_min: Duration,
    max_age: Duration,
    tls: Option<Arc<ClientConfig>>,
    current: std::sync::RwLock<Option<(Arc<JwtVerifier>, Instant)>>,
    last_attempt: std::sync::Mutex<Option<Instant>>,
    fetching: tokio::sync::Mutex<()>,
}

impl RemoteJwks {
    /// `None` when `config` does not name a JWKS URL.
    pub(crate) fn new(config: &JwtConfig, tls: Option<Arc<ClientConfig>>) -> Option<RemoteJwks> {
        let JwtKeys::JwksUrl {
            url,
            refresh_min,
            max_age,
            ..
        } = &config.keys
        else {
            return None;
        };
        Some(RemoteJwks {
            config: config.clone(),
            url: url.clone(),
            refresh_min: *refresh_min,
            max_age: *max_age,
            tls,
            current: std::sync::RwLock::new(None),
            last_attempt: std::sync::Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    /// Verifies a token, fetching keys first when they are missing or stale.
    pub(crate) async fn verify(&self, token: &str) -> Result<Identity, AuthFailure> {
        let kid = JwtVerifier::kid_of(token);
        let stale = match self.current() {
            None => true,
            Some((v, fetched)) => !v.knows(kid.as_deref()) || fetched.elapsed() > self.max_age,
        };
        if stale {
            self.refresh().await;
        }
        match self.current() {
            Some((v, _)) => v.verify(token, SystemTime::now()),
            None => Err(AuthFailure::Unavailable(format!(
                "no keys from {} yet",
                self.url
            ))),
        }
    }

    fn current(&self) -> Option<(Arc<JwtVerifier>, Instant)> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn refresh(&self) {
        let _one_at_a_time = self.fetching.lock().await;
        {
            let mut last = self.last_attempt.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| t.elapsed() < self.refresh_min) {
                return;
            }
            *last = Some(Instant::now());
        }
        let accept = [(header::ACCEPT, "application/json")];
        let fetched = tokio::time::timeout(
            FETCH_TIMEOUT,
            crate::fetch::get(&self.url, self.tls.as_ref(), &accept, MAX_JWKS),
        )
        .await;
        let verifier = match fetched {
            Ok(Ok(f)) if f.status.is_success() => std::str::from_utf8(&f.body)
                .map_err(|e| e.to_string())
                .and_then(|text| JwtVerifier::new(&self.config, Some(text))),
            Ok(Ok(f)) => Err(format!("answered {}", f.status)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err("timed out".into()),
        };
        match verifier {
            Ok(v) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) =
                    Some((Arc::new(v), Instant::now()));
                tracing::info!(url = %self.url, "fetched JWKS");
            }
            Err(e) => {
                tracing::warn!(url = %self.url, error = %e, "cannot fetch JWKS; keeping the keys there are")
            }
        }
    }
}
