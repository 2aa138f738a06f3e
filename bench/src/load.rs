//! The load generator: opens connections to one URL and measures what comes
//! back.
//!
//! Three workloads:
//! - `echo`: N connections each keep W text messages of S bytes in flight
//!   (a closed loop: every echo received lets one more message go), for a
//!   warm-up and then a measured window; reports echoed messages and payload
//!   bytes per second and round-trip latency percentiles (HDR histogram,
//!   microseconds, from the write of a batch to the read of each echo).
//! - `handshakes`: C workers each connect, upgrade and close, over and over;
//!   reports completed handshakes per second and their latency.
//! - `idle`: opens N connections and holds them, answering pings, so the
//!   proxy's resident memory per connection can be read from /proc; with
//!   churn, closes and reopens some every second.
//!
//! Every loop ends by itself: the windows are bounded in time, and so is
//! every wait on the other end (an opening handshake, a write it does not
//! take, its close), so a proxy that hangs costs errors in the report, not
//! a run that never ends. The report is one JSON line on stdout.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Mutex as AsyncMutex, Semaphore};
use tokio_rustls::TlsConnector;
use tokio_util::either::Either;

use crate::wire::{self, FrameReader, OP_CLOSE, OP_PING, OP_PONG, Piece, Request};

/// Longest wait for the other end's close frame when a connection ends.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// Longest wait for a connection's opening handshake, outside a measured
/// window (an echo connection's must be done by its window's end).
const OPEN_WAIT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once while opening idle connections.
const OPENING_AT_ONCE: usize = 256;
/// Bytes read at a time.
const READ_BUF: usize = 64 * 1024;

/// Where to connect and what to send in the handshake.
#[derive(Clone)]
pub struct Target {
    /// The TCP address.
    pub addr: SocketAddr,
    /// TLS, when the URL is wss: the connector and the name to verify.
    pub tls: Option<(TlsConnector, rustls_pki_types::ServerName<'static>)>,
    /// The handshake request.
    pub request: Request,
}

/// A connection, plain or TLS.
type Stream = Either<TcpStream, Box<tokio_rustls::client::TlsStream<TcpStream>>>;

impl Target {
    /// Plain ws to `/echo` at `addr`, with no Origin and no token.
    pub fn plain(addr: SocketAddr) -> Target {
        Target {
            addr,
            tls: None,
            request: Request {
                host: addr.to_string(),
                path: "/echo".into(),
                origin: None,
                bearer: None,
            },
        }
    }

    /// Connects and completes the opening handshake by `deadline`; returns
    /// the stream and any bytes read past the 101.
    async fn open(&self, deadline: Instant) -> anyhow::Result<(Stream, Vec<u8>)> {
        let open = async {
            let tcp = TcpStream::connect(self.addr).await?;
            tcp.set_nodelay(true)?;
            let mut stream = match &self.tls {
                Some((connector, name)) => {
                    Either::Right(Box::new(connector.connect(name.clone(), tcp).await?))
                }
                None => Either::Left(tcp),
            };
            let early = wire::client_handshake(&mut stream, &self.request).await?;
            anyhow::Ok((stream, early))
        };
        tokio::time::timeout_at(deadline.into(), open)
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "{}: the opening handshake did not finish in time",
                    self.addr
                )
            })?
    }
}

/// What one run measured: one JSON line.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Report {
    /// `echo`, `handshakes` or `idle`.
    pub mode: String,
    /// Connections (echo, idle) or workers (handshakes).
    pub connections: usize,
    /// Length of the measured window.
    pub seconds: f64,
    /// Echoed messages in the window.
    pub messages: u64,
    /// Echoed messages per second.
    pub msgs_per_sec: f64,
    /// Echoed payload, in MB (10^6 bytes) per second.
    pub mb_per_sec: f64,
    /// Completed handshakes in the window.
    pub handshakes: u64,
    /// Completed handshakes per second.
    pub handshakes_per_sec: f64,
    /// Mean round-trip latency, microseconds. With a fixed number of
    /// messages in flight, equal throughput means an equal mean (Little's
    /// law): percentiles that differ at the same mean differ in how evenly
    /// the connections are served, not in speed.
    pub mean_us: Option<f64>,
    /// Round-trip latency percentiles, microseconds.
    pub p50_us: Option<f64>,
    /// 99th percentile.
    pub p99_us: Option<f64>,
    /// 99.9th percentile.
    pub p999_us: Option<f64>,
    /// Connections or handshakes that failed.
    pub errors: u64,
    /// The first failure, in words.
    pub first_error: Option<String>,
    /// Idle: connections open when it reported ready.
    pub open: usize,
}

