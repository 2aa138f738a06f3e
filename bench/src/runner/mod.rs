//! `wsgate-perf run`: the same workloads against direct, wsgate, nginx and
//! HAProxy, in one run, on one machine.
//!
//! For each variant (plain ws or wss; one proxy worker pinned to core 0 with
//! the load generator and the echo upstream on core 1, or two workers with
//! nothing pinned) it starts the echo upstream, then each proxy in turn, and
//! runs every workload through it with a fresh load-generator process.
//! The results go to `results.json`, `results.md` and one SVG chart per
//! variant in the output folder.
//!
//! Every loop is bounded: each workload runs for its warm-up plus its
//! measured window, each wait for a process has a deadline, and all traffic
//! goes to 127.0.0.1.

pub mod chart;
pub mod peers;
pub mod report;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use peers::{Peer, Placement, Running, Setup};
pub use report::{CpuPer, Row};

use crate::load::{self, Report};

/// Open files the runner and its children may hold: 10,000 idle
/// connections cost the load generator 10,000 and a proxy 20,000.
const NOFILE: u64 = 65_536;
/// How long idle connections settle before the proxy's memory is read.
const IDLE_SETTLE: Duration = Duration::from_secs(2);

/// Options of `wsgate-perf run`.
#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// Where the results, configs and logs go.
    #[arg(long, default_value = "target/perf")]
    pub out: PathBuf,
    /// The wsgate binary (default: `wsgate` beside this one).
    #[arg(long)]
    pub wsgate: Option<PathBuf>,
    /// Contenders, comma-separated; also tokio-relay and mio-relay, byte
    /// relays that inspect nothing (baselines; ws and one worker only).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "direct,wsgate,nginx,nginx-16k,haproxy"
    )]
    pub peers: Vec<String>,
    /// Workloads, comma-separated (a, b, c, d, d0, e).
    #[arg(long, value_delimiter = ',', default_value = "a,b,c,d,d0,e")]
    pub workloads: Vec<String>,
    /// TLS on the client leg: off, on, or both.
    #[arg(long, default_value = "both")]
    pub tls: String,
    /// Proxy worker counts to run, comma-separated (1: pinned; 2: unpinned).
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub workers: Vec<usize>,
    /// Measured window of each throughput and handshake workload.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Warm-up before each window.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Idle connections for workload e.
    #[arg(long, default_value_t = 10_000)]
    pub idle: usize,
    /// Also hold this many connections through wsgate with churn (1% a
    /// second) for --churn-time, sampling its memory (0: skip).
    #[arg(long, default_value_t = 0)]
    pub churn_conns: usize,
    /// How long the churn run lasts.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub churn_time: Duration,
    /// Every contender runs every workload this many times, the rounds
    /// interleaved (each round goes through all the contenders); the tables
    /// hold each figure's median, and results.json every round's.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=9))]
    pub rounds: u8,
    /// A quick check of the harness: 1-second windows, 200 idle
    /// connections; fails if any workload moved nothing or had errors.
    #[arg(long)]
    pub smoke: bool,
}

/// One workload of the list.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// Its letter.
    pub id: &'static str,
    /// What it is, for the tables.
    pub what: &'static str,
    kind: Kind,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Echo {
        conns: usize,
        in_flight: usize,
        size: usize,
        path: &'static str,
    },
    Handshakes {
        concurrency: usize,
        jwt: bool,
    },
    Idle,
}

/// The workloads, in table order.
pub const WORKLOADS: [Workload; 6] = [
    Workload {
        id: "a",
        what: "64 B messages, 50 connections, 8 in flight each",
        kind: Kind::Echo {
            conns: 50,
            in_flight: 8,
            size: 64,
            path: "/echo",
        },
    },
    Workload {
        id: "b",
        what: "16 KiB messages, 50 connections, 4 in flight each",
        kind: Kind::Echo {
            conns: 50,
            in_flight: 4,
            size: 16 * 1024,
            path: "/echo",
        },
    },
    Workload {
        id: "c",
        what: "1 MiB messages, 8 connections, 1 in flight each",
        kind: Kind::Echo {
            conns: 8,
            in_flight: 1,
            size: 1024 * 1024,
            path: "/big",
        },
    },
    Workload {
        id: "d",
        what: "handshakes (connect, upgrade, close) with Origin and a JWT, 32 at once",
        kind: Kind::Handshakes {
            concurrency: 32,
            jwt: true,
        },
    },
    Workload {
        id: "d0",
        what: "handshakes with Origin, no JWT (wsgate: an auth = \"none\" route), 32 at once",
        kind: Kind::Handshakes {
            concurrency: 32,
            jwt: false,
        },
    },
    Workload {
        id: "e",
        what: "idle connections: the proxy's resident memory per connection",
        kind: Kind::Idle,
    },
];

