//! A compact set of `custom_id`s, remembering the line each was first seen on.
//!
//! The ids' bytes live back to back in one arena; a hash table maps a 64-bit hash of each id to
//! its place in the arena and its line (24 bytes per entry plus the id itself, with no
//! allocation per id). The rare id whose hash is taken by a different id, or that does not fit
//! an entry (over 4 GiB long, or past line 4,294,967,295), goes to a small ordinary map, so the
//! set stays exact.
//!
//! The hash is the caller's: the keyed hash the id digest computes anyway (a secret key, so an
//! input cannot be crafted to collide), instead of hashing every id a second time.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasherDefault, Hasher};

/// Where an id's bytes are in the arena, and the line it was first seen on.
#[derive(Debug, Clone, Copy)]
struct Slot {
    start: u64,
    len: u32,
    line: u32,
}

/// Exact set of ids with their first line.
#[derive(Debug, Default)]
pub(crate) struct CustomIds {
    arena: Vec<u8>,
    slots: HashMap<u64, Slot, BuildHasherDefault<PrehashedHasher>>,
    others: HashMap<Box<str>, u64>,
}

impl CustomIds {
    /// Records `id`, whose keyed hash is `hash`, as seen on `line`; if it was seen before,
    /// returns that earlier line instead.
    pub(crate) fn insert(&mut self, id: &str, hash: u64, line: u64) -> Result<(), u64> {
        match self.slots.entry(hash) {
            Entry::Occupied(slot) if slot_bytes(&self.arena, slot.get()) == id.as_bytes() => {
                return Err(u64::from(slot.get().line));
            }
            Entry::Occupied(_) => {}
            Entry::Vacant(vacant) => {
                if let (Ok(len), Ok(line)) = (u32::try_from(id.len()), u32::try_from(line)) {
                    let start = self.arena.len() as u64;
                    self.arena.extend_from_slice(id.as_bytes());
                    vacant.insert(Slot { start, len, line });
                    return Ok(());
                }
            }
        }
        match self.others.get(id) {
            Some(&first) => Err(first),
            None => {
                self.others.insert(id.into(), line);
                Ok(())
            }
        }
    }

    /// Number of distinct ids.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.slots.len() + self.others.len()
    }
}

fn slot_bytes<'a>(arena: &'a [u8], slot: &Slot) -> &'a [u8] {
    let start = slot.start as usize;
    &arena[start..start + slot.len as usize]
}

/// Passes an already-hashed `u64` key through unchanged.
#[derive(Debug, Default)]
struct PrehashedHasher(u64);

impl Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used for `u64` keys; fold anything else in for completeness.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::jsonl::IdDigest;

    fn insert(ids: &mut CustomIds, id: &str, line: u64) -> Result<(), u64> {
        let hash = IdDigest::with_key([7; 16]).hash(id.as_bytes());
        ids.insert(id, hash, line)
    }

    #[test]
    fn remembers_first_line() {
        let mut ids = CustomIds::default();
        assert_eq!(insert(&mut ids, "a", 1), Ok(()));
        assert_eq!(insert(&mut ids, "b", 2), Ok(()));
        assert_eq!(insert(&mut ids, "a", 3), Err(1));
        assert_eq!(insert(&mut ids, "a", 4), Err(1));
        assert_eq!(insert(&mut ids, "", 5), Ok(()));
        assert_eq!(insert(&mut ids, "", 6), Err(5));
        assert_eq!(ids.len(), 3);
    }

    #[test]
    fn many_ids_are_exact() {
        let mut ids = CustomIds::default();
        for n in 0..20_000u64 {
            assert_eq!(insert(&mut ids, &format!("req-{n}"), n + 1), Ok(()));
        }
        for n in (0..20_000u64).step_by(7) {
            assert_eq!(insert(&mut ids, &format!("req-{n}"), 0), Err(n + 1));
        }
        assert_eq!(ids.len(), 20_000);
    }

    #[test]
    fn hash_collisions_stay_exact() {
        let mut ids = CustomIds::default();
        // Two ids under one hash: the second goes to the map of collisions.
        assert_eq!(ids.insert("y", 42, 1), Ok(()));
        assert_eq!(ids.insert("x", 42, 2), Ok(()));
        assert_eq!(ids.insert("x", 42, 3), Err(2));
        assert_eq!(ids.insert("y", 42, 4), Err(1));
        assert_eq!(ids.len(), 2);
    }

    #[test]
    fn lines_past_a_slot_stay_exact() {
        let mut ids = CustomIds::default();
        let far = u64::from(u32::MAX) + 10;
        assert_eq!(insert(&mut ids, "a", far), Ok(()));
        assert_eq!(insert(&mut ids, "a", far + 1), Err(far));
        assert_eq!(insert(&mut ids, "b", 3), Ok(()));
        assert_eq!(insert(&mut ids, "b", far + 2), Err(3));
        assert_eq!(ids.len(), 2);
    }
}
