//! One direction of the relay: read from a peer, validate, forward.
//!
//! Every byte read goes through the peer's [`Decoder`] before any of it is
//! written to the other side. Data frames are forwarded as they arrive
//! (transformed in place: client frames re-masked with the gateway's keys);
//! control frames are the gateway's business: pings are answered on the same
//! side, pongs are noted, a close is reported to the supervisor, which runs
//! the closing handshake. After a close or a violation the pump stops
//! forwarding and only drains what the peer still sends, so that closing the
//! socket later does not turn into a reset that destroys the close frame.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Buf, BytesMut};
use std::task::{Context, Poll, ready};

use tokio::io::AsyncWrite;
use tokio::time::Instant;
use wsgate_config::OnViolation;
use wsgate_policy::Reason;
use wsgate_policy::limits::Meter;
use wsgate_policy::messages::MessageRules;
use wsgate_proto::close::Close;
use wsgate_proto::deflate::{InflateError, Inflater};
use wsgate_proto::frame::{ControlFrame, Decoder, Step};
use wsgate_proto::mask::MaskSource;
use wsgate_proto::utf8::Utf8Stream;

use crate::buffers::{Buffers, Lent, Readable};
use crate::limits::{Budget, Reservation};
use crate::sink::{Sink, mask_key, mask_key_from};

/// Which peer a pump reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Client,
    Upstream,
}

/// What a pump tells the supervisor.
#[derive(Debug)]
pub(crate) enum Event {
    /// The peer sent a valid close frame.
    Closed(Side, Close),
    /// The peer broke a rule (with a detail for the log); the flag says the
    /// other side holds part of a frame.
    Violation(Side, Reason, String, bool),
    /// The peer's stream ended or failed.
    Gone(Side),
}

/// Counters both pumps and the supervisor share.
#[derive(Debug)]
pub(crate) struct Activity {
    start: Instant,
    last_data_ms: AtomicU64,
    last_pong_ms: AtomicU64,
    pub(crate) bytes_from_client: AtomicU64,
    pub(crate) bytes_from_upstream: AtomicU64,
    pub(crate) messages_from_client: AtomicU64,
    pub(crate) messages_from_upstream: AtomicU64,
    /// Client messages dropped by `on_violation = "drop"`.
    pub(crate) messages_dropped: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Self {
        Activity {
            start: Instant::now(),
            last_data_ms: AtomicU64::new(0),
            last_pong_ms: AtomicU64::new(0),
            bytes_from_client: AtomicU64::new(0),
            bytes_from_upstream: AtomicU64::new(0),
            messages_from_client: AtomicU64::new(0),
            messages_from_upstream: AtomicU64::new(0),
            messages_dropped: AtomicU64::new(0),
        }
    }

    pub(crate) fn start(&self) -> Instant {
        self.start
    }

    /// Milliseconds since the relay started: the clock pongs are stamped with.
    pub(crate) fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// When data last moved either way.
    pub(crate) fn last_data(&self) -> Instant {
        self.start + std::time::Duration::from_millis(self.last_data_ms.load(Ordering::Relaxed))
    }

    /// When the client last answered a ping, on the [`Activity::now_ms`] clock.
    pub(crate) fn last_pong_ms(&self) -> u64 {
        self.last_pong_ms.load(Ordering::Relaxed)
    }
}

/// Fresh masking keys from the thread's CSPRNG.
///
/// The handle is taken on the first key and kept for one decoding pass:
/// `rand::random` takes and drops it for every key, which cost more than
/// the key itself at one 64-byte frame per key (callgrind). The handle is
/// not `Send`, so it never outlives the synchronous pass.
#[derive(Default)]
struct GatewayMasks(Option<rand::rngs::ThreadRng>);

impl MaskSource for GatewayMasks {
    fn next_mask(&mut self) -> [u8; 4] {
        mask_key_from(self.0.get_or_insert_with(rand::rng))
    }
}

/// What happens to the message being decoded.
enum Handling {
    /// Its frames go through as they arrive.
    Forward,
    /// Dropped (a type the route refuses, `on_violation = "drop"`).
    Skip,
    /// Collected whole, checked, then sent on in one frame; the reservation
    /// holds its bytes in the gateway's assembly budget.
    Assemble(Vec<u8>, Option<Reservation>),
}