/// Runs the comparison and writes the results.
pub fn run(options: &Options) -> anyhow::Result<()> {
    let plan = Plan::from(options)?;
    ensure_installed(&plan.peers)?;
    let nofile = raise_open_files()?;
    let mut plan = plan;
    if plan.idle > idle_capacity(nofile) {
        say(&format!(
            "open files are limited to {nofile} here (raising the hard limit needs CAP_SYS_RESOURCE): \
             workload e holds {} connections instead of {}",
            idle_capacity(nofile),
            plan.idle
        ));
        plan.idle = idle_capacity(nofile);
    }
    std::fs::create_dir_all(&options.out)?;
    let out = std::fs::canonicalize(&options.out)?;
    let setup = Setup {
        pki: crate::tls::make_pki(&out)?,
        dir: out.clone(),
        wsgate: options.wsgate.clone().unwrap_or_else(|| sibling("wsgate")),
        perf: std::env::current_exe()?,
        max_conns: idle_capacity(nofile),
    };
    anyhow::ensure!(
        setup.wsgate.exists(),
        "{}: no wsgate binary; build it with `cargo build --release -p wsgate` or pass --wsgate",
        setup.wsgate.display()
    );
    let token = token()?;
    let started = Instant::now();
    let mut rows = Vec::new();
    for &place in &plan.placements {
        let echo = peers::start_echo(&setup, place)?;
        // The proxies talk plain ws to the upstream; only the direct
        // contender needs the echo's own TLS, so wss runs start a second one.
        let plain_echo = if place.tls {
            Some(peers::start_echo(
                &setup,
                Placement {
                    tls: false,
                    ..place
                },
            )?)
        } else {
            None
        };
        let upstream = plain_echo.as_ref().unwrap_or(&echo).addr;
        for (round, &peer) in
            (0..plan.rounds).flat_map(|round| plan.peers.iter().map(move |peer| (round, peer)))
        {
            let proxy = match peer {
                Peer::Direct => None,
                _ => Some(peers::start(peer, &setup, place, upstream)?),
            };
            let target = proxy.as_ref().unwrap_or(&echo);
            for w in &plan.workloads {
                if matches!(w.kind, Kind::Idle) && peer == Peer::Direct {
                    continue;
                }
                say(&format!(
                    "[{:>4.0}s] {}{} {} worker(s) {}: workload {}",
                    started.elapsed().as_secs_f64(),
                    match plan.rounds {
                        1 => String::new(),
                        n => format!("round {}/{n}: ", round + 1),
                    },
                    if place.tls { "wss" } else { "ws" },
                    place.workers,
                    peer.name(),
                    w.id
                ));
                let mut row = measure(&plan, &setup, &token, place, peer, target, w)?;
                row.round = round;
                say(&format!("        {}", row.summary()));
                rows.push(row);
            }
            if let Some(p) = proxy {
                p.stop();
            }
        }
        echo.stop();
        if let Some(e) = plain_echo {
            e.stop();
        }
    }
    let churn = if options.churn_conns > 0 {
        Some(churn(&setup, &token, options)?)
    } else {
        None
    };
    let results = report::Results::new(&setup, &plan, rows, churn);
    write_all(&results, &out)?;
    if options.smoke {
        results.check_smoke()?;
    }
    Ok(())
}

/// Writes results.json, results.md and one chart per variant into `out`.
fn write_all(results: &report::Results, out: &Path) -> anyhow::Result<()> {
    results.write(out)?;
    for place in results.placements() {
        chart::write(results, place, out)?;
    }
    say(&format!(
        "wrote {}/results.md, results.json and the charts",
        out.display()
    ));
    Ok(())
}

