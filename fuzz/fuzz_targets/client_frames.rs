//! Client bytes (or, for one input in four, an upstream's), delivered in
//! pieces, through the frame decoder as the relay drives it. Properties: no
//! panic; everything the decoder passes on is a well-formed stream from that
//! side (a client's masked again) that a second decoder accepts without
//! error (the gateway never forwards a frame it did not validate), and that
//! tungstenite, an independent implementation in the receiver's seat, reads
//! without a protocol or UTF-8 error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsgate_proto::frame::{Decoder, Limits, Sender, Step};
use wsgate_proto::mask::MaskSource;

struct Counter(u32);
impl MaskSource for Counter {
    fn next_mask(&mut self) -> [u8; 4] {
        self.0 = self.0.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        self.0.to_le_bytes()
    }
}

const LIMITS: Limits = Limits {
    max_frame: 4096,
    max_message: 16384,
};

/// Feeds `input` in pieces of `piece` bytes; returns the forwarded data bytes.
fn relay(input: &[u8], piece: usize, deflate: bool, from: Sender) -> Vec<u8> {
    let mut decoder = Decoder::new(from, LIMITS);
    decoder.set_deflate(deflate);
    let mut masks = Counter(7);
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    for chunk in input.chunks(piece.max(1)) {
        buf.extend_from_slice(chunk);
        let mut pos = 0;
        loop {
            match decoder.next(&mut buf[pos..], &mut masks) {
                Ok(Step::NeedMore) => break,
                Ok(Step::Data { len, .. }) => {
                    out.extend_from_slice(&buf[pos..pos + len]);
                    pos += len;
                }
                Ok(Step::Control { len, .. }) => pos += len,
                Err(_) => return out,
            }
            if pos == buf.len() {
                break;
            }
        }
        buf.drain(..pos);
    }
    out
}

/// The forwarded bytes as the receiver's socket: reads them, then "would
/// block" (the stream may end mid-frame where the first decoder stopped);
/// what tungstenite writes back (pongs, its close) goes nowhere.
struct Receiver<'a>(&'a [u8]);

impl std::io::Read for Receiver<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.0.is_empty() {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

impl std::io::Write for Receiver<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Reads every message tungstenite finds in `forwarded` as the receiver
/// would: a server reads a client's frames, a client an upstream's.
/// Control frames are not in it: the gateway answers pings and closes
/// itself, as `relay` above skips them.
fn tungstenite_reads(forwarded: &[u8], from: Sender) {
    use tungstenite::error::Error;
    let role = match from {
        Sender::Client => tungstenite::protocol::Role::Server,
        Sender::Upstream => tungstenite::protocol::Role::Client,
    };
    let mut ws = tungstenite::WebSocket::from_raw_socket(Receiver(forwarded), role, None);
    loop {
        match ws.read() {
            Ok(_) => {}
            Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(Error::ConnectionClosed | Error::AlreadyClosed) => return,
            Err(e) => panic!("tungstenite refused what the gateway forwarded: {e}"),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&piece, input)) = data.split_first() else {
        return;
    };
    // The top bit: permessage-deflate negotiated (RSV1 allowed on first
    // frames); the next two: which side sent the bytes.
    let deflate = piece & 0x80 != 0;
    let from = match piece & 0x60 {
        0x60 => Sender::Upstream,
        _ => Sender::Client,
    };
    let forwarded = relay(input, usize::from(piece % 32) + 1, deflate, from);
    // tungstenite has no permessage-deflate.
    if !deflate {
        tungstenite_reads(&forwarded, from);
    }
    // The forwarded stream is re-decoded as its receiver would see it.
    let mut check = Decoder::new(from, LIMITS);
    check.set_deflate(deflate);
    let mut buf = forwarded;
    let mut pos = 0;
    while pos < buf.len() {
        match check.next(&mut buf[pos..], &mut Counter(1)) {
            Ok(Step::Data { len, .. }) | Ok(Step::Control { len, .. }) => pos += len,
            Ok(Step::NeedMore) => break,
            Err(e) => {
                // A message cut short by the first decoder's error may end
                // mid-character; anything else forwarded must be valid.
                assert!(
                    matches!(e, wsgate_proto::frame::FrameError::InvalidUtf8(_)),
                    "forwarded an invalid frame: {e}"
                );
                break;
            }
        }
    }
});