/// What the messages a pump reads are held to: the route's rules and rates
/// for the client; nothing for the upstream, which is trusted (its frames
/// are still decoded and must be well-formed).
#[derive(Default)]
pub(crate) struct Checks {
    pub(crate) rules: Option<Arc<MessageRules>>,
    /// Boxed: most routes set no rate, and a meter is large.
    pub(crate) meter: Option<Box<Meter>>,
    /// Where assembled messages take their memory from.
    pub(crate) budget: Option<Arc<Budget>>,
    /// permessage-deflate was negotiated: compressed messages are inflated
    /// up to this many bytes (the route's `max_message`).
    pub(crate) deflate: Option<u64>,
}

/// What a reload changes for an open connection's client messages.
pub(crate) struct Update {
    /// The route's limits as now configured (frame and message sizes,
    /// rates, timers).
    pub(crate) limits: wsgate_config::Limits,
    pub(crate) rules: Option<Arc<MessageRules>>,
}

/// How the client's pump follows reloads: before it decodes what it has
/// read, between messages (a message is judged by the rules it started
/// under), it has a new policy judged and takes the route's limits and
/// rules from it, or stops with `policy_changed`. So whatever a client
/// sends after a reload is in force meets the new policy.
pub(crate) struct Follow<'a> {
    pub(crate) changes: tokio::sync::watch::Receiver<Arc<crate::snapshot::Snapshot>>,
    pub(crate) judge: &'a crate::relay::Judge<'a>,
}

/// Output of the inflater taken at a time: what a compressed message costs
/// in memory while it streams through, whatever its size.
const INFLATE_CHUNK: usize = 16 * 1024;

/// A compressed message being inflated and sent on as plain frames.
struct Inflating {
    z: Inflater,
    text: bool,
    utf8: Utf8Stream,
    /// Whether a frame of it has gone on, so the next is a continuation.
    started: bool,
    out: Vec<u8>,
}

/// Appends `data` to a message being assembled, taking its bytes from the
/// gateway's budget first; the violation when the budget has not that many.
fn assemble(
    side: Side,
    body: &mut Vec<u8>,
    held: &mut Option<Reservation>,
    data: &[u8],
) -> Option<Event> {
    if let Some(r) = held.as_mut()
        && !r.grow(data.len())
    {
        let detail = format!(
            "the gateway's memory for assembling messages ([limits] assembly_memory, {} bytes) is in use",
            r.budget().max()
        );
        return Some(Event::Violation(side, Reason::Overloaded, detail, false));
    }
    body.extend_from_slice(data);
    None
}

/// Reads from one peer and relays what it sends, as a state the relay
/// polls: no suspended future, so a waiting pump holds its decoder, its
/// checks and a few words, and a connection costs that much.
pub(crate) struct Pump {
    lent: Lent,
    /// Stopped forwarding (a close, a violation): reads are only drained,
    /// so that closing the socket later does not turn into a reset.
    draining: bool,
    /// Decoding stopped part-way through the lent buffer because the other
    /// side backed up; it resumes there once that side has drained.
    resume: bool,
    /// Bytes hyper read past the HTTP head wait in the stash: they are
    /// decoded first, as if just read.
    early: bool,
    /// The last poll ended waiting on the peer's socket alone (see
    /// [`Pump::parked`]).
    parked: bool,
    frames: Frames,
}

/// What a pump polls with: its peer's reading half, both sinks (the other
/// peer's, to relay to; its own peer's, for pongs) and what the relay shares.
pub(crate) struct PumpIo<'p, 'b, R, A, B> {
    pub(crate) reader: &'p mut R,
    pub(crate) to: &'p mut Sink<'b, A>,
    pub(crate) back: &'p mut Sink<'b, B>,
    pub(crate) buffers: &'b Buffers,
    pub(crate) activity: &'p Activity,
    pub(crate) follow: Option<&'p mut Follow<'b>>,
}

/// Reads a pump makes in one poll before it lets the other pump and the
/// timers run.
const READS_PER_POLL: usize = 16;

impl Pump {
    /// A pump whose reads are held to `checks`; `early` is what was read
    /// from the peer before the relay began.
    pub(crate) fn new(side: Side, decoder: Decoder, checks: Checks, early: &[u8]) -> Self {
        Pump {
            lent: Lent::with_early(early),
            draining: false,
            resume: false,
            early: !early.is_empty(),
            parked: false,
            frames: Frames::new(side, decoder, checks),
        }
    }

