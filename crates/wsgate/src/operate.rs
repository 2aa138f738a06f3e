//! `wsgate revoke` and `wsgate reload`: requests to a running gateway's
//! admin endpoint (`[metrics] bind`).
//!
//! Revoke: the gateway does the rest; with the Redis store every instance
//! closes the user's connections, with the memory store that one does.
//! Reload: the gateway reads its own config file again (the one it was
//! started with), so the file this command is given serves only to find
//! the admin endpoint and its token.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

/// Longest wait for the admin endpoint's answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The variable the admin token is read from when no config names one.
const DEFAULT_TOKEN_ENV: &str = "WSGATE_ADMIN_TOKEN";

/// Where to send a request, and the token to send with it.
struct Endpoint {
    addr: SocketAddr,
    token: Option<String>,
}

/// The admin endpoint: `--admin`, or the config's `[metrics] bind`; and
/// its token, from the variable the config's `[metrics] admin_token_env`
/// names (which must then be set here too), else from
/// `$WSGATE_ADMIN_TOKEN` if set. Only those two keys of the config are
/// read: this shell may lack the service's other secrets and files, and
/// the gateway checks its own config.
fn endpoint(
    command: &str,
    config: Option<&Path>,
    admin: Option<SocketAddr>,
) -> Result<Endpoint, ExitCode> {
    let named = match config.map(wsgate_config::admin_endpoint) {
        None => None,
        Some(Ok(found)) => Some(found),
        Some(Err(e)) if admin.is_some() => {
            eprintln!("wsgate {command}: {e}");
            None
        }
        Some(Err(e)) => {
            eprintln!("wsgate {command}: {e}");
            return Err(ExitCode::from(2));
        }
    };
    let addr = match (admin, &named) {
        (Some(a), _) => a,
        (None, Some((bind, _))) => *bind,
        (None, None) => {
            eprintln!("wsgate {command}: give --config or --admin");
            return Err(ExitCode::from(2));
        }
    };
    let token = match named.and_then(|(_, env)| env) {
        Some(env) => match std::env::var(&env) {
            Ok(token) => Some(token),
            Err(_) => {
                eprintln!(
                    "wsgate {command}: the gateway's admin endpoint takes the token in ${env} ([metrics] admin_token_env); set ${env} here too"
                );
                return Err(ExitCode::from(2));
            }
        },
        None => std::env::var(DEFAULT_TOKEN_ENV).ok(),
    };
    Ok(Endpoint { addr, token })
}

/// `wsgate reload`: exit 0 when the new config is in force, 1 when the
/// gateway refused it (its errors are printed) or could not be reached.
pub(crate) fn reload(config: Option<&Path>, admin: Option<SocketAddr>) -> ExitCode {
    let endpoint = match endpoint("reload", config, admin) {
        Ok(e) => e,
        Err(code) => return code,
    };
    let addr = endpoint.addr;
    match post(&endpoint, "/reload", "{}") {
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
    let endpoint = match endpoint("revoke", config, admin) {
        Ok(e) => e,
        Err(code) => return code,
    };
    let addr = endpoint.addr;
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
    match post(&endpoint, "/revoke", &body.to_string()) {
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
fn post(endpoint: &Endpoint, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let addr = endpoint.addr;
    let mut tcp = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    tcp.set_read_timeout(Some(TIMEOUT))?;
    tcp.set_write_timeout(Some(TIMEOUT))?;
    let authorization = match &endpoint.token {
        // A token that could break the request head is refused here, not sent.
        Some(t) if t.bytes().any(|b| b.is_ascii_control()) => {
            return Err(std::io::Error::other(
                "the admin token holds a control character",
            ));
        }
        Some(t) => format!("Authorization: Bearer {t}\r\n"),
        None => String::new(),
    };
    write!(
        tcp,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{authorization}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
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
