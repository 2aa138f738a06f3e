//! permessage-deflate as a hostile client drives it: an arbitrary
//! `Sec-WebSocket-Extensions` value, then arbitrary "compressed" bytes
//! inflated in arbitrary pieces. Properties: no panic; an accepted offer
//! always answers `client_no_context_takeover`; the inflater never hands out
//! more than the limit, however the data is built.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsgate_proto::deflate::{Inflater, negotiate};

const MAX: u64 = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let (offer, compressed) = rest.split_at(usize::from(split).min(rest.len()));
    if let Ok(text) = std::str::from_utf8(offer)
        && let Some(agreed) = negotiate([text])
    {
        assert!(agreed.response.contains("client_no_context_takeover"));
    }
    let piece = usize::from(split % 32) + 1;
    let mut z = Inflater::new(MAX);
    let mut out = vec![0u8; 4096];
    let mut produced = 0u64;
    'message: for input in compressed.chunks(piece).chain([Inflater::tail()]) {
        let mut input = input;
        loop {
            match z.inflate(input, &mut out) {
                Ok((used, made)) => {
                    produced += made as u64;
                    assert!(
                        produced <= MAX,
                        "handed out {produced} bytes past the limit"
                    );
                    input = &input[used..];
                    if input.is_empty() && made < out.len() {
                        break;
                    }
                    if used == 0 && made == 0 {
                        break 'message;
                    }
                }
                Err(_) => break 'message,
            }
        }
    }
});