    /// Whether the pump is waiting for its peer's socket and nothing else,
    /// so that only the waker its last poll was given can make it go on.
    /// A pump waiting for the other side to drain, or reading through TLS
    /// (see [`Readable::read_waits_alone`]), is not.
    pub(crate) fn parked(&self) -> bool {
        self.parked
    }

    /// Relays what the peer sends until there is something to report: a
    /// close, a violation (the pump then only drains), or the end of the
    /// peer's stream (after which it must not be polled again). Reads
    /// borrow a buffer from the relay's [`Buffers`] (see [`Lent`]).
    pub(crate) fn poll_next<R, A, B>(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut PumpIo<'_, '_, R, A, B>,
    ) -> Poll<Event>
    where
        R: Readable,
        A: AsyncWrite + Unpin,
        B: AsyncWrite + Unpin,
    {
        let side = self.frames.side;
        // The relay polls a parked pump when its socket woke the task.
        let mut woken = std::mem::take(&mut self.parked);
        for _ in 0..READS_PER_POLL {
            if !self.draining && io.to.backed_up() {
                // Backpressure: the other side takes what it was given
                // before this side is read again.
                ready!(io.to.poll_flush(cx));
            }
            if !self.resume {
                let n = if std::mem::take(&mut self.early) {
                    self.lent.replay(io.buffers)
                } else {
                    let likely = std::mem::take(&mut woken);
                    let polled = self.lent.poll_read(cx, io.reader, io.buffers, likely);
                    let Poll::Ready(read) = polled else {
                        self.parked = io.reader.read_waits_alone();
                        return Poll::Pending;
                    };
                    match read {
                        Ok(0) | Err(_) => return Poll::Ready(Event::Gone(side)),
                        Ok(n) => n,
                    }
                };
                self.frames.count_bytes(io.activity, n);
                if self.draining {
                    self.lent.bytes().clear();
                    continue;
                }
                if let Some(event) = self.admit_read(n, io) {
                    return Poll::Ready(event);
                }
            }
            self.resume = false;
            let buf = self.lent.bytes();
            let (used, stop) = self.frames.process(cx, buf, io.to, io.back, io.activity);
            match stop {
                Stop::Blocked => {
                    buf.advance(used);
                    self.resume = true;
                }
                Stop::Event(event) => return Poll::Ready(self.drain(event)),
                Stop::No => buf.advance(used),
            }
        }
        // Fair to the other pump and the timers: yield, and come back at once.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// What a new read of `n` bytes meets before it is decoded: a reload,
    /// the byte rate. An event when the pump stops here.
    fn admit_read<R, A, B>(&mut self, n: usize, io: &mut PumpIo<'_, '_, R, A, B>) -> Option<Event>
    where
        A: AsyncWrite + Unpin,
    {
        if let Some(Err(detail)) = io.follow.as_mut().map(|f| self.frames.follow(f)) {
            // Nothing of this read has been forwarded: the other side is
            // on a message boundary.
            let event = Event::Violation(self.frames.side, Reason::PolicyChanged, detail, false);
            return Some(self.drain(event));
        }
        if let Some(Err(e)) = self.frames.checks.meter.as_ref().map(|m| m.bytes(n)) {
            // Nothing of this read is forwarded; what went before was
            // forwarded whole or leaves the other side mid-frame, which
            // the sink knows.
            let event = Event::Violation(
                self.frames.side,
                Reason::MessageRateExceeded,
                e.0,
                io.to.mid_frame(),
            );
            return Some(self.drain(event));
        }
        None
    }

    /// Stops forwarding: from now on reads are only drained.
    fn drain(&mut self, event: Event) -> Event {
        self.draining = true;
        self.resume = false;
        self.lent.bytes().clear();
        event
    }
}

/// Why [`Frames::process`] stopped before the end of the buffer.
enum Stop {
    /// It did not: everything decodable was decoded.
    No,
    /// The other side backed up; decoding resumes where it stopped.
    Blocked,
    /// The pump must stop forwarding, for this reason.
    Event(Event),
}

/// One peer's frames: decoding them, judging its messages by the route's
/// rules, and relaying them.
struct Frames {
    side: Side,
    decoder: Decoder,
    checks: Checks,
    handling: Handling,
    /// Boxed: compressed messages are the exception, and an inflater's
    /// state would otherwise be part of every connection.
    inflating: Option<Box<Inflating>>,
}

impl Frames {
    fn new(side: Side, mut decoder: Decoder, checks: Checks) -> Self {
        decoder.set_plain_text(checks.rules.as_ref().is_some_and(|r| r.assembles_text()));
        decoder.set_deflate(checks.deflate.is_some());
        Frames {
            side,
            decoder,
            checks,
            handling: Handling::Forward,
            inflating: None,
        }
    }