/// Failures, counted, with the first one kept for the report.
#[derive(Default)]
struct Errors {
    count: u64,
    first: Option<String>,
}

impl Errors {
    fn note(&mut self, e: &anyhow::Error) {
        self.count += 1;
        self.first.get_or_insert_with(|| format!("{e:#}"));
    }
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 60 s, three significant figures.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

fn percentiles(h: &Histogram<u64>, r: &mut Report) {
    if h.is_empty() {
        return;
    }
    r.mean_us = Some((h.mean() * 10.0).round() / 10.0);
    r.p50_us = Some(h.value_at_quantile(0.5) as f64);
    r.p99_us = Some(h.value_at_quantile(0.99) as f64);
    r.p999_us = Some(h.value_at_quantile(0.999) as f64);
}

/// The measured window: starts after the warm-up, ends at `end`.
#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
}

/// What the load generator writes on stderr as its measured window opens
/// and closes, so that a runner can read a proxy's CPU time over the
/// window and nothing else.
pub const WINDOW_OPEN: &str = "wsgate-perf: window open";
/// See [`WINDOW_OPEN`].
pub const WINDOW_CLOSED: &str = "wsgate-perf: window closed";

impl Window {
    /// A window after `warmup`, announced on stderr as it opens and closes
    /// by the task returned, which the workload awaits before it reports:
    /// its workers may finish within the timer's resolution of the end,
    /// and a process that exits first never says the window closed (a
    /// runner then has no CPU time for the window).
    fn new(warmup: Duration, duration: Duration) -> (Self, tokio::task::JoinHandle<()>) {
        let start = Instant::now() + warmup;
        let window = Window {
            start,
            end: start + duration,
        };
        let announcer = tokio::spawn(async move {
            tokio::time::sleep_until(window.start.into()).await;
            eprintln!("{WINDOW_OPEN}");
            tokio::time::sleep_until(window.end.into()).await;
            eprintln!("{WINDOW_CLOSED}");
        });
        (window, announcer)
    }

    fn contains(&self, t: Instant) -> bool {
        t >= self.start && t < self.end
    }
}

/// One connection's share of an echo run.
struct EchoTally {
    messages: u64,
    bytes: u64,
    latency: Histogram<u64>,
}

/// Echo workload: `conns` connections, `in_flight` messages of `size` bytes each.
pub async fn echo(
    target: &Target,
    conns: usize,
    in_flight: usize,
    size: usize,
    warmup: Duration,
    duration: Duration,
) -> Report {
    let payload = vec![b'x'; size];
    let frame = Arc::new(wire::client_frame(0x1, &payload));
    let (window, announcer) = Window::new(warmup, duration);
    let mut tasks = Vec::with_capacity(conns);
    for _ in 0..conns {
        let target = target.clone();
        let frame = Arc::clone(&frame);
        tasks.push(tokio::spawn(async move {
            echo_connection(&target, &frame, size as u64, in_flight, window).await
        }));
    }
    let mut report = Report {
        mode: "echo".into(),
        connections: conns,
        seconds: duration.as_secs_f64(),
        ..Report::default()
    };
    let mut errors = Errors::default();
    let mut latency = histogram();
    let mut bytes = 0;
    for t in tasks {
        match t.await.map_err(anyhow::Error::from).and_then(|r| r) {
            Ok(tally) => {
                report.messages += tally.messages;
                bytes += tally.bytes;
                let _ = latency.add(&tally.latency);
            }
            Err(e) => errors.note(&e),
        }
    }
    report.msgs_per_sec = report.messages as f64 / report.seconds;
    report.mb_per_sec = bytes as f64 / report.seconds / 1e6;
    percentiles(&latency, &mut report);
    (report.errors, report.first_error) = (errors.count, errors.first);
    // Within the timer's resolution of now: the window is over.
    let _ = announcer.await;
    report
}