/// `wsgate-perf report`: the Markdown and charts again, from `dir/results.json`.
pub fn rewrite(dir: &Path) -> anyhow::Result<()> {
    let path = dir.join("results.json");
    let text =
        std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let results: report::Results = serde_json::from_str(&text)?;
    write_all(&results, dir)
}

/// What to run, resolved from the options.
pub struct Plan {
    peers: Vec<Peer>,
    rounds: usize,
    workloads: Vec<Workload>,
    placements: Vec<Placement>,
    duration: Duration,
    warmup: Duration,
    idle: usize,
}

impl Plan {
    fn from(o: &Options) -> anyhow::Result<Plan> {
        let mut errors = Vec::new();
        let peers: Vec<Peer> = o
            .peers
            .iter()
            .filter_map(|p| {
                Peer::parse(p).or_else(|| {
                    errors.push(format!("--peers: unknown contender {p:?}"));
                    None
                })
            })
            .collect();
        let workloads: Vec<Workload> = o
            .workloads
            .iter()
            .filter_map(|id| {
                WORKLOADS.iter().find(|w| w.id == id).copied().or_else(|| {
                    errors.push(format!(
                        "--workloads: unknown workload {id:?} (a, b, c, d, d0, e)"
                    ));
                    None
                })
            })
            .collect();
        let tls: &[bool] = match o.tls.as_str() {
            "off" => &[false],
            "on" => &[true],
            "both" => &[false, true],
            other => {
                errors.push(format!("--tls: {other:?} is not off, on or both"));
                &[]
            }
        };
        for &w in &o.workers {
            if !(1..=2).contains(&w) {
                errors.push(format!("--workers: {w} (1 or 2 on this harness)"));
            }
        }
        // The baselines relay bytes on one thread: wss would need them to
        // terminate TLS, and a second worker they do not have.
        for p in peers.iter().filter(|p| p.is_baseline()) {
            if tls.contains(&true) || o.workers.iter().any(|&w| w != 1) {
                errors.push(format!(
                    "--peers: {} runs only with --tls off --workers 1",
                    p.name()
                ));
            }
        }
        anyhow::ensure!(errors.is_empty(), "{}", errors.join("\n"));
        let placements = tls
            .iter()
            .flat_map(|&tls| {
                o.workers
                    .iter()
                    .map(move |&workers| Placement { workers, tls })
            })
            .collect();
        let (duration, warmup, idle) = if o.smoke {
            (Duration::from_secs(1), Duration::from_millis(300), 200)
        } else {
            (o.duration, o.warmup, o.idle)
        };
        Ok(Plan {
            peers,
            rounds: usize::from(o.rounds),
            workloads,
            placements,
            duration,
            warmup,
            idle,
        })
    }
}

/// Runs one workload against one contender with a fresh load generator.
fn measure(
    plan: &Plan,
    setup: &Setup,
    token: &str,
    place: Placement,
    peer: Peer,
    target: &Running,
    w: &Workload,
) -> anyhow::Result<Row> {
    let scheme = if place.tls { "wss" } else { "ws" };
    let port = target.addr.port();
    let path = match w.kind {
        Kind::Echo { path, .. } => path,
        Kind::Handshakes { jwt: false, .. } => "/open",
        _ => "/echo",
    };
    let mut cmd = peers::pinned(place.client_cpus(), &setup.perf);
    cmd.arg("load")
        .arg(format!("{scheme}://localhost:{port}{path}"));
    cmd.arg("--ca")
        .arg(&setup.pki.ca)
        .args(["--origin", peers::ORIGIN]);
    if !matches!(w.kind, Kind::Handshakes { jwt: false, .. }) {
        cmd.args(["--bearer-env", "WSGATE_PERF_TOKEN"])
            .env("WSGATE_PERF_TOKEN", token);
    }
    let secs = |d: Duration| format!("{}ms", d.as_millis());
    let (warmup, duration) = (secs(plan.warmup), secs(plan.duration));
    let mut row = Row::new(place, peer, w);
    let proxy = (peer != Peer::Direct).then(|| target.pid());
    match w.kind {
        Kind::Echo {
            conns,
            in_flight,
            size,
            ..
        } => {
            cmd.args([
                "echo",
                "--conns",
                &conns.to_string(),
                "--in-flight",
                &in_flight.to_string(),
            ]);
            cmd.args([
                "--size",
                &size.to_string(),
                "--warmup",
                &warmup,
                "--duration",
                &duration,
            ]);
            run_load(cmd, proxy, &mut row)?;
        }
        Kind::Handshakes { concurrency, .. } => {
            cmd.args(["handshakes", "--concurrency", &concurrency.to_string()]);
            cmd.args(["--warmup", &warmup, "--duration", &duration]);
            run_load(cmd, proxy, &mut row)?;
        }
        Kind::Idle => {
            cmd.args(["idle", "--conns", &plan.idle.to_string(), "--hold", "5m"]);
            let (load, kib) = idle_memory(cmd, target.pid())?;
            row.load = load;
            row.kib_per_conn = kib;
        }
    }
    Ok(row)
}

