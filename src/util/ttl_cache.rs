//! A bounded, read-mostly cache whose entries expire a fixed time after they were written: the
//! policy engine's decision cache and the verified-token cache, both read on every proxied
//! request and written on a miss.
//!
//! A hit is one hash of the key, a shared lock on one shard, one probe and a clone of the value;
//! the expiry is checked on read. moka, which held these decisions before, also recorded every
//! read for its admission policy and read the clock twice: about 1,000 instructions per hit
//! beyond the key's own hash and comparison, a tenth of the gateway's own work per request.
//! What this gives up is moka's frequency-based admission: a shard that is full drops expired
//! entries first and then one entry chosen by the key's seeded hash, so a flood of new keys
//! costs hits, never correctness.

use hashbrown::HashTable;
use std::hash::{BuildHasher, Hash};
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

/// Most shards a cache is split into; fewer when its capacity is smaller.
const SHARDS: usize = 16;

struct Entry<K, V> {
    hash: u64,
    key: K,
    value: V,
    weight: u64,
    expires: Instant,
}

/// One shard's entries and their total weight.
struct Table<K, V> {
    entries: HashTable<Entry<K, V>>,
    weight: u64,
}

impl<K, V> Table<K, V> {
    fn remove(&mut self, hash: u64, is: impl Fn(&Entry<K, V>) -> bool) -> bool {
        match self.entries.find_entry(hash, is) {
            Ok(found) => {
                let (gone, _) = found.remove();
                self.weight = self.weight.saturating_sub(gone.weight);
                true
            }
            Err(_) => false,
        }
    }
}

/// One shard: a table under its own lock.
type Shard<K, V> = RwLock<Table<K, V>>;

/// A cache of entries whose weights (one each, unless inserted with another) add up to at most
/// its capacity, each readable for its time to live after it was inserted.
pub struct TtlCache<K, V> {
    hasher: foldhash::quality::RandomState,
    shards: Box<[Shard<K, V>]>,
    per_shard: u64,
    ttl: Duration,
}