async fn echo_connection(
    target: &Target,
    frame: &[u8],
    payload_len: u64,
    in_flight: usize,
    window: Window,
) -> anyhow::Result<EchoTally> {
    let (stream, early) = target.open(window.end).await?;
    let (mut r, w) = tokio::io::split(stream);
    let w = AsyncMutex::new(w);
    let credits = Semaphore::new(in_flight);
    let sent: Mutex<VecDeque<Instant>> = Mutex::new(VecDeque::with_capacity(in_flight));
    let batch = frame.repeat(in_flight);
    let writer = async {
        while Instant::now() < window.end {
            let Ok(Ok(first)) = tokio::time::timeout_at(window.end.into(), credits.acquire()).await
            else {
                break;
            };
            first.forget();
            let mut n = 1;
            while let Ok(p) = credits.try_acquire() {
                p.forget();
                n += 1;
            }
            let now = Instant::now();
            sent.lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(std::iter::repeat_n(now, n));
            w.lock().await.write_all(&batch[..n * frame.len()]).await?;
        }
        let close = wire::client_frame(OP_CLOSE, &1000u16.to_be_bytes());
        w.lock().await.write_all(&close).await?;
        anyhow::Ok(())
    };
    let mut tally = EchoTally {
        messages: 0,
        bytes: 0,
        latency: histogram(),
    };
    let reader = read_echoes(&mut r, early, &w, |now| {
        let sent_at = sent.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
        credits.add_permits(1);
        if let Some(t) = sent_at
            && window.contains(now)
        {
            tally.messages += 1;
            tally.bytes += payload_len;
            let _ = tally.latency.record((now - t).as_micros().max(1) as u64);
        }
    });
    // Both halves end by the same deadline: a write the other end does not
    // take (it stopped reading) blocks the writer, not only the reader.
    let deadline = (window.end + CLOSE_WAIT).into();
    let writer = tokio::time::timeout_at(deadline, writer);
    let reader = tokio::time::timeout_at(deadline, reader);
    let (written, read) = tokio::join!(writer, reader);
    written.map_err(|_| {
        anyhow::anyhow!(
            "writes still blocked {CLOSE_WAIT:?} after the window: the other end stopped reading"
        )
    })??;
    // The reader runs until the close arrives, or gives up at the deadline.
    if let Ok(read) = read {
        read?;
    }
    Ok(tally)
}

/// Reads server frames until a close (or the end); calls `on_message` for
/// each whole data message and answers pings through `w`.
async fn read_echoes<R, W>(
    r: &mut R,
    early: Vec<u8>,
    w: &AsyncMutex<W>,
    mut on_message: impl FnMut(Instant),
) -> anyhow::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; READ_BUF.max(early.len())];
    let mut filled = early.len();
    buf[..filled].copy_from_slice(&early);
    let mut frames = FrameReader::default();
    let mut header = None;
    let mut control = Vec::new();
    loop {
        let mut pos = 0;
        loop {
            match frames.next(&buf[pos..filled]) {
                Piece::NeedMore => break,
                Piece::Header(h) => {
                    pos += h.size;
                    header = Some(h);
                    control.clear();
                }
                Piece::Payload { len, end, .. } => {
                    let h = header.unwrap_or_else(|| unreachable!("a payload follows its header"));
                    if h.opcode >= OP_CLOSE {
                        control.extend_from_slice(&buf[pos..pos + len]);
                    }
                    pos += len;
                    if !end {
                        continue;
                    }
                    match h.opcode {
                        OP_CLOSE => return Ok(()),
                        OP_PING => {
                            let pong = wire::client_frame(OP_PONG, &control);
                            w.lock().await.write_all(&pong).await?;
                        }
                        OP_PONG => {}
                        _ if h.fin => on_message(Instant::now()),
                        _ => {}
                    }
                }
            }
        }
        buf.copy_within(pos..filled, 0);
        filled -= pos;
        let n = r.read(&mut buf[filled..]).await?;
        anyhow::ensure!(n > 0, "the connection ended without a close frame");
        filled += n;
    }
}