/// Runs a load generator to its end and puts in `row` its report, given
/// the proxy's process the proxy's CPU time per message or handshake over
/// the measured window, the per cent of the machine's CPU time stolen by
/// its hypervisor in that window, and how busy each core was (all read
/// from /proc as the load generator says the window opens and closes).
fn run_load(mut cmd: Command, proxy: Option<u32>, row: &mut Row) -> anyhow::Result<()> {
    let (child, stderr) = spawn_load(cmd.stdin(Stdio::null()))?;
    // The proxy's ticks and the machine's, read together at each edge of
    // the window so that both figures cover the same one.
    let ticks = || (proxy.map(peers::cpu_ticks), peers::machine_ticks());
    let ((mut opened, mut machine_opened), (mut closed, mut machine_closed)) =
        ((None, None), (None, None));
    // Ends when the load generator does (its stderr closes).
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        match line.as_str() {
            load::WINDOW_OPEN => (opened, machine_opened) = ticks(),
            load::WINDOW_CLOSED => (closed, machine_closed) = ticks(),
            _ => say(&line),
        }
    }
    let out = child.wait_with_output()?;
    anyhow::ensure!(out.status.success(), "{cmd:?} failed: {}", out.status);
    row.load = serde_json::from_slice(&out.stdout)?;
    let units = row.load.messages + row.load.handshakes;
    row.cpu_us = match (opened, closed) {
        (Some((u0, s0)), Some((u1, s1))) if units > 0 => {
            let per = |ticks: u64| ticks as f64 / peers::TICKS_PER_SEC * 1e6 / units as f64;
            Some(CpuPer {
                user: per(u1.saturating_sub(u0)),
                sys: per(s1.saturating_sub(s0)),
            })
        }
        _ => None,
    };
    if let (Some(t0), Some(t1)) = (machine_opened, machine_closed) {
        let pct = |part: u64, whole: u64| part as f64 * 100.0 / whole.max(1) as f64;
        row.steal_pct =
            (t1.total > t0.total).then(|| pct(t1.steal - t0.steal, t1.total - t0.total));
        row.cores_busy_pct = t0
            .cores
            .iter()
            .zip(&t1.cores)
            .map(|(&(total0, busy0), &(total1, busy1))| {
                pct(busy1.saturating_sub(busy0), total1.saturating_sub(total0))
            })
            .collect();
    }
    Ok(())
}

/// Opens the idle connections, reads the proxy's memory before and after,
/// then lets the load generator close them; its report and the KiB per
/// connection.
fn idle_memory(cmd: Command, proxy: u32) -> anyhow::Result<(Report, Option<f64>)> {
    let before = peers::rss_kib(proxy);
    let (child, ready) = start_idle(cmd)?;
    std::thread::sleep(IDLE_SETTLE);
    let after = peers::rss_kib(proxy);
    let mut report = finish_idle(child)?;
    report.open = ready.open;
    let kib = (ready.open > 0).then(|| (after.saturating_sub(before)) as f64 / ready.open as f64);
    Ok((report, kib))
}

/// Starts a load generator whose report (stdout) and progress (stderr)
/// the runner reads; the process and its stderr.
fn spawn_load(cmd: &mut Command) -> anyhow::Result<(Child, std::process::ChildStderr)> {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stderr"))?;
    Ok((child, stderr))
}

