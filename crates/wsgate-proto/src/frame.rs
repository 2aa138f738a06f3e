//! A streaming validator for the frames one peer sends.
//!
//! The relay hands [`Decoder::next`] the bytes it has read; the decoder says
//! how many of them belong to data frames (validated, and for a client
//! re-masked in place with the gateway's own key, ready to forward) or which
//! whole control frame comes next. A payload is processed as it arrives, so
//! a 16 MiB message is never held: the relay's buffer is the only copy.
//!
//! Limits are checked on the length in a frame's header, before any of its
//! payload is read, so an oversized frame costs nothing to refuse.

use std::ops::Range;

use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

use crate::close::{self, Close};
use crate::mask::{self, MaskSource};
use crate::utf8::{InvalidUtf8, Utf8Stream};

/// Largest control frame payload (RFC 6455 section 5.5).
pub const MAX_CONTROL_PAYLOAD: u64 = 125;

/// Who sends the frames being decoded; the masking rule depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// A client: every frame must be masked; the gateway re-masks it.
    Client,
    /// An upstream server: no frame may be masked.
    Upstream,
}

/// Size limits on data frames; `u64::MAX` for none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest data frame payload.
    pub max_frame: u64,
    /// Largest message, all fragments together.
    pub max_message: u64,
}

impl Limits {
    /// No limits (frames from a trusted upstream).
    pub const NONE: Limits = Limits {
        max_frame: u64::MAX,
        max_message: u64::MAX,
    };
}

/// One broken rule; each maps to one close code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Section 5.1: a client must mask every frame.
    #[error("client frame is not masked")]
    Unmasked,
    /// Section 5.1: a server must not mask.
    #[error("server frame is masked")]
    Masked,
    /// Section 5.2: RSV1-3 without a negotiated extension.
    #[error("reserved bits set without a negotiated extension")]
    ReservedBits,
    /// Section 5.2: opcodes 0x3-0x7 and 0xB-0xF.
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// Section 5.5: control payloads are at most 125 bytes.
    #[error("control frame of {0} bytes, at most 125 allowed")]
    ControlTooLong(u64),
    /// Section 5.5: control frames are never fragmented.
    #[error("fragmented control frame")]
    ControlFragmented,
    /// Section 5.4: a continuation needs a message in progress.
    #[error("continuation frame with no message in progress")]
    UnexpectedContinuation,
    /// Section 5.4: a new message cannot start inside another.
    #[error("new data frame inside a fragmented message")]
    ExpectedContinuation,
    /// Section 5.2: the most significant bit of a 64-bit length must be 0.
    #[error("frame length {0} has its most significant bit set")]
    LengthOverflow(u64),
    /// The route's `max_frame`.
    #[error("frame of {size} bytes exceeds max_frame of {max}")]
    FrameTooBig {
        /// Length the header announced.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The route's `max_message`.
    #[error("message of at least {size} bytes exceeds max_message of {max}")]
    MessageTooBig {
        /// Bytes of the message so far, this frame included.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// Section 8.1: text must be UTF-8.
    #[error(transparent)]
    InvalidUtf8(#[from] InvalidUtf8),
    /// Section 5.5.1: a close payload is empty or at least two bytes.
    #[error("close frame with a 1-byte payload")]
    CloseTooShort,
    /// Section 7.4: codes that may not be sent.
    #[error("close code {0} may not be sent")]
    CloseCodeNotAllowed(u16),
    /// Section 5.5.1: the close reason is UTF-8.
    #[error("close reason is not UTF-8")]
    CloseReasonNotUtf8,
}

/// A whole control frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlFrame {
    /// Ping, to be answered with a pong carrying the same payload.
    Ping,
    /// Pong.
    Pong,
    /// Close, already checked.
    Close(Close),
}

/// What the next bytes of input are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The first `len` bytes of the input belong to a data frame and, as
    /// transformed in place, go to the other peer.
    Data {
        /// Bytes consumed.
        len: usize,
        /// Whether a message ended with them.
        message_end: bool,
        /// Payload bytes (else a frame header).
        payload: bool,
        /// The header of a message's first frame.
        message_start: bool,
        /// The message is text (else binary).
        text: bool,
        /// The message is compressed (permessage-deflate): its payload is
        /// left unmasked and unchecked for UTF-8, for the caller to inflate.
        compressed: bool,
    },
    /// A whole control frame of `len` bytes; `payload` (unmasked in place) is
    /// its payload's range within the input.
    Control {
        /// Which control frame.
        frame: ControlFrame,
        /// Bytes consumed.
        len: usize,
        /// Where the payload sits in the input.
        payload: Range<usize>,
    },
    /// Nothing can be decided until more bytes arrive.
    NeedMore,
}

