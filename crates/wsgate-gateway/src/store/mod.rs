//! The state that connections share: handshakes per minute and open
//! connections per client address and per user (each per route), one-time
//! tickets, and revocations.
//!
//! One interface, chosen by `[store] kind`: [`memory`] keeps it in this
//! process; [`redis`] shares it between every instance that names the same
//! server. Every check is a check-and-count in one step, so two handshakes
//! racing for the last slot cannot both get it. An open connection holds a
//! [`Lease`]; dropping it gives its counts back, whichever way the
//! connection ended.
//!
//! While Redis cannot be reached, `[store] on_error` decides: `deny`
//! refuses what needs the store (503 `store_unavailable`), `allow` admits
//! without counting. Tickets and revocations are never assumed: a ticket
//! that cannot be looked up does not open anything.

pub(crate) mod memory;
pub(crate) mod redis;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use wsgate_config::origin::Origin;
use wsgate_config::{AuthMethod, OnStoreError, Route};
use wsgate_policy::Reason;
use wsgate_policy::limits::ClientKey;
use wsgate_policy::verify::{Identity, TicketGrant};

/// A limit that refused a handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Denied {
    pub(crate) reason: Reason,
    /// In words, for the log.
    pub(crate) detail: String,
    /// When trying again may succeed (`Retry-After`).
    pub(crate) retry_after: Option<Duration>,
    /// The config key of the limit that was hit, when one was (the
    /// `kind` label of `wsgate_limit_hits_total`).
    pub(crate) limit: Option<&'static str>,
}

/// The store could not be asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoreError(pub(crate) String);

/// The counts one open connection holds.
#[derive(Debug)]
pub(crate) enum Lease {
    /// Nothing counted (the store was unreachable and `on_error = "allow"`).
    None,
    #[expect(dead_code, reason = "held for what its Drop gives back")]
    Memory(memory::Lease),
    #[expect(dead_code, reason = "held for what its Drop gives back")]
    Redis(redis::Lease),
}

/// Where the shared state lives.
pub(crate) enum Store {
    Memory(Arc<memory::Memory>),
    Redis {
        redis: Arc<redis::Redis>,
        on_error: OnStoreError,
    },
}

impl Store {
    /// The memory store.
    pub(crate) fn memory(ticket_ttl: Duration) -> Self {
        Store::Memory(memory::Memory::new(ticket_ttl))
    }

    /// What an unreachable store means for a handshake.
    fn unreachable<T>(&self, e: StoreError, allowed: T) -> Result<T, Denied> {
        match self {
            Store::Redis {
                on_error: OnStoreError::Allow,
                ..
            } => Ok(allowed),
            _ => Err(unavailable(e)),
        }
    }

    /// Whether the store answers (the memory store always does).
    pub(crate) fn reachable(&self) -> bool {
        match self {
            Store::Memory(_) => true,
            Store::Redis { redis, .. } => redis.reachable(),
        }
    }

    /// Counts one handshake from `client` on `route` (its limits as now configured).
    pub(crate) async fn handshake(&self, route: &Route, client: ClientKey) -> Result<(), Denied> {
        match self {
            Store::Memory(m) => m.handshake(route, client),
            Store::Redis { redis, .. } => match redis.handshake(route, client).await {
                Ok(verdict) => verdict,
                Err(e) => self.unreachable(e, ()),
            },
        }
    }

    /// Takes a connection slot for `client` (and `user`) on `route`,
    /// after checking that `user` is not revoked.
    pub(crate) async fn open(
        &self,
        route: &Route,
        client: ClientKey,
        user: Option<&str>,
    ) -> Result<Lease, Denied> {
        match self {
            Store::Memory(m) => m.open(route, client, user).map(Lease::Memory),
            Store::Redis { redis, .. } => match redis.open(route, client, user).await {
                Ok(verdict) => verdict.map(Lease::Redis),
                Err(e) => self.unreachable(e, Lease::None),
            },
        }
    }

    /// Stores a ticket for `grant`; an error when the store is full
    /// (memory) or unreachable.
    pub(crate) async fn issue_ticket(&self, grant: &TicketGrant) -> Result<String, StoreError> {
        match self {
            Store::Memory(m) => m
                .tickets
                .issue(grant.clone())
                .ok_or_else(|| StoreError("too many unused tickets".into())),
            Store::Redis { redis, .. } => redis.issue_ticket(&encode_grant(grant)).await,
        }
    }

    /// Takes a ticket out: it works once, and only before it expires. One
    /// that [`new_ticket`] could not have made is unknown without asking:
    /// junk costs no round trip to Redis, and is `ticket_invalid` even
    /// while Redis is down.
    pub(crate) async fn redeem_ticket(
        &self,
        ticket: &str,
    ) -> Result<Option<TicketGrant>, StoreError> {
        if !well_formed(ticket) {
            return Ok(None);
        }
        match self {
            Store::Memory(m) => Ok(m.tickets.redeem(ticket)),
            Store::Redis { redis, .. } => Ok(redis
                .redeem_ticket(ticket)
                .await?
                .and_then(|v| decode_grant(&v))),
        }
    }

    /// Refuses `user`'s handshakes until `until` and closes their connections
    /// on every instance (`live` is this one's).
    pub(crate) async fn revoke(
        &self,
        user: &str,
        until: SystemTime,
        live: &crate::live::Live,
    ) -> Result<usize, StoreError> {
        match self {
            Store::Memory(m) => {
                m.revoke(user, until);
                Ok(live.revoke(user))
            }
            Store::Redis { redis, .. } => {
                redis.revoke(user, until).await?;
                // The channel tells this instance too; closing here as well
                // does not wait for the round trip.
                Ok(live.revoke(user))
            }
        }
    }
}

