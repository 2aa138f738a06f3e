//! A real `redis-server`, started for one test on a free loopback port,
//! with no persistence, and stopped (or killed and restarted on the same
//! port) when the test says so.
//!
//! Readiness is the server's own "Ready to accept connections" line, never
//! a sleep. A machine without `redis-server` fails the test with the
//! command that installs it.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

/// A running (or stopped) Redis server owned by a test.
pub struct RedisServer {
    /// The loopback port it listens on, kept across restarts.
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it accepts connections.
    pub fn start() -> RedisServer {
        // The port is picked by binding port 0 and releasing it: redis-server
        // cannot report a port it chose itself.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let mut server = RedisServer { port, child: None };
        server.restart();
        server
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts the server again on the same port, empty (nothing persisted).
    pub fn restart(&mut self) {
        self.stop();
        let mut child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--logfile",
                "",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run redis-server ({e}); install it with `apt-get install redis-server` \
                     (scripts/test does this on Debian)"
                )
            });
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        // Keeps reading to the end, so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            let mut seen = String::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("Ready to accept connections") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(Ok(()));
                    }
                } else if tx.is_some() {
                    seen.push_str(&line);
                    seen.push('\n');
                }
            }
            if let Some(tx) = tx {
                let _ = tx.send(Err(seen));
            }
        });
        match rx.recv_timeout(crate::WAIT) {
            Ok(Ok(())) => {}
            Ok(Err(log)) => panic!("redis-server exited before it was ready:\n{log}"),
            Err(_) => panic!("redis-server was not ready within {:?}", crate::WAIT),
        }
        self.child = Some(child);
    }

    /// Runs one command with `redis-cli` and returns its output lines.
    pub fn cli(&self, args: &[&str]) -> Vec<String> {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "--raw"])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run redis-cli ({e}); it comes with redis-server"));
        assert!(out.status.success(), "redis-cli {args:?} failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Redis's clock, in milliseconds since the epoch.
    pub fn now_ms(&self) -> u64 {
        let t = self.cli(&["TIME"]);
        let secs: u64 = t[0].parse().expect("seconds");
        let micros: u64 = t[1].parse().expect("microseconds");
        secs * 1000 + micros / 1000
    }

    /// Kills the server (SIGKILL: as if it crashed) and waits until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
