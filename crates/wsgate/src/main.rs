//! The `wsgate` command: argument parsing, wiring, exit codes.
//!
//! Exit codes: 0 success; 2 the config (or the command line) is wrong;
//! 1 the gateway failed while running (a port could not be bound).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod audit;
mod operate;

use clap::{Parser, Subcommand};
use wsgate_config::{AuditTarget, Config, LogFormat};
use wsgate_gateway::AuditLog;

/// mimalloc, not the system's allocator. Measured (docs/perf/findings.md): a
/// handshake allocates some sixty times, and glibc's malloc and free were a
/// fifth of the gateway's own instructions for it, 14 % fewer with
/// mimalloc; and glibc's resident memory per idle connection swung between
/// 4.1 and 5.9 KiB with the order of allocations, where mimalloc's size
/// classes keep it at 4.2-4.3.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The version and the commit it was built from (see build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("WSGATE_GIT_HASH"),
    ")"
);

/// A WebSocket security gateway.
#[derive(Parser)]
#[command(name = "wsgate", version = VERSION, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// The config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config and print every error with its key path; exit 0 valid, 2 invalid.
    Check {
        /// The config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Close a user's connections on every instance and refuse their
    /// handshakes for a while, through a running gateway's admin endpoint
    /// (`[metrics] bind` in the config, or --admin).
    Revoke {
        /// The config file of a running gateway (for its admin address).
        #[arg(long, short, required_unless_present = "admin")]
        config: Option<PathBuf>,
        /// The admin endpoint's address, instead of the config's `[metrics] bind`.
        #[arg(long)]
        admin: Option<std::net::SocketAddr>,
        /// The user, as the gateway names them (the JWT claim, the certificate's user...).
        #[arg(long)]
        user: String,
        /// How long to refuse their handshakes, e.g. "15m" (the default) or "2h".
        #[arg(long = "for", conflicts_with = "until")]
        duration: Option<String>,
        /// Refuse until this time instead, RFC 3339 (e.g. "2026-12-01T00:00:00Z").
        #[arg(long)]
        until: Option<String>,
    },
    /// Have a running gateway read its config file again and put it in
    /// force if all of it is valid (open connections are re-checked);
    /// through its admin endpoint (`[metrics] bind`, or --admin). SIGHUP
    /// does the same.
    Reload {
        /// The config file of the running gateway (for its admin address).
        #[arg(long, short, required_unless_present = "admin")]
        config: Option<PathBuf>,
        /// The admin endpoint's address, instead of the config's `[metrics] bind`.
        #[arg(long)]
        admin: Option<std::net::SocketAddr>,
    },
    /// Probe a WebSocket endpoint (wsgate or not) for cross-site hijacking,
    /// weak authentication, protocol and limit weaknesses; exit 0 clean,
    /// 1 findings at or above --fail-on, 2 could not run.
    Audit(audit::AuditArgs),
    /// The attack and the defence, live: a chat application behind the
    /// gateway, an attacker's page on another origin, and the gateway's
    /// decisions as they happen. Prints the URLs to open; Ctrl-C stops it.
    Demo {
        /// The gateway's address (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:0")]
        gateway: std::net::SocketAddr,
        /// The console's address (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:0")]
        console: std::net::SocketAddr,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Serve { config } => serve(&config),
        Command::Audit(args) => audit::run(args),
        Command::Revoke {
            config,
            admin,
            user,
            duration,
            until,
        } => operate::revoke(config.as_deref(), admin, &user, duration, until),
        Command::Reload { config, admin } => operate::reload(config.as_deref(), admin),
        Command::Demo { gateway, console } => demo(wsgate_demo::Options { gateway, console }),
        Command::Completions { shell } => {
            use clap::CommandFactory as _;
            clap_complete::generate(shell, &mut Cli::command(), "wsgate", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
    }
}

/// Loads a config and everything it refers to, printing every error.
fn load(path: &Path) -> Result<(Config, wsgate_gateway::Prepared), ExitCode> {
    let config = wsgate_config::load(path).map_err(|errors| {
        eprint!("{}: {errors}", path.display());
        ExitCode::from(2)
    })?;
    let audit = audit_log(&config).map_err(|e| {
        eprintln!("{}: log.audit: {e}", path.display());
        ExitCode::from(2)
    })?;
    let prepared = wsgate_gateway::prepare(config.clone(), audit).map_err(|errors| {
        let n = errors.len();
        eprintln!(
            "{}: {n} error{} in config:",
            path.display(),
            if n == 1 { "" } else { "s" }
        );
        for e in errors {
            eprintln!("  {e}");
        }
        ExitCode::from(2)
    })?;
    Ok((config, prepared))
}

fn check(path: &Path) -> ExitCode {
    match load(path) {
        Ok((config, prepared)) => {
            for note in &prepared.notes {
                println!("note: {note}");
            }
            println!(
                "{}: ok ({} listener{}, {} route{})",
                path.display(),
                config.listeners.len(),
                plural(config.listeners.len()),
                config.routes.len(),
                plural(config.routes.len()),
            );
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn audit_log(config: &Config) -> std::io::Result<AuditLog> {
    Ok(AuditLog::new(audit_target(&config.log.audit)?))
}

/// Opens the audit log's target (a file is appended to, created if missing).
fn audit_target(target: &AuditTarget) -> std::io::Result<Box<dyn std::io::Write + Send>> {
    Ok(match target {
        AuditTarget::Stdout => Box::new(std::io::stdout()),
        AuditTarget::File(path) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?,
        ),
    })
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WSGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A log pipe that closes must not take the gateway down: by default the
    // subscriber reports its own write errors with eprintln!, which panics.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .log_internal_errors(false)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.init(),
    }
}

fn serve(path: &Path) -> ExitCode {
    let (config, prepared) = match load(path) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    init_tracing(config.log.format);
    let runtime = match serving_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let prepared = prepared.reload_from(path.to_owned());
    match runtime.block_on(run(prepared, config.log.audit)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            say(&format!("wsgate: {e:#}"));
            ExitCode::FAILURE
        }
    }
}

/// The runtime `serve` runs on. Given one core (a one-core machine, or a
/// process pinned to one), a current-thread runtime: the multi-threaded
/// one would run a single worker anyway, and still pay on every spawn and
/// every wake for the synchronisation that work stealing needs (measured:
/// a few per cent of the CPU time per handshake, docs/perf/findings.md).
/// Given more cores, one worker per core. Blocking work (config reloads,
/// password checks) goes to tokio's blocking threads under either.
fn serving_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    if cores == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Runtime::new()
    }
}

