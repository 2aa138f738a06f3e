//! The contenders: how each is configured, started, found ready, measured
//! and stopped.
//!
//! Every proxy gets the same job: listen on loopback (ws, or wss with the
//! run's certificate), relay WebSocket upgrades to the echo upstream, log
//! nothing per request that the others would not. wsgate does more, which
//! is the point: an origin allow-list, JWT verification, a 64 KiB message
//! limit and every client frame decoded, UTF-8 checked and re-masked.
//! Two baselines do less than anyone: `wsgate-perf relay` copies bytes,
//! on tokio or on one `epoll` loop, to show what the runtime costs.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::tls::Pki;

/// Longest wait for a process to say, or show, that it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for a process to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// The origin every client sends and wsgate allows.
pub const ORIGIN: &str = "https://app.example.com";
/// Environment variable holding the HS256 secret for wsgate, and the token for the client.
pub const SECRET_ENV: &str = "WSGATE_PERF_SECRET";

/// One contender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Peer {
    /// The load generator straight to the echo upstream.
    Direct,
    /// wsgate with the strict config.
    Wsgate,
    /// nginx with its default proxy buffers.
    Nginx,
    /// nginx with 16 KiB proxy buffers.
    NginxTuned,
    /// HAProxy.
    Haproxy,
    /// A byte relay on tokio that inspects nothing (`wsgate-perf relay`):
    /// a baseline, ws and one worker only.
    TokioRelay,
    /// A byte relay on one `epoll` loop (mio) that inspects nothing: a
    /// baseline, ws and one worker only.
    MioRelay,
}

impl Peer {
    /// All, in table order.
    pub const ALL: [Peer; 7] = [
        Peer::Direct,
        Peer::Wsgate,
        Peer::Nginx,
        Peer::NginxTuned,
        Peer::Haproxy,
        Peer::TokioRelay,
        Peer::MioRelay,
    ];

    /// The name in tables and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Peer::Direct => "direct",
            Peer::Wsgate => "wsgate",
            Peer::Nginx => "nginx",
            Peer::NginxTuned => "nginx-16k",
            Peer::Haproxy => "haproxy",
            Peer::TokioRelay => "tokio-relay",
            Peer::MioRelay => "mio-relay",
        }
    }

    /// A baseline relay of `wsgate-perf relay`: plain TCP, one thread.
    pub fn is_baseline(self) -> bool {
        matches!(self, Peer::TokioRelay | Peer::MioRelay)
    }

    /// Parses a name from [`Peer::name`].
    pub fn parse(s: &str) -> Option<Peer> {
        Peer::ALL.into_iter().find(|p| p.name() == s)
    }
}

/// What a run's processes share.
pub struct Setup {
    /// Where configs, logs and PKI go.
    pub dir: PathBuf,
    /// The wsgate binary.
    pub wsgate: PathBuf,
    /// The wsgate-perf binary (echo upstream and load generator).
    pub perf: PathBuf,
    /// The run's certificates.
    pub pki: Pki,
    /// Connections a proxy may hold, from the open-files limit.
    pub max_conns: usize,
}

/// How a process is placed on the machine's cores.
#[derive(Debug, Clone, Copy)]
pub struct Placement {
    /// Proxy workers (threads or processes).
    pub workers: usize,
    /// TLS on the client leg.
    pub tls: bool,
}

impl Placement {
    /// The `taskset` prefix for a proxy: core 0 with one worker, free with two.
    pub fn proxy_cpus(self) -> Option<&'static str> {
        (self.workers == 1).then_some("0")
    }

    /// The `taskset` prefix for the load generator and the echo upstream.
    pub fn client_cpus(self) -> Option<&'static str> {
        (self.workers == 1).then_some("1")
    }
}

