//! `wsgate revoke`: asks a running gateway's admin endpoint to revoke a
//! user. The gateway does the rest: with the Redis store every instance
//! closes the user's connections; with the memory store, that one does.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

/// Longest wait for the admin endpoint's answer.
const TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn run(
    config: Option<&Path>,
    admin: Option<SocketAddr>,
    user: &str,
    duration: Option<String>,
    until: Option<String>,
) -> ExitCode {
    let addr = match (admin, config) {
        (Some(a), _) => a,
        (None, Some(path)) => match wsgate_config::load(path) {
            Err(errors) => {
                eprint!("{}: {errors}", path.display());
                return ExitCode::from(2);
            }
            Ok(c) => match c.metrics {
                Some(a) => a,
                None => {
                    eprintln!(
                        "{}: no [metrics] bind: revoke talks to the gateway's admin endpoint there",
                        path.display()
                    );
                    return ExitCode::from(2);
                }
            },
        },
        (None, None) => {
            eprintln!("wsgate revoke: give --config or --admin");
            return ExitCode::from(2);
        }
    };
    let mut body = serde_json::json!({ "user": user });
    if let Some(d) = duration {
        if let Err(e) = humantime::parse_duration(&d) {
            eprintln!("wsgate revoke: --for {d:?}: {e}");
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
    match post(addr, &body.to_string()) {
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
fn post(addr: SocketAddr, body: &str) -> std::io::Result<(u16, String)> {
    let mut tcp = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    tcp.set_read_timeout(Some(TIMEOUT))?;
    tcp.set_write_timeout(Some(TIMEOUT))?;
    write!(
        tcp,
        "POST /revoke HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
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
