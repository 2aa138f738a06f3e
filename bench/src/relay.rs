//! Two byte relays that inspect nothing, as baselines for the gateway's
//! CPU time per message: what relaying alone costs on tokio, the runtime
//! wsgate is built on, and on a bare event loop (mio's `epoll`, no task
//! scheduler), the way nginx and HAProxy relay.
//!
//! Both accept TCP, connect to the upstream and copy bytes both ways until
//! each side has ended; the WebSocket upgrade passes through as bytes.
//! Each runs on one thread, so run them with one proxy worker. They are
//! not proxies anyone should deploy: no timeouts, no limits, a fixed
//! buffer per direction per connection (idle memory is not their point).
//!
//! For one experiment the mio relay can also waste time: with
//! `WSGATE_PERF_RELAY_SPIN_NS=N` in its environment it spins N nanoseconds
//! on every event before it moves bytes. That makes a proxy that does
//! nothing but copy behave, in CPU time, like one that does more work per
//! message; docs/PERFORMANCE.md ("what the 64-byte ratio measures") uses it
//! to show that the pinned layout rewards a busier proxy with more
//! throughput until its core is full.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};

/// Which relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    /// `tokio::io::copy_bidirectional` per connection, on a current-thread runtime.
    Tokio,
    /// One `epoll` loop (mio) over every connection, no task scheduler.
    Mio,
}

/// Bytes buffered per direction of a connection (mio; tokio's copy uses its own 8 KiB).
const BUF: usize = 16 * 1024;

/// The mio relay's wasted time per event (see the module's doc).
const SPIN_ENV: &str = "WSGATE_PERF_RELAY_SPIN_NS";

/// Relays until the process ends; prints `relay: listening on ADDR` once bound.
pub fn run(engine: Engine, bind: SocketAddr, upstream: SocketAddr) -> anyhow::Result<()> {
    let spin = spin_per_event(std::env::var(SPIN_ENV).ok().as_deref())?;
    anyhow::ensure!(
        spin.is_none() || engine == Engine::Mio,
        "{SPIN_ENV} is for the mio relay only"
    );
    let listener = std::net::TcpListener::bind(bind)?;
    eprintln!("relay: listening on {}", listener.local_addr()?);
    serve(engine, listener, upstream, spin)
}

/// The time to waste per event from `WSGATE_PERF_RELAY_SPIN_NS`'s value:
/// none when unset or zero; a value that is not a whole number of
/// nanoseconds is an error, not a run that silently measures something else.
fn spin_per_event(value: Option<&str>) -> anyhow::Result<Option<std::time::Duration>> {
    let Some(value) = value else {
        return Ok(None);
    };
    let nanos: u64 = value.trim().parse().map_err(|_| {
        anyhow::anyhow!("{SPIN_ENV} must be a whole number of nanoseconds, not `{value}`")
    })?;
    Ok(Some(std::time::Duration::from_nanos(nanos)).filter(|d| !d.is_zero()))
}

/// Relays what `listener` accepts to `upstream`, on this thread, until the
/// process ends; the mio relay spins `spin` on every event (the module's doc).
pub fn serve(
    engine: Engine,
    listener: std::net::TcpListener,
    upstream: SocketAddr,
    spin: Option<std::time::Duration>,
) -> anyhow::Result<()> {
    listener.set_nonblocking(true)?;
    match engine {
        Engine::Tokio => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(tokio_relay(listener, upstream)),
        Engine::Mio => mio_relay(mio::net::TcpListener::from_std(listener), upstream, spin),
    }
}

async fn tokio_relay(listener: std::net::TcpListener, upstream: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    loop {
        // Out of descriptors, for instance: the run reports the failures.
        let Ok((mut client, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = up.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
        });
    }
}

/// One direction of a connection: bytes read from one socket and not yet
/// written to the other.
struct Pipe {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// The source may have bytes: set by its readiness event, cleared by a
    /// read that found fewer bytes than it asked for (with edge-triggered
    /// readiness, more arriving raises a new event) or none.
    readable: bool,
    /// The source has ended; once the buffer is written, the destination is shut down.
    eof: bool,
    done: bool,
}

impl Pipe {
    fn new() -> Pipe {
        Pipe {
            buf: vec![0; BUF].into_boxed_slice(),
            start: 0,
            end: 0,
            readable: false,
            eof: false,
            done: false,
        }
    }