/// A command, pinned to `cpus` when given.
pub fn pinned(cpus: Option<&str>, program: &Path) -> Command {
    match cpus {
        Some(list) => {
            let mut c = Command::new("taskset");
            c.args(["-c", list]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// A running process, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Running {
    child: Child,
    /// Where clients connect.
    pub addr: SocketAddr,
}

impl Running {
    /// The process id (the proxy's master, for nginx).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops it and waits, bounded.
    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.terminate();
        }
    }
}

/// Starts the echo upstream; ready when it prints its address.
pub fn start_echo(setup: &Setup, place: Placement) -> anyhow::Result<Running> {
    let mut cmd = pinned(place.client_cpus(), &setup.perf);
    cmd.arg("echo");
    if place.tls {
        cmd.arg("--cert").arg(&setup.pki.cert);
        cmd.arg("--key").arg(&setup.pki.key);
    }
    spawn_announcing(cmd, "echo: listening on ")
}

/// Starts `peer` in front of the plain-ws echo upstream at `echo`.
/// `Direct` is not a process: the caller uses the echo upstream itself.
pub fn start(
    peer: Peer,
    setup: &Setup,
    place: Placement,
    echo: SocketAddr,
) -> anyhow::Result<Running> {
    let dir = setup.dir.join(format!(
        "{}-{}",
        peer.name(),
        if place.tls { "wss" } else { "ws" }
    ));
    std::fs::create_dir_all(&dir)?;
    match peer {
        Peer::Direct => anyhow::bail!("direct has no proxy to start"),
        Peer::Wsgate => {
            let config = dir.join("wsgate.toml");
            std::fs::write(&config, wsgate_config(&dir, &setup.pki, place, echo))?;
            let mut cmd = pinned(place.proxy_cpus(), &setup.wsgate);
            cmd.arg("serve").arg("--config").arg(&config);
            cmd.env(SECRET_ENV, secret()).env("WSGATE_LOG", "warn");
            spawn_announcing(cmd, "wsgate: listening on ")
        }
        Peer::Nginx | Peer::NginxTuned => {
            let port = free_port()?;
            let config = dir.join("nginx.conf");
            let tuned = peer == Peer::NginxTuned;
            std::fs::write(
                &config,
                nginx_config(&dir, &setup.pki, place, port, echo, tuned),
            )?;
            let mut cmd = pinned(place.proxy_cpus(), &super::program("nginx"));
            cmd.arg("-p")
                .arg(&dir)
                .arg("-c")
                .arg(&config)
                .arg("-e")
                .arg(dir.join("error.log"));
            spawn_listening(cmd, port)
        }
        Peer::Haproxy => {
            let port = free_port()?;
            let config = dir.join("haproxy.cfg");
            let cfg = haproxy_config(&setup.pki, place, port, echo, setup.max_conns);
            std::fs::write(&config, cfg)?;
            let mut cmd = pinned(place.proxy_cpus(), &super::program("haproxy"));
            cmd.arg("-db").arg("-f").arg(&config);
            spawn_listening(cmd, port)
        }
        Peer::TokioRelay | Peer::MioRelay => {
            // The run's plan refuses these with TLS or two workers.
            anyhow::ensure!(!place.tls, "{} relays plain TCP only", peer.name());
            let engine = if peer == Peer::TokioRelay {
                "tokio"
            } else {
                "mio"
            };
            let mut cmd = pinned(place.proxy_cpus(), &setup.perf);
            cmd.args(["relay", "--engine", engine, "--upstream"])
                .arg(echo.to_string());
            spawn_announcing(cmd, "relay: listening on ")
        }
    }
}

/// The HS256 secret of a run (a benchmark's, not a real one).
pub fn secret() -> &'static str {
    "wsgate-perf: a benchmark secret, not a real one"
}

