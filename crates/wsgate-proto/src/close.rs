//! Close frame payloads (RFC 6455 sections 5.5.1 and 7.4).

use tungstenite::protocol::frame::coding::CloseCode;

use crate::frame::FrameError;
use crate::mask;

/// Longest close reason: a control payload is at most 125 bytes, two of them the code.
pub const MAX_REASON: usize = 123;

/// What a close frame said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    /// The status code; `None` when the payload was empty (1005 "no status" to the API).
    pub code: Option<u16>,
    /// The reason text, possibly empty.
    pub reason: String,
}

/// Checks and decodes an (unmasked) close payload.
pub fn parse(payload: &[u8]) -> Result<Close, FrameError> {
    match payload {
        [] => Ok(Close {
            code: None,
            reason: String::new(),
        }),
        [_] => Err(FrameError::CloseTooShort),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !CloseCode::from(code).is_allowed() {
                return Err(FrameError::CloseCodeNotAllowed(code));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| FrameError::CloseReasonNotUtf8)?;
            Ok(Close {
                code: Some(code),
                reason: reason.to_owned(),
            })
        }
    }
}

/// Encodes a whole close frame, masked when `mask` is given (gateway to upstream).
///
/// The reason is cut to [`MAX_REASON`] bytes on a character boundary.
pub fn encode(code: Option<u16>, reason: &str, key: Option<[u8; 4]>) -> Vec<u8> {
    let mut payload = Vec::with_capacity(2 + reason.len().min(MAX_REASON));
    if let Some(code) = code {
        payload.extend_from_slice(&code.to_be_bytes());
        let mut end = reason.len().min(MAX_REASON);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        payload.extend_from_slice(&reason.as_bytes()[..end]);
    }
    control_frame(0x8, &payload, key)
}

/// Encodes a whole control frame (`opcode` 0x8 to 0xA) with a payload of at most 125 bytes.
pub fn control_frame(opcode: u8, payload: &[u8], key: Option<[u8; 4]>) -> Vec<u8> {
    debug_assert!(payload.len() <= 125);
    let len = payload.len().min(125);
    let mut out = Vec::with_capacity(6 + len);
    out.push(0x80 | opcode);
    // len <= 125, so it fits the 7-bit length field.
    out.push(if key.is_some() { 0x80 } else { 0 } | len as u8);
    if let Some(k) = key {
        out.extend_from_slice(&k);
    }
    let start = out.len();
    out.extend_from_slice(&payload[..len]);
    if let Some(k) = key {
        mask::apply(&mut out[start..], k, 0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_payloads() {
        assert_eq!(parse(&[]).unwrap().code, None);
        assert_eq!(parse(&[0x03]), Err(FrameError::CloseTooShort));
        assert_eq!(
            parse(&[0x03, 0xE8, b'o', b'k']).unwrap(),
            Close {
                code: Some(1000),
                reason: "ok".into()
            }
        );
        for bad in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
            assert_eq!(
                parse(&bad.to_be_bytes()),
                Err(FrameError::CloseCodeNotAllowed(bad)),
                "{bad}"
            );
        }
        for good in [
            1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999,
        ] {
            assert!(parse(&good.to_be_bytes()).is_ok(), "{good}");
        }
        assert_eq!(
            parse(&[0x03, 0xE8, 0xFF]),
            Err(FrameError::CloseReasonNotUtf8)
        );
    }

    #[test]
    fn encoded_close_frames_round_trip() {
        let frame = encode(Some(1008), "origin_not_allowed", None);
        assert_eq!(&frame[..2], &[0x88, 20]);
        assert_eq!(parse(&frame[2..]).unwrap().reason, "origin_not_allowed");
        let long = "é".repeat(100);
        let frame = encode(Some(1000), &long, Some([9, 8, 7, 6]));
        assert_eq!(frame[1], 0x80 | 124); // 2 + 122 bytes: 61 whole characters
        let mut payload = frame[6..].to_vec();
        mask::apply(&mut payload, [9, 8, 7, 6], 0);
        assert!(parse(&payload).is_ok());
    }
}
