//! The Redis store: counts, tickets and revocations shared by every gateway
//! instance that names the same server and key prefix.
//!
//! Every check-and-count is one Lua script, run atomically by Redis and
//! timed by Redis's own clock (`TIME`), so instances with skewed clocks
//! still agree. Open connections are members of sorted sets scored by the
//! time their lease runs out; this instance renews its members every third
//! of a lease, so the connections of an instance that died stop counting
//! within one lease. Revocations are a key per user (refusing handshakes
//! until it expires) and a message on a pub/sub channel that every instance
//! listens to (closing live connections at once).
//!
//! The connection to Redis is a `ConnectionManager`, which reconnects by
//! itself; each operation is bounded by `[store] timeout`, and the first
//! failure and the first success after failures are logged and counted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt as _;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use redis::aio::ConnectionManager;
use redis::{Client, Script};
use tokio_util::sync::CancellationToken;
use wsgate_config::{RedisStore, Route};
use wsgate_policy::Reason;
use wsgate_policy::limits::ClientKey;

use super::{Denied, StoreError};
use crate::live::Live;

/// GCRA over one key. KEYS[1]: the client's key. ARGV: the emission
/// interval and the burst, in microseconds and handshakes. Returns 0, or
/// the microseconds until the next handshake is allowed.
const HANDSHAKE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local over = new_tat - now - interval * burst
if over > 0 then return over end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000))
return 0
";

/// Takes a slot in every count, or none. KEYS[1]: the user's revocation key
/// (or a key that never exists); KEYS[2..]: sorted sets of open
/// connections. ARGV[1]: this connection's member; ARGV[2]: the lease in
/// ms; ARGV[3..]: each set's maximum. Returns {0, 0} when taken, {1, i}
/// when set i is full, {2, ms} when the user is revoked for ms more.
const OPEN: &str = r"
local revoked = redis.call('PTTL', KEYS[1])
if revoked > 0 or revoked == -1 then return {2, revoked} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 2, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  if redis.call('ZCARD', KEYS[i]) >= tonumber(ARGV[i + 1]) then return {1, i - 1} end
end
for i = 2, #KEYS do
  redis.call('ZADD', KEYS[i], now + tonumber(ARGV[2]), ARGV[1])
  redis.call('PEXPIRE', KEYS[i], ARGV[2])
end
return {0, 0}
";

/// Renews this instance's members. KEYS: sorted sets; ARGV[1]: the lease
/// in ms; ARGV[i + 1]: the member in KEYS[i]. A member that a restarted
/// Redis lost is added back, so counts recover with the server.
const RENEW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], now + tonumber(ARGV[1]), ARGV[i + 1])
  redis.call('PEXPIRE', KEYS[i], ARGV[1])
end
return 0
";

/// One connection's counts, renewed while it lives.
#[derive(Debug, Clone)]
struct Held {
    keys: Vec<String>,
    member: String,
}

/// The Redis backend.
pub(crate) struct Redis {
    /// Made when the gateway starts: it needs the async runtime.
    conn: OnceLock<ConnectionManager>,
    client: Client,
    config: RedisStore,
    /// Distinguishes this instance's members from other instances'.
    instance: String,
    ticket_ttl: Duration,
    held: Mutex<HashMap<u64, Held>>,
    next: AtomicU64,
    up: AtomicBool,
    up_gauge: Gauge,
    errors: Counter,
    scripts: [Script; 3],
}

/// The counts one connection holds; given back when dropped.
pub(crate) struct Lease {
    store: Arc<Redis>,
    id: u64,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("id", &self.id).finish()
    }
}

impl Redis {
    /// Checks the URL; connecting waits for [`Redis::start`].
    pub(crate) fn new(
        config: &RedisStore,
        ticket_ttl: Duration,
        (up_gauge, errors): (Gauge, Counter),
    ) -> Result<Arc<Self>, String> {
        let client = Client::open(config.url.as_str()).map_err(|e| format!("store.url: {e}"))?;
        Ok(Arc::new(Redis {
            conn: OnceLock::new(),
            client,
            config: config.clone(),
            instance: format!("{:016x}", rand::random::<u64>()),
            ticket_ttl,
            held: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            up: AtomicBool::new(true),
            up_gauge,
            errors,
            scripts: [
                Script::new(HANDSHAKE),
                Script::new(OPEN),
                Script::new(RENEW),
            ],
        }))
    }