fn wsgate_config(dir: &Path, pki: &Pki, place: Placement, echo: SocketAddr) -> String {
    let mut c = String::new();
    let _ = writeln!(
        c,
        "# wsgate-perf: the strict config wsgate is measured with."
    );
    let _ = writeln!(c, "[[listener]]\nbind = \"127.0.0.1:0\"");
    if place.tls {
        let _ = writeln!(c, "tls = {{ cert = {:?}, key = {:?} }}", pki.cert, pki.key);
    }
    let _ = writeln!(
        c,
        r#"
[auth.jwt]
hs256_secret_env = "{SECRET_ENV}"
algorithms = ["HS256"]
audience = "perf"

[limits]
# 10,000 idle connections and the handshakes around them.
max_connections = 30000
# Every connection comes from the load generator's one address, as from a
# balancer; 256 are opened at once.
max_http_conns_per_ip = 30000

[log]
audit = {audit:?}
"#,
        audit = dir.join("audit.log"),
    );
    for (path, auth, max) in [
        ("/echo", "jwt", "64KiB"),
        ("/big", "jwt", "2MiB"),
        ("/open", "none", "64KiB"),
    ] {
        let _ = writeln!(
            c,
            r#"[[route]]
path = "{path}"
upstream = "ws://{echo}/"
origins = ["{ORIGIN}"]
auth = "{auth}"

[route.limits]
max_message = "{max}"
"#
        );
    }
    c
}

fn nginx_config(
    dir: &Path,
    pki: &Pki,
    place: Placement,
    port: u16,
    echo: SocketAddr,
    tuned: bool,
) -> String {
    let listen = if place.tls {
        format!(
            // nginx before 1.23.4 (Debian 12 ships 1.22) leaves TLS 1.3 out
            // of its default protocols: a TLS 1.3 client would get TLS 1.2
            // and resume with session tickets, abbreviated handshakes with no
            // key exchange, and be compared with the others' TLS 1.3.
            "listen 127.0.0.1:{port} ssl;\n        ssl_protocols TLSv1.2 TLSv1.3;\n        ssl_certificate {};\n        ssl_certificate_key {};",
            pki.cert.display(),
            pki.key.display()
        )
    } else {
        format!("listen 127.0.0.1:{port};")
    };
    let buffers = if tuned {
        // proxy_buffer_size sizes both directions of an upgraded connection;
        // the others only keep nginx's rule that busy buffers fit in them.
        "proxy_buffer_size 16k;\n            proxy_buffers 4 16k;\n            proxy_busy_buffers_size 32k;"
    } else {
        ""
    };
    let d = dir.display();
    format!(
        r#"# wsgate-perf: nginx as a WebSocket reverse proxy.
daemon off;
master_process on;
worker_processes {workers};
worker_rlimit_nofile 65536;
pid {d}/nginx.pid;
events {{ worker_connections 32768; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    server {{
        {listen}
        location / {{
            proxy_pass http://{echo};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
            {buffers}
        }}
    }}
}}
"#,
        workers = place.workers,
    )
}

fn haproxy_config(
    pki: &Pki,
    place: Placement,
    port: u16,
    echo: SocketAddr,
    max_conns: usize,
) -> String {
    let tls = if place.tls {
        format!(" ssl crt {}", pki.combined.display())
    } else {
        String::new()
    };
    format!(
        r#"# wsgate-perf: HAProxy as a WebSocket reverse proxy.
global
    nbthread {workers}
    # What the open-files limit allows: HAProxy refuses to start otherwise.
    maxconn {max_conns}

defaults
    mode http
    timeout connect 5s
    timeout client 1h
    timeout server 1h
    timeout tunnel 1h

frontend ws
    bind 127.0.0.1:{port}{tls}
    default_backend echo

backend echo
    server echo {echo}
"#,
        workers = place.workers,
    )
}

/// A free loopback port, for the proxies that cannot take port 0 and say
/// which they got. (Another process could take it first; a benchmark, not
/// a test, accepts that: the proxy then fails to start, loudly.)
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Spawns `cmd`; ready when a stderr line starts with `prefix` followed by
/// the address. Later stderr lines are drained into the void.
fn spawn_announcing(mut cmd: Command, prefix: &'static str) -> anyhow::Result<Running> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| anyhow::anyhow!("{cmd:?}: {e}"))?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stderr"))?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut said = Vec::new();
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent {
                if let Some(addr) = line
                    .strip_prefix(prefix)
                    .and_then(|a| a.trim().parse().ok())
                {
                    let _ = tx.send(Ok(addr));
                    sent = true;
                } else {
                    said.push(line);
                }
            }
        }
        if !sent {
            let _ = tx.send(Err(said.join("\n")));
        }
    });
    match rx.recv_timeout(READY_TIMEOUT) {
        Ok(Ok(addr)) => Ok(Running { child, addr }),
        Ok(Err(said)) => {
            let _ = child.kill();
            anyhow::bail!("{cmd:?} exited before it was ready:\n{said}")
        }
        Err(_) => {
            let _ = child.kill();
            anyhow::bail!("{cmd:?} was not ready in {READY_TIMEOUT:?}")
        }
    }
}