#[derive(Debug)]
struct FrameState {
    remaining: u64,
    offset: usize,
    in_key: Option<[u8; 4]>,
    out_key: Option<[u8; 4]>,
    text: bool,
    compressed: bool,
    fin: bool,
}

#[derive(Debug)]
struct MessageState {
    text: bool,
    compressed: bool,
    len: u64,
    utf8: Utf8Stream,
}

/// Decoder state for one direction of one connection.
#[derive(Debug)]
pub struct Decoder {
    sender: Sender,
    limits: Limits,
    frame: Option<FrameState>,
    message: Option<MessageState>,
    /// Leave text payloads unmasked: the caller assembles text messages to
    /// check them whole and sends them on in a frame of its own.
    plain_text: bool,
    /// permessage-deflate was negotiated: RSV1 marks a compressed message.
    deflate: bool,
}

impl Decoder {
    /// A decoder for frames from `sender`, under `limits`.
    pub fn new(sender: Sender, limits: Limits) -> Self {
        Decoder {
            sender,
            limits,
            frame: None,
            message: None,
            plain_text: false,
            deflate: false,
        }
    }

    /// Accepts RSV1 on a message's first frame: permessage-deflate was negotiated.
    pub fn set_deflate(&mut self, deflate: bool) {
        self.deflate = deflate;
    }

    /// Leaves text payloads unmasked (see [`Step::Data`]); for assembling.
    pub fn set_plain_text(&mut self, plain: bool) {
        self.plain_text = plain;
    }

    /// Whether the data forwarded so far ends inside a frame, so that nothing
    /// else (a control frame of the gateway's own) may be written to the other
    /// peer until the frame is complete.
    pub fn mid_frame(&self) -> bool {
        self.frame.is_some()
    }

    /// Whether a data message has begun and not yet ended.
    pub fn mid_message(&self) -> bool {
        self.message.is_some()
    }

    /// Holds frames and messages to new limits from the next frame on (a
    /// reload); meant to be called between messages.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Decodes from the start of `input`, transforming data in place.
    pub fn next(
        &mut self,
        input: &mut [u8],
        masks: &mut dyn MaskSource,
    ) -> Result<Step, FrameError> {
        if self.frame.is_some() {
            return self.payload(input);
        }
        let (header, len, header_len) = match parse_header(input)? {
            Some(parsed) => parsed,
            None => return Ok(Step::NeedMore),
        };
        self.check_header(&header, len)?;
        match header.opcode {
            OpCode::Control(c) => Ok(self.control(c, header_len, len, header.mask, input)?),
            OpCode::Data(d) => self.data_header(d, &header, header_len, len, input, masks),
        }
    }

    fn check_header(&self, header: &FrameHeader, len: u64) -> Result<(), FrameError> {
        // RSV1 means "compressed" only on the first frame of a data message
        // (RFC 7692 section 6): never on a continuation or a control frame.
        let first_data = matches!(header.opcode, OpCode::Data(Data::Text | Data::Binary));
        if (header.rsv1 && !(self.deflate && first_data)) || header.rsv2 || header.rsv3 {
            return Err(FrameError::ReservedBits);
        }
        match (self.sender, header.mask.is_some()) {
            (Sender::Client, false) => return Err(FrameError::Unmasked),
            (Sender::Upstream, true) => return Err(FrameError::Masked),
            _ => {}
        }
        if len > i64::MAX as u64 {
            return Err(FrameError::LengthOverflow(len));
        }
        if let OpCode::Control(_) = header.opcode {
            if !header.is_final {
                return Err(FrameError::ControlFragmented);
            }
            if len > MAX_CONTROL_PAYLOAD {
                return Err(FrameError::ControlTooLong(len));
            }
        }
        Ok(())
    }

    fn control(
        &mut self,
        c: Control,
        header_len: usize,
        len: u64,
        key: Option<[u8; 4]>,
        input: &mut [u8],
    ) -> Result<Step, FrameError> {
        // len <= 125 was checked.
        let total = header_len + len as usize;
        if input.len() < total {
            return Ok(Step::NeedMore);
        }
        let payload = header_len..total;
        if let Some(k) = key {
            mask::apply(&mut input[payload.clone()], k, 0);
        }
        let frame = match c {
            Control::Ping => ControlFrame::Ping,
            Control::Pong => ControlFrame::Pong,
            Control::Close => ControlFrame::Close(close::parse(&input[payload.clone()])?),
            Control::Reserved(op) => return Err(FrameError::ReservedOpcode(op)),
        };
        Ok(Step::Control {
            frame,
            len: total,
            payload,
        })
    }

