//! Frame masking (RFC 6455 section 5.3).

/// XORs `buf` with `key`, starting `offset` bytes into the masked payload.
///
/// The offset lets a payload be (un)masked in pieces as it arrives. It is
/// [`remask`] to an all-zero key: one loop does the per-byte work for both.
pub fn apply(buf: &mut [u8], key: [u8; 4], offset: usize) {
    remask(buf, key, [0; 4], offset);
}

/// Eight bytes of `key` as they line up with a payload `offset` bytes in:
/// byte `i` of the word is `key[(offset + i) % 4]`.
fn key_word(key: [u8; 4], offset: usize) -> u64 {
    let shift = 8 * (offset & 3) as u32;
    // Byte 0 in memory is the low byte on a little-endian machine.
    let k = match cfg!(target_endian = "little") {
        true => u32::from_ne_bytes(key).rotate_right(shift),
        false => u32::from_ne_bytes(key).rotate_left(shift),
    };
    u64::from(k) << 32 | u64::from(k)
}

/// Re-masks `buf` from key `from` to key `to` in one pass, starting `offset`
/// bytes into the payload; returns whether every unmasked byte was ASCII.
///
/// This is the relay's per-byte work on a client's data: unmasking, then
/// masking again with the gateway's key, would be two passes, and checking
/// text for UTF-8 a third. ASCII needs no further check, so the common case
/// stays one pass.
pub fn remask(buf: &mut [u8], from: [u8; 4], to: [u8; 4], offset: usize) -> bool {
    let (from_word, to_word) = (key_word(from, offset), key_word(to, offset));
    let mut high = 0u64;
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        let plain = u64::from_ne_bytes(bytes) ^ from_word;
        high |= plain;
        chunk.copy_from_slice(&(plain ^ to_word).to_ne_bytes());
    }
    let mut high_tail = 0u8;
    let (f, t) = (from_word.to_ne_bytes(), to_word.to_ne_bytes());
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        let plain = *b ^ f[i];
        high_tail |= plain;
        *b = plain ^ t[i];
    }
    (high | u64::from(high_tail)) & 0x8080_8080_8080_8080 == 0
}

/// Where fresh masking keys come from: the gateway masks what it sends
/// upstream with keys of its own, never the client's.
pub trait MaskSource {
    /// A new, unpredictable key.
    fn next_mask(&mut self) -> [u8; 4];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_in_pieces_equals_masking_at_once() {
        let key = [1, 2, 3, 4];
        let data: Vec<u8> = (0..37).collect();
        let mut whole = data.clone();
        apply(&mut whole, key, 0);
        for (i, b) in whole.iter().enumerate() {
            assert_eq!(*b, data[i] ^ key[i % 4]);
        }
        let mut pieces = data.clone();
        let (a, b) = pieces.split_at_mut(13);
        apply(a, key, 0);
        apply(b, key, 13);
        assert_eq!(pieces, whole);
    }

    #[test]
    fn remasking_equals_unmasking_then_masking_and_spots_non_ascii() {
        let (from, to) = ([0x37, 0xfa, 0x21, 0x3d], [1, 2, 3, 4]);
        for len in 0..40usize {
            for offset in 0..4 {
                for high in [None, Some(0), Some(len / 2), Some(len.saturating_sub(1))] {
                    let mut plain: Vec<u8> = (0..len as u8).map(|b| b'a' + b % 26).collect();
                    let high = high.filter(|&i| i < len);
                    if let Some(i) = high {
                        plain[i] = 0xC3;
                    }
                    let mut masked = plain.clone();
                    apply(&mut masked, from, offset);
                    let mut expected = plain.clone();
                    apply(&mut expected, to, offset);
                    let ascii = remask(&mut masked, from, to, offset);
                    assert_eq!(masked, expected, "len {len} offset {offset}");
                    assert_eq!(ascii, high.is_none(), "len {len} offset {offset} {high:?}");
                }
            }
        }
    }
}