    /// Connects (lazily: the gateway starts while Redis is down, and
    /// `on_error` decides until it is back) and starts the tasks that renew
    /// leases and listen for revocations.
    pub(crate) fn start(self: &Arc<Self>, live: Arc<Live>, stop: CancellationToken) {
        let manager = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.config.timeout))
            .set_response_timeout(Some(self.config.timeout))
            .set_max_delay(Duration::from_secs(2));
        match ConnectionManager::new_lazy_with_config(self.client.clone(), manager) {
            Ok(conn) => {
                let _ = self.conn.set(conn);
            }
            Err(e) => tracing::error!(error = %e, "store: cannot set up the Redis connection"),
        }
        let me = Arc::clone(self);
        let stop2 = stop.clone();
        tokio::spawn(async move { me.renew_loop(stop2).await });
        let me = Arc::clone(self);
        tokio::spawn(async move { me.listen_loop(live, stop).await });
    }

    fn key(&self, parts: &[&str]) -> String {
        let mut k = self.config.prefix.clone();
        for p in parts {
            k.push(':');
            k.push_str(p);
        }
        k
    }

    fn conn(&self) -> Result<ConnectionManager, StoreError> {
        self.conn
            .get()
            .cloned()
            .ok_or_else(|| StoreError("not connected yet".into()))
    }

    fn channel(&self) -> String {
        self.key(&["revoke"])
    }

    /// Notes whether Redis answered; logs and counts the changes.
    fn mark<T>(&self, r: &Result<T, StoreError>) {
        let ok = match r {
            Ok(_) => true,
            Err(StoreError(e)) => {
                self.errors.inc();
                if self.up.swap(false, Ordering::AcqRel) {
                    tracing::warn!(error = %e, "store: Redis unreachable; [store] on_error applies until it is back");
                }
                false
            }
        };
        if ok && !self.up.swap(true, Ordering::AcqRel) {
            tracing::info!("store: Redis reachable again");
        }
        self.up_gauge.set(i64::from(ok));
    }

    /// Runs one operation within `[store] timeout`.
    async fn run<T>(
        &self,
        op: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        let r = match tokio::time::timeout(self.config.timeout, op).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(StoreError(e.to_string())),
            Err(_) => Err(StoreError(format!(
                "no answer within {:?}",
                self.config.timeout
            ))),
        };
        self.mark(&r);
        r
    }

    pub(crate) async fn handshake(
        &self,
        route: &Route,
        client: ClientKey,
    ) -> Result<Result<(), Denied>, StoreError> {
        let Some(per_min) = route.limits.handshakes_per_ip_per_min else {
            return Ok(Ok(()));
        };
        let key = self.key(&["hs", &route.path, &client.to_string()]);
        let interval = 60_000_000 / u64::from(per_min.max(1));
        let mut conn = self.conn()?;
        let wait_us: u64 = self
            .run(
                self.scripts[0]
                    .key(key)
                    .arg(interval)
                    .arg(per_min)
                    .invoke_async(&mut conn),
            )
            .await?;
        if wait_us == 0 {
            return Ok(Ok(()));
        }
        Ok(Err(Denied {
            reason: Reason::RateLimited,
            detail: format!("more than {per_min} handshakes per minute from {client}"),
            retry_after: Some(Duration::from_micros(wait_us)),
            limit: Some("handshakes_per_ip_per_min"),
        }))
    }

    pub(crate) async fn open(
        self: &Arc<Self>,
        route: &Route,
        client: ClientKey,
        user: Option<&str>,
    ) -> Result<Result<Lease, Denied>, StoreError> {
        let limits = &route.limits;
        let path = &route.path;
        let mut keys = Vec::new();
        let mut maxima = Vec::new();
        if let Some(max) = limits.max_conns_per_ip {
            keys.push(self.key(&["conns", path, "ip", &client.to_string()]));
            maxima.push(max);
        }
        if let (Some(max), Some(user)) = (limits.max_conns_per_user, user) {
            keys.push(self.key(&["conns", path, "user", user]));
            maxima.push(max);
        }
        if keys.is_empty() && user.is_none() {
            return Ok(Ok(self.lease(Vec::new(), String::new())));
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let member = format!("{}:{id}", self.instance);
        let revoked_key = match user {
            Some(u) => self.key(&["revoked", u]),
            None => self.key(&["none"]),
        };
        let lease_ms = u64::try_from(self.config.lease.as_millis()).unwrap_or(u64::MAX);
        let mut invocation = self.scripts[1].key(&revoked_key);
        for k in &keys {
            invocation.key(k);
        }
        invocation.arg(&member).arg(lease_ms);
        for m in &maxima {
            invocation.arg(*m);
        }
        let mut conn = self.conn()?;
        let (status, n): (i64, i64) = self.run(invocation.invoke_async(&mut conn)).await?;
        match status {
            0 => Ok(Ok(self.lease_with_id(id, keys, member))),
            1 => {
                let i = usize::try_from(n - 1).unwrap_or(0);
                let max = maxima.get(i).copied().unwrap_or(0);
                let counted = if limits.max_conns_per_ip.is_some() && i == 0 {
                    super::Counted::Client(&client)
                } else {
                    super::Counted::User(user.unwrap_or_default())
                };
                Ok(Err(super::full(counted, max)))
            }
            _ => Ok(Err(super::revoked(
                user.unwrap_or_default(),
                (n > 0).then(|| Duration::from_millis(n.unsigned_abs())),
            ))),
        }
    }

    fn lease(self: &Arc<Self>, keys: Vec<String>, member: String) -> Lease {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lease_with_id(id, keys, member)
    }

    fn lease_with_id(self: &Arc<Self>, id: u64, keys: Vec<String>, member: String) -> Lease {
        if !keys.is_empty() {
            self.held
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(id, Held { keys, member });
        }
        Lease {
            store: Arc::clone(self),
            id,
        }
    }

    /// Gives a lease's counts back, in the background (a drop cannot wait).
    fn release(self: &Arc<Self>, id: u64) {
        let held = self
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
        let (Some(held), Ok(rt)) = (held, tokio::runtime::Handle::try_current()) else {
            return;
        };
        let me = Arc::clone(self);
        rt.spawn(async move { me.remove(std::slice::from_ref(&held)).await });
    }

    /// Takes members out of their counts. If this fails they expire with
    /// their lease.
    async fn remove(&self, members: &[Held]) {
        let mut pipe = redis::pipe();
        for held in members {
            for k in &held.keys {
                pipe.cmd("ZREM").arg(k).arg(&held.member).ignore();
            }
        }
        if let Ok(mut conn) = self.conn() {
            let _ = self.run(pipe.query_async::<()>(&mut conn)).await;
        }
    }

    async fn renew_loop(self: Arc<Self>, stop: CancellationToken) {
        let every = self.config.lease / 3;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            let held = self.holding();
            self.renew(&held).await;
        }
    }

    /// What this process holds now, by lease id.
    fn holding(&self) -> Vec<(u64, Held)> {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(id, h)| (*id, h.clone()))
            .collect()
    }

    /// Extends the leases of `held`, which [`Redis::holding`] listed a
    /// moment ago, and takes out again any released since: its `ZREM` may
    /// have run before this `ZADD` put it back, and it would then count
    /// against its user and address until its lease ran out.
    async fn renew(&self, held: &[(u64, Held)]) {
        let lease_ms = u64::try_from(self.config.lease.as_millis()).unwrap_or(u64::MAX);
        // One script call per chunk: EVALSHA, loading the script again if a
        // restarted Redis has forgotten it. `ZADD` without `XX`, so that
        // members a restarted Redis lost are counted again.
        for chunk in held.chunks(256) {
            let mut inv = self.scripts[2].prepare_invoke();
            inv.arg(lease_ms);
            for (_, h) in chunk {
                for k in &h.keys {
                    inv.key(k).arg(&h.member);
                }
            }
            if let Ok(mut conn) = self.conn() {
                let _ = self.run(inv.invoke_async::<()>(&mut conn)).await;
            }
        }
        // A release after this check sends its `ZREM` after the renewal.
        let released: Vec<Held> = {
            let now = self.held.lock().unwrap_or_else(PoisonError::into_inner);
            held.iter()
                .filter(|(id, _)| !now.contains_key(id))
                .map(|(_, h)| h.clone())
                .collect()
        };
        if !released.is_empty() {
            self.remove(&released).await;
        }
    }

    /// Listens for revocations on the channel; reconnects while the gateway runs.
    async fn listen_loop(self: Arc<Self>, live: Arc<Live>, stop: CancellationToken) {
        let channel = self.channel();
        let mut backoff = Duration::from_millis(100);
        loop {
            let subscribed = async {
                let mut pubsub = self.client.get_async_pubsub().await?;
                pubsub.subscribe(&channel).await?;
                redis::RedisResult::Ok(pubsub)
            };
            match tokio::time::timeout(self.config.timeout, subscribed).await {
                Ok(Ok(pubsub)) => {
                    backoff = Duration::from_millis(100);
                    self.mark(&Ok(()));
                    let mut messages = pubsub.into_on_message();
                    loop {
                        tokio::select! {
                            () = stop.cancelled() => return,
                            msg = messages.next() => match msg {
                                Some(m) => {
                                    if let Ok(user) = m.get_payload::<String>() {
                                        let n = live.revoke(&user);
                                        tracing::info!(user = %user, closed = n, "store: revocation received");
                                    }
                                }
                                None => break,
                            },
                        }
                    }
                    self.mark::<()>(&Err(StoreError("the revocation channel closed".into())));
                }
                Ok(Err(e)) => self.mark::<()>(&Err(StoreError(e.to_string()))),
                Err(_) => self.mark::<()>(&Err(StoreError("subscribing timed out".into()))),
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    /// Whether the last operation reached Redis.
    pub(crate) fn reachable(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Refuses `user`'s handshakes until `until` and tells every instance
    /// (this one included) to close their connections.
    pub(crate) async fn revoke(&self, user: &str, until: SystemTime) -> Result<(), StoreError> {
        let ms = until
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            .as_millis()
            .max(1);
        let ms = u64::try_from(ms).unwrap_or(u64::MAX);
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(self.key(&["revoked", user]))
            .arg(unix(until))
            .arg("PX")
            .arg(ms)
            .ignore();
        pipe.cmd("PUBLISH").arg(self.channel()).arg(user).ignore();
        let mut conn = self.conn()?;
        self.run(pipe.query_async::<()>(&mut conn)).await
    }

    pub(crate) async fn issue_ticket(&self, value: &str) -> Result<String, StoreError> {
        let ticket = super::new_ticket();
        let ms = u64::try_from(self.ticket_ttl.as_millis()).unwrap_or(u64::MAX);
        let mut conn = self.conn()?;
        let cmd = redis::cmd("SET")
            .arg(self.key(&["ticket", &ticket]))
            .arg(value)
            .arg("PX")
            .arg(ms)
            .arg("NX")
            .to_owned();
        self.run(cmd.query_async::<()>(&mut conn)).await?;
        Ok(ticket)
    }

    /// Takes a ticket out (GETDEL: one instance gets it, once).
    pub(crate) async fn redeem_ticket(&self, ticket: &str) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn()?;
        let cmd = redis::cmd("GETDEL")
            .arg(self.key(&["ticket", ticket]))
            .to_owned();
        self.run(cmd.query_async::<Option<String>>(&mut conn)).await
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.store.release(self.id);
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use wsgate_config::OnStoreError;

    #[tokio::test]
    async fn a_renewal_racing_a_release_does_not_count_the_released_member_again() {
        let server = wsgate_testkit::redis::RedisServer::start();
        let config = RedisStore {
            url: server.url(),
            on_error: OnStoreError::Deny,
            timeout: Duration::from_secs(5),
            lease: Duration::from_secs(30),
            prefix: "t".into(),
        };
        let metrics = (Gauge::default(), Counter::default());
        let redis = Redis::new(&config, Duration::from_secs(30), metrics)
            .unwrap_or_else(|e| unreachable!("{e}"));
        let conn = ConnectionManager::new(redis.client.clone())
            .await
            .unwrap_or_else(|e| unreachable!("{e}"));
        let _ = redis.conn.set(conn);
        let key = redis.key(&["conns", "/chat", "user", "alice"]);
        let count = || server.cli(&["ZCARD", &key]);
        let lease = redis.lease(vec![key.clone()], "a:1".into());
        redis.renew(&redis.holding()).await;
        assert_eq!(count(), ["1"]);
        // The interleaving of the race: the renewal lists the lease, the
        // connection closes and its ZREM runs, then the renewal's ZADD.
        let listed = redis.holding();
        let held = redis
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&lease.id);
        redis.remove(&held.into_iter().collect::<Vec<_>>()).await;
        assert_eq!(count(), ["0"]);
        redis.renew(&listed).await;
        assert_eq!(count(), ["0"], "the released member is counted again");
        drop(lease);
    }
}
