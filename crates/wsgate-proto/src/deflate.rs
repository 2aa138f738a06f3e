//! permessage-deflate (RFC 7692) on the client's side of the gateway:
//! choosing an offer, and inflating what the client compressed with a
//! bound on the inflated size that holds while inflating.
//!
//! The gateway compresses nothing itself: what it sends the client goes
//! uncompressed (RFC 7692 lets a sender compress any message or none), and
//! the upstream leg negotiates no extension at all. So of the offer's
//! parameters only the client's context matters here, and the gateway
//! always answers `client_no_context_takeover`: every compressed message
//! stands alone, and a connection holds no inflate window between messages.

use flate2::{Decompress, FlushDecompress, Status};

/// The extension's token.
pub const NAME: &str = "permessage-deflate";

/// What section 7.2.2 appends to every compressed message before inflating.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// An accepted offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agreement {
    /// The `Sec-WebSocket-Extensions` value of the 101.
    pub response: String,
}

/// Picks the first acceptable permessage-deflate offer from the client's
/// `Sec-WebSocket-Extensions` values (section 7.1); `None` declines them all.
/// An offer with an unknown, repeated or malformed parameter is declined,
/// not refused: the handshake goes on without compression.
pub fn negotiate<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Agreement> {
    values
        .into_iter()
        .flat_map(split_outside_quotes(','))
        .find_map(|offer| accept(offer.trim()))
}

/// Splits on `sep` where it is not inside a quoted string.
fn split_outside_quotes(sep: char) -> impl Fn(&str) -> Vec<&str> {
    move |s: &str| {
        let mut parts = Vec::new();
        let (mut start, mut quoted) = (0, false);
        for (i, c) in s.char_indices() {
            match c {
                '"' => quoted = !quoted,
                c if c == sep && !quoted => {
                    parts.push(&s[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&s[start..]);
        parts
    }
}

/// The answer to one offer, or `None` to decline it.
fn accept(offer: &str) -> Option<Agreement> {
    let mut parts = split_outside_quotes(';')(offer).into_iter();
    if !parts.next()?.trim().eq_ignore_ascii_case(NAME) {
        return None;
    }
    let mut seen: Vec<String> = Vec::new();
    let mut response = format!("{NAME}; client_no_context_takeover");
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n.trim(), Some(unquote(v.trim())?)),
            None => (param.trim(), None),
        };
        let name = name.to_ascii_lowercase();
        if seen.contains(&name) {
            return None;
        }
        match (name.as_str(), value) {
            ("server_no_context_takeover", None) => {
                // Nothing is compressed towards the client, so no context is kept.
                response.push_str("; server_no_context_takeover");
            }
            ("client_no_context_takeover", None) => {}
            ("server_max_window_bits", Some(v)) => {
                let bits = window_bits(v)?;
                response.push_str(&format!("; server_max_window_bits={bits}"));
            }
            // The inflater's window is 2^15, enough for any window the
            // client uses, so the client may keep its choice.
            ("client_max_window_bits", None) => {}
            ("client_max_window_bits", Some(v)) => {
                window_bits(v)?;
            }
            _ => return None,
        }
        seen.push(name);
    }
    Some(Agreement { response })
}

fn unquote(v: &str) -> Option<&str> {
    match v.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"'),
        None => Some(v),
    }
}

/// Section 7.1.2: a window size is a decimal 8 to 15, no leading zero.
fn window_bits(v: &str) -> Option<u8> {
    if v.starts_with('0') || v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse::<u8>().ok().filter(|b| (8..=15).contains(b))
}

/// Why inflating stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InflateError {
    /// The inflated message would pass the route's `max_message`.
    #[error("inflated message exceeds max_message of {max} bytes")]
    TooBig {
        /// The limit.
        max: u64,
    },
    /// The compressed data is not DEFLATE.
    #[error("compressed data is corrupt: {0}")]
    Corrupt(String),
}

/// Inflates one compressed message, never producing more than `max` bytes.
pub struct Inflater {
    z: Decompress,
    max: u64,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("out", &self.z.total_out())
            .field("max", &self.max)
            .finish()
    }
}

impl Inflater {
    /// A fresh inflater (raw DEFLATE, 2^15 window) for one message of at most `max` bytes.
    pub fn new(max: u64) -> Self {
        Inflater {
            z: Decompress::new(false),
            max,
        }
    }

    /// Bytes inflated so far.
    pub fn total_out(&self) -> u64 {
        self.z.total_out()
    }

