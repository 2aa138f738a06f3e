//! `wsgate revoke` and `wsgate reload`: requests to a running gateway's
//! admin endpoint (`[metrics] bind`).
//!
//! Revoke: the gateway does the rest; with the Redis store every instance
//! closes the user's connections, with the memory store that one does.
//! Reload: the gateway reads its own config file again (the one it was
//! started with), so the file this command is given serves only to find
//! the admin endpoint.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

/// Longest wait for the admin endpoint's answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The admin endpoint: `--admin`, or the config's `[metrics] bind`.
fn admin_addr(
    command: &str,
    config: Option<&Path>,
    admin: Option<SocketAddr>,
) -> Result<SocketAddr, ExitCode> {
    match (admin, config) {
        (Some(a), _) => Ok(a),
        (None, Some(path)) => match wsgate_config::load(path) {
            Err(errors) => {
                eprint!("{}: {errors}", path.display());
                Err(ExitCode::from(2))
            }
            Ok(c) => c.metrics.ok_or_else(|| {
                eprintln!(
                    "{}: no [metrics] bind: {command} talks to the gateway's admin endpoint there",
                    path.display()
                );
                ExitCode::from(2)
            }),
        },
        (None, None) => {
            eprintln!("wsgate {command}: give --config or --admin");
            Err(ExitCode::from(2))
        }
    }
}

/// `wsgate reload`: exit 0 when the new config is in force, 1 when the
/// gateway refused it (its errors are printed) or could not be reached.
pub(crate) fn reload(config: Option<&Path>, admin: Option<SocketAddr>) -> ExitCode {
    let addr = match admin_addr("reload", config, admin) {
        Ok(a) => a,
        Err(code) => return code,
    };
    match post(addr, "/reload", "{}") {
        Ok((200, answer)) => {
            let generation = serde_json::from_str::<serde_json::Value>(&answer)
                .ok()
                .and_then(|v| v["generation"].as_u64());
            match generation {
                Some(g) => println!("reloaded: generation {g} in force"),
                None => println!("{}", answer.trim()),
            }
            ExitCode::SUCCESS
        }
        Ok((422, answer)) => {
            eprintln!(
                "wsgate reload: the gateway refused the new config; the old one stays in force:"
            );
            let errors = serde_json::from_str::<serde_json::Value>(&answer).ok();
            match errors.as_ref().and_then(|v| v["errors"].as_array()) {
                Some(list) => {
                    for e in list {
                        eprintln!("  {}", e.as_str().unwrap_or_default());
                    }
                }
                None => eprintln!("  {}", answer.trim()),
            }
            ExitCode::FAILURE
        }
        Ok((status, answer)) => {
            eprintln!("wsgate reload: {addr} answered {status}: {}", answer.trim());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("wsgate reload: cannot reach the admin endpoint {addr}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `wsgate revoke`.
pub(crate) fn revoke(
    config: Option<&Path>,
    admin: Option<SocketAddr>,
    user: &str,
    duration: Option<String>,
    until: Option<String>,
) -> ExitCode {
    let addr = match admin_addr("revoke", config, admin) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let mut body = serde_json::json!({ "user": user });
    if let Some(d) = duration {
        // The config's own parser: the same units, and the same bound.
        if let Err(e) = wsgate_config::units::parse_duration(&d) {
            eprintln!("wsgate revoke: --for: {e}");
            return ExitCode::from(2);
        }
        body["for"] = d.into();
    }
    if let Some(u) = until {
        match humantime::parse_rfc3339_weak(&u) {
            Ok(t) => {
                body["until"] = t
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
                    .into();
            }
            Err(e) => {
                eprintln!("wsgate revoke: --until {u:?}: {e} (write e.g. 2026-12-01T00:00:00Z)");
                return ExitCode::from(2);
            }
        }
    }
    match post(addr, "/revoke", &body.to_string()) {
        Ok((200, answer)) => {
            println!("{}", answer.trim());
            ExitCode::SUCCESS
        }
        Ok((status, answer)) => {
            eprintln!("wsgate revoke: {addr} answered {status}: {}", answer.trim());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("wsgate revoke: cannot reach the admin endpoint {addr}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One HTTP/1.1 POST of a JSON body; returns the status and the body.
fn post(addr: SocketAddr, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut tcp = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    tcp.set_read_timeout(Some(TIMEOUT))?;
    tcp.set_write_timeout(Some(TIMEOUT))?;
    write!(
        tcp,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    tcp.take(64 * 1024).read_to_string(&mut answer)?;
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP answer"))?;
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((status, body.to_owned()))
}