/// Starts an idle load generator and waits until it holds its
/// connections: the process, and what it reported then.
fn start_idle(mut cmd: Command) -> anyhow::Result<(Child, Report)> {
    let (mut child, stderr) = spawn_load(cmd.stdin(Stdio::piped()))?;
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        if let Some(json) = line.strip_prefix("idle: ready ") {
            return Ok((child, serde_json::from_str(json)?));
        }
        say(&line);
    }
    let _ = child.kill();
    anyhow::bail!("the idle load generator ended before it was ready")
}

/// Closes an idle load generator's stdin, so it closes its connections
/// and exits; its final report.
fn finish_idle(mut child: Child) -> anyhow::Result<Report> {
    drop(child.stdin.take());
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "the idle load generator failed: {}",
        out.status
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Holds `conns` connections through wsgate with 1% churn a second,
/// sampling its memory every 30 s.
fn churn(setup: &Setup, token: &str, o: &Options) -> anyhow::Result<report::Churn> {
    let place = Placement {
        workers: 1,
        tls: false,
    };
    let echo = peers::start_echo(setup, place)?;
    let gate = peers::start(Peer::Wsgate, setup, place, echo.addr)?;
    let mut cmd = peers::pinned(place.client_cpus(), &setup.perf);
    cmd.arg("load")
        .arg(format!("ws://localhost:{}/echo", gate.addr.port()));
    cmd.args([
        "--origin",
        peers::ORIGIN,
        "--bearer-env",
        "WSGATE_PERF_TOKEN",
    ])
    .env("WSGATE_PERF_TOKEN", token);
    let per_sec = (o.churn_conns / 100).max(1);
    cmd.args([
        "idle",
        "--conns",
        &o.churn_conns.to_string(),
        "--churn",
        &per_sec.to_string(),
    ]);
    cmd.args(["--hold", &format!("{}s", o.churn_time.as_secs() + 60)]);
    let (child, _) = start_idle(cmd)?;
    let start = Instant::now();
    let mut samples = Vec::new();
    while start.elapsed() < o.churn_time {
        samples.push((start.elapsed().as_secs(), peers::rss_kib(gate.pid())));
        say(&format!(
            "churn: {}s, wsgate RSS {} KiB",
            samples.last().map_or(0, |s| s.0),
            samples.last().map_or(0, |s| s.1)
        ));
        std::thread::sleep(
            Duration::from_secs(30).min(o.churn_time.saturating_sub(start.elapsed())),
        );
    }
    samples.push((start.elapsed().as_secs(), peers::rss_kib(gate.pid())));
    let load = finish_idle(child)?;
    gate.stop();
    echo.stop();
    Ok(report::Churn {
        conns: o.churn_conns,
        per_sec,
        samples,
        errors: load.errors,
        open_at_end: load.open,
    })
}

/// A token wsgate accepts for the run: HS256, audience `perf`, an hour long.
fn token() -> anyhow::Result<String> {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + 3600;
    let claims = serde_json::json!({ "sub": "perf", "aud": "perf", "exp": exp });
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(peers::secret().as_bytes()),
    )?)
}

