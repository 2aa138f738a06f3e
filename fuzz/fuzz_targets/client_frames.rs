//! Client bytes, delivered in pieces, through the frame decoder as the relay
//! drives it. Properties: no panic; everything the decoder passes on is a
//! well-formed, masked client stream that a second decoder accepts without
//! error (the gateway never forwards a frame it did not validate).
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
fn relay(input: &[u8], piece: usize, deflate: bool) -> Vec<u8> {
    let mut decoder = Decoder::new(Sender::Client, LIMITS);
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

fuzz_target!(|data: &[u8]| {
    let Some((&piece, input)) = data.split_first() else {
        return;
    };
    // The top bit: permessage-deflate negotiated (RSV1 allowed on first frames).
    let deflate = piece & 0x80 != 0;
    let forwarded = relay(input, usize::from(piece % 64) + 1, deflate);
    // The forwarded stream is re-decoded as the upstream would see it.
    let mut check = Decoder::new(Sender::Client, LIMITS);
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
