//! The real `wsgate` binary: exit codes, error output, serving and stopping.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use wsgate_testkit::client::RawClient;
use wsgate_testkit::upstream::Echo;

fn wsgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wsgate"))
}

/// Kills the child when a test ends, passed or failed, so no gateway outlives its test.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for the child to exit, killing it if it has not within [`wsgate_testkit::WAIT`].
fn wait_exit(child: Reap) -> std::process::ExitStatus {
    let pid = child.0.id().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut child = child;
        let _ = tx.send(child.0.wait());
    });
    match rx.recv_timeout(wsgate_testkit::WAIT) {
        Ok(status) => status.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            panic!("wsgate did not exit within {:?}", wsgate_testkit::WAIT);
        }
    }
}

/// What `wsgate check --config PATH` printed, with `env` set, once it has
/// passed (exit 0).
fn check_passes(path: &std::path::Path, env: &[(&str, &str)]) -> String {
    let out = wsgate()
        .envs(env.iter().copied())
        .args(["check", "--config"])
        .arg(path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    stdout
}

/// [`check_passes`] on a `gateway.toml` in `dir`: one loopback listener,
/// then `tables`.
fn check_config(dir: &tempfile::TempDir, tables: &str, env: &[(&str, &str)]) -> String {
    let config = format!("[[listener]]\nbind = \"127.0.0.1:0\"\n\n{tables}");
    check_passes(&write(dir, "gateway.toml", &config), env)
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn check_reports_every_error_with_its_key_path_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "bad.toml",
        r#"
[[listener]]
bind = "0.0.0.0:0"
tls = { cert = "missing.pem", key = "missing.key" }

[[route]]
path = "/chat"
upstream = "ftp://example.com"
origins = ["https://*"]
auth = "maybe"

[route.limits]
max_message = "lots"
"#,
    );
    let out = wsgate()
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "listener[0].tls.cert (line 4): no such file",
        "listener[0].tls.key (line 4): no such file",
        "route[0].upstream (line 8)",
        "route[0].origins[0] (line 9)",
        "route[0].auth (line 10)",
        "route[0].limits.max_message (line 13)",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    assert!(err.contains("6 errors"), "{err}");
    // The `tls` written and refused is not also called missing.
    assert!(!err.contains("plain ws"), "{err}");
}

#[test]
fn check_accepts_the_shipped_example_config() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/gateway.toml");
    let out = wsgate()
        .args(["check", "--config", example])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ok (1 listener, 1 route)"), "{stdout}");
    assert!(stdout.contains("SHA-256"), "{stdout}");
}

/// A JWT config without an audience takes tokens the issuer signed for
/// any service, and a token cookie without the `__Host-` prefix can be
/// tossed from a sibling subdomain: `check` says so, and says nothing once
/// both are mended.
#[test]
fn check_notes_a_jwt_config_without_an_audience_or_with_a_tossable_cookie() {
    let dir = tempfile::tempdir().unwrap();
    let notes = |audience: &str| {
        let tables = format!(
            r#"
[auth.jwt]
hs256_secret_env = "WSGATE_TEST_JWT_SECRET"
algorithms = ["HS256"]
{audience}

[[route]]
path = "/"
upstream = "ws://127.0.0.1:9/"
origins = ["https://app.example.com"]
auth = "jwt"
"#
        );
        let secret = (
            "WSGATE_TEST_JWT_SECRET",
            "a-test-secret-of-at-least-32-bytes!!",
        );
        check_config(&dir, &tables, &[secret])
    };
    let without = notes("");
    assert!(
        without.contains("note: auth.jwt names no `audience`: a token its issuer signed for any other service is accepted here too"),
        "{without}"
    );
    let with = notes(r#"audience = "chat""#);
    assert!(!with.contains("audience"), "{with}");
    // A token cookie without the __Host- prefix can be tossed.
    let tossable = notes("audience = \"chat\"\nfrom = [\"header\", \"cookie:session\"]");
    assert!(
        tossable.contains("note: auth.jwt.from takes the cookie `session`")
            && tossable.contains("`__Host-session`"),
        "{tossable}"
    );
    let hosted = notes("audience = \"chat\"\nfrom = [\"cookie:__Host-session\"]");
    assert!(!hosted.contains("note"), "{hosted}");
}

/// An admin endpoint off loopback without a token lets whoever reaches it
/// revoke users and reload the config: `check` says so, and a token (or
/// loopback) quiets it. The token's variable must hold 32 bytes or more.
#[test]
fn check_notes_an_admin_endpoint_off_loopback_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let check = |metrics: &str, token: &str| {
        let path = write(
            &dir,
            "gateway.toml",
            &format!(
                r#"
[[listener]]
bind = "127.0.0.1:0"

[metrics]
{metrics}

[[route]]
path = "/"
upstream = "ws://127.0.0.1:9/"
origins = ["https://app.example.com"]
auth = "none"
"#
            ),
        );
        let out = wsgate()
            .env("WSGATE_TEST_ADMIN", token)
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), stdout + &stderr)
    };
    let token = "an-admin-token-of-at-least-32-bytes!";
    let (code, out) = check(r#"bind = "0.0.0.0:0""#, token);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("note: metrics.bind 0.0.0.0:0 is not loopback and names no `admin_token_env`"),
        "{out}"
    );
    let with_token = "bind = \"0.0.0.0:0\"\nadmin_token_env = \"WSGATE_TEST_ADMIN\"";
    let (code, out) = check(with_token, token);
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("admin_token_env"), "{out}");
    let (code, out) = check(r#"bind = "127.0.0.1:0""#, token);
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("note"), "{out}");
    let (code, out) = check(with_token, "short");
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("metrics.admin_token_env (line 7): $WSGATE_TEST_ADMIN holds 5 bytes; an admin token needs at least 32"),
        "{out}"
    );
}