/// Spawns `cmd`; ready when 127.0.0.1:`port` accepts a connection.
fn spawn_listening(mut cmd: Command, port: u16) -> anyhow::Result<Running> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().map_err(|e| anyhow::anyhow!("{cmd:?}: {e}"))?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + READY_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            anyhow::bail!("{cmd:?} exited before it was ready: {status}");
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(Running { child, addr });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    anyhow::bail!("{cmd:?} did not listen on {addr} within {READY_TIMEOUT:?}")
}

/// Resident memory of `pid` and all its descendants, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let mut total = 0;
    let mut family = vec![pid];
    let mut i = 0;
    while let Some(&p) = family.get(i) {
        total += vm_rss(p).unwrap_or(0);
        family.extend(children(p));
        i += 1;
    }
    total
}

/// CPU time of `pid` and all its descendants so far: user and system, in
/// clock ticks (`utime` and `stime` of /proc/PID/stat).
pub fn cpu_ticks(pid: u32) -> (u64, u64) {
    let (mut user, mut sys) = (0, 0);
    let mut family = vec![pid];
    let mut i = 0;
    while let Some(&p) = family.get(i) {
        if let Some((u, s)) = stat_times(p) {
            user += u;
            sys += s;
        }
        family.extend(children(p));
        i += 1;
    }
    (user, sys)
}

/// Clock ticks per second in /proc/PID/stat: `USER_HZ`, which Linux fixes
/// at 100 for user space on every architecture it runs wsgate on.
pub const TICKS_PER_SEC: f64 = 100.0;

/// `utime` and `stime`: fields 14 and 15 of /proc/PID/stat, the 12th and
/// 13th after the parenthesised name (which may hold spaces).
fn stat_times(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_times(&stat)
}

fn parse_times(stat: &str) -> Option<(u64, u64)> {
    let mut after = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let user = after.next()?.parse().ok()?;
    let sys = after.next()?.parse().ok()?;
    Some((user, sys))
}

/// The machine's CPU time so far, in clock ticks, from /proc/stat.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MachineTicks {
    /// Over all cores.
    pub total: u64,
    /// The part the hypervisor gave to other guests: a window in which it
    /// is high ran every contender on less than the core it was given.
    pub steal: u64,
    /// Each core's (total, busy), in the order of its `cpuN` line; busy is
    /// the total less idle, I/O wait and steal.
    pub cores: Vec<(u64, u64)>,
}

/// The machine's ticks now (`None` where /proc/stat cannot be read).
pub fn machine_ticks() -> Option<MachineTicks> {
    parse_machine_ticks(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// `cpu user nice system idle iowait irq softirq steal guest guest_nice`:
/// guest time is already counted in user time, so the total is the first
/// eight. The first line is the machine's, then one `cpuN` line per core.
fn parse_machine_ticks(stat: &str) -> Option<MachineTicks> {
    let fields = |line: &str| -> Option<[u64; 8]> {
        let ticks: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(|t| t.parse().ok())
            .collect::<Option<_>>()?;
        ticks.try_into().ok()
    };
    let machine = fields(stat.lines().find(|l| l.starts_with("cpu "))?)?;
    let cores = stat
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            let t = fields(l)?;
            let total: u64 = t.iter().sum();
            Some((total, total - t[3] - t[4] - t[7]))
        })
        .collect::<Option<_>>()?;
    Some(MachineTicks {
        total: machine.iter().sum(),
        steal: machine[7],
        cores,
    })
}