async fn run(prepared: wsgate_gateway::Prepared, audit_to: AuditTarget) -> anyhow::Result<()> {
    for note in &prepared.notes {
        tracing::warn!("{note}");
    }
    // Registered before the listening line: from then on a SIGTERM always
    // means a graceful stop, never the default action (kill).
    let signals = Signals::register()?;
    let gateway = prepared.start().await?;
    if let Some(addr) = gateway.metrics_addr() {
        tracing::info!(%addr, "admin endpoint");
        say(&format!("wsgate: admin on {addr}"));
    }
    for addr in gateway.local_addrs() {
        tracing::info!(%addr, "listening");
        // A plain line for scripts and tests that start wsgate on port 0.
        say(&format!("wsgate: listening on {addr}"));
    }
    let token = gateway.shutdown_token();
    let audit = gateway.audit().clone();
    let reloader = gateway.reloader();
    tokio::spawn(async move {
        signals.run(&audit, &audit_to, &reloader).await;
        token.cancel();
        tracing::info!("shutting down: closing the listeners");
    });
    let drained = gateway.wait().await;
    if drained {
        tracing::info!("all connections closed");
    } else {
        tracing::warn!("grace period over with connections still open; exiting");
    }
    Ok(())
}

fn demo(options: wsgate_demo::Options) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let demo = match wsgate_demo::Demo::start(options).await {
            Ok(d) => d,
            Err(e) => {
                say(&format!("wsgate demo: {e:#}"));
                return ExitCode::FAILURE;
            }
        };
        println!("wsgate demo is running. Open, in one browser:");
        for (what, url) in demo.urls() {
            println!("  {what:<24} {url}");
        }
        println!("Ctrl-C stops it.");
        let _ = tokio::signal::ctrl_c().await;
        demo.shutdown().await;
        ExitCode::SUCCESS
    })
}

/// A line on stderr that is skipped, not a panic, when stderr is gone.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// SIGTERM and SIGINT, both meaning: stop gracefully; SIGHUP: reopen the
/// audit log file (after logrotate has moved it) and reload the config.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn register() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Handles SIGHUP until SIGTERM or SIGINT arrives.
    async fn run(
        mut self,
        audit: &AuditLog,
        target: &AuditTarget,
        reloader: &wsgate_gateway::Reloader,
    ) {
        loop {
            tokio::select! {
                _ = self.term.recv() => return,
                _ = self.int.recv() => return,
                _ = self.hup.recv() => {
                    reopen(audit, target);
                    // Logged, audited and counted inside; the old config
                    // stays in force when the new one is refused.
                    let _ = reloader.reload(wsgate_gateway::Trigger::Signal).await;
                }
            }
        }
    }
}

/// Reopens the audit file; on failure the old handle is kept, so no line is lost.
fn reopen(audit: &AuditLog, target: &AuditTarget) {
    match target {
        AuditTarget::Stdout => {
            tracing::info!("SIGHUP: the audit log goes to stdout; nothing to reopen")
        }
        AuditTarget::File(path) => match audit_target(target) {
            Ok(out) => {
                audit.replace(out);
                tracing::info!(path = %path.display(), "audit log reopened");
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot reopen the audit log; still writing to the old file")
            }
        },
    }
}
