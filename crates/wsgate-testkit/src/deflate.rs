//! Compressed payloads as a permessage-deflate client sends them (RFC 7692
//! section 7.2.1: raw DEFLATE, a sync flush, its 4-byte tail removed), made
//! by flate2, an implementation independent of the gateway's inflating.

use std::io::Write as _;

use flate2::Compression;
use flate2::write::DeflateEncoder;

/// `data`, compressed as one message.
pub fn compress(data: &[u8]) -> Vec<u8> {
    let mut e = DeflateEncoder::new(Vec::new(), Compression::default());
    e.write_all(data).unwrap();
    finish(e)
}

/// `n` zero bytes, compressed without ever holding them: a decompression bomb.
pub fn zeros(n: usize) -> Vec<u8> {
    let mut e = DeflateEncoder::new(Vec::new(), Compression::best());
    let block = vec![0u8; 64 * 1024];
    let mut left = n;
    while left > 0 {
        let k = left.min(block.len());
        e.write_all(&block[..k]).unwrap();
        left -= k;
    }
    finish(e)
}

fn finish(mut e: DeflateEncoder<Vec<u8>>) -> Vec<u8> {
    e.flush().unwrap();
    let mut out = e.get_ref().clone();
    if out.ends_with(&[0x00, 0x00, 0xff, 0xff]) {
        out.truncate(out.len() - 4);
    }
    out
}
