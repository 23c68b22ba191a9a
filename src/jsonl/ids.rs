//! The custom_ids of an input, kept to find the duplicates once it has been read whole.
//!
//! Every id is appended as it comes (its bytes to one arena, a 24-byte entry with its keyed
//! hash, its place and its line to one of 256 lists chosen by the hash), with no allocation per
//! id and no random access into a large table: a hash set of millions of ids spends its time
//! waiting on cache misses and on rehashing as it grows. [`CustomIds::duplicates`] then sorts
//! each list by hash
//! (each fits a cache) and compares the bytes of the ids whose hashes are equal, so the result
//! is exact.
//!
//! The hash is the caller's: the keyed hash the id digest computes anyway (a secret key, so an
//! input cannot be crafted to collide).

/// Lists the entries are spread over, by the top byte of their hash.
const PARTS: usize = 256;

/// One id: its keyed hash, where its bytes are in the arena, the line it is on.
#[derive(Debug, Clone, Copy)]
struct Entry {
    hash: u64,
    start: u64,
    line: u64,
}

/// An id seen again: on `line`, first seen on `first`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Duplicate<'a> {
    pub line: u64,
    pub first: u64,
    pub id: &'a str,
}

/// Every id with its line, duplicates included.
#[derive(Debug)]
pub(crate) struct CustomIds {
    /// Each id's length (LEB128) and bytes, back to back.
    arena: Vec<u8>,
    parts: Vec<Vec<Entry>>,
}

impl Default for CustomIds {
    fn default() -> Self {
        Self {
            arena: Vec::new(),
            parts: vec![Vec::new(); PARTS],
        }
    }
}

impl CustomIds {
    /// Records `id`, whose keyed hash is `hash`, as seen on `line`.
    pub(crate) fn add(&mut self, id: &str, hash: u64, line: u64) {
        let start = self.arena.len() as u64;
        let mut len = id.len() as u64;
        while len >= 0x80 {
            self.arena.push(len as u8 | 0x80);
            len >>= 7;
        }
        self.arena.push(len as u8);
        self.arena.extend_from_slice(id.as_bytes());
        self.parts[(hash >> 56) as usize].push(Entry { hash, start, line });
    }

    /// Every id seen on an earlier line too, in line order, each with the line it was first
    /// seen on.
    pub(crate) fn duplicates(&mut self) -> Vec<Duplicate<'_>> {
        let mut found = Vec::new();
        for part in &mut self.parts {
            part.sort_unstable_by_key(|e| (e.hash, e.line));
            for run in part.chunk_by(|a, b| a.hash == b.hash).filter(|run| run.len() > 1) {
                duplicates_in_run(&self.arena, run, &mut found);
            }
        }
        found.sort_unstable_by_key(|d: &Duplicate<'_>| d.line);
        found
    }

    /// Number of ids added.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.parts.iter().map(Vec::len).sum()
    }
}

/// The duplicates among entries of one hash, in line order: each entry whose bytes equal an
/// earlier entry's (the first with those bytes). Distinct ids under one hash are rare (the hash
/// is keyed), so the list of distinct ones stays short.
fn duplicates_in_run<'a>(arena: &'a [u8], run: &[Entry], found: &mut Vec<Duplicate<'a>>) {
    let mut distinct: Vec<(&'a str, u64)> = Vec::new();
    for entry in run {
        let id = id_at(arena, entry.start);
        match distinct.iter().find(|(seen, _)| *seen == id) {
            Some(&(_, first)) => found.push(Duplicate {
                line: entry.line,
                first,
                id,
            }),
            None => distinct.push((id, entry.line)),
        }
    }
}

/// The id whose length prefix starts at `start`.
fn id_at(arena: &[u8], start: u64) -> &str {
    let (mut at, mut len, mut shift) = (start as usize, 0usize, 0);
    loop {
        let byte = arena[at];
        at += 1;
        len |= usize::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            break;
        }
        shift += 7;
    }
    std::str::from_utf8(&arena[at..at + len]).expect("ids are stored from str")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonl::IdDigest;

    fn add(ids: &mut CustomIds, id: &str, line: u64) {
        let hash = IdDigest::with_key([7; 16]).hash(id.as_bytes());
        ids.add(id, hash, line);
    }

    fn dup(line: u64, first: u64, id: &str) -> Duplicate<'_> {
        Duplicate { line, first, id }
    }

    #[test]
    fn every_repeat_names_the_first_line() {
        let mut ids = CustomIds::default();
        for (n, id) in ["a", "b", "a", "a", "", "", "b"].into_iter().enumerate() {
            add(&mut ids, id, n as u64 + 1);
        }
        assert_eq!(ids.len(), 7);
        assert_eq!(
            ids.duplicates(),
            [dup(3, 1, "a"), dup(4, 1, "a"), dup(6, 5, ""), dup(7, 2, "b")]
        );
    }

    #[test]
    fn many_ids_are_exact() {
        let mut ids = CustomIds::default();
        for n in 0..20_000u64 {
            add(&mut ids, &format!("req-{n}"), n + 1);
        }
        for n in (0..20_000u64).step_by(7) {
            add(&mut ids, &format!("req-{n}"), 20_001 + n);
        }
        let found = ids.duplicates();
        assert_eq!(found.len(), 20_000usize.div_ceil(7));
        for d in &found {
            assert_eq!(d.line, 20_000 + d.first);
            assert_eq!(d.id, format!("req-{}", d.first - 1));
        }
    }

    #[test]
    fn different_ids_under_one_hash_are_told_apart() {
        let mut ids = CustomIds::default();
        ids.add("y", 42, 1);
        ids.add("x", 42, 2);
        ids.add("x", 42, 3);
        ids.add("y", 42, 4);
        assert_eq!(ids.duplicates(), [dup(3, 2, "x"), dup(4, 1, "y")]);
    }

    #[test]
    fn long_ids_keep_their_length() {
        let mut ids = CustomIds::default();
        let long = "é".repeat(10_000);
        add(&mut ids, &long, 1);
        add(&mut ids, "short", 2);
        add(&mut ids, &long, 3);
        assert_eq!(ids.duplicates(), [dup(3, 1, &long)]);
    }
}
