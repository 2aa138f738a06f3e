//! Reloading a running `wsgate serve` the two ways an operator does:
//! `wsgate reload` (the admin endpoint) and SIGHUP. Both read the config
//! file again; a file with errors changes nothing.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::Command;

use wsgate_testkit::client::RawClient;
use wsgate_testkit::process::GatewayProcess;
use wsgate_testkit::upstream::Echo;

const BIN: &str = env!("CARGO_BIN_EXE_wsgate");

fn config(upstream: std::net::SocketAddr, origins: &str) -> String {
    format!(
        r#"
[metrics]
bind = "127.0.0.1:0"

[[listener]]
bind = "127.0.0.1:0"

[[route]]
path = "/chat"
upstream = "ws://{upstream}/chat"
origins = [{origins}]
auth = "none"
"#
    )
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

async fn open(gw: &GatewayProcess, origin: &str) -> RawClient {
    let mut c = RawClient::connect(gw.addr).await;
    let reply = c.handshake("/chat", &[("Origin", origin)]).await;
    assert_eq!(reply.status, 101, "{}", reply.body);
    c
}

/// `wsgate reload --admin ADDR`: exit code, stdout, stderr.
fn reload(gw: &GatewayProcess) -> (Option<i32>, String, String) {
    let admin = gw.admin.unwrap().to_string();
    let out = Command::new(BIN)
        .args(["reload", "--admin", &admin])
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn start(dir: &tempfile::TempDir, text: &str) -> (GatewayProcess, PathBuf) {
    let path = dir.path().join("gw.toml");
    write(&path, text);
    let gw = GatewayProcess::spawn(Path::new(BIN), &path, &[]).await;
    (gw, path)
}

#[tokio::test]
async fn wsgate_reload_puts_the_edited_file_in_force_and_closes_who_it_no_longer_admits() {
    let echo = Echo::start().await;
    let dir = tempfile::tempdir().unwrap();
    let both = r#""https://one.example", "https://two.example""#;
    let (mut gw, path) = start(&dir, &config(echo.addr, both)).await;
    let mut one = open(&gw, "https://one.example").await;
    let mut two = open(&gw, "https://two.example").await;

    write(&path, &config(echo.addr, r#""https://two.example""#));
    let (code, stdout, stderr) = reload(&gw);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout.trim(), "reloaded: generation 2 in force");
    let ev = gw.event(|e| e["event"] == "reload").await;
    assert_eq!(ev["decision"], "applied");
    assert_eq!(ev["generation"], 2);

    let close = one.read_close().await;
    assert_eq!(
        (close.close_code(), close.close_reason().as_str()),
        (Some(1008), "policy_changed")
    );
    one.send_frame(0x88, &1008u16.to_be_bytes(), true).await;
    let ev = gw.event(|e| e["event"] == "close").await;
    assert_eq!(ev["reason"], "policy_changed");
    assert_eq!(ev["origin"], "https://one.example");
    two.send_text("still here").await;
    assert_eq!(two.read_data().await.payload, b"still here");
}

#[tokio::test]
async fn a_file_with_errors_is_refused_by_wsgate_reload_and_by_sighup_and_changes_nothing() {
    let echo = Echo::start().await;
    let dir = tempfile::tempdir().unwrap();
    let good = config(echo.addr, r#""https://one.example""#);
    let (mut gw, path) = start(&dir, &good).await;
    let mut c = open(&gw, "https://one.example").await;

    // Two mistakes in one file: both are reported, the old config stays.
    let bad = good
        .replace(r#"auth = "none""#, r#"auth = "sometimes""#)
        .replace(r#"path = "/chat""#, r#"path = "chat""#);
    write(&path, &bad);
    let (code, _, stderr) = reload(&gw);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("the old one stays in force"), "{stderr}");
    assert!(stderr.contains("route[0].auth"), "{stderr}");
    assert!(stderr.contains("route[0].path"), "{stderr}");
    let ev = gw.event(|e| e["event"] == "reload").await;
    assert_eq!(
        (&ev["decision"], &ev["generation"]),
        (&"refused".into(), &1.into())
    );

    let pid = gw.pid();
    wsgate_testkit::process::signal(pid, "HUP");
    let ev = gw.event(|e| e["event"] == "reload").await;
    assert_eq!(ev["decision"], "refused");
    assert_eq!(ev["client"], "signal");
    gw.wait_log("config reload refused").await;

    c.send_text("untouched").await;
    assert_eq!(c.read_data().await.payload, b"untouched");
    let _another = open(&gw, "https://one.example").await;

    // Fixed, the same signal puts it in force.
    write(&path, &config(echo.addr, r#""https://two.example""#));
    wsgate_testkit::process::signal(pid, "HUP");
    let ev = gw.event(|e| e["event"] == "reload").await;
    assert_eq!(
        (&ev["decision"], &ev["generation"]),
        (&"applied".into(), &2.into())
    );
    assert_eq!(c.read_close().await.close_code(), Some(1008));
}

/// `wsgate` with these arguments and environment changes (a value, or
/// `None` to remove the variable): exit code, stdout, stderr.
fn run(args: &[&str], env: &[(&str, Option<&str>)]) -> (Option<i32>, String, String) {
    let mut command = Command::new(BIN);
    command.args(args).env_remove("WSGATE_ADMIN_TOKEN");
    for (k, v) in env {
        match v {
            Some(v) => command.env(k, v),
            None => command.env_remove(k),
        };
    }
    let out = command.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// With `[metrics] admin_token_env`, the admin endpoint's POSTs need the
/// token, and only they: `/metrics` stays open to scrapers. `wsgate reload`
/// sends the token from the variable the config names, and reads nothing
/// else of the config, so a shell without the service's other secrets
/// still reaches the gateway.
#[tokio::test]
async fn the_admin_token_is_required_and_the_cli_sends_it() {
    const TOKEN: &str = "an-admin-token-of-at-least-32-bytes!";
    let echo = Echo::start().await;
    let dir = tempfile::tempdir().unwrap();
    let text = config(echo.addr, r#""https://one.example""#).replacen(
        "bind = \"127.0.0.1:0\"\n",
        "bind = \"127.0.0.1:0\"\nadmin_token_env = \"WSGATE_TEST_ADMIN\"\n",
        1,
    );
    let path = dir.path().join("gw.toml");
    write(&path, &text);
    let gw = GatewayProcess::spawn(Path::new(BIN), &path, &[("WSGATE_TEST_ADMIN", TOKEN)]).await;
    let admin = gw.admin.unwrap().to_string();
    let by_address = ["reload", "--admin", admin.as_str()];
    for (token, want) in [(None, Some(1)), (Some("a-wrong-token"), Some(1))] {
        let (code, _, stderr) = run(&by_address, &[("WSGATE_ADMIN_TOKEN", token)]);
        assert_eq!(code, want, "{stderr}");
        assert!(stderr.contains("answered 401"), "{stderr}");
        assert!(stderr.contains("$WSGATE_TEST_ADMIN"), "{stderr}");
    }
    let (code, stdout, stderr) = run(&by_address, &[("WSGATE_ADMIN_TOKEN", Some(TOKEN))]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("generation 2"), "{stdout}");

    // Through a config: its admin address and token variable, beside a
    // secret this shell does not have.
    let cli_config = dir.path().join("cli.toml");
    let with_address = text.replacen(
        "bind = \"127.0.0.1:0\"\n",
        &format!("bind = \"{admin}\"\n"),
        1,
    ) + "\n[auth.jwt]\nhs256_secret_env = \"NOT_IN_THIS_SHELL\"\nalgorithms = [\"HS256\"]\n";
    write(&cli_config, &with_address);
    let cli_config = cli_config.to_str().unwrap();
    let by_config = ["reload", "--config", cli_config];
    let (code, _, stderr) = run(&by_config, &[("WSGATE_TEST_ADMIN", None)]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("set $WSGATE_TEST_ADMIN here too"),
        "{stderr}"
    );
    let (code, stdout, stderr) = run(&by_config, &[("WSGATE_TEST_ADMIN", Some(TOKEN))]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("generation 3"), "{stdout}");

    let mut scrape = RawClient::connect(gw.admin.unwrap()).await;
    assert_eq!(scrape.request("GET", "/metrics", &[]).await.status, 200);
}
