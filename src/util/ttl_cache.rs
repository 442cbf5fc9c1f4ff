//! A bounded, read-mostly cache whose entries expire a fixed time after they were written: the
//! policy engine's decision cache, read on every proxied request and written on a miss.
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
    expires: Instant,
}

/// One shard: a table under its own lock.
type Shard<K, V> = RwLock<HashTable<Entry<K, V>>>;

/// A cache of at most `capacity` entries, each readable for `ttl` after it was inserted.
pub struct TtlCache<K, V> {
    hasher: foldhash::quality::RandomState,
    shards: Box<[Shard<K, V>]>,
    per_shard: usize,
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
    /// A cache holding at most `capacity` entries (at least one), each for `ttl`.
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        let capacity = usize::try_from(capacity.max(1)).unwrap_or(usize::MAX);
        // Every shard holds at least one entry and all of them together at most `capacity`.
        let shards = SHARDS.min(capacity);
        Self {
            hasher: foldhash::quality::RandomState::default(),
            shards: (0..shards).map(|_| RwLock::new(HashTable::new())).collect(),
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
            .find(hash, |e| e.hash == hash && e.key == *key)
            .filter(|e| e.expires > now)
            .map(|e| e.value.clone())
    }

    /// Puts `value` under `key` (replacing what was there), making room in a full shard.
    pub fn insert(&self, key: K, value: V) {
        self.insert_at(key, value, Instant::now());
    }

    fn insert_at(&self, key: K, value: V, now: Instant) {
        let hash = self.hasher.hash_one(&key);
        let mut shard = self
            .shard(hash)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let entry = Entry {
            hash,
            key,
            value,
            expires: now + self.ttl,
        };
        if let Ok(mut found) = shard.find_entry(hash, |e| e.hash == hash && e.key == entry.key) {
            *found.get_mut() = entry;
            return;
        }
        if shard.len() >= self.per_shard {
            shard.retain(|e| e.expires > now);
        }
        if shard.len() >= self.per_shard {
            // The first entry in the table's order: where the seeded hash put it, which no
            // client can aim at.
            if let Some(victim) = shard.iter().next().map(|e| e.hash)
                && let Ok(found) = shard.find_entry(victim, |e| e.hash == victim)
            {
                found.remove();
            }
        }
        shard.insert_unique(hash, entry, |e| e.hash);
    }

    /// Drops every entry.
    pub fn invalidate_all(&self) {
        for shard in &self.shards {
            shard
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        }
    }

    /// Entries held, expired ones not yet dropped included.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(PoisonError::into_inner).len())
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
        c.insert_at("a", 1, t0);
        assert_eq!(c.get_at(&"a", t0), Some(1));
        assert_eq!(c.get_at(&"b", t0), None);
        assert_eq!(c.get_at(&"a", t0 + Duration::from_secs(59)), Some(1));
        assert_eq!(c.get_at(&"a", t0 + Duration::from_secs(60)), None);
        c.insert_at("a", 2, t0 + Duration::from_secs(61));
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
                c.insert_at(i, i, now);
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
        c.insert_at(1, 1, t0);
        c.insert_at(2, 2, t0 + Duration::from_secs(2));
        assert_eq!(c.len(), 1);
        assert_eq!(c.get_at(&2, t0 + Duration::from_secs(2)), Some(2));
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
            c.insert_at(Colliding(i), i, now);
        }
        for i in 0..50 {
            assert_eq!(c.get_at(&Colliding(i), now), Some(i));
        }
        assert_eq!(c.get_at(&Colliding(50), now), None);
    }
}