/// Users hashed with different algorithms or costs take different times
/// to refuse, which a decoy of one kind cannot hide: `check` says so.
#[test]
fn check_notes_an_htpasswd_file_that_mixes_kinds_of_hash() {
    let dir = tempfile::tempdir().unwrap();
    // "pw" with argon2id, m=64 KiB, t=1 (cheap, for the test).
    let argon = "$argon2id$v=19$m=64,t=1,p=1$YSBzYWx0IG9mIHNpeHRlZW4$TuYo2wsCJQ9PhoAsYvG3yWJmAUL26ijUvf+Zatxkd88";
    let bcrypt = wsgate_testkit::jwt::htpasswd_line("ann", "pw");
    let notes_with = |htpasswd: &str, limits: &str| {
        write(&dir, "users.htpasswd", htpasswd);
        let tables = format!(
            r#"
[auth.basic]
htpasswd = "users.htpasswd"

[[route]]
path = "/"
upstream = "ws://127.0.0.1:9/"
origins = ["https://app.example.com"]
auth = "basic"

[route.limits]
{limits}
"#
        );
        check_config(&dir, &tables, &[])
    };
    let notes = |htpasswd: &str| notes_with(htpasswd, "");
    let mixed = notes(&format!("{bcrypt}\nbob:{argon}\n"));
    assert!(
        mixed.contains(
            "note: auth.basic.htpasswd holds hashes of 2 kinds (bcrypt cost 04, $argon2id$v=19$m=64,t=1,p=1)"
        ),
        "{mixed}"
    );
    let alike = notes(&format!(
        "{bcrypt}\n{}\n",
        wsgate_testkit::jwt::htpasswd_line("bob", "pw")
    ));
    assert!(!alike.contains("htpasswd"), "{alike}");
    // Passwords without a handshake rate can be guessed at full speed.
    let guessable =
        "note: route[0] (/) takes Basic credentials and sets no `handshakes_per_ip_per_min`";
    assert!(alike.contains(guessable), "{alike}");
    let limited = notes_with(&format!("{bcrypt}\n"), "handshakes_per_ip_per_min = 30");
    assert!(!limited.contains("note"), "{limited}");
}

/// An HTTP route with `idle_timeout = "off"` waits for ever on a client
/// that trickles its body or stops reading: `check` says so.
#[test]
fn check_notes_an_http_route_without_an_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let check = |limits: &str| {
        let tables = format!(
            r#"
[[route]]
path = "/app"
kind = "http"
upstream = "http://127.0.0.1:0/"
auth = "none"

[route.limits]
{limits}
"#
        );
        check_config(&dir, &tables, &[])
    };
    let off = check("idle_timeout = \"off\"");
    assert!(
        off.contains("note: route[0] (/app) is kind = \"http\" with idle_timeout = \"off\""),
        "{off}"
    );
    let bounded = check("");
    assert!(!bounded.contains("note"), "{bounded}");
}

