//! Copy-on-write chunked tables behind the published snapshots the request path reads: the
//! directory's states and the account snapshot.
//!
//! Every write publishes a new immutable version while requests keep reading the old one, so
//! the large tables (a million bindings sorted by id, an index slot per interned name, the name
//! index, a hundred thousand accounts) must be cheap to copy. Here a table is a list of shared
//! chunks: the new version copies one pointer per chunk and then copies only the chunks the
//! write touches, so a write costs O(N / chunk + chunk) instead of O(N).

use hashbrown::HashTable;
use std::cmp::Ordering;
use std::hash::BuildHasher;
use std::sync::Arc;

/// Entries per chunk: a write copies about this many pointers, and a clone one per chunk.
const CHUNK: usize = 1024;

/// A vector indexed by position whose clones share their chunks until written.
#[derive(Debug, Clone, Default)]
pub(crate) struct ChunkedVec<T> {
    chunks: Vec<Arc<Vec<T>>>,
    len: usize,
}

impl<T: Clone> ChunkedVec<T> {
    /// The entries of `items`, in order.
    pub(crate) fn from_vec(items: Vec<T>) -> Self {
        let len = items.len();
        let mut chunks = Vec::with_capacity(len.div_ceil(CHUNK));
        let mut items = items.into_iter();
        loop {
            let chunk: Vec<T> = items.by_ref().take(CHUNK).collect();
            if chunk.is_empty() {
                break;
            }
            chunks.push(Arc::new(chunk));
        }
        Self { chunks, len }
    }

    /// The entry at `i`.
    pub(crate) fn get(&self, i: usize) -> Option<&T> {
        self.chunks.get(i / CHUNK)?.get(i % CHUNK)
    }

    /// The entry at `i`, writable; copies its chunk if another state shares it.
    pub(crate) fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        Arc::make_mut(self.chunks.get_mut(i / CHUNK)?).get_mut(i % CHUNK)
    }

    /// Appends `fill` until the vector holds `len` entries (never shrinks).
    pub(crate) fn grow(&mut self, len: usize, fill: T) {
        while self.len < len {
            let room = match self.chunks.last_mut() {
                Some(last) if last.len() < CHUNK => Arc::make_mut(last),
                _ => {
                    self.chunks.push(Arc::new(Vec::with_capacity(CHUNK)));
                    match self.chunks.last_mut() {
                        Some(last) => Arc::make_mut(last),
                        None => return,
                    }
                }
            };
            let add = (CHUNK - room.len()).min(len - self.len);
            room.extend(std::iter::repeat_n(fill.clone(), add));
            self.len += add;
        }
    }

    /// Number of entries.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

/// Where an entry is in a [`SortedChunks`]: chunk, then index in it.
pub(crate) type Pos = (usize, usize);

/// A sorted list whose clones share their chunks until written. Chunks hold between one and
/// `2 * CHUNK` entries: a full chunk splits in two, an emptied one is dropped.
#[derive(Debug, Clone)]
pub(crate) struct SortedChunks<T> {
    chunks: Vec<Arc<Vec<T>>>,
    len: usize,
}