    /// Inflates from `input` into `out`: returns the bytes of `input` used
    /// and of `out` filled. Call again while either is non-zero. `out` is
    /// never filled past the message's `max`: one byte beyond is an error.
    pub fn inflate(
        &mut self,
        input: &[u8],
        out: &mut [u8],
    ) -> Result<(usize, usize), InflateError> {
        // Room for one byte past the limit, to tell "exactly max" from "more".
        let left = self
            .max
            .saturating_sub(self.z.total_out())
            .saturating_add(1);
        let room = usize::try_from(left).map_or(out.len(), |l| l.min(out.len()));
        let (in_before, out_before) = (self.z.total_in(), self.z.total_out());
        let status = self
            .z
            .decompress(input, &mut out[..room], FlushDecompress::Sync)
            .map_err(|e| InflateError::Corrupt(e.to_string()))?;
        let used = usize::try_from(self.z.total_in() - in_before).unwrap_or(input.len());
        let made = usize::try_from(self.z.total_out() - out_before).unwrap_or(0);
        if self.z.total_out() > self.max {
            return Err(InflateError::TooBig { max: self.max });
        }
        if status == Status::StreamEnd && used < input.len() {
            // A final block before the end of the message: the rest would be
            // data after the stream, which section 7.2.2 does not allow.
            return Err(InflateError::Corrupt("data after the final block".into()));
        }
        Ok((used, made))
    }

    /// The bytes section 7.2.2 appends at the end of every message.
    pub fn tail() -> &'static [u8] {
        &TAIL
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use flate2::Compression;
    use flate2::write::DeflateEncoder;

    use super::*;

    fn agreed(offer: &str) -> Option<String> {
        negotiate([offer]).map(|a| a.response)
    }

    #[test]
    fn offers_are_accepted_with_client_no_context_takeover() {
        assert_eq!(
            agreed("permessage-deflate").as_deref(),
            Some("permessage-deflate; client_no_context_takeover")
        );
        assert_eq!(
            agreed("permessage-deflate; client_max_window_bits").as_deref(),
            Some("permessage-deflate; client_no_context_takeover")
        );
        assert_eq!(
            agreed("permessage-deflate; server_no_context_takeover; server_max_window_bits=10")
                .as_deref(),
            Some(
                "permessage-deflate; client_no_context_takeover; server_no_context_takeover; server_max_window_bits=10"
            )
        );
        assert_eq!(
            agreed("permessage-deflate; client_max_window_bits=\"9\"").as_deref(),
            Some("permessage-deflate; client_no_context_takeover")
        );
    }

    #[test]
    fn a_bad_offer_is_declined_and_the_next_one_taken() {
        for bad in [
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=08",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; colour=blue",
            "x-webkit-deflate-frame",
        ] {
            assert_eq!(agreed(bad), None, "{bad}");
        }
        let two = negotiate([
            "permessage-deflate; colour=blue, permessage-deflate; server_no_context_takeover",
        ]);
        assert_eq!(
            two.map(|a| a.response).as_deref(),
            Some("permessage-deflate; client_no_context_takeover; server_no_context_takeover")
        );
        assert!(negotiate(["foo", "permessage-deflate"]).is_some());
    }

    fn compress(data: &[u8]) -> Vec<u8> {
        let mut e = DeflateEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        let mut out = e.flush_finish().unwrap();
        // What a WebSocket sender does: a sync flush, with its tail removed.
        if out.ends_with(&TAIL) {
            out.truncate(out.len() - 4);
        }
        out
    }

    /// Inflates a whole message in chunks the size of `out`.
    fn inflate_all(z: &mut Inflater, data: &[u8], chunk: usize) -> Result<Vec<u8>, InflateError> {
        let mut got = Vec::new();
        let mut out = vec![0; chunk];
        for input in [data, Inflater::tail()] {
            let mut input = input;
            loop {
                let (used, made) = z.inflate(input, &mut out)?;
                got.extend_from_slice(&out[..made]);
                input = &input[used..];
                if input.is_empty() && made < out.len() {
                    break;
                }
            }
        }
        Ok(got)
    }

    #[test]
    fn a_message_inflates_whole_in_small_pieces() {
        let text = "hello, hello, hello, wsgate! ".repeat(1000);
        let compressed = compress(text.as_bytes());
        assert!(compressed.len() < text.len() / 10);
        let mut z = Inflater::new(1 << 20);
        assert_eq!(
            inflate_all(&mut z, &compressed, 100).unwrap(),
            text.as_bytes()
        );
    }

    #[test]
    fn a_bomb_stops_at_the_limit_having_produced_at_most_one_byte_more() {
        let bomb = compress(&vec![0u8; 10 << 20]);
        assert!(
            bomb.len() < 16 << 10,
            "10 MiB of zeros compress to {} bytes",
            bomb.len()
        );
        let mut z = Inflater::new(64 << 10);
        let err = inflate_all(&mut z, &bomb, 16 << 10).unwrap_err();
        assert_eq!(err, InflateError::TooBig { max: 64 << 10 });
        assert!(z.total_out() <= (64 << 10) + 1, "{}", z.total_out());
        // Exactly the limit is fine.
        let fits = compress(&vec![7u8; 64 << 10]);
        let mut z = Inflater::new(64 << 10);
        assert_eq!(
            inflate_all(&mut z, &fits, 16 << 10).unwrap().len(),
            64 << 10
        );
    }

    #[test]
    fn garbage_is_corrupt_not_a_panic() {
        let mut z = Inflater::new(1 << 20);
        assert!(matches!(
            inflate_all(&mut z, &[0xff; 64], 1024),
            Err(InflateError::Corrupt(_))
        ));
    }
}