impl<K, V> std::fmt::Debug for TtlCache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TtlCache")
            .field("shards", &self.shards.len())
            .field("per_shard", &self.per_shard)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq, V: Clone> TtlCache<K, V> {
    /// A cache holding at most `capacity` (at least one) of weight, each entry for `ttl`.
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        let capacity = capacity.max(1);
        // Every shard holds at least one of weight and all of them together at most `capacity`.
        let shards = u64::try_from(SHARDS).unwrap_or(1).min(capacity);
        Self {
            hasher: foldhash::quality::RandomState::default(),
            shards: (0..shards)
                .map(|_| {
                    RwLock::new(Table {
                        entries: HashTable::new(),
                        weight: 0,
                    })
                })
                .collect(),
            per_shard: capacity / shards,
            ttl,
        }
    }

    /// The shard of `hash`: its top bits, the table inside uses the low ones.
    fn shard(&self, hash: u64) -> &Shard<K, V> {
        // There is at least one shard, and the remainder is below their number.
        &self.shards[(hash >> 56) as usize % self.shards.len()]
    }

    /// The value under `key`, unless it expired.
    pub fn get(&self, key: &K) -> Option<V> {
        self.get_at(key, Instant::now())
    }

    fn get_at(&self, key: &K, now: Instant) -> Option<V> {
        let hash = self.hasher.hash_one(key);
        // A poisoned lock means a panic while another request held it; the table is still a
        // valid table (entries are whole or absent), so it is read on.
        let shard = self
            .shard(hash)
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        shard
            .entries
            .find(hash, |e| e.hash == hash && e.key == *key)
            .filter(|e| e.expires > now)
            .map(|e| e.value.clone())
    }

    /// Puts `value` under `key` (replacing what was there), making room in a full shard.
    pub fn insert(&self, key: K, value: V) {
        self.insert_at(key, value, 1, Instant::now());
    }

    /// [`insert`](Self::insert) of an entry that weighs `weight` against the capacity; one
    /// heavier than a shard's share of it is not kept.
    pub fn insert_weighted(&self, key: K, value: V, weight: u64) {
        self.insert_at(key, value, weight, Instant::now());
    }

    fn insert_at(&self, key: K, value: V, weight: u64, now: Instant) {
        let hash = self.hasher.hash_one(&key);
        let mut shard = self
            .shard(hash)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        shard.remove(hash, |e| e.hash == hash && e.key == key);
        if weight > self.per_shard {
            return;
        }
        if shard.weight + weight > self.per_shard {
            let mut dropped = 0;
            shard.entries.retain(|e| {
                let live = e.expires > now;
                if !live {
                    dropped += e.weight;
                }
                live
            });
            shard.weight = shard.weight.saturating_sub(dropped);
        }
        // Then the first entries in the table's order: where the seeded hash put them, which
        // no client can aim at.
        while shard.weight + weight > self.per_shard {
            let Some(victim) = shard.entries.iter().next().map(|e| e.hash) else {
                break;
            };
            shard.remove(victim, |e| e.hash == victim);
        }
        shard.weight += weight;
        shard.entries.insert_unique(
            hash,
            Entry {
                hash,
                key,
                value,
                weight,
                expires: now + self.ttl,
            },
            |e| e.hash,
        );
    }

    /// Drops the entry under `key`, if any.
    pub fn invalidate(&self, key: &K) {
        let hash = self.hasher.hash_one(key);
        self.shard(hash)
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(hash, |e| e.hash == hash && e.key == *key);
    }

    /// Drops every entry.
    pub fn invalidate_all(&self) {
        for shard in &self.shards {
            let mut shard = shard.write().unwrap_or_else(PoisonError::into_inner);
            shard.entries.clear();
            shard.weight = 0;
        }
    }

    /// Entries held, expired ones not yet dropped included.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entries
                    .len()
            })
            .sum()
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_read_until_it_expires_and_replaced_by_a_new_insert() {
        let c = TtlCache::new(10, Duration::from_secs(60));
        let t0 = Instant::now();
        c.insert_at("a", 1, 1, t0);
        assert_eq!(c.get_at(&"a", t0), Some(1));
        assert_eq!(c.get_at(&"b", t0), None);
        assert_eq!(c.get_at(&"a", t0 + Duration::from_secs(59)), Some(1));
        assert_eq!(c.get_at(&"a", t0 + Duration::from_secs(60)), None);
        c.insert_at("a", 2, 1, t0 + Duration::from_secs(61));
        assert_eq!(c.get_at(&"a", t0 + Duration::from_secs(62)), Some(2));
        assert_eq!(c.len(), 1);
        c.invalidate_all();
        assert!(c.is_empty());
        assert_eq!(c.get_at(&"a", t0 + Duration::from_secs(62)), None);
    }

    #[test]
    fn it_never_holds_more_than_its_capacity_and_keeps_the_newest() {
        for capacity in [1, 5, 16, 100, 1000] {
            let c = TtlCache::new(capacity, Duration::from_secs(60));
            let now = Instant::now();
            for i in 0..5000u32 {
                c.insert_at(i, i, 1, now);
                assert_eq!(c.get_at(&i, now), Some(i), "capacity {capacity}, key {i}");
                assert!(
                    c.len() as u64 <= capacity,
                    "capacity {capacity}: {}",
                    c.len()
                );
            }
        }
    }

    #[test]
    fn a_full_shard_drops_expired_entries_before_live_ones() {
        let c = TtlCache::new(1, Duration::from_secs(1));
        let t0 = Instant::now();
        c.insert_at(1, 1, 1, t0);
        c.insert_at(2, 2, 1, t0 + Duration::from_secs(2));
        assert_eq!(c.len(), 1);
        assert_eq!(c.get_at(&2, t0 + Duration::from_secs(2)), Some(2));
    }

    #[test]
    fn weights_add_up_to_at_most_the_capacity_and_an_entry_heavier_than_a_share_is_not_kept() {
        let c = TtlCache::new(16 * 100, Duration::from_secs(60));
        let now = Instant::now();
        for i in 0..2000u32 {
            c.insert_at(i, i, u64::from(i % 7) + 1, now);
            assert_eq!(c.get_at(&i, now), Some(i));
            let held: u64 = c
                .shards
                .iter()
                .map(|s| {
                    s.read()
                        .unwrap()
                        .entries
                        .iter()
                        .map(|e| e.weight)
                        .sum::<u64>()
                })
                .sum();
            let counted: u64 = c.shards.iter().map(|s| s.read().unwrap().weight).sum();
            assert_eq!(held, counted);
            assert!(held <= 1600, "{held}");
        }
        c.insert_at(9999, 0, 101, now);
        assert_eq!(c.get_at(&9999, now), None);
        c.invalidate(&1999);
        assert_eq!(c.get_at(&1999, now), None);
    }

    /// Keys that all hash alike are still told apart by equality: a hash collision never
    /// answers with another key's value.
    #[test]
    fn colliding_keys_keep_their_own_values() {
        #[derive(PartialEq, Eq)]
        struct Colliding(u32);
        impl Hash for Colliding {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                state.write_u64(7);
            }
        }
        // Room for all of them in the one shard they share.
        let c = TtlCache::new(50 * SHARDS as u64, Duration::from_secs(60));
        let now = Instant::now();
        for i in 0..50 {
            c.insert_at(Colliding(i), i, 1, now);
        }
        for i in 0..50 {
            assert_eq!(c.get_at(&Colliding(i), now), Some(i));
        }
        assert_eq!(c.get_at(&Colliding(50), now), None);
    }
}
