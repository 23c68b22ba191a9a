//! A keyed multiset digest of the custom_ids of an input, as it was uploaded.
//!
//! Computed while the input is validated (no second read): the wrapping sum of a keyed 64-bit
//! hash of each custom_id, with a random 128-bit key chosen at validation. The results of the
//! batch are later checked against it: the sum of the hashes of the distinct ids found in the
//! output and error files must equal the input's sum, and their number its request count. A
//! gateway does not know the key (it is kept in the Batch status, never sent upstream), so it
//! cannot make foreign ids add up to the input's sum.
//!
//! The keyed hash is the first 8 bytes of SHA-256(key ‖ id) (sha2 is already a dependency;
//! a fixed-length key before the id leaves no ambiguity between key and id bytes).

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// The key and the running sum over the ids added so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdDigest {
    pub key: [u8; 16],
    pub sum: u64,
    /// Ids added.
    pub count: u64,
}

impl IdDigest {
    /// An empty digest with a fresh random key.
    pub fn random() -> Self {
        Self::with_key(rand::random())
    }

    /// An empty digest under `key`.
    pub fn with_key(key: [u8; 16]) -> Self {
        Self { key, sum: 0, count: 0 }
    }

    /// The keyed hash of one id.
    pub fn hash(&self, id: &[u8]) -> u64 {
        let mut hasher = Sha256::new();
        hasher.update(self.key);
        hasher.update(id);
        let out = hasher.finalize();
        u64::from_le_bytes(out[..8].try_into().expect("8 bytes"))
    }

    /// Adds one id.
    pub fn add(&mut self, id: &[u8]) {
        self.add_hash(self.hash(id));
    }

    /// Adds an id already hashed under this key.
    pub fn add_hash(&mut self, hash: u64) {
        self.sum = self.sum.wrapping_add(hash);
        self.count += 1;
    }

    /// The key as 32 hex digits.
    pub fn key_hex(&self) -> String {
        self.key.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The sum as 16 hex digits.
    pub fn sum_hex(&self) -> String {
        format!("{:016x}", self.sum)
    }

    /// Rebuilds a digest from its hex key and sum (as kept in the status) and its id count.
    pub fn from_hex(key: &str, sum: &str, count: u64) -> Option<Self> {
        if key.len() != 32 || !key.is_ascii() || sum.is_empty() || sum.len() > 16 {
            return None;
        }
        let mut bytes = [0u8; 16];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(&key[2 * i..2 * i + 2], 16).ok()?;
        }
        let sum = u64::from_str_radix(sum, 16).ok()?;
        Some(Self { key: bytes, sum, count })
    }
}

/// `KEY:SUM:COUNT` (hex, hex, decimal): how a Job is told what the input held.
impl fmt::Display for IdDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.key_hex(), self.sum_hex(), self.count)
    }
}

impl FromStr for IdDigest {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("expected KEY:SUM:COUNT (32 hex digits, up to 16 hex digits, a number), got {s:?}");
        let mut parts = s.split(':');
        let (Some(key), Some(sum), Some(count), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let count = count.parse().map_err(|_| bad())?;
        Self::from_hex(key, sum, count).ok_or_else(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sum_ignores_order_and_depends_on_the_key() {
        let mut a = IdDigest::with_key([1; 16]);
        let mut b = IdDigest::with_key([1; 16]);
        for id in ["x", "y", "z"] {
            a.add(id.as_bytes());
        }
        for id in ["z", "x", "y"] {
            b.add(id.as_bytes());
        }
        assert_eq!(a, b);
        let mut c = IdDigest::with_key([2; 16]);
        for id in ["x", "y", "z"] {
            c.add(id.as_bytes());
        }
        assert_ne!(a.sum, c.sum);
        let mut d = IdDigest::with_key([1; 16]);
        for id in ["x", "y", "../../etc/passwd"] {
            d.add(id.as_bytes());
        }
        assert_ne!(a.sum, d.sum);
    }

    #[test]
    fn round_trips_as_a_flag_and_as_hex() {
        let mut digest = IdDigest::random();
        digest.add(b"a");
        let parsed: IdDigest = digest.to_string().parse().unwrap();
        assert_eq!(parsed, digest);
        assert_eq!(
            IdDigest::from_hex(&digest.key_hex(), &digest.sum_hex(), 1),
            Some(digest)
        );
        for bad in ["", "a:b:c", "00:1:1", &format!("{}:xyz:1", digest.key_hex()), "x:y:z:w"] {
            assert!(bad.parse::<IdDigest>().is_err(), "{bad}");
        }
    }
}
