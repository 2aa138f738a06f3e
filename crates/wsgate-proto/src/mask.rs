//! Frame masking (RFC 6455 section 5.3).

/// XORs `buf` with `key`, starting `offset` bytes into the masked payload.
///
/// The offset lets a payload be (un)masked in pieces as it arrives. Eight
/// bytes at a time: the relay masks every byte a client sends.
pub fn apply(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let mut k = [0u8; 8];
    for (i, b) in k.iter_mut().enumerate() {
        *b = key[(offset + i) & 3];
    }
    let word = u64::from_ne_bytes(k);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= k[i];
    }
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
}