/// Handshake workload: `workers` loops of connect, upgrade, close.
pub async fn handshakes(
    target: &Target,
    workers: usize,
    warmup: Duration,
    duration: Duration,
) -> Report {
    let (window, announcer) = Window::new(warmup, duration);
    let mut tasks = Vec::with_capacity(workers);
    for _ in 0..workers {
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let mut latency = histogram();
            let (mut done, mut errors) = (0u64, Errors::default());
            while Instant::now() < window.end {
                let started = Instant::now();
                match handshake_once(&target).await {
                    Ok(upgraded) if window.contains(started) => {
                        done += 1;
                        let _ = latency.record((upgraded - started).as_micros().max(1) as u64);
                    }
                    Ok(_) => {}
                    Err(e) => errors.note(&e),
                }
            }
            (done, latency, errors)
        }));
    }
    let mut report = Report {
        mode: "handshakes".into(),
        connections: workers,
        seconds: duration.as_secs_f64(),
        ..Report::default()
    };
    let mut latency = histogram();
    let mut errors = Errors::default();
    for t in tasks {
        if let Ok((done, h, e)) = t.await {
            report.handshakes += done;
            let _ = latency.add(&h);
            errors.count += e.count;
            errors.first = errors.first.or(e.first);
        }
    }
    report.handshakes_per_sec = report.handshakes as f64 / report.seconds;
    percentiles(&latency, &mut report);
    (report.errors, report.first_error) = (errors.count, errors.first);
    // Within the timer's resolution of now: the window is over.
    let _ = announcer.await;
    report
}

/// One connect, upgrade and closing handshake; returns when the 101 arrived.
async fn handshake_once(target: &Target) -> anyhow::Result<Instant> {
    let (stream, early) = target.open(Instant::now() + OPEN_WAIT).await?;
    let upgraded = Instant::now();
    let (mut r, mut w) = tokio::io::split(stream);
    w.write_all(&wire::client_frame(OP_CLOSE, &1000u16.to_be_bytes()))
        .await?;
    let w = AsyncMutex::new(w);
    tokio::time::timeout(CLOSE_WAIT, read_echoes(&mut r, early, &w, |_| {})).await??;
    Ok(upgraded)
}