impl<T> Default for SortedChunks<T> {
    fn default() -> Self {
        Self {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T: Clone> SortedChunks<T> {
    /// The entries of `sorted`, which the caller has sorted.
    pub(crate) fn from_sorted(sorted: Vec<T>) -> Self {
        let ChunkedVec { chunks, len } = ChunkedVec::from_vec(sorted);
        Self { chunks, len }
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Every entry, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flat_map(|c| c.iter())
    }

    /// Binary search with `cmp` (the entry's order relative to the target, as
    /// `slice::binary_search_by`): where the entry is, or where it would be inserted.
    pub(crate) fn search(&self, cmp: impl Fn(&T) -> Ordering) -> Result<Pos, Pos> {
        // The first chunk whose last entry is not below the target holds it, if anything does.
        let c = self
            .chunks
            .partition_point(|ch| ch.last().is_some_and(|last| cmp(last) == Ordering::Less));
        match self.chunks.get(c) {
            Some(chunk) => chunk
                .binary_search_by(&cmp)
                .map(|i| (c, i))
                .map_err(|i| (c, i)),
            // Above everything: after the last entry of the last chunk.
            None => Err(match self.chunks.last() {
                Some(last) => (self.chunks.len() - 1, last.len()),
                None => (0, 0),
            }),
        }
    }

    /// The entry at `pos`.
    pub(crate) fn get(&self, (c, i): Pos) -> Option<&T> {
        self.chunks.get(c)?.get(i)
    }

    /// Replaces the entry at `pos`, returning the old one; the order must be kept by the caller.
    pub(crate) fn replace(&mut self, (c, i): Pos, value: T) -> Option<T> {
        let slot = Arc::make_mut(self.chunks.get_mut(c)?).get_mut(i)?;
        Some(std::mem::replace(slot, value))
    }

    /// Inserts at `pos` as returned by a failed [`search`](Self::search).
    pub(crate) fn insert(&mut self, (c, i): Pos, value: T) {
        let Some(chunk) = self.chunks.get_mut(c) else {
            self.chunks.push(Arc::new(vec![value]));
            self.len += 1;
            return;
        };
        let chunk = Arc::make_mut(chunk);
        chunk.insert(i.min(chunk.len()), value);
        self.len += 1;
        if chunk.len() >= 2 * CHUNK {
            let upper = chunk.split_off(CHUNK);
            self.chunks.insert(c + 1, Arc::new(upper));
        }
    }

    /// Removes and returns the entry at `pos`.
    pub(crate) fn remove(&mut self, (c, i): Pos) -> Option<T> {
        let chunk = Arc::make_mut(self.chunks.get_mut(c)?);
        if i >= chunk.len() {
            return None;
        }
        let old = chunk.remove(i);
        self.len -= 1;
        if chunk.is_empty() {
            self.chunks.remove(c);
        }
        Some(old)
    }
}

/// Shards of a [`ShardedMap`]: at a million entries a write copies about 4,000 of them.
const SHARDS: usize = 256;

/// An entry of a [`ShardedMap`], which it finds by this key.
pub(crate) trait Keyed {
    /// The entry's key.
    fn key(&self) -> &str;
}

/// A hash map by string key whose clones share their shards until written: a write copies one
/// shard. One hash per lookup places both the shard and the entry in it.
#[derive(Debug, Clone)]
pub(crate) struct ShardedMap<T> {
    /// Seeded per map and kept by its clones: keys are chosen by API callers.
    hasher: foldhash::quality::RandomState,
    shards: Vec<Arc<HashTable<T>>>,
    len: usize,
}

impl<T> Default for ShardedMap<T> {
    fn default() -> Self {
        Self {
            hasher: foldhash::quality::RandomState::default(),
            shards: (0..SHARDS).map(|_| Arc::new(HashTable::new())).collect(),
            len: 0,
        }
    }
}

/// The shard of a hash, from bits the shard's own table does not use to place entries (it uses
/// the low bits for the bucket and the top seven as the tag); taking either would put every
/// entry of a shard in one bucket chain or under one tag.
fn shard_of(hash: u64) -> usize {
    (hash >> 32) as usize % SHARDS
}

impl<T: Keyed + Clone> ShardedMap<T> {
    /// The entry of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&T> {
        let hash = self.hasher.hash_one(key);
        self.shards
            .get(shard_of(hash))?
            .find(hash, |e| e.key() == key)
    }

    /// Inserts `value` under its key, returning the entry it replaces.
    pub(crate) fn insert(&mut self, value: T) -> Option<T> {
        let hasher = &self.hasher;
        let hash = hasher.hash_one(value.key());
        let shard = Arc::make_mut(self.shards.get_mut(shard_of(hash))?);
        match shard.find_mut(hash, |e| e.key() == value.key()) {
            Some(slot) => Some(std::mem::replace(slot, value)),
            None => {
                shard.insert_unique(hash, value, |e| hasher.hash_one(e.key()));
                self.len += 1;
                None
            }
        }
    }

    /// Removes and returns the entry of `key`; copies its shard only if it is there.
    pub(crate) fn remove(&mut self, key: &str) -> Option<T> {
        let hash = self.hasher.hash_one(key);
        let i = shard_of(hash);
        self.shards.get(i)?.find(hash, |e| e.key() == key)?;
        let shard = Arc::make_mut(self.shards.get_mut(i)?);
        let (old, _) = shard.find_entry(hash, |e| e.key() == key).ok()?.remove();
        self.len -= 1;
        Some(old)
    }

    /// Every entry, in no particular order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &T> {
        self.shards.iter().flat_map(|s| s.iter())
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<T: Keyed + Clone> FromIterator<T> for ShardedMap<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut map = Self::default();
        for v in iter {
            map.insert(v);
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(s: &SortedChunks<u32>, x: u32) -> Result<Pos, Pos> {
        s.search(|e| e.cmp(&x))
    }

    #[test]
    fn sorted_chunks_follow_a_btree_set_through_inserts_and_removals() {
        let mut model = std::collections::BTreeSet::new();
        let mut s = SortedChunks::from_sorted((0..3000).map(|x| x * 2).collect());
        model.extend((0..3000).map(|x| x * 2));
        // A deterministic mix crossing chunk splits and emptied chunks.
        let mut x: u32 = 12345;
        for step in 0..20_000 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345) % 9000;
            match find(&s, x) {
                Ok(pos) if step % 3 == 0 => {
                    assert_eq!(s.remove(pos), Some(x));
                    assert!(model.remove(&x));
                }
                Ok(pos) => assert_eq!(s.get(pos), Some(&x)),
                Err(pos) => {
                    s.insert(pos, x);
                    assert!(model.insert(x));
                }
            }
        }
        assert_eq!(s.len(), model.len());
        assert!(s.iter().copied().eq(model.iter().copied()));
        assert!(
            s.chunks
                .iter()
                .all(|c| !c.is_empty() && c.len() < 2 * CHUNK)
        );
        for v in [0, 1, 8999, 9000, u32::MAX] {
            assert_eq!(find(&s, v).is_ok(), model.contains(&v), "{v}");
        }
    }

    #[test]
    fn an_empty_list_inserts_and_removes() {
        let mut s = SortedChunks::default();
        assert_eq!(find(&s, 5), Err((0, 0)));
        s.insert((0, 0), 5);
        assert_eq!(find(&s, 7), Err((0, 1)));
        s.insert((0, 1), 7);
        assert_eq!(find(&s, 6), Err((0, 1)));
        let pos = find(&s, 5).unwrap();
        assert_eq!(s.replace(pos, 5), Some(5));
        assert_eq!(s.remove(pos), Some(5));
        assert_eq!(s.remove(find(&s, 7).unwrap()), Some(7));
        assert_eq!(s.len(), 0);
        assert_eq!(s.iter().count(), 0);
        assert_eq!(find(&s, 7), Err((0, 0)));
    }

    #[test]
    fn a_write_copies_one_chunk_and_the_clone_keeps_the_old_entries() {
        let base = SortedChunks::from_sorted((0..10 * CHUNK as u32).collect());
        let mut next = base.clone();
        let pos = find(&next, 5).unwrap();
        next.remove(pos);
        next.insert(find(&next, 5).unwrap_err(), 5);
        let shared = base
            .chunks
            .iter()
            .zip(&next.chunks)
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count();
        assert_eq!(shared, 9);
        assert!(base.iter().copied().eq(0..10 * CHUNK as u32));

        let mut v = ChunkedVec::from_vec(vec![0u8; 3 * CHUNK]);
        let old = v.clone();
        *v.get_mut(CHUNK + 1).unwrap() = 9;
        assert_eq!((old.get(CHUNK + 1), v.get(CHUNK + 1)), (Some(&0), Some(&9)));
        assert!(Arc::ptr_eq(&old.chunks[0], &v.chunks[0]));
        assert!(!Arc::ptr_eq(&old.chunks[1], &v.chunks[1]));
    }

    impl Keyed for (String, u32) {
        fn key(&self) -> &str {
            &self.0
        }
    }

    #[test]
    fn a_sharded_map_follows_a_hash_map_and_a_write_copies_one_shard() {
        let mut model = std::collections::HashMap::new();
        let mut map: ShardedMap<(String, u32)> = ShardedMap::default();
        for i in 0..50_000u32 {
            let k = format!("k{}", i % 30_000);
            if i % 7 == 3 {
                assert_eq!(map.remove(&k).map(|e| e.1), model.remove(&k));
            } else {
                assert_eq!(map.insert((k.clone(), i)).map(|e| e.1), model.insert(k, i));
            }
        }
        assert_eq!(map.len(), model.len());
        assert_eq!(map.is_empty(), model.is_empty());
        let mut all: Vec<(String, u32)> = map.values().cloned().collect();
        all.sort();
        let mut expected: Vec<(String, u32)> = model.clone().into_iter().collect();
        expected.sort();
        assert_eq!(all, expected);
        // Spread over the shards, none of them crowded.
        let sizes: Vec<usize> = map.shards.iter().map(|s| s.len()).collect();
        assert!(
            sizes.iter().all(|&n| n * SHARDS < 2 * map.len()),
            "{sizes:?}"
        );

        let old = map.clone();
        map.insert(("new".into(), 1));
        assert_eq!(map.remove("absent"), None);
        let key = model.keys().next().unwrap().clone();
        map.remove(&key);
        let copied = old
            .shards
            .iter()
            .zip(&map.shards)
            .filter(|(a, b)| !Arc::ptr_eq(a, b))
            .count();
        assert!((1..=2).contains(&copied), "{copied}");
        assert_eq!(
            (old.get("new"), map.get("new").map(|e| e.1)),
            (None, Some(1))
        );
        assert_eq!((old.get(&key).is_some(), map.get(&key)), (true, None));
        assert_eq!(old.len() + 1 - 1, map.len());
    }

    #[test]
    fn a_chunked_vec_grows_across_chunks_with_the_fill() {
        let mut v = ChunkedVec::from_vec(vec![1u8; CHUNK - 2]);
        v.grow(2 * CHUNK + 3, 0);
        assert_eq!(v.len(), 2 * CHUNK + 3);
        assert_eq!(v.get(CHUNK - 3), Some(&1));
        assert_eq!(v.get(CHUNK - 2), Some(&0));
        assert_eq!(v.get(2 * CHUNK + 2), Some(&0));
        assert_eq!(v.get(2 * CHUNK + 3), None);
        v.grow(5, 7);
        assert_eq!(v.len(), 2 * CHUNK + 3);
    }
}
