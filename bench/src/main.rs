//! `wsgate-perf`: the end-to-end benchmark harness.
//!
//! - `wsgate-perf echo`: the echo upstream every proxy is measured in front of;
//! - `wsgate-perf load URL MODE`: the load generator (one JSON report line on stdout);
//! - `wsgate-perf relay --upstream ADDR`: a byte relay that inspects nothing, a baseline;
//! - `wsgate-perf run`: the comparison of direct, wsgate, nginx and HAProxy,
//!   written to a Markdown table, a JSON file and an SVG chart.
//!
//! See docs/PERFORMANCE.md for what each workload measures and how to read it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use wsgate_bench::{echo, load, relay, runner, tls};

#[derive(Parser)]
#[command(name = "wsgate-perf", about = "wsgate's end-to-end benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The echo upstream: prints `echo: listening on ADDR` once bound.
    Echo {
        /// Address to listen on (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:0")]
        bind: SocketAddr,
        /// A PEM certificate chain: serve wss.
        #[arg(long, requires = "key")]
        cert: Option<PathBuf>,
        /// The PEM private key for --cert.
        #[arg(long, requires = "cert")]
        key: Option<PathBuf>,
    },
    /// The load generator: measures one workload against one URL.
    Load {
        #[command(flatten)]
        target: TargetArgs,
        #[command(subcommand)]
        mode: Mode,
    },
    /// A byte relay that inspects nothing (a baseline): prints `relay:
    /// listening on ADDR` once bound.
    Relay {
        /// Address to listen on (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:0")]
        bind: SocketAddr,
        /// Where to relay to.
        #[arg(long)]
        upstream: SocketAddr,
        /// tokio (copy_bidirectional per connection) or mio (one epoll loop).
        #[arg(long, value_enum)]
        engine: relay::Engine,
    },
    /// Runs every workload against direct, wsgate, nginx and HAProxy.
    Run(runner::Options),
    /// Writes results.md and the charts again from a run's results.json.
    Report {
        /// The run's output folder.
        #[arg(default_value = "target/perf")]
        dir: PathBuf,
    },
}

#[derive(clap::Args)]
struct TargetArgs {
    /// The ws:// or wss:// URL.
    url: url::Url,
    /// A PEM CA certificate to trust for wss (else the system's roots).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// The Origin header to send.
    #[arg(long)]
    origin: Option<String>,
    /// The environment variable holding a bearer token to send.
    #[arg(long)]
    bearer_env: Option<String>,
}

#[derive(Subcommand)]
enum Mode {
    /// W messages in flight on each of N connections; throughput and latency.
    Echo {
        /// Connections.
        #[arg(long, default_value_t = 50)]
        conns: usize,
        /// Messages in flight per connection.
        #[arg(long, default_value_t = 8)]
        in_flight: usize,
        /// Message size in bytes.
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Time before measuring.
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        warmup: Duration,
        /// Time measured.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        duration: Duration,
    },
    /// Connect, upgrade and close, over and over; handshakes per second.
    Handshakes {
        /// Handshakes in progress at once.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Time before measuring.
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        warmup: Duration,
        /// Time measured.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        duration: Duration,
    },
    /// Holds N connections open; prints `idle: ready` (a JSON report) on
    /// stderr once they are, and ends when stdin closes or after --hold.
    Idle {
        /// Connections.
        #[arg(long, default_value_t = 10_000)]
        conns: usize,
        /// Closed and reopened each second while held.
        #[arg(long, default_value_t = 0)]
        churn: usize,
        /// Longest hold (the runner closes stdin sooner).
        #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
        hold: Duration,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let offline = match &cli.command {
        Command::Run(options) => Some(runner::run(options)),
        Command::Report { dir } => Some(runner::rewrite(dir)),
        Command::Relay {
            bind,
            upstream,
            engine,
        } => Some(relay::run(*engine, *bind, *upstream)),
        _ => None,
    };
    if let Some(result) = offline {
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("wsgate-perf: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    // The echo upstream and the load generator each run on one thread: the
    // runner pins each to a core, and one thread per core is the fair use.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wsgate-perf: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(async_main(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wsgate-perf: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn async_main(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Echo { bind, cert, key } => {
            let tls = match (cert, key) {
                (Some(c), Some(k)) => Some(tls::server_config(&c, &k)?),
                _ => None,
            };
            echo::run(bind, tls).await
        }
        Command::Load { target, mode } => {
            let target = load_target(&target).await?;
            let report = match mode {
                Mode::Echo {
                    conns,
                    in_flight,
                    size,
                    warmup,
                    duration,
                } => load::echo(&target, conns, in_flight, size, warmup, duration).await,
                Mode::Handshakes {
                    concurrency,
                    warmup,
                    duration,
                } => load::handshakes(&target, concurrency, warmup, duration).await,
                Mode::Idle { conns, churn, hold } => {
                    let until = async {
                        // stdin closing (the runner is done reading memory) or the hold ending.
                        let stdin = tokio::task::spawn_blocking(|| {
                            let mut sink = String::new();
                            while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
                        });
                        let _ = tokio::time::timeout(hold, stdin).await;
                    };
                    load::idle(&target, conns, churn, until, |r| {
                        eprintln!(
                            "idle: ready {}",
                            serde_json::to_string(r).unwrap_or_default()
                        );
                    })
                    .await
                }
            };
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Command::Run(_) | Command::Report { .. } | Command::Relay { .. } => {
            unreachable!("handled before the runtime starts")
        }
    }
}

/// Resolves the URL into a [`load::Target`].
async fn load_target(args: &TargetArgs) -> anyhow::Result<load::Target> {
    let url = &args.url;
    let host = url
        .host_str()
        .ok_or_else(|| anyhow::anyhow!("{url}: no host"))?;
    let secure = match url.scheme() {
        "ws" => false,
        "wss" => true,
        other => anyhow::bail!("{url}: the scheme must be ws or wss, not {other}"),
    };
    let port = url
        .port_or_known_default()
        .unwrap_or(if secure { 443 } else { 80 });
    let addr = tokio::net::lookup_host((host, port))
        .await?
        .next()
        .ok_or_else(|| anyhow::anyhow!("{host}: no address"))?;
    let tls = if secure {
        let name = rustls_pki_types::ServerName::try_from(host.to_owned())?;
        Some((tls::connector(args.ca.as_deref())?, name))
    } else {
        None
    };
    let bearer = match &args.bearer_env {
        Some(var) => {
            Some(std::env::var(var).map_err(|_| anyhow::anyhow!("--bearer-env {var}: not set"))?)
        }
        None => None,
    };
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let host_header = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    };
    Ok(load::Target {
        addr,
        tls,
        request: wsgate_bench::wire::Request {
            host: host_header,
            path,
            origin: args.origin.clone(),
            bearer,
        },
    })
}