/// What a full connection count was counting.
pub(crate) enum Counted<'a> {
    Client(&'a ClientKey),
    User(&'a str),
}

/// The refusal for a full connection count, the same from every store.
pub(crate) fn full(counted: Counted<'_>, max: u32) -> Denied {
    let (detail, limit) = match counted {
        Counted::Client(c) => (
            format!("{c} already holds {max} connections on this route"),
            "max_conns_per_ip",
        ),
        Counted::User(u) => (
            format!("user {u:?} already holds {max} connections on this route"),
            "max_conns_per_user",
        ),
    };
    Denied {
        reason: Reason::TooManyConnections,
        detail,
        retry_after: None,
        limit: Some(limit),
    }
}

/// The refusal for a revoked user.
pub(crate) fn revoked(user: &str, left: Option<Duration>) -> Denied {
    let detail = match left {
        Some(d) => format!("user {user:?} is revoked for {}s more", retry_secs(d)),
        None => format!("user {user:?} is revoked"),
    };
    Denied {
        reason: Reason::Forbidden,
        detail,
        retry_after: None,
        limit: None,
    }
}

fn unavailable(e: StoreError) -> Denied {
    Denied {
        reason: Reason::StoreUnavailable,
        detail: format!(
            "the store cannot be reached ({}); [store] on_error = \"deny\"",
            e.0
        ),
        retry_after: None,
        limit: None,
    }
}

/// 256 random bits, base64url.
pub(crate) fn new_ticket() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// Whether `ticket` has the shape of one [`new_ticket`] makes: 32 bytes in
/// unpadded base64url, 43 characters.
fn well_formed(ticket: &str) -> bool {
    ticket.len() == 43
        && ticket
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A grant as stored in Redis.
fn encode_grant(grant: &TicketGrant) -> String {
    let expires = grant
        .identity
        .expires
        .and_then(|e| e.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs());
    serde_json::json!({
        "user": grant.identity.user,
        "method": grant.identity.method.name(),
        "expires": expires,
        "route": grant.route,
        "origin": grant.origin.as_ref().map(ToString::to_string),
    })
    .to_string()
}

fn decode_grant(value: &str) -> Option<TicketGrant> {
    let v: serde_json::Value = serde_json::from_str(value).ok()?;
    let method = [
        AuthMethod::Jwt,
        AuthMethod::Basic,
        AuthMethod::Mtls,
        AuthMethod::Ticket,
        AuthMethod::Forward,
    ]
    .into_iter()
    .find(|m| Some(m.name()) == v["method"].as_str())?;
    let route = v["route"].as_str()?.to_owned();
    let origin = match v["origin"].as_str() {
        Some(o) => Some(Origin::parse(o).ok()?),
        None => None,
    };
    Some(TicketGrant {
        identity: Identity {
            user: v["user"].as_str()?.to_owned(),
            method,
            expires: v["expires"]
                .as_u64()
                .map(|s| UNIX_EPOCH + Duration::from_secs(s)),
        },
        route,
        origin,
    })
}

/// Seconds to wait, rounded up, at least one (a `Retry-After` of 0 invites a retry storm).
pub(crate) fn retry_secs(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_shape_of_a_ticket_is_looked_up() {
        for _ in 0..64 {
            assert!(well_formed(&new_ticket()));
        }
        let t = new_ticket();
        for junk in [
            "",
            &t[1..],
            &format!("{t}A"),
            &t.replacen(|c: char| c.is_ascii_alphanumeric(), "+", 1),
            &"é".repeat(21),
        ] {
            assert!(!well_formed(junk), "{junk:?}");
        }
    }

    #[tokio::test]
    async fn a_junk_ticket_is_unknown_without_asking_the_store() {
        // A Redis store not connected (it connects in the background, to a
        // socket bound here and never accepted on): asking it is an error.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let config = wsgate_config::RedisStore {
            url: format!("redis://{}/", silent.local_addr().unwrap()),
            on_error: OnStoreError::Deny,
            timeout: Duration::from_millis(100),
            lease: Duration::from_secs(30),
            prefix: "wsgate".into(),
        };
        let metrics = (Default::default(), Default::default());
        let redis = redis::Redis::new(&config, Duration::from_secs(30), metrics)
            .unwrap_or_else(|e| unreachable!("{e}"));
        let store = Store::Redis {
            redis,
            on_error: OnStoreError::Deny,
        };
        assert_eq!(store.redeem_ticket("junk").await, Ok(None));
        assert!(store.redeem_ticket(&new_ticket()).await.is_err());
    }

    #[test]
    fn retry_after_rounds_up_and_is_never_zero() {
        assert_eq!(retry_secs(Duration::ZERO), 1);
        assert_eq!(retry_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_secs(Duration::from_secs(30)), 30);
        assert_eq!(retry_secs(Duration::from_millis(30_001)), 31);
    }

    #[test]
    fn a_grant_survives_the_trip_through_redis_text() {
        let grant = TicketGrant {
            identity: Identity {
                user: "alice".into(),
                method: AuthMethod::Jwt,
                expires: Some(UNIX_EPOCH + Duration::from_secs(2_000_000_000)),
            },
            route: "/b".into(),
            origin: Some(Origin::parse("https://app.example.com").expect("origin")),
        };
        let text = encode_grant(&grant);
        assert_eq!(decode_grant(&text), Some(grant));
        assert_eq!(decode_grant("not json"), None);
    }
}
