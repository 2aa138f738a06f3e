//! Byte-literal tests of the frame decoder, one per RFC rule.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use wsgate_proto::close::Close;
use wsgate_proto::frame::{ControlFrame, Decoder, FrameError, Limits, Sender, Step};
use wsgate_proto::mask::{self, MaskSource};

struct Fixed([u8; 4]);
impl MaskSource for Fixed {
    fn next_mask(&mut self) -> [u8; 4] {
        self.0
    }
}

const CLIENT_KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const GATE_KEY: [u8; 4] = [1, 2, 3, 4];

/// A client frame: `first` byte (FIN/RSV/opcode), masked payload.
fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&CLIENT_KEY);
    let start = out.len();
    out.extend_from_slice(payload);
    mask::apply(&mut out[start..], CLIENT_KEY, 0);
    out
}

fn decoder(max_frame: u64, max_message: u64) -> Decoder {
    Decoder::new(
        Sender::Client,
        Limits {
            max_frame,
            max_message,
        },
    )
}

/// Runs the decoder over `input` as one buffer; returns steps and any error.
fn run(d: &mut Decoder, input: &mut [u8]) -> (Vec<Step>, Option<FrameError>) {
    let mut steps = Vec::new();
    let mut pos = 0;
    loop {
        match d.next(&mut input[pos..], &mut Fixed(GATE_KEY)) {
            Ok(Step::NeedMore) => return (steps, None),
            Ok(step) => {
                pos += match &step {
                    Step::Data { len, .. } | Step::Control { len, .. } => *len,
                    Step::NeedMore => 0,
                };
                steps.push(step);
                if pos == input.len() {
                    return (steps, None);
                }
            }
            Err(e) => return (steps, Some(e)),
        }
    }
}

fn error_of(bytes: &[u8]) -> Option<FrameError> {
    run(&mut decoder(1 << 20, 1 << 20), &mut bytes.to_vec()).1
}

#[test]
fn a_client_text_frame_is_remasked_with_the_gateways_key() {
    let mut frame = client_frame(0x81, b"Hello");
    let (steps, err) = run(&mut decoder(100, 100), &mut frame);
    assert_eq!(err, None);
    assert_eq!(
        steps,
        [
            Step::Data {
                len: 6,
                message_end: false,
                payload: false,
                message_start: true,
                text: true,
                compressed: false
            },
            Step::Data {
                len: 5,
                message_end: true,
                payload: true,
                message_start: false,
                text: true,
                compressed: false
            },
        ]
    );
    assert_eq!(&frame[..2], &[0x81, 0x85]);
    assert_eq!(&frame[2..6], &GATE_KEY);
    let mut payload = frame[6..].to_vec();
    mask::apply(&mut payload, GATE_KEY, 0);
    assert_eq!(payload, b"Hello");
}

#[test]
fn upstream_frames_pass_unchanged() {
    let mut frame = vec![0x82, 0x03, 1, 2, 3];
    let mut d = Decoder::new(Sender::Upstream, Limits::NONE);
    let (steps, err) = run(&mut d, &mut frame);
    assert_eq!(err, None);
    assert_eq!(steps.len(), 2);
    assert_eq!(frame, [0x82, 0x03, 1, 2, 3]);
    let masked = client_frame(0x82, b"x");
    assert_eq!(
        run(
            &mut Decoder::new(Sender::Upstream, Limits::NONE),
            &mut masked.clone()
        )
        .1,
        Some(FrameError::Masked)
    );
}

#[test]
fn protocol_rules() {
    assert_eq!(error_of(&[0x81, 0x01, b'a']), Some(FrameError::Unmasked));
    assert_eq!(
        error_of(&client_frame(0xC1, b"a")),
        Some(FrameError::ReservedBits)
    );
    assert_eq!(
        error_of(&client_frame(0x83, b"a")),
        Some(FrameError::ReservedOpcode(3))
    );
    assert_eq!(
        error_of(&client_frame(0x8B, b"")),
        Some(FrameError::ReservedOpcode(0xB))
    );
    assert_eq!(
        error_of(&client_frame(0x89, &[0; 126])),
        Some(FrameError::ControlTooLong(126))
    );
    assert_eq!(
        error_of(&client_frame(0x09, b"")),
        Some(FrameError::ControlFragmented)
    );
    assert_eq!(
        error_of(&client_frame(0x80, b"a")),
        Some(FrameError::UnexpectedContinuation)
    );
    let mut two = client_frame(0x01, b"a");
    two.extend(client_frame(0x81, b"b"));
    assert_eq!(error_of(&two), Some(FrameError::ExpectedContinuation));
}