    fn data_header(
        &mut self,
        d: Data,
        header: &FrameHeader,
        header_len: usize,
        len: u64,
        input: &mut [u8],
        masks: &mut dyn MaskSource,
    ) -> Result<Step, FrameError> {
        let text = match (d, &self.message) {
            (Data::Continue, Some(m)) => m.text,
            (Data::Continue, None) => return Err(FrameError::UnexpectedContinuation),
            (Data::Text | Data::Binary, Some(_)) => return Err(FrameError::ExpectedContinuation),
            (Data::Text, None) => true,
            (Data::Binary, None) => false,
            (Data::Reserved(op), _) => return Err(FrameError::ReservedOpcode(op)),
        };
        let compressed = match &self.message {
            Some(m) => m.compressed,
            None => header.rsv1,
        };
        if len > self.limits.max_frame {
            let max = self.limits.max_frame;
            return Err(FrameError::FrameTooBig { size: len, max });
        }
        let so_far = self.message.as_ref().map_or(0, |m| m.len);
        let size = so_far.saturating_add(len);
        // The inflated size is the caller's to bound; the compressed bytes
        // get the room DEFLATE's stored blocks can add to incompressible data.
        let max = match compressed {
            true => compressed_bound(self.limits.max_message),
            false => self.limits.max_message,
        };
        if size > max {
            return Err(FrameError::MessageTooBig { size, max });
        }
        let message = self.message.get_or_insert_with(|| MessageState {
            text,
            compressed,
            len: 0,
            utf8: Utf8Stream::default(),
        });
        message.len = size;
        let out_key = match self.sender {
            Sender::Client if (text && self.plain_text) || compressed => None,
            Sender::Client => {
                let k = masks.next_mask();
                input[header_len - 4..header_len].copy_from_slice(&k);
                Some(k)
            }
            Sender::Upstream => None,
        };
        self.frame = Some(FrameState {
            remaining: len,
            offset: 0,
            in_key: header.mask,
            out_key,
            text,
            compressed,
            fin: header.is_final,
        });
        let message_end = if len == 0 { self.end_frame()? } else { false };
        Ok(Step::Data {
            len: header_len,
            message_end,
            payload: false,
            message_start: d != Data::Continue,
            text,
            compressed,
        })
    }

    fn payload(&mut self, input: &mut [u8]) -> Result<Step, FrameError> {
        let Some(f) = self.frame.as_mut() else {
            return Ok(Step::NeedMore);
        };
        let n = usize::try_from(f.remaining).map_or(input.len(), |r| r.min(input.len()));
        if n == 0 {
            return Ok(Step::NeedMore);
        }
        let chunk = &mut input[..n];
        let utf8 = match self.message.as_mut() {
            Some(m) if f.text && !f.compressed => Some(&mut m.utf8),
            _ => None,
        };
        match (f.in_key, f.out_key) {
            (Some(from), Some(to)) => {
                // One pass over the payload instead of three (unmask, check,
                // re-mask); only text that is not plain ASCII, or that
                // continues a character split across reads, is unmasked
                // again to be checked.
                let ascii = mask::remask(chunk, from, to, f.offset);
                if let Some(utf8) = utf8
                    && !(ascii && utf8.at_char_boundary())
                {
                    mask::apply(chunk, to, f.offset);
                    utf8.feed(chunk)?;
                    mask::apply(chunk, to, f.offset);
                }
            }
            (from, to) => {
                if let Some(k) = from {
                    mask::apply(chunk, k, f.offset);
                }
                if let Some(utf8) = utf8 {
                    utf8.feed(chunk)?;
                }
                if let Some(k) = to {
                    mask::apply(chunk, k, f.offset);
                }
            }
        }
        f.offset += n;
        f.remaining -= n as u64;
        let (text, compressed) = (f.text, f.compressed);
        let message_end = if f.remaining == 0 {
            self.end_frame()?
        } else {
            false
        };
        Ok(Step::Data {
            len: n,
            message_end,
            payload: true,
            message_start: false,
            text,
            compressed,
        })
    }

    /// Closes the current frame; returns whether it ended its message.
    fn end_frame(&mut self) -> Result<bool, FrameError> {
        let fin = self.frame.take().is_some_and(|f| f.fin);
        if !fin {
            return Ok(false);
        }
        if let Some(mut m) = self.message.take()
            && m.text
            && !m.compressed
        {
            m.utf8.finish()?;
        }
        Ok(true)
    }
}

