//! A compact set of `custom_id`s, remembering the line each was first seen on.
//!
//! The ids' bytes live back to back in one arena; a hash table maps a 64-bit hash of each id to
//! its place in the arena and its line (about 40 bytes per id plus the id itself, with no
//! allocation per id). The rare id whose hash is taken by a different id goes to a small
//! ordinary map, so the set stays exact.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};

/// Where an id's bytes are in the arena, and the line it was first seen on.
#[derive(Debug, Clone, Copy)]
struct Slot {
    start: u64,
    len: u32,
    line: u64,
}

/// Exact set of ids with their first line.
#[derive(Debug, Default)]
pub(crate) struct CustomIds {
    hasher: RandomState,
    arena: Vec<u8>,
    slots: HashMap<u64, Slot, BuildHasherDefault<PrehashedHasher>>,
    collided: HashMap<Box<str>, u64>,
}

impl CustomIds {
    /// Records `id` as seen on `line`; if it was seen before, returns that earlier line instead.
    pub(crate) fn insert(&mut self, id: &str, line: u64) -> Result<(), u64> {
        let hash = self.hasher.hash_one(id);
        match self.slots.entry(hash) {
            Entry::Vacant(vacant) => {
                vacant.insert(store(&mut self.arena, id, line));
                Ok(())
            }
            Entry::Occupied(slot) if slot_bytes(&self.arena, slot.get()) == id.as_bytes() => Err(slot.get().line),
            Entry::Occupied(_) => match self.collided.get(id) {
                Some(&first) => Err(first),
                None => {
                    self.collided.insert(id.into(), line);
                    Ok(())
                }
            },
        }
    }

    /// Number of distinct ids.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.slots.len() + self.collided.len()
    }
}

fn store(arena: &mut Vec<u8>, id: &str, line: u64) -> Slot {
    let start = arena.len() as u64;
    arena.extend_from_slice(id.as_bytes());
    Slot {
        start,
        len: u32::try_from(id.len()).unwrap_or(u32::MAX),
        line,
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

    #[test]
    fn remembers_first_line() {
        let mut ids = CustomIds::default();
        assert_eq!(ids.insert("a", 1), Ok(()));
        assert_eq!(ids.insert("b", 2), Ok(()));
        assert_eq!(ids.insert("a", 3), Err(1));
        assert_eq!(ids.insert("a", 4), Err(1));
        assert_eq!(ids.insert("", 5), Ok(()));
        assert_eq!(ids.insert("", 6), Err(5));
        assert_eq!(ids.len(), 3);
    }

    #[test]
    fn many_ids_are_exact() {
        let mut ids = CustomIds::default();
        for n in 0..20_000u64 {
            assert_eq!(ids.insert(&format!("req-{n}"), n + 1), Ok(()));
        }
        for n in (0..20_000u64).step_by(7) {
            assert_eq!(ids.insert(&format!("req-{n}"), 0), Err(n + 1));
        }
        assert_eq!(ids.len(), 20_000);
    }

    #[test]
    fn hash_collisions_stay_exact() {
        let mut ids = CustomIds::default();
        // Force a collision: put a different id under the hash of "x".
        let hash = ids.hasher.hash_one("x");
        let slot = store(&mut ids.arena, "y", 1);
        ids.slots.insert(hash, slot);
        assert_eq!(ids.insert("x", 2), Ok(()));
        assert_eq!(ids.insert("x", 3), Err(2));
        assert_eq!(ids.len(), 2);
    }
}
