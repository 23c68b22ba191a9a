//! Stable hashing and a tiny PRNG: every made-up answer is seeded from a hash of its request,
//! never from the clock or a global generator, so the same request gets the same answer.

/// 64-bit FNV-1a: a stable hash (std's hasher may change between Rust versions).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// splitmix64's finalizer: spreads every input bit over the whole word.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Maps a hash to `0..1` (mixed first: FNV's high bits vary little between similar strings).
pub fn unit_interval(hash: u64) -> f64 {
    (mix(hash) >> 11) as f64 / (1u64 << 53) as f64
}

/// splitmix64: a stable, seedable sequence of 64-bit draws.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// A sequence seeded from a hash of `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Rng {
        Rng(fnv1a(bytes))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// A draw in `0..1`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A draw in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        match n {
            0 => 0,
            n => (self.next_u64() % n as u64) as usize,
        }
    }

    /// A draw in `low..=high` (`low` when the range is empty).
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        match high.checked_sub(low).and_then(|span| span.checked_add(1)) {
            Some(span) => low + self.next_u64() % span,
            None if high == u64::MAX && low == 0 => self.next_u64(),
            None => low,
        }
    }

    /// One element of `items`, `None` when it is empty.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        let index = self.below(items.len());
        items.get(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_stable_and_within_their_ranges() {
        let mut a = Rng::from_bytes(b"seed");
        let mut b = Rng::from_bytes(b"seed");
        let draws: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        assert_eq!(draws, (0..8).map(|_| b.next_u64()).collect::<Vec<_>>());
        for _ in 0..1000 {
            assert!((3..=5).contains(&a.between(3, 5)));
            assert!(a.below(7) < 7);
            assert!((0.0..1.0).contains(&a.unit()));
        }
        assert_eq!(a.between(9, 2), 9);
        assert_eq!(a.below(0), 0);
        assert!(a.pick::<u8>(&[]).is_none());
    }
}