    /// Judges the connection by a new policy, if one is in force and no
    /// message is in progress: `Err` is why it must close.
    fn follow(&mut self, follow: &mut Follow<'_>) -> Result<(), String> {
        let between = !self.decoder.mid_message()
            && !self.decoder.mid_frame()
            && self.inflating.is_none()
            && matches!(self.handling, Handling::Forward);
        if !between || !follow.changes.has_changed().unwrap_or(false) {
            return Ok(());
        }
        let policy = Arc::clone(&follow.changes.borrow_and_update());
        let update = (follow.judge)(&policy)?;
        let limits = &update.limits;
        self.decoder.set_limits(wsgate_proto::frame::Limits {
            max_frame: limits.max_frame,
            max_message: limits.max_message,
        });
        self.decoder
            .set_plain_text(update.rules.as_ref().is_some_and(|r| r.assembles_text()));
        self.checks.meter = Meter::for_limits(limits).map(Box::new);
        if self.checks.deflate.is_some() {
            self.checks.deflate = Some(limits.max_message);
        }
        self.checks.rules = update.rules;
        Ok(())
    }

    /// How the message starting now is handled, or the reason to close.
    fn start_message(&self, text: bool) -> Result<Handling, (Reason, String)> {
        if let Some(meter) = &self.checks.meter {
            meter
                .message()
                .map_err(|e| (Reason::MessageRateExceeded, e.0))?;
        }
        let Some(rules) = &self.checks.rules else {
            return Ok(Handling::Forward);
        };
        if !rules.allows(text) {
            let kind = if text { "text" } else { "binary" };
            return match rules.on_violation {
                OnViolation::Drop => Ok(Handling::Skip),
                OnViolation::Close => Err((
                    Reason::MessageTypeNotAllowed,
                    format!("{kind} messages are not allowed on this route"),
                )),
            };
        }
        Ok(if text && rules.assembles_text() {
            let reservation = self.checks.budget.as_ref().map(Reservation::new);
            Handling::Assemble(Vec::new(), reservation)
        } else {
            Handling::Forward
        })
    }

    /// Judges a whole assembled text message: the frame to send it on in,
    /// nothing when `on_violation = "drop"` dropped it, or the violation.
    /// The caller writes the frame, so judging adds no state of its own to
    /// every connection's future.
    fn finish_message(&self, body: &[u8], activity: &Activity) -> Result<Option<Vec<u8>>, Event> {
        let rules = self.checks.rules.as_ref();
        match rules.map_or(Ok(()), |r| r.check_text(body)) {
            Ok(()) => Ok(Some(wsgate_proto::frame::encode_data(
                0x1,
                body,
                Some(mask_key()),
            ))),
            Err(_) if rules.is_some_and(|r| r.on_violation == OnViolation::Drop) => {
                activity.messages_dropped.fetch_add(1, Ordering::Relaxed);
                Ok(None)
            }
            Err((reason, detail)) => Err(Event::Violation(self.side, reason, detail, false)),
        }
    }

