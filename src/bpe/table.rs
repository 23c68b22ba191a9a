//! The layout of a byte-pair encoding's tables, shared by `build.rs` (which writes them from
//! tiktoken-rs's ranks) and [`super::Encoding`] (which reads them where the binary holds them).
//!
//! Three little-endian arrays, so nothing is built or allocated when a process first counts:
//! `bytes`, every token's bytes in rank order; `ends`, a `u32` per token, where its bytes end
//! in `bytes`; `index`, an open-addressed hash table of `u32` slots (a power of two, at least
//! twice the tokens), each empty (0) or a rank plus one, probed linearly from [`hash`] of the
//! token's bytes. An o200k_base index is 2 MiB; a `HashMap<Vec<u8>, u32>` of the same tokens
//! is about ten times that and takes a tenth of a second to fill.

/// FNV-1a, 64 bits: fixed, so the tables written at build time are the ones read.
pub fn hash(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The slots of the index of `tokens` tokens.
pub fn slots(tokens: usize) -> usize {
    (tokens * 2).next_power_of_two()
}

/// The three arrays of the tokens given in rank order.
#[allow(dead_code)] // used by build.rs only
pub fn write(tokens: &[Vec<u8>]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let mut bytes = Vec::new();
    let mut ends = Vec::with_capacity(tokens.len() * 4);
    let slots = slots(tokens.len());
    let mut index = vec![0u32; slots];
    for (rank, token) in tokens.iter().enumerate() {
        bytes.extend_from_slice(token);
        ends.extend_from_slice(&u32::try_from(bytes.len()).expect("tables under 4 GiB").to_le_bytes());
        let mut slot = hash(token) as usize & (slots - 1);
        while index[slot] != 0 {
            slot = (slot + 1) & (slots - 1);
        }
        index[slot] = u32::try_from(rank + 1).expect("ranks fit in u32");
    }
    let index = index.iter().flat_map(|slot| slot.to_le_bytes()).collect();
    (bytes, ends, index)
}
