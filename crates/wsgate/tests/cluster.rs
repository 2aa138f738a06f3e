//! Several `wsgate` processes sharing one real `redis-server`: limits hold
//! across instances, a ticket bought on one is redeemed once on another, a
//! revocation closes connections everywhere, a killed instance's counts
//! expire with their lease, and a Redis outage applies `on_error` and heals
//! without a restart.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::Command;

use wsgate_testkit::client::RawClient;
use wsgate_testkit::jwt::{self, claims};
use wsgate_testkit::process::GatewayProcess;
use wsgate_testkit::redis::RedisServer;
use wsgate_testkit::upstream::Echo;

const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";
const APP: &str = "https://app.example.com";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_wsgate"))
}

/// A config for one instance; every instance gets the same one.
fn config(
    dir: &tempfile::TempDir,
    echo: &Echo,
    redis: &RedisServer,
    on_error: &str,
    limits: &str,
) -> PathBuf {
    let text = format!(
        r#"
[[listener]]
bind = "127.0.0.1:0"

[metrics]
bind = "127.0.0.1:0"

[store]
kind = "redis"
url = "{url}"
on_error = "{on_error}"
lease = "2s"
timeout = "300ms"

[auth.jwt]
hs256_secret_env = "JWT_SECRET"
algorithms = ["HS256"]

[auth.ticket]
ttl = "30s"

[[route]]
path = "/chat"
upstream = "ws://{echo}/chat"
origins = ["{APP}"]
auth = ["jwt", "ticket"]

[route.limits]
max_conns_per_user = 2
{limits}
"#,
        url = redis.url(),
        echo = echo.addr,
    );
    let path = dir.path().join("gw.toml");
    std::fs::write(&path, text).unwrap();
    path
}

async fn cluster(
    n: usize,
    on_error: &str,
) -> (Echo, RedisServer, tempfile::TempDir, Vec<GatewayProcess>) {
    cluster_with(n, on_error, "").await
}

async fn cluster_with(
    n: usize,
    on_error: &str,
    limits: &str,
) -> (Echo, RedisServer, tempfile::TempDir, Vec<GatewayProcess>) {
    let echo = Echo::start().await;
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let path = config(&dir, &echo, &redis, on_error, limits);
    let mut gws = Vec::new();
    for _ in 0..n {
        gws.push(GatewayProcess::spawn(bin(), &path, &[("JWT_SECRET", SECRET)]).await);
    }
    (echo, redis, dir, gws)
}

fn bearer(user: &str) -> String {
    format!("Bearer {}", jwt::hs256(SECRET, &claims(user, 300)))
}

/// A handshake as `user`: the status, and the client for more.
async fn connect(gw: &GatewayProcess, user: &str) -> (u16, RawClient, String) {
    let mut c = RawClient::connect(gw.addr).await;
    let auth = bearer(user);
    let reply = c
        .handshake("/chat", &[("Origin", APP), ("Authorization", &auth)])
        .await;
    (reply.status, c, reply.body)
}

#[tokio::test]
async fn a_per_user_limit_holds_across_three_instances() {
    let (_echo, _redis, _dir, mut gws) = cluster(3, "deny").await;
    let (s0, mut a, _) = connect(&gws[0], "alice").await;
    let (s1, _b, _) = connect(&gws[1], "alice").await;
    assert_eq!((s0, s1), (101, 101));
    let (s2, _, body) = connect(&gws[2], "alice").await;
    assert_eq!((s2, body.trim()), (429, "too_many_connections"));
    let (s, _bob, _) = connect(&gws[2], "bob").await;
    assert_eq!(s, 101, "another user is not affected");
    // Closing on one instance frees the slot on all.
    a.send_frame(0x88, &1000u16.to_be_bytes(), true).await;
    a.read_close().await;
    gws[0].event(|e| e["event"] == "close").await;
    // The release is asynchronous (a drop cannot wait on Redis): poll for
    // the slot within a bound.
    let mut poll = Poll::new(wsgate_testkit::WAIT);
    while connect(&gws[0], "alice").await.0 != 101 {
        poll.next("the slot never came back").await;
    }
}

#[tokio::test]
async fn a_handshake_rate_holds_across_instances_with_retry_after() {
    let (_echo, _redis, _dir, gws) = cluster_with(3, "deny", "handshakes_per_ip_per_min = 2").await;
    assert_eq!(connect(&gws[0], "alice").await.0, 101);
    // A refused handshake counts too.
    let mut c = RawClient::connect(gws[1].addr).await;
    let reply = c
        .handshake("/chat", &[("Origin", "https://evil.example")])
        .await;
    assert_eq!(reply.status, 403);
    let mut c = RawClient::connect(gws[2].addr).await;
    let auth = bearer("bob");
    let reply = c
        .handshake("/chat", &[("Origin", APP), ("Authorization", &auth)])
        .await;
    assert_eq!((reply.status, reply.body.trim()), (429, "rate_limited"));
    let after: u64 = reply.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=30).contains(&after), "Retry-After: {after}");
}