/// The binary allocates through mimalloc (docs/perf/findings.md has why):
/// asked to, mimalloc prints its statistics at exit, ending with the
/// process's peak RSS; the system's allocator prints nothing.
#[test]
fn the_binary_allocates_with_mimalloc() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/gateway.toml");
    let out = wsgate()
        .args(["check", "--config", example])
        .env("MIMALLOC_SHOW_STATS", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("peak rss"),
        "no mimalloc statistics at exit, so another allocator is in use: {stderr}"
    );
}

#[test]
fn a_missing_config_file_is_exit_2_with_the_path() {
    let out = wsgate()
        .args(["check", "--config", "/nonexistent/wsgate.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/wsgate.toml"));
}

#[tokio::test]
async fn serve_then_sigterm_closes_clients_with_1001_and_exits_0() {
    let echo = Echo::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "gw.toml",
        &format!(
            r#"
[[listener]]
bind = "127.0.0.1:0"

[[route]]
path = "/chat"
upstream = "ws://{}/chat"
origins = ["https://app.example.com"]
auth = "none"
"#,
            echo.addr
        ),
    );
    let mut child = Reap(
        wsgate()
            .args(["serve", "--config"])
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stdout = child.0.stdout.take().unwrap();
    let audit = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut text).unwrap();
        text
    });
    // Readiness: the line the binary prints once it listens.
    let stderr = child.0.stderr.take().unwrap();
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    // Keep reading stderr to the end, so the gateway never writes into a closed pipe.
    let log = std::thread::spawn(move || {
        let mut addr_tx = Some(addr_tx);
        let mut all = String::new();
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap();
            if let Some(addr) = line.strip_prefix("wsgate: listening on ") {
                let _ = addr_tx
                    .take()
                    .map(|tx| tx.send(addr.parse::<std::net::SocketAddr>().unwrap()));
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let addr = addr_rx.await.expect("wsgate exited before listening");
    let mut c = RawClient::connect(addr).await;
    assert_eq!(
        c.handshake("/chat", &[("Origin", "https://app.example.com")])
            .await
            .status,
        101
    );
    c.send_text("hi").await;
    assert_eq!(c.read_data().await.payload, b"hi");

    wsgate_testkit::process::signal(child.0.id(), "TERM");
    let close = c.read_close().await;
    assert_eq!(
        (close.close_code(), close.close_reason().as_str()),
        (Some(1001), "shutting_down")
    );
    c.send_frame(0x88, &1001u16.to_be_bytes(), true).await;
    let status = tokio::task::spawn_blocking(move || wait_exit(child))
        .await
        .unwrap();
    let log = log.join().unwrap();
    assert_eq!(status.code(), Some(0), "{log}");
    // The audit log went to stdout: the admission and the shutdown close.
    let stdout = audit.join().unwrap();
    assert!(stdout.contains(r#""decision":"admitted""#), "{stdout}");
    assert!(stdout.contains(r#""reason":"shutting_down""#), "{stdout}");
}

#[test]
fn version_prints_the_version_and_the_commit() {
    let out = wsgate().arg("--version").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let expected = format!("wsgate {} (", env!("CARGO_PKG_VERSION"));
    assert!(
        text.starts_with(&expected) && text.trim_end().ends_with(')'),
        "{text}"
    );
}

#[test]
fn completions_are_generated_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = wsgate().args(["completions", shell]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            script.contains("serve") && script.contains("check"),
            "{shell}: {script}"
        );
    }
    let out = wsgate().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Regression: with its stderr pipe closed, the gateway hung on SIGTERM
/// (the log subscriber's own error report panicked the signal task).
#[test]
fn sigterm_still_stops_the_gateway_after_its_log_pipe_closes() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "gw.toml",
        r#"
[[listener]]
bind = "127.0.0.1:0"

[[route]]
path = "/chat"
upstream = "ws://127.0.0.1:9/chat"
origins = ["https://app.example.com"]
auth = "none"
"#,
    );
    let mut child = Reap(
        wsgate()
            .args(["serve", "--config"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut first = String::new();
    BufReader::new(child.0.stderr.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // The reader is dropped here: the pipe is closed.
    assert!(first.contains("listening"), "{first}");
    wsgate_testkit::process::signal(child.0.id(), "TERM");
    assert_eq!(wait_exit(child).code(), Some(0));
}

/// SIGINT (Ctrl-C) stops the gateway as SIGTERM does: exit 0.
#[test]
fn sigint_stops_the_gateway_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "gw.toml",
        "[[listener]]\nbind = \"127.0.0.1:0\"\n\n[[route]]\npath = \"/\"\nupstream = \"ws://127.0.0.1:9/\"\nallow_missing_origin = true\nauth = \"none\"\n",
    );
    let mut child = Reap(
        wsgate()
            .args(["serve", "--config"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(child.0.stderr.take().unwrap()).lines();
    // Readiness: the plain listening line (signal handlers are in place by then).
    assert!(lines.any(|l| l.unwrap().starts_with("wsgate: listening on ")));
    wsgate_testkit::process::signal(child.0.id(), "INT");
    std::thread::spawn(move || lines.for_each(drop));
    assert_eq!(wait_exit(child).code(), Some(0));
}

#[tokio::test]
async fn sighup_reopens_the_audit_file_after_rotation() {
    let echo = Echo::start().await;
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let path = write(
        &dir,
        "gw.toml",
        &format!(
            r#"
[log]
audit = "{}"

[[listener]]
bind = "127.0.0.1:0"

[[route]]
path = "/chat"
upstream = "ws://{}/chat"
origins = ["https://app.example.com"]
auth = "none"
"#,
            audit.display(),
            echo.addr
        ),
    );
    let mut gw = wsgate_testkit::process::GatewayProcess::spawn(
        std::path::Path::new(env!("CARGO_BIN_EXE_wsgate")),
        &path,
        &[],
    )
    .await;
    let mut c = RawClient::connect(gw.addr).await;
    assert_eq!(
        c.handshake("/chat", &[("Origin", "https://one.example")])
            .await
            .status,
        403
    );
    // logrotate moves the file away; the gateway still holds the old one.
    let rotated = dir.path().join("audit.log.1");
    std::fs::rename(&audit, &rotated).unwrap();
    wsgate_testkit::process::signal(gw.pid(), "HUP");
    gw.wait_log("audit log reopened").await;
    let mut c = RawClient::connect(gw.addr).await;
    assert_eq!(
        c.handshake("/chat", &[("Origin", "https://two.example")])
            .await
            .status,
        403
    );
    // The line is written before the answer is sent: both files are complete.
    let old = std::fs::read_to_string(&rotated).unwrap();
    let new = std::fs::read_to_string(&audit).unwrap();
    assert!(
        old.contains("https://one.example") && !old.contains("https://two.example"),
        "{old}"
    );
    assert!(
        new.contains("https://two.example") && !new.contains("https://one.example"),
        "{new}"
    );
}

#[tokio::test]
async fn demo_prints_its_urls_serves_them_and_stops_on_ctrl_c() {
    let mut child = Reap(
        wsgate()
            .arg("demo")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut urls = Vec::new();
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://")) {
                urls.push(url.to_owned());
            }
            if line.starts_with("Ctrl-C stops it")
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(urls.clone());
            }
        }
    });
    let urls = tokio::time::timeout(wsgate_testkit::WAIT, rx)
        .await
        .expect("the demo printed no URLs")
        .unwrap();
    assert_eq!(urls.len(), 4, "{urls:?}");
    for url in &urls {
        let port: u16 = url
            .trim_start_matches("http://localhost:")
            .trim_end_matches('/')
            .parse()
            .unwrap();
        let mut c = RawClient::connect(([127, 0, 0, 1], port).into()).await;
        let reply = c.request("GET", "/", &[("Host", "localhost")]).await;
        assert_eq!(reply.status, 200, "{url}");
        assert!(reply.body.starts_with("<!doctype html>"), "{url}");
    }
    wsgate_testkit::process::signal(child.0.id(), "INT");
    assert_eq!(wait_exit(child).code(), Some(0));
}