/// Idle workload: opens `conns` connections and holds them until `until`
/// resolves; with `churn`, closes and reopens that many each second.
/// `ready` is called once all are open, with the report so far.
pub async fn idle(
    target: &Target,
    conns: usize,
    churn: usize,
    until: impl std::future::Future<Output = ()>,
    ready: impl FnOnce(&Report),
) -> Report {
    let opening = Arc::new(Semaphore::new(OPENING_AT_ONCE));
    let mut held = Vec::with_capacity(conns);
    let mut errors = Errors::default();
    let mut opened = Vec::with_capacity(conns);
    for _ in 0..conns {
        opened.push(hold(target.clone(), Arc::clone(&opening)));
    }
    for o in opened {
        match o.await {
            Ok(h) => held.push(h),
            Err(e) => errors.note(&e),
        }
    }
    let mut report = Report {
        mode: "idle".into(),
        connections: conns,
        open: held.len(),
        errors: errors.count,
        first_error: errors.first.clone(),
        ..Report::default()
    };
    ready(&report);
    let started = Instant::now();
    tokio::pin!(until);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut next = 0;
    loop {
        tokio::select! {
            () = &mut until => break,
            _ = tick.tick(), if churn > 0 && !held.is_empty() => {
                for _ in 0..churn.min(held.len()) {
                    next = (next + 1) % held.len();
                    match hold(target.clone(), Arc::clone(&opening)).await {
                        Ok(h) => drop(std::mem::replace(&mut held[next], h)),
                        Err(e) => errors.note(&e),
                    }
                }
            }
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    // Still open at the end: one the proxy closed (an idle timeout, say)
    // is not counted.
    report.open = held.iter().filter(|h| h.open()).count();
    drop(held);
    (report.errors, report.first_error) = (errors.count, errors.first);
    report
}

/// An open idle connection; dropping it sends a close and ends it.
struct Held {
    _stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Held {
    /// Whether the connection is still open (the proxy may have closed it).
    fn open(&self) -> bool {
        !self.task.is_finished()
    }
}

/// Opens one connection and leaves a task holding it (answering pings).
async fn hold(target: Target, opening: Arc<Semaphore>) -> anyhow::Result<Held> {
    let permit = opening.acquire_owned().await?;
    let (stream, early) = target.open(Instant::now() + OPEN_WAIT).await?;
    drop(permit);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let (mut r, w) = tokio::io::split(stream);
        let w = AsyncMutex::new(w);
        tokio::select! {
            _ = read_echoes(&mut r, early, &w, |_| {}) => return,
            _ = stopped => {}
        }
        let close = wire::client_frame(OP_CLOSE, &1000u16.to_be_bytes());
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            let _ = w.lock().await.write_all(&close).await;
            let mut sink = [0u8; 1024];
            while matches!(r.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
    });
    Ok(Held { _stop: stop, task })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wsgate_testkit::upstream::Raw;

    /// Runs an echo workload of two connections with a short window while
    /// `peer` plays the other end; fails the test if it does not end.
    async fn echo_against<F, Fut>(size: usize, in_flight: usize, peer: F) -> Report
    where
        F: FnOnce(Raw) -> Fut,
        Fut: std::future::Future<Output = Vec<wsgate_testkit::upstream::RawConn>>,
    {
        let raw = Raw::start().await;
        let t = Target::plain(raw.addr);
        let run = tokio::spawn(async move {
            echo(
                &t,
                2,
                in_flight,
                size,
                Duration::ZERO,
                Duration::from_millis(300),
            )
            .await
        });
        // Held, so the connections stay open and silent until the end.
        let _held = peer(raw).await;
        // The run's own bound is the window plus CLOSE_WAIT; this one only
        // turns a hang into a failure.
        tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .expect("the echo workload did not end")
            .expect("the echo workload panicked")
    }

    #[tokio::test]
    async fn an_opening_handshake_never_answered_ends_in_errors_at_the_window() {
        let report = echo_against(64, 1, |mut raw| async move {
            vec![raw.accept().await, raw.accept().await]
        })
        .await;
        assert_eq!((report.errors, report.messages), (2, 0));
        let first = report.first_error.unwrap_or_default();
        assert!(
            first.contains("the opening handshake did not finish in time"),
            "{first}"
        );
    }

    #[tokio::test]
    async fn a_peer_that_stops_reading_ends_the_run_with_the_writes_blocked() {
        // 32 MiB at once (32 messages of 1 MiB in flight), more than
        // loopback's socket buffers hold, to a peer that answers the
        // handshake and then reads nothing: the first write cannot finish.
        let report = echo_against(1024 * 1024, 32, |mut raw| async move {
            let mut held = Vec::new();
            for _ in 0..2 {
                let mut conn = raw.accept().await;
                let reply = conn.switching_protocols();
                conn.stream.write_all(reply.as_bytes()).await.expect("101");
                held.push(conn);
            }
            held
        })
        .await;
        assert_eq!((report.errors, report.messages), (2, 0));
        let first = report.first_error.unwrap_or_default();
        assert!(first.contains("writes still blocked"), "{first}");
    }
}
