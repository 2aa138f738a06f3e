//! UTF-8 validation of a text message that arrives in pieces.
//!
//! Fails as soon as the bytes seen so far cannot begin valid UTF-8, even in
//! the middle of a character split across frames or reads (Autobahn's
//! "fail fast" cases 6.4.x), so an invalid message never reaches the upstream
//! whole.

/// Validator state between pieces: the bytes of an unfinished character.
#[derive(Debug, Default, Clone)]
pub struct Utf8Stream {
    pending: [u8; 4],
    len: usize,
}

/// The bytes are not UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid UTF-8 in a text message")]
pub struct InvalidUtf8;

fn width(lead: u8) -> usize {
    match lead {
        0x00..=0x7F => 1,
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => 0,
    }
}

impl Utf8Stream {
    /// Checks the next piece of the message.
    pub fn feed(&mut self, mut chunk: &[u8]) -> Result<(), InvalidUtf8> {
        // Most text is ASCII, and `is_ascii` checks it a word at a time
        // where `from_utf8` looks at short pieces byte by byte.
        if self.len == 0 && chunk.is_ascii() {
            return Ok(());
        }
        if self.len > 0 {
            let need = width(self.pending[0]);
            let take = (need - self.len).min(chunk.len());
            self.pending[self.len..self.len + take].copy_from_slice(&chunk[..take]);
            self.len += take;
            chunk = &chunk[take..];
            match std::str::from_utf8(&self.pending[..self.len]) {
                Ok(_) => self.len = 0,
                Err(e) if e.error_len().is_some() => return Err(InvalidUtf8),
                Err(_) => return Ok(()), // still a valid prefix; chunk is used up
            }
        }
        match std::str::from_utf8(chunk) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(InvalidUtf8),
            Err(e) => {
                let tail = &chunk[e.valid_up_to()..];
                self.pending[..tail.len()].copy_from_slice(tail);
                self.len = tail.len();
                Ok(())
            }
        }
    }

    /// Whether the bytes so far end between characters, so that a piece of
    /// plain ASCII coming next is valid without a look.
    pub fn at_char_boundary(&self) -> bool {
        self.len == 0
    }

    /// Checks that the message did not end inside a character.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let ok = self.len == 0;
        self.len = 0;
        if ok { Ok(()) } else { Err(InvalidUtf8) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(parts: &[&[u8]]) -> Result<(), InvalidUtf8> {
        let mut v = Utf8Stream::default();
        for p in parts {
            v.feed(p)?;
        }
        v.finish()
    }

    #[test]
    fn valid_text_split_anywhere() {
        let text = "κόσμε — 𝄞 ok".as_bytes();
        for i in 0..text.len() {
            for j in i..text.len() {
                assert_eq!(
                    pieces(&[&text[..i], &text[i..j], &text[j..]]),
                    Ok(()),
                    "{i} {j}"
                );
            }
        }
    }

    #[test]
    fn fails_fast_inside_a_split_character() {
        let mut v = Utf8Stream::default();
        assert_eq!(v.feed(b"ok\xF4"), Ok(()));
        // 0xF4 0x90 starts a code point above U+10FFFF: no continuation can fix it.
        assert_eq!(v.feed(b"\x90"), Err(InvalidUtf8));
    }

    #[test]
    fn invalid_and_truncated() {
        assert_eq!(pieces(&[b"\xC0\xAF"]), Err(InvalidUtf8));
        assert_eq!(pieces(&[b"\xED\xA0\x80"]), Err(InvalidUtf8)); // surrogate
        assert_eq!(pieces(&[b"abc\xE2\x82"]), Err(InvalidUtf8)); // ends mid-character
        assert_eq!(pieces(&[b"\xE2", b"\x82", b"\xAC"]), Ok(()));
    }
}
