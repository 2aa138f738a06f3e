//! The real `wsgate` binary as a child process: several of them make a
//! cluster, and one can be killed outright, as a crash would.
//!
//! Readiness is the binary's own lines on stderr (`wsgate: admin on ADDR`,
//! then `wsgate: listening on ADDR`); audit events are its stdout, one JSON
//! object a line. The child is killed when the value is dropped.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::mpsc;

/// One running `wsgate serve`.
pub struct GatewayProcess {
    /// The first listener's address.
    pub addr: SocketAddr,
    /// The admin endpoint's address, when the config has `[metrics]`.
    pub admin: Option<SocketAddr>,
    child: Child,
    events: mpsc::UnboundedReceiver<Value>,
    log: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
    lines: tokio::sync::watch::Receiver<usize>,
}

impl GatewayProcess {
    /// Starts `bin serve --config config` with `env` and waits until it listens.
    pub async fn spawn(bin: &Path, config: &Path, env: &[(&str, &str)]) -> GatewayProcess {
        GatewayProcess::start(Command::new(bin), config, env).await
    }

    /// As [`GatewayProcess::spawn`], with the process allowed to run on
    /// CPU `cpu` only (by util-linux's `taskset`, which then runs `bin` in
    /// its place: the pid is the gateway's).
    pub async fn spawn_pinned(
        bin: &Path,
        config: &Path,
        env: &[(&str, &str)],
        cpu: usize,
    ) -> GatewayProcess {
        let mut command = Command::new("taskset");
        command.args(["-c", &cpu.to_string()]).arg(bin);
        GatewayProcess::start(command, config, env).await
    }

    async fn start(mut command: Command, config: &Path, env: &[(&str, &str)]) -> GatewayProcess {
        let mut child = command
            .args(["serve", "--config"])
            .arg(config)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", command.get_program()));
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let (event_tx, events) = mpsc::unbounded_channel();
        let stdout_text = Arc::new(Mutex::new(String::new()));
        let text = Arc::clone(&stdout_text);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(mut t) = text.lock() {
                    t.push_str(&line);
                    t.push('\n');
                }
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let _ = event_tx.send(v);
                }
            }
        });
        let log = Arc::new(Mutex::new(String::new()));
        let (ready_tx, mut ready) = mpsc::unbounded_channel();
        let all = Arc::clone(&log);
        let (line_tx, lines) = tokio::sync::watch::channel(0usize);
        // Reads stderr to the end, so the gateway never writes into a full pipe.
        std::thread::spawn(move || {
            let mut admin = None;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(a) = line.strip_prefix("wsgate: admin on ") {
                    admin = a.parse::<SocketAddr>().ok();
                }
                if let Some(a) = line.strip_prefix("wsgate: listening on ") {
                    let _ = ready_tx.send((a.parse::<SocketAddr>().ok(), admin));
                }
                {
                    let mut all = all
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    all.push_str(&line);
                    all.push('\n');
                }
                line_tx.send_modify(|n| *n += 1);
            }
        });
        let ready = tokio::time::timeout(crate::WAIT, ready.recv()).await;
        let Ok(Some((Some(addr), admin))) = ready else {
            let _ = child.kill();
            let text = log.lock().map(|l| l.clone()).unwrap_or_default();
            panic!("wsgate did not start listening:\n{text}");
        };
        GatewayProcess {
            addr,
            admin,
            child,
            events,
            log,
            stdout: stdout_text,
            lines,
        }
    }

    /// Kills the process with SIGKILL: nothing it holds is given back.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Its stdout so far (the audit log, when it goes there).
    pub fn stdout(&self) -> String {
        self.stdout.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Its process id (for signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Waits until its stderr contains `needle`; returns the log.
    pub async fn wait_log(&mut self, needle: &str) -> String {
        let wait = async {
            loop {
                let text = self.log();
                if text.contains(needle) {
                    return text;
                }
                if self.lines.changed().await.is_err() {
                    panic!("wsgate's stderr ended without {needle:?}:\n{text}");
                }
            }
        };
        match tokio::time::timeout(crate::WAIT, wait).await {
            Ok(text) => text,
            Err(_) => panic!("no {needle:?} in wsgate's log:\n{}", self.log()),
        }
    }

    /// Waits (up to [`crate::WAIT`]) for the process to exit by itself: its
    /// stderr ends when it does. Returns its exit code.
    pub async fn exited(&mut self) -> Option<i32> {
        let ended = async { while self.lines.changed().await.is_ok() {} };
        if tokio::time::timeout(crate::WAIT, ended).await.is_err() {
            panic!("wsgate did not exit; its log:\n{}", self.log());
        }
        self.child.wait().ok()?.code()
    }

    /// The next audit event that `want` accepts (earlier ones are skipped).
    pub async fn event(&mut self, want: impl Fn(&Value) -> bool) -> Value {
        let wait = async {
            while let Some(v) = self.events.recv().await {
                if want(&v) {
                    return v;
                }
            }
            panic!("wsgate's audit log ended");
        };
        tokio::time::timeout(crate::WAIT, wait)
            .await
            .expect("no such audit event in time")
    }
}

/// Sends `signal` ("TERM", "INT", "HUP"...) to process `pid`, as an
/// operator would with kill(1).
pub fn signal(pid: u32, signal: &str) {
    let sent = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -{signal} {pid} failed");
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