#[test]
fn a_length_with_its_top_bit_set_is_refused_from_the_header_alone() {
    let header = [0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
    assert_eq!(error_of(&header), Some(FrameError::LengthOverflow(1 << 63)));
}

#[test]
fn limits_are_checked_on_the_header_before_the_payload() {
    // Only the 10-byte header of a 1 MiB frame: refused without reading on.
    let header = &client_frame(0x82, &vec![0; 1 << 20])[..14];
    let (_, err) = run(&mut decoder(64, 1 << 30), &mut header.to_vec());
    assert_eq!(
        err,
        Some(FrameError::FrameTooBig {
            size: 1 << 20,
            max: 64
        })
    );
    // A fragmented message passes max_frame per frame but not max_message in total.
    let mut msg = client_frame(0x02, &[0; 40]);
    msg.extend(client_frame(0x00, &[0; 40]));
    let (_, err) = run(&mut decoder(64, 64), &mut msg);
    assert_eq!(err, Some(FrameError::MessageTooBig { size: 80, max: 64 }));
}

#[test]
fn invalid_utf8_fails_fast_in_the_fragment_that_breaks_it() {
    // Autobahn 6.4.1: valid first fragment, then a fragment making it invalid.
    let mut first = client_frame(0x01, "κόσμε".as_bytes());
    let mut d = decoder(1 << 20, 1 << 20);
    assert_eq!(run(&mut d, &mut first).1, None);
    let mut second = client_frame(0x00, b"\xF4\x90\x80\x80");
    assert!(matches!(
        run(&mut d, &mut second).1,
        Some(FrameError::InvalidUtf8(_))
    ));
    // Ending a text message inside a character is invalid too.
    assert!(matches!(
        error_of(&client_frame(0x81, b"\xE2\x82")),
        Some(FrameError::InvalidUtf8(_))
    ));
    // Binary is not checked.
    assert_eq!(error_of(&client_frame(0x82, b"\xFF")), None);
}

#[test]
fn ascii_after_an_unfinished_character_is_invalid_utf8() {
    // The first piece ends inside "€"; the plain ASCII after it cannot
    // finish the character, whichever read it arrives in. The frame is not
    // the message's last, so only failing fast reports it.
    let frame = client_frame(0x01, b"ab\xE2\x82cdefghijklmnop");
    for split in [9, 10] {
        let mut d = decoder(100, 100);
        let (mut head, mut tail) = (frame[..split].to_vec(), frame[split..].to_vec());
        assert_eq!(run(&mut d, &mut head).1, None, "split at {split}");
        assert!(
            matches!(run(&mut d, &mut tail).1, Some(FrameError::InvalidUtf8(_))),
            "split at {split}"
        );
    }
}

#[test]
fn a_payload_arriving_in_pieces_is_processed_piece_by_piece() {
    let frame = client_frame(0x81, "ab€cd".as_bytes());
    let mut d = decoder(100, 100);
    let mut out = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    for byte in frame {
        pending.push(byte);
        loop {
            match d.next(&mut pending, &mut Fixed(GATE_KEY)).unwrap() {
                Step::Data { len, .. } => out.extend(pending.drain(..len)),
                Step::NeedMore => break,
                other => panic!("{other:?}"),
            }
            if pending.is_empty() {
                break;
            }
        }
    }
    let mut payload = out[6..].to_vec();
    mask::apply(&mut payload, GATE_KEY, 0);
    assert_eq!(payload, "ab€cd".as_bytes());
}

#[test]
fn control_frames_are_whole_and_unmasked() {
    let mut ping = client_frame(0x89, b"hi");
    let (steps, err) = run(&mut decoder(1, 1), &mut ping);
    assert_eq!(err, None);
    let Step::Control {
        frame,
        len,
        payload,
    } = &steps[0]
    else {
        panic!()
    };
    assert_eq!((frame, *len), (&ControlFrame::Ping, 8));
    assert_eq!(&ping[payload.clone()], b"hi");
    // Half a control frame waits for the rest.
    let close = client_frame(0x88, &[0x03, 0xE8, b'b', b'y', b'e']);
    let mut d = decoder(1, 1);
    assert_eq!(
        d.next(&mut close[..5].to_vec(), &mut Fixed(GATE_KEY)),
        Ok(Step::NeedMore)
    );
    let (steps, _) = run(&mut d, &mut close.clone());
    let Step::Control { frame, .. } = &steps[0] else {
        panic!()
    };
    assert_eq!(
        frame,
        &ControlFrame::Close(Close {
            code: Some(1000),
            reason: "bye".into()
        })
    );
    // Control frames may sit between the fragments of a message.
    let mut interleaved = client_frame(0x01, b"a");
    interleaved.extend(client_frame(0x89, b""));
    interleaved.extend(client_frame(0x80, b"b"));
    assert_eq!(run(&mut decoder(9, 9), &mut interleaved).1, None);
}

#[test]
fn bad_close_frames() {
    assert_eq!(
        error_of(&client_frame(0x88, &[0x03])),
        Some(FrameError::CloseTooShort)
    );
    assert_eq!(
        error_of(&client_frame(0x88, &[0x03, 0xEC])),
        Some(FrameError::CloseCodeNotAllowed(1004))
    );
    assert_eq!(
        error_of(&client_frame(0x88, &[0x03, 0xE8, 0xC0])),
        Some(FrameError::CloseReasonNotUtf8)
    );
}

#[test]
fn rsv1_marks_a_compressed_message_only_when_deflate_was_negotiated() {
    // Without permessage-deflate, RSV1 is a protocol error.
    let mut frame = client_frame(0xC1, b"\x01\x02");
    let (_, err) = run(&mut decoder(100, 100), &mut frame);
    assert_eq!(err, Some(FrameError::ReservedBits));
    // With it, the first frame may carry RSV1; its payload is left plain
    // (unmasked, not checked as UTF-8) for the relay to inflate.
    let mut d = decoder(100, 100);
    d.set_deflate(true);
    let mut frame = client_frame(0x41, b"\xff\xfe");
    let (steps, err) = run(&mut d, &mut frame);
    assert_eq!(err, None);
    assert!(
        steps.iter().all(|s| matches!(
            s,
            Step::Data {
                compressed: true,
                ..
            }
        )),
        "{steps:?}"
    );
    assert_eq!(&frame[frame.len() - 2..], b"\xff\xfe");
    // Never on a continuation, nor on a control frame.
    let mut d = decoder(100, 100);
    d.set_deflate(true);
    let mut frames = client_frame(0x41, b"ab");
    frames.extend(client_frame(0xC0, b"cd"));
    assert_eq!(run(&mut d, &mut frames).1, Some(FrameError::ReservedBits));
    let mut d = decoder(100, 100);
    d.set_deflate(true);
    let mut ping = client_frame(0xC9, b"");
    assert_eq!(run(&mut d, &mut ping).1, Some(FrameError::ReservedBits));
}