/// Parses the frame header at the start of `input`: the header, the payload
/// length it announces and its own length in bytes; `None` until all of it
/// has arrived.
///
/// tungstenite's `FrameHeader::parse` gives the same answer through
/// `io::Read` on a `Cursor`, and at 64-byte messages that cost a sixth of the
/// gateway's own instructions per message (callgrind). The 2 to 14 bytes are
/// read here directly; a test holds this to tungstenite's answer for every
/// first two bytes, each length form and each truncation.
fn parse_header(input: &[u8]) -> Result<Option<(FrameHeader, u64, usize)>, FrameError> {
    let [first, second, ..] = *input else {
        return Ok(None);
    };
    let (len, at) = match second & 0x7F {
        126 => match input.get(2..4) {
            Some(&[a, b]) => (u64::from(u16::from_be_bytes([a, b])), 4),
            _ => return Ok(None),
        },
        127 => match input.get(2..10).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
            Some(bytes) => (u64::from_be_bytes(bytes), 10),
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    let (mask, header_len) = if second & 0x80 == 0 {
        (None, at)
    } else {
        match input
            .get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
        {
            Some(key) => (Some(key), at + 4),
            None => return Ok(None),
        }
    };
    let opcode = match first & 0x0F {
        0x0 => OpCode::Data(Data::Continue),
        0x1 => OpCode::Data(Data::Text),
        0x2 => OpCode::Data(Data::Binary),
        0x8 => OpCode::Control(Control::Close),
        0x9 => OpCode::Control(Control::Ping),
        0xA => OpCode::Control(Control::Pong),
        op => return Err(FrameError::ReservedOpcode(op)),
    };
    let header = FrameHeader {
        is_final: first & 0x80 != 0,
        rsv1: first & 0x40 != 0,
        rsv2: first & 0x20 != 0,
        rsv3: first & 0x10 != 0,
        opcode,
        mask,
    };
    Ok(Some((header, len, header_len)))
}

/// The most compressed bytes a message of `max` inflated bytes can take:
/// DEFLATE's stored blocks add 5 bytes per 65,535, plus a final block.
fn compressed_bound(max: u64) -> u64 {
    max.saturating_add(max / 8192).saturating_add(64)
}

/// Encodes a whole final data frame (`opcode` 0x1 or 0x2), masked with `key`
/// when given: how an assembled and checked message is sent on.
pub fn encode_data(opcode: u8, payload: &[u8], key: Option<[u8; 4]>) -> Vec<u8> {
    encode_fragment(opcode, true, payload, key)
}

/// Encodes one data frame: `opcode` 0x1 or 0x2 for a message's first frame,
/// 0x0 for a continuation; `fin` on its last. How inflated messages go on.
pub fn encode_fragment(opcode: u8, fin: bool, payload: &[u8], key: Option<[u8; 4]>) -> Vec<u8> {
    let header = FrameHeader {
        is_final: fin,
        opcode: OpCode::from(opcode),
        mask: key,
        ..FrameHeader::default()
    };
    let len = payload.len() as u64;
    let mut out = Vec::with_capacity(header.len(len) + payload.len());
    // Writing into a Vec cannot fail.
    let _ = header.format(len, &mut out);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(k) = key {
        mask::apply(&mut out[start..], k, 0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use tungstenite::error::{Error as WsError, ProtocolError};

    /// tungstenite's reading of the same bytes, in [`parse_header`]'s terms.
    fn tungstenite(input: &[u8]) -> Result<Option<(FrameHeader, u64, usize)>, FrameError> {
        let mut cursor = Cursor::new(input);
        match FrameHeader::parse(&mut cursor) {
            Ok(Some((header, len))) => Ok(Some((header, len, cursor.position() as usize))),
            Ok(None) => Ok(None),
            Err(WsError::Protocol(ProtocolError::InvalidOpcode(op))) => {
                Err(FrameError::ReservedOpcode(op))
            }
            Err(e) => panic!("tungstenite failed otherwise: {e}"),
        }
    }

    #[test]
    fn headers_parse_as_tungstenite_parses_them() {
        let extended: [&[u8]; 3] = [
            &[0x01, 0x02],
            &[0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00],
            &[0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05],
        ];
        for first in 0..=255u8 {
            for second in 0..=255u8 {
                let tails: &[&[u8]] = match second & 0x7F {
                    126 => &extended[..1],
                    127 => &extended[1..],
                    _ => &[&[]],
                };
                for tail in tails {
                    let mut bytes = vec![first, second];
                    bytes.extend_from_slice(tail);
                    bytes.extend_from_slice(&[0x37, 0xfa, 0x21, 0x3d, 0xAA]);
                    for end in 0..=bytes.len() {
                        let input = &bytes[..end];
                        assert_eq!(
                            parse_header(input),
                            tungstenite(input),
                            "{first:#04x} {second:#04x} {tail:?}, {end} bytes"
                        );
                    }
                }
            }
        }
    }
}