#[tokio::test]
async fn a_ticket_bought_on_one_instance_opens_once_on_another() {
    let (_echo, _redis, _dir, gws) = cluster(3, "deny").await;
    let mut c = RawClient::connect(gws[0].addr).await;
    let auth = bearer("alice");
    let reply = c
        .request(
            "POST",
            "/.wsgate/ticket?path=/chat",
            &[("Origin", APP), ("Authorization", &auth)],
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    let ticket = body["ticket"].as_str().unwrap().to_owned();
    let path = format!("/chat?ticket={ticket}");
    let mut on_b = RawClient::connect(gws[1].addr).await;
    assert_eq!(on_b.handshake(&path, &[("Origin", APP)]).await.status, 101);
    on_b.send_text("via ticket").await;
    assert_eq!(on_b.read_data().await.payload, b"via ticket");
    let mut on_c = RawClient::connect(gws[2].addr).await;
    let again = on_c.handshake(&path, &[("Origin", APP)]).await;
    assert_eq!((again.status, again.body.trim()), (401, "ticket_invalid"));
}

#[tokio::test]
async fn wsgate_revoke_closes_the_users_connections_on_every_instance() {
    let (_echo, _redis, dir, mut gws) = cluster(3, "deny").await;
    let mut alices = Vec::new();
    for gw in &gws[..2] {
        let (s, c, _) = connect(gw, "alice").await;
        assert_eq!(s, 101);
        alices.push(c);
    }
    let (s, mut bob, _) = connect(&gws[2], "bob").await;
    assert_eq!(s, 101);
    // The CLI, pointed at the third instance, which holds none of alice's.
    let admin = gws[2].admin.unwrap().to_string();
    let out = Command::new(bin())
        .args([
            "revoke", "--admin", &admin, "--user", "alice", "--for", "10m",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"user\":\"alice\""));
    for c in &mut alices {
        let close = c.read_close().await;
        assert_eq!(
            (close.close_code(), close.close_reason().as_str()),
            (Some(1008), "revoked")
        );
    }
    for gw in &mut gws[..2] {
        let ev = gw.event(|e| e["event"] == "close").await;
        assert_eq!(ev["reason"], "revoked");
    }
    // New handshakes are refused on every instance until the time given.
    let (s, _, body) = connect(&gws[1], "alice").await;
    assert_eq!((s, body.trim()), (403, "forbidden"));
    // Bob was not touched.
    bob.send_text("still here").await;
    assert_eq!(bob.read_data().await.payload, b"still here");
    // The CLI also finds the admin endpoint through a config.
    let cfg = dir.path().join("admin.toml");
    std::fs::write(
        &cfg,
        std::fs::read_to_string(dir.path().join("gw.toml"))
            .unwrap()
            .replace(
                "bind = \"127.0.0.1:0\"\n\n[store]",
                &format!("bind = \"{admin}\"\n\n[store]"),
            ),
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["revoke", "--config"])
        .arg(&cfg)
        .args(["--user", "carol"])
        // The service's secret is not needed to find its admin endpoint.
        .env_remove("JWT_SECRET")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_killed_instance_stops_counting_within_its_lease() {
    let (_echo, redis, _dir, mut gws) = cluster(2, "deny").await;
    let (s0, _a, _) = connect(&gws[0], "alice").await;
    let (s1, _b, _) = connect(&gws[0], "alice").await;
    assert_eq!((s0, s1), (101, 101));
    let (s, _, _) = connect(&gws[1], "alice").await;
    assert_eq!(s, 429);
    // While the instance lives, it renews: once Redis's clock has passed the
    // first expiry, the count still holds.
    let key = "wsgate:conns:/chat:user:alice";
    let expiry = |redis: &RedisServer| -> u64 {
        redis.cli(&["ZRANGE", key, "0", "-1", "WITHSCORES"])[1]
            .parse()
            .unwrap()
    };
    let first = expiry(&redis);
    let mut poll = Poll::new(std::time::Duration::from_secs(2) + wsgate_testkit::WAIT);
    while redis.now_ms() <= first {
        poll.next("Redis's clock stood still").await;
    }
    assert!(
        expiry(&redis) > first,
        "the live instance did not renew its lease"
    );
    let (s, _, _) = connect(&gws[1], "alice").await;
    assert_eq!(s, 429, "a live instance's connections stopped counting");
    // A crash: nothing is released, the leases just stop being renewed.
    gws[0].kill();
    // The lease is 2 s: the counts must lapse within it (plus the test's margin).
    let mut poll = Poll::new(std::time::Duration::from_secs(2) + wsgate_testkit::WAIT);
    loop {
        let (s, _c, _) = connect(&gws[1], "alice").await;
        if s == 101 {
            break;
        }
        assert_eq!(s, 429);
        poll.next("the dead instance's counts never expired").await;
    }
}

#[tokio::test]
async fn while_redis_is_down_on_error_deny_refuses_and_recovery_needs_no_restart() {
    let (_echo, mut redis, _dir, mut gws) = cluster(1, "deny").await;
    let (s, _a, _) = connect(&gws[0], "alice").await;
    assert_eq!(s, 101);
    redis.stop();
    let (s, _, body) = connect(&gws[0], "bob").await;
    assert_eq!((s, body.trim()), (503, "store_unavailable"));
    gws[0].wait_log("store: Redis unreachable").await;
    let metrics = scrape(gws[0].admin.unwrap()).await;
    assert!(metrics.contains("wsgate_store_up 0"), "{metrics}");
    assert!(
        !metrics.contains("wsgate_store_errors_total 0\n"),
        "{metrics}"
    );
    let mut c = RawClient::connect(gws[0].admin.unwrap()).await;
    let ready = c.request("GET", "/readyz", &[]).await;
    assert_eq!(
        (ready.status, ready.body.trim()),
        (503, "store unreachable")
    );
    redis.restart();
    let mut poll = Poll::new(wsgate_testkit::WAIT);
    loop {
        let (s, _c, _) = connect(&gws[0], "bob").await;
        if s == 101 {
            break;
        }
        assert_eq!(s, 503);
        poll.next("never recovered from the outage").await;
    }
    gws[0].wait_log("store: Redis reachable again").await;
    assert!(
        scrape(gws[0].admin.unwrap())
            .await
            .contains("wsgate_store_up 1")
    );
}

#[tokio::test]
async fn while_redis_is_down_on_error_allow_admits_without_counting() {
    let (_echo, mut redis, _dir, gws) = cluster(1, "allow").await;
    redis.stop();
    for _ in 0..3 {
        let (s, _c, _) = connect(&gws[0], "alice").await;
        assert_eq!(s, 101, "allowed past a per-user limit of 2: nothing counts");
    }
    // A ticket cannot be checked without the store: never assumed valid.
    let ticket = "A".repeat(43);
    let mut c = RawClient::connect(gws[0].addr).await;
    let reply = c
        .handshake(&format!("/chat?ticket={ticket}"), &[("Origin", APP)])
        .await;
    assert_eq!(
        (reply.status, reply.body.trim()),
        (503, "store_unavailable")
    );
    // What has not a ticket's shape is no ticket, store or not.
    let mut c = RawClient::connect(gws[0].addr).await;
    let reply = c.handshake("/chat?ticket=abc", &[("Origin", APP)]).await;
    assert_eq!((reply.status, reply.body.trim()), (401, "ticket_invalid"));
}

async fn scrape(addr: std::net::SocketAddr) -> String {
    let mut c = RawClient::connect(addr).await;
    c.request("GET", "/metrics", &[]).await.body
}

/// Retries an observable condition every 50 ms until a deadline: for state
/// that changes on its own schedule (a lease lapsing, a reconnect), where no
/// event says when.
struct Poll {
    deadline: tokio::time::Instant,
    every: tokio::time::Interval,
}

impl Poll {
    fn new(within: std::time::Duration) -> Poll {
        Poll {
            deadline: tokio::time::Instant::now() + within,
            every: tokio::time::interval(std::time::Duration::from_millis(50)),
        }
    }

    async fn next(&mut self, failure: &str) {
        assert!(tokio::time::Instant::now() < self.deadline, "{failure}");
        self.every.tick().await;
    }
}

#[tokio::test]
async fn a_revocation_ends_at_its_time_on_every_instance() {
    let (_echo, _redis, _dir, gws) = cluster(2, "deny").await;
    let admin = gws[0].admin.unwrap().to_string();
    let out = Command::new(bin())
        .args([
            "revoke", "--admin", &admin, "--user", "alice", "--for", "1s",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (s, _, body) = connect(&gws[1], "alice").await;
    assert_eq!((s, body.trim()), (403, "forbidden"));
    // The key carries the revocation's end as its expiry: admitted again after it.
    let mut poll = Poll::new(std::time::Duration::from_secs(1) + wsgate_testkit::WAIT);
    loop {
        let (s, _c, _) = connect(&gws[1], "alice").await;
        if s == 101 {
            break;
        }
        assert_eq!(s, 403);
        poll.next("the revocation never ended").await;
    }
}