/// Installs nginx and HAProxy from Debian's packages when a contender needs one that is missing.
fn ensure_installed(peers: &[Peer]) -> anyhow::Result<()> {
    let mut missing = Vec::new();
    if peers
        .iter()
        .any(|p| matches!(p, Peer::Nginx | Peer::NginxTuned))
        && !on_path("nginx")
    {
        missing.push("nginx");
    }
    if peers.contains(&Peer::Haproxy) && !on_path("haproxy") {
        missing.push("haproxy");
    }
    if !on_path("taskset") {
        missing.push("util-linux");
    }
    if missing.is_empty() {
        return Ok(());
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    anyhow::ensure!(
        root && on_path("apt-get"),
        "missing {}: install with `apt-get install {}` (Debian) and run again",
        missing.join(", "),
        missing.join(" ")
    );
    say(&format!(
        "installing {} from Debian's packages",
        missing.join(", ")
    ));
    let quiet = |c: &mut Command| {
        c.env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
    };
    anyhow::ensure!(
        quiet(Command::new("apt-get").args(["update", "-qq"]))?.success(),
        "apt-get update failed"
    );
    let status = quiet(
        Command::new("apt-get")
            .args(["install", "-y", "-qq"])
            .args(&missing),
    )?;
    anyhow::ensure!(
        status.success(),
        "apt-get install {} failed",
        missing.join(" ")
    );
    Ok(())
}

fn on_path(program: &str) -> bool {
    find(program).is_some()
}

/// Where `program` is: on PATH, or in the sbin folders a user's PATH may lack.
fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// `program`'s full path when found, else its bare name (the spawn then fails, saying so).
pub(crate) fn program(name: &str) -> PathBuf {
    find(name).unwrap_or_else(|| PathBuf::from(name))
}

/// Raises this process's open-file limit (its children inherit it) and
/// returns it.
fn raise_open_files() -> anyhow::Result<u64> {
    use rlimit::Resource;
    let (soft, hard) = Resource::NOFILE.get()?;
    if soft >= NOFILE {
        return Ok(soft);
    }
    // Raising the hard limit needs CAP_SYS_RESOURCE; without it, go as far
    // as the hard limit allows.
    if Resource::NOFILE.set(NOFILE, hard.max(NOFILE)).is_ok() {
        return Ok(NOFILE);
    }
    Resource::NOFILE.set(hard.min(NOFILE), hard)?;
    Ok(hard.min(NOFILE))
}

/// Idle connections one proxy can hold under `nofile`: two descriptors
/// each, and some to spare for listeners, logs and the upstream's own.
fn idle_capacity(nofile: u64) -> usize {
    usize::try_from(nofile.saturating_sub(100) / 2).unwrap_or(usize::MAX)
}

/// A binary beside this one.
fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default()
        .join(name)
}

fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        options: Options,
    }

    fn plan(args: &[&str]) -> anyhow::Result<Plan> {
        let cli = Cli::try_parse_from(std::iter::once("run").chain(args.iter().copied()))?;
        Plan::from(&cli.options)
    }

    #[test]
    fn one_worker_puts_the_proxy_and_the_clients_on_separate_cores() {
        let one = Placement {
            workers: 1,
            tls: false,
        };
        assert_eq!(
            (one.proxy_cpus(), one.client_cpus()),
            (Some("0"), Some("1"))
        );
        let cmd = peers::pinned(one.proxy_cpus(), Path::new("/usr/sbin/nginx"));
        assert_eq!(cmd.get_program(), "taskset");
        assert_eq!(
            cmd.get_args().collect::<Vec<_>>(),
            ["-c", "0", "/usr/sbin/nginx"]
        );
        // Two workers compete for both cores: nothing is pinned.
        let two = Placement { workers: 2, ..one };
        assert_eq!((two.proxy_cpus(), two.client_cpus()), (None, None));
        let cmd = peers::pinned(two.proxy_cpus(), Path::new("/usr/sbin/nginx"));
        assert_eq!(cmd.get_program(), "/usr/sbin/nginx");
        assert_eq!(cmd.get_args().count(), 0);
    }

    #[test]
    fn the_open_files_limit_is_raised_as_far_as_the_hard_limit_allows() {
        let (_, hard_before) = rlimit::Resource::NOFILE.get().unwrap();
        let raised = raise_open_files().unwrap();
        let (soft, _) = rlimit::Resource::NOFILE.get().unwrap();
        assert_eq!(soft, raised, "the limit returned is the one in force");
        assert!(
            raised >= NOFILE.min(hard_before),
            "{raised} is below {NOFILE} and below the hard limit {hard_before}"
        );
        // Workload e opens at most what the limit leaves room for.
        assert_eq!(idle_capacity(20_000), 9_950);
    }

    #[test]
    fn the_baseline_relays_run_only_on_plain_ws_with_one_worker() {
        let accepted = plan(&[
            "--peers",
            "wsgate,tokio-relay,mio-relay",
            "--tls",
            "off",
            "--workers",
            "1",
        ])
        .expect("plain ws, one worker");
        assert_eq!(
            accepted.peers,
            [Peer::Wsgate, Peer::TokioRelay, Peer::MioRelay]
        );
        let Err(refused) = plan(&["--peers", "wsgate,mio-relay"]) else {
            panic!("wss and two workers are the defaults: refused");
        };
        let refused = refused.to_string();
        assert!(
            refused.contains("--peers: mio-relay runs only with --tls off --workers 1"),
            "{refused}"
        );
        assert!(!refused.contains("wsgate"), "{refused}");
    }
}