    /// Moves what it can from `from` to `to` without waiting.
    fn pump(
        &mut self,
        from: &mut mio::net::TcpStream,
        to: &mut mio::net::TcpStream,
    ) -> io::Result<()> {
        loop {
            while self.start < self.end {
                match to.write(&self.buf[self.start..self.end]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => self.start += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    // Not connected yet: the connect's own event brings the pump back.
                    Err(e) if waits(&e) || e.kind() == io::ErrorKind::NotConnected => {
                        return Ok(());
                    }
                    Err(e) => return Err(e),
                }
            }
            (self.start, self.end) = (0, 0);
            if self.eof {
                if !self.done {
                    self.done = true;
                    let _ = to.shutdown(Shutdown::Write);
                }
                return Ok(());
            }
            if !self.readable {
                return Ok(());
            }
            match from.read(&mut self.buf) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    self.end = n;
                    self.readable = n == self.buf.len();
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if waits(&e) => {
                    self.readable = false;
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Nothing more now: with edge-triggered readiness, an event will say when.
/// (An interrupted call is tried again instead: no event would follow it.)
fn waits(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// A client connection and its upstream connection.
struct Pair {
    client: mio::net::TcpStream,
    upstream: mio::net::TcpStream,
    /// Client to upstream.
    up: Pipe,
    /// Upstream to client.
    down: Pipe,
}

const LISTENER: mio::Token = mio::Token(0);

/// Tokens: the listener is 0; pair `i`'s client `2i + 1`, its upstream `2i + 2`.
fn token(pair: usize, upstream: bool) -> mio::Token {
    mio::Token(2 * pair + 1 + usize::from(upstream))
}

fn mio_relay(
    mut listener: mio::net::TcpListener,
    upstream_addr: SocketAddr,
    spin: Option<std::time::Duration>,
) -> anyhow::Result<()> {
    use mio::Interest;
    let mut poll = mio::Poll::new()?;
    let mut events = mio::Events::with_capacity(1024);
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut pairs: Vec<Option<Pair>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let both = Interest::READABLE | Interest::WRITABLE;
    loop {
        match poll.poll(&mut events, None) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
        for ev in &events {
            if ev.token() == LISTENER {
                // Edge-triggered: accept until there is nobody left waiting.
                loop {
                    let mut client = match listener.accept() {
                        Ok((c, _)) => c,
                        Err(e) if waits(&e) => break,
                        // Out of descriptors, for instance: the run reports the failures.
                        Err(_) => break,
                    };
                    let Ok(mut upstream) = mio::net::TcpStream::connect(upstream_addr) else {
                        continue;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = upstream.set_nodelay(true);
                    let i = free.pop().unwrap_or_else(|| {
                        pairs.push(None);
                        pairs.len() - 1
                    });
                    poll.registry()
                        .register(&mut client, token(i, false), both)?;
                    poll.registry()
                        .register(&mut upstream, token(i, true), both)?;
                    pairs[i] = Some(Pair {
                        client,
                        upstream,
                        up: Pipe::new(),
                        down: Pipe::new(),
                    });
                }
                continue;
            }
            if let Some(spin) = spin {
                let until = std::time::Instant::now() + spin;
                while std::time::Instant::now() < until {
                    std::hint::spin_loop();
                }
            }
            let i = (ev.token().0 - 1) / 2;
            let Some(pair) = pairs.get_mut(i).and_then(Option::as_mut) else {
                continue;
            };
            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                let from_upstream = ev.token() == token(i, true);
                let pipe = if from_upstream {
                    &mut pair.down
                } else {
                    &mut pair.up
                };
                pipe.readable = true;
            }
            let moved = pair
                .up
                .pump(&mut pair.client, &mut pair.upstream)
                .and_then(|()| pair.down.pump(&mut pair.upstream, &mut pair.client));
            if moved.is_err() || (pair.up.done && pair.down.done) {
                if let Some(mut gone) = pairs[i].take() {
                    let _ = poll.registry().deregister(&mut gone.client);
                    let _ = poll.registry().deregister(&mut gone.upstream);
                }
                free.push(i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::load::{self, Target};

    /// Each relay carries the upgrade, echoed messages both ways, and
    /// closing handshakes, through real sockets to the real echo upstream.
    #[tokio::test]
    async fn both_relays_carry_messages_and_handshakes() {
        let echo = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the echo upstream");
        let upstream = echo.local_addr().expect("echo address");
        tokio::spawn(crate::echo::serve(echo, None));
        // The mio relay also with the experiment's waste on every event.
        let spin = Some(Duration::from_micros(2));
        for (engine, spin) in [
            (Engine::Tokio, None),
            (Engine::Mio, None),
            (Engine::Mio, spin),
        ] {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the relay");
            let addr = listener.local_addr().expect("relay address");
            // Runs until the test process ends, as the relay does in its own.
            std::thread::spawn(move || serve(engine, listener, upstream, spin));
            let target = Target::plain(addr);
            let window = Duration::from_millis(300);
            let echoed = load::echo(&target, 4, 4, 1000, Duration::ZERO, window).await;
            assert_eq!(echoed.errors, 0, "{engine:?}: {:?}", echoed.first_error);
            assert!(echoed.messages > 0, "{engine:?} echoed nothing");
            let shaken = load::handshakes(&target, 2, Duration::ZERO, window).await;
            assert_eq!(shaken.errors, 0, "{engine:?}: {:?}", shaken.first_error);
            assert!(shaken.handshakes > 0, "{engine:?} completed no handshake");
        }
    }

    #[test]
    fn the_spin_is_whole_nanoseconds_or_an_error() {
        assert_eq!(spin_per_event(None).ok(), Some(None));
        assert_eq!(spin_per_event(Some("0")).ok(), Some(None));
        assert_eq!(
            spin_per_event(Some("600")).ok(),
            Some(Some(Duration::from_nanos(600)))
        );
        for bad in ["", "6e2", "-1", "600ns"] {
            let err = spin_per_event(Some(bad)).expect_err(bad);
            assert!(err.to_string().contains(SPIN_ENV), "{err}");
        }
    }
}