fn vm_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| {
            // Field 4 of /proc/PID/stat, after the parenthesised name.
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    let after = s.rsplit_once(')')?.1;
                    after.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// `nginx -v`, `haproxy -v` and `wsgate --version`, first line each.
pub fn versions(setup: &Setup) -> Vec<(String, String)> {
    let probe = |program: &Path, arg: &str| {
        Command::new(program)
            .arg(arg)
            .output()
            .ok()
            .map(|o| {
                let text = [o.stdout, o.stderr].concat();
                String::from_utf8_lossy(&text)
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_owned()
            })
            .unwrap_or_else(|| "not found".into())
    };
    vec![
        ("wsgate".into(), probe(&setup.wsgate, "--version")),
        ("nginx".into(), probe(&super::program("nginx"), "-v")),
        ("haproxy".into(), probe(&super::program("haproxy"), "-v")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steal_and_each_cores_busy_time_are_read_from_proc_stat() {
        let stat = "cpu  4102691 1904 935776 2493747 45180 0 286249 128687 0 0\n\
                    cpu0 2004295 842 437484 1334419 13909 0 138913 65353 0 0\n\
                    cpu1 10 0 20 30 4 0 6 5 0 0\n\
                    intr 1 2 3\n";
        let t = parse_machine_ticks(stat).expect("parsed");
        assert_eq!(
            t.total,
            4102691 + 1904 + 935776 + 2493747 + 45180 + 286249 + 128687
        );
        assert_eq!(t.steal, 128687);
        let core0 = 2004295 + 842 + 437484 + 1334419 + 13909 + 138913 + 65353;
        assert_eq!(
            t.cores,
            vec![(core0, core0 - 1334419 - 13909 - 65353), (75, 36)]
        );
        // A kernel too old to count steal has seven fields: no figure, not a wrong one.
        assert_eq!(parse_machine_ticks("cpu  1 2 3 4 5 6 7\n"), None);
        assert_eq!(parse_machine_ticks("cpu0 1 2 3 4 5 6 7 8\n"), None);
    }

    /// Every IPv4 address written in `text`.
    fn addresses(text: &str) -> Vec<&str> {
        text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|t| t.split('.').count() == 4 && t.split('.').all(|p| p.parse::<u8>().is_ok()))
            .collect()
    }

    #[test]
    fn cpu_times_are_read_past_a_name_with_spaces_and_parentheses() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt
        // cminflt majflt cmajflt utime stime cutime ...
        let stat =
            "4242 (nginx: worker (1)) S 1 4242 4242 0 -1 4194624 120 0 0 0 731 2045 0 0 20 0";
        assert_eq!(parse_times(stat), Some((731, 2045)));
        assert_eq!(parse_times("4242 (cut short) S 1 2"), None);
        // A live process's own line reads.
        assert!(stat_times(std::process::id()).is_some());
    }

    #[test]
    fn every_proxy_config_listens_and_forwards_on_loopback_only() {
        let dir = std::env::temp_dir().join(format!("wsgate-perf-peers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let pki = crate::tls::make_pki(&dir).expect("pki");
        // Only written into the configs, never bound or dialled.
        let (echo, port): (SocketAddr, u16) = ("127.0.0.1:0".parse().expect("addr"), 0);
        for workers in [1, 2] {
            for tls in [false, true] {
                let place = Placement { workers, tls };
                let configs = [
                    ("wsgate", wsgate_config(&dir, &pki, place, echo), "bind ="),
                    (
                        "nginx",
                        nginx_config(&dir, &pki, place, port, echo, false),
                        "listen ",
                    ),
                    (
                        "nginx-16k",
                        nginx_config(&dir, &pki, place, port, echo, true),
                        "listen ",
                    ),
                    (
                        "haproxy",
                        haproxy_config(&pki, place, port, echo, 100),
                        "bind ",
                    ),
                ];
                for (name, text, listen) in configs {
                    let found = addresses(&text);
                    assert!(found.len() >= 2, "{name}: {found:?} in\n{text}");
                    assert!(
                        found.iter().all(|a| *a == "127.0.0.1"),
                        "{name} names an address off loopback: {found:?} in\n{text}"
                    );
                    // A listen line without an address would bind every interface.
                    for line in text.lines().filter(|l| l.trim_start().starts_with(listen)) {
                        assert!(line.contains("127.0.0.1:"), "{name}: {line}");
                    }
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
