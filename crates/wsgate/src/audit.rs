//! `wsgate audit URL`: the auditor's command line. Exit 0: no finding at or
//! above `--fail-on`; 1: findings at or above it; 2: the audit could not run
//! (bad arguments, unreachable endpoint, refused legitimate handshake).

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use wsgate_audit::checks::{CATALOG, Check};
use wsgate_audit::report::Severity;
use wsgate_audit::target::Options;

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// A table for the terminal (coloured when stdout is a terminal).
    Table,
    /// JSON, schema "wsgate-audit/1" (docs/auditor.md).
    Json,
    /// SARIF 2.1.0, for code scanning.
    Sarif,
}

/// `wsgate audit`'s arguments.
#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    /// The endpoint, ws:// or wss://. Only audit endpoints you own or may test.
    #[arg(required_unless_present = "list")]
    url: Option<String>,
    /// The origin the application's pages have (default: from the URL).
    #[arg(long)]
    origin: Option<String>,
    /// A cookie a logged-in browser holds, name=value (repeatable).
    #[arg(long = "cookie")]
    cookies: Vec<String>,
    /// A header to send, "Name: value" (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
    /// A bearer token, sent as Authorization: Bearer.
    #[arg(long)]
    bearer: Option<String>,
    /// A TLS client certificate (PEM); needs --client-key.
    #[arg(long, requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// The client certificate's key (PEM).
    #[arg(long, requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// The endpoint should require credentials: check that it refuses none and forged ones.
    #[arg(long)]
    expect_auth: bool,
    /// A legitimate message to send after connecting (the rate probe repeats it).
    #[arg(long)]
    message: Option<String>,
    /// Deadline for each answer, e.g. "5s".
    #[arg(long, default_value = "5s", value_parser = duration)]
    timeout: Duration,
    /// Run only these checks (comma-separated ids; --list shows them).
    #[arg(long, value_delimiter = ',')]
    checks: Vec<String>,
    /// Skip these checks (comma-separated ids).
    #[arg(long, value_delimiter = ',')]
    skip: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Exit 1 when a finding is at least this severe: info, low, medium, high, critical.
    #[arg(long, default_value = "medium", value_parser = severity)]
    fail_on: Severity,
    /// Accept a certificate that does not verify (it is reported as a finding).
    #[arg(long)]
    insecure: bool,
    /// Also run the checks that stress the endpoint (large messages, bombs, floods, slow and idle connections).
    #[arg(long)]
    aggressive: bool,
    /// New connections per second, at most.
    #[arg(long, default_value_t = 10)]
    rate: u32,
    /// Largest message the size and inflate probes send, e.g. "16MiB".
    #[arg(long, default_value = "16MiB", value_parser = size)]
    max_probe: u64,
    /// How long the slow-handshake and idle probes wait before calling a connection held open.
    #[arg(long, default_value = "30s", value_parser = duration)]
    hold_wait: Duration,
    /// List the checks and exit.
    #[arg(long)]
    list: bool,
}

fn duration(s: &str) -> Result<Duration, String> {
    wsgate_config::units::parse_duration(s)
}

fn size(s: &str) -> Result<u64, String> {
    wsgate_config::units::parse_size(s)
}

fn severity(s: &str) -> Result<Severity, String> {
    Severity::parse(s).ok_or_else(|| format!("{s:?}: write info, low, medium, high or critical"))
}

pub(crate) fn run(args: AuditArgs) -> ExitCode {
    if args.list {
        for c in CATALOG {
            let mode = if c.aggressive { " (--aggressive)" } else { "" };
            println!("{:<26} {:<9} {}{mode}", c.id, c.severity.name(), c.title);
        }
        return ExitCode::SUCCESS;
    }
    let options = Options {
        url: args.url.unwrap_or_default(),
        origin: args.origin,
        cookies: args.cookies,
        headers: args.headers,
        bearer: args.bearer,
        client_cert: args.client_cert.zip(args.client_key),
        expect_auth: args.expect_auth,
        message: args.message,
        timeout: args.timeout,
        checks: args.checks,
        skip: args.skip,
        aggressive: args.aggressive,
        insecure: args.insecure,
        rate: args.rate,
        max_probe: args.max_probe,
        hold_wait: args.hold_wait,
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wsgate audit: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let bar = std::io::stderr().is_terminal();
    let mut progress = move |i: usize, n: usize, c: &Check| {
        if bar {
            let done = i * 20 / n.max(1);
            let line = format!(
                "[{}{}] {i}/{n} {}",
                "#".repeat(done),
                "-".repeat(20 - done),
                c.id
            );
            let _ = write!(std::io::stderr(), "\r\x1b[2K{line}");
        }
    };
    let result = runtime.block_on(wsgate_audit::audit(options, &mut progress));
    if bar {
        let _ = write!(std::io::stderr(), "\r\x1b[2K");
    }
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("wsgate audit: could not run: {e}");
            return ExitCode::from(2);
        }
    };
    let out = match args.format {
        Format::Table => {
            let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            report.table(colour)
        }
        Format::Json => pretty(&report.json()),
        Format::Sarif => pretty(&report.sarif()),
    };
    let _ = std::io::stdout().write_all(out.as_bytes());
    match report.worst() {
        Some(worst) if worst >= args.fail_on => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    }
}

fn pretty(v: &serde_json::Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}