    /// Decodes what is buffered; returns the bytes used and, when the pump
    /// must stop forwarding, the event that says why.
    fn process<A, B>(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        to: &mut Sink<'_, A>,
        back: &mut Sink<'_, B>,
        activity: &Activity,
    ) -> (usize, Stop)
    where
        A: AsyncWrite + Unpin,
        B: AsyncWrite + Unpin,
    {
        let (mut pos, mut forward_from) = (0, 0);
        // Where the frame being decoded began, if it began in this buffer:
        // on a violation nothing of it is forwarded, so the other side stays
        // on a frame boundary and can still be closed cleanly.
        let mut frame_start = None;
        let mut moved = false;
        let mut stop = None;
        let mut blocked = false;
        let mut masks = GatewayMasks::default();
        while pos < buf.len() {
            if to.backed_up() {
                // The other side has not taken what it was given: decode
                // no further until it has.
                blocked = true;
                break;
            }
            let was_mid_frame = self.decoder.mid_frame();
            match self.decoder.next(&mut buf[pos..], &mut masks) {
                Ok(Step::NeedMore) => break,
                Ok(Step::Data {
                    len,
                    message_end,
                    payload,
                    message_start,
                    text,
                    compressed,
                }) => {
                    moved = true;
                    if message_start {
                        self.inflating = match (compressed, self.checks.deflate) {
                            (true, Some(max)) => Some(Box::new(Inflating {
                                z: Inflater::new(max),
                                text,
                                utf8: Utf8Stream::default(),
                                started: false,
                                out: Vec::new(),
                            })),
                            _ => None,
                        };
                        match self.start_message(text) {
                            Ok(h) => self.handling = h,
                            Err((reason, detail)) => {
                                Self::forward(cx, to, &buf[forward_from..pos], false);
                                let other_mid_frame = to.mid_frame();
                                stop = Some(Event::Violation(
                                    self.side,
                                    reason,
                                    detail,
                                    other_mid_frame,
                                ));
                                break;
                            }
                        }
                    }
                    if matches!(self.handling, Handling::Forward) && self.inflating.is_none() {
                        if !was_mid_frame {
                            frame_start = Some(pos);
                        }
                        pos += len;
                        if !self.decoder.mid_frame() {
                            frame_start = None;
                        }
                    } else {
                        // Nothing of this message goes on as it arrives.
                        Self::forward(cx, to, &buf[forward_from..pos], false);
                        if self.inflating.is_some() {
                            let chunk = if payload {
                                &buf[pos..pos + len]
                            } else {
                                &[][..]
                            };
                            stop = self.inflate(cx, chunk, message_end, to);
                            if stop.is_some() {
                                break;
                            }
                        } else if let (Handling::Assemble(body, held), true) =
                            (&mut self.handling, payload)
                        {
                            stop = assemble(self.side, body, held, &buf[pos..pos + len]);
                            if stop.is_some() {
                                break;
                            }
                        }
                        pos += len;
                        forward_from = pos;
                    }
                    if message_end {
                        self.inflating = None;
                        self.count_message(activity);
                        match std::mem::replace(&mut self.handling, Handling::Forward) {
                            // The reservation is held until the frame is written.
                            Handling::Assemble(body, _held) => {
                                match self.finish_message(&body, activity) {
                                    Ok(Some(frame)) => Self::forward(cx, to, &frame, false),
                                    Ok(None) => {}
                                    Err(event) => {
                                        stop = Some(event);
                                        break;
                                    }
                                }
                            }
                            Handling::Skip => {
                                activity.messages_dropped.fetch_add(1, Ordering::Relaxed);
                            }
                            Handling::Forward => {}
                        }
                    }
                }
                Ok(Step::Control {
                    frame,
                    len,
                    payload,
                }) => {
                    Self::forward(cx, to, &buf[forward_from..pos], false);
                    let payload = &buf[pos + payload.start..pos + payload.end];
                    stop = self.on_control(frame, payload, back, activity);
                    pos += len;
                    forward_from = pos;
                    if stop.is_some() {
                        break;
                    }
                }
                Err(e) => {
                    let forwarding = matches!(self.handling, Handling::Forward);
                    let (end, mid) = match frame_start {
                        Some(start) => (start, false),
                        None => (pos, forwarding && self.decoder.mid_frame()),
                    };
                    Self::forward(cx, to, &buf[forward_from..end.max(forward_from)], mid);
                    forward_from = pos;
                    let other_mid_frame = to.mid_frame();
                    stop = Some(Event::Violation(
                        self.side,
                        Reason::from(&e),
                        e.to_string(),
                        other_mid_frame,
                    ));
                    break;
                }
            }
        }
        if stop.is_none() {
            let mid = matches!(self.handling, Handling::Forward) && self.decoder.mid_frame();
            Self::forward(cx, to, &buf[forward_from..pos], mid);
        }
        if moved {
            activity
                .last_data_ms
                .store(activity.now_ms(), Ordering::Relaxed);
        }
        let stop = match stop {
            Some(event) => Stop::Event(event),
            None if blocked => Stop::Blocked,
            None => Stop::No,
        };
        (pos, stop)
    }

    /// Inflates one chunk of a compressed message and hands on what comes
    /// out; at the message's end, the final frame. Returns the violation
    /// that stops the pump, if any.
    fn inflate<A: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        chunk: &[u8],
        end: bool,
        to: &mut Sink<'_, A>,
    ) -> Option<Event> {
        let mut inf = self.inflating.take()?;
        if inf.out.is_empty() {
            inf.out = vec![0; INFLATE_CHUNK];
        }
        let inputs: &[&[u8]] = if end {
            &[chunk, Inflater::tail()]
        } else {
            &[chunk]
        };
        for &input in inputs {
            let mut input = input;
            loop {
                let (used, made) = match inf.z.inflate(input, &mut inf.out) {
                    Ok(step) => step,
                    Err(e) => {
                        let reason = match e {
                            InflateError::TooBig { .. } => Reason::MessageTooBig,
                            InflateError::Corrupt(_) => Reason::ProtocolError,
                        };
                        return Some(Event::Violation(self.side, reason, e.to_string(), false));
                    }
                };
                input = &input[used..];
                if made > 0
                    && let Some(stop) = self.deliver(cx, &mut inf, made, false, to)
                {
                    return Some(stop);
                }
                if input.is_empty() && made < inf.out.len() {
                    break;
                }
            }
        }
        if end {
            return self.deliver(cx, &mut inf, 0, true, to);
        }
        self.inflating = Some(inf);
        None
    }

    /// Hands on `inf.out[..n]` as the message's handling says; `fin` ends the message.
    fn deliver<A: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        inf: &mut Inflating,
        n: usize,
        fin: bool,
        to: &mut Sink<'_, A>,
    ) -> Option<Event> {
        let data = &inf.out[..n];
        if inf.text {
            let checked = inf.utf8.feed(data).and_then(|()| match fin {
                true => inf.utf8.finish(),
                false => Ok(()),
            });
            if let Err(e) = checked {
                return Some(Event::Violation(
                    self.side,
                    Reason::InvalidUtf8,
                    e.to_string(),
                    false,
                ));
            }
        }
        match &mut self.handling {
            Handling::Forward => {
                let opcode = match (inf.started, inf.text) {
                    (true, _) => 0x0,
                    (false, true) => 0x1,
                    (false, false) => 0x2,
                };
                let frame =
                    wsgate_proto::frame::encode_fragment(opcode, fin, data, Some(mask_key()));
                Self::forward(cx, to, &frame, false);
                inf.started = true;
            }
            Handling::Assemble(body, held) => return assemble(self.side, body, held, data),
            Handling::Skip => {}
        }
        None
    }

    /// Writes validated bytes to the other peer; `mid_frame` says whether they end inside a frame.
    fn forward<A: AsyncWrite + Unpin>(
        cx: &mut Context<'_>,
        to: &mut Sink<'_, A>,
        bytes: &[u8],
        mid_frame: bool,
    ) {
        // A failed write marks the sink dead; the other pump then sees its
        // peer's stream end and the supervisor closes the connection.
        to.data(cx, bytes, mid_frame);
    }

    fn on_control<B: AsyncWrite + Unpin>(
        &self,
        frame: ControlFrame,
        payload: &[u8],
        back: &mut Sink<'_, B>,
        activity: &Activity,
    ) -> Option<Event> {
        match frame {
            ControlFrame::Ping => {
                back.pong(payload);
                None
            }
            ControlFrame::Pong => {
                if self.side == Side::Client {
                    activity
                        .last_pong_ms
                        .store(activity.now_ms(), Ordering::Relaxed);
                }
                None
            }
            ControlFrame::Close(close) => Some(Event::Closed(self.side, close)),
        }
    }

    fn count_bytes(&self, activity: &Activity, n: usize) {
        let counter = match self.side {
            Side::Client => &activity.bytes_from_client,
            Side::Upstream => &activity.bytes_from_upstream,
        };
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    fn count_message(&self, activity: &Activity) {
        let counter = match self.side {
            Side::Client => &activity.messages_from_client,
            Side::Upstream => &activity.messages_from_upstream,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
