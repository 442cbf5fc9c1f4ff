//! Single use of assertion `jti`s (OIDC Core §9): a `(client_id, jti)` pair is remembered until
//! the assertion's `exp` plus skew, after which a replay would be refused as expired anyway.
//!
//! The in-memory guard is bounded: when it is full of unexpired entries it refuses new assertions
//! (503) rather than forget one, because forgetting would re-open the replay window. So that one
//! client cannot fill it for everyone (distinct `jti`s valid for an hour cost it nothing), no
//! client holds more than `per_client` unexpired entries; past it that client alone is refused.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

/// Outcome of recording a `jti`.
#[derive(Debug, PartialEq, Eq)]
pub enum ReplayCheck {
    /// First use: recorded.
    Fresh,
    /// Seen before and not yet expired.
    Replayed,
    /// No room to remember it.
    Full,
    /// This client holds as many unexpired entries as it may.
    ClientFull,
}

/// A bounded in-memory replay record.
#[derive(Debug)]
pub struct MemoryReplay {
    capacity: usize,
    per_client: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<(String, String), i64>,
    by_expiry: BTreeSet<(i64, String, String)>,
    /// Unexpired entries per client.
    counts: HashMap<String, usize>,
}

impl MemoryReplay {
    /// A record holding at most `capacity` unexpired pairs, and at most `per_client` of one
    /// client.
    pub fn new(capacity: usize, per_client: usize) -> Self {
        Self {
            capacity,
            per_client,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Records `(client_id, jti)` valid until `expires_at` (Unix seconds) at time `now`.
    pub fn check_and_record(
        &self,
        client_id: &str,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> ReplayCheck {
        let Ok(mut g) = self.inner.lock() else {
            return ReplayCheck::Full;
        };
        let key = (client_id.to_owned(), jti.to_owned());
        if let Some(&until) = g.entries.get(&key)
            && until >= now
        {
            return ReplayCheck::Replayed;
        }
        // Purge expired entries, oldest first; amortised O(log n) per entry.
        while let Some(first) = g.by_expiry.first().cloned() {
            if first.0 >= now {
                break;
            }
            g.by_expiry.pop_first();
            let k = (first.1, first.2);
            if g.entries.get(&k) == Some(&first.0) {
                g.entries.remove(&k);
                if let Some(n) = g.counts.get_mut(&k.0) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        g.counts.remove(&k.0);
                    }
                }
            }
        }
        let known = g.entries.contains_key(&key);
        if !known && g.counts.get(client_id).copied().unwrap_or(0) >= self.per_client {
            return ReplayCheck::ClientFull;
        }
        if g.entries.len() >= self.capacity && !known {
            return ReplayCheck::Full;
        }
        if let Some(old) = g.entries.insert(key.clone(), expires_at) {
            g.by_expiry.remove(&(old, key.0.clone(), key.1.clone()));
        } else {
            *g.counts.entry(key.0.clone()).or_insert(0) += 1;
        }
        g.by_expiry.insert((expires_at, key.0, key.1));
        ReplayCheck::Fresh
    }

    /// Number of remembered pairs.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|g| g.entries.len()).unwrap_or(0)
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_use_is_refused_until_expiry() {
        let r = MemoryReplay::new(10, 10);
        assert_eq!(r.check_and_record("c", "j", 100, 50), ReplayCheck::Fresh);
        assert_eq!(r.check_and_record("c", "j", 100, 60), ReplayCheck::Replayed);
        assert_eq!(
            r.check_and_record("other", "j", 100, 60),
            ReplayCheck::Fresh,
            "scoped by client"
        );
        assert_eq!(r.check_and_record("c", "j", 300, 101), ReplayCheck::Fresh);
    }

    #[test]
    fn full_record_refuses_instead_of_forgetting_and_frees_expired_room() {
        let r = MemoryReplay::new(2, 10);
        assert_eq!(r.check_and_record("c", "1", 100, 0), ReplayCheck::Fresh);
        assert_eq!(r.check_and_record("c", "2", 200, 0), ReplayCheck::Fresh);
        assert_eq!(r.check_and_record("c", "3", 200, 0), ReplayCheck::Full);
        assert_eq!(r.check_and_record("c", "1", 100, 50), ReplayCheck::Replayed);
        assert_eq!(
            r.check_and_record("c", "3", 300, 101),
            ReplayCheck::Fresh,
            "1 expired"
        );
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn one_client_holds_at_most_its_share_and_gets_room_back_as_entries_expire() {
        let r = MemoryReplay::new(100, 2);
        assert_eq!(
            r.check_and_record("greedy", "1", 100, 0),
            ReplayCheck::Fresh
        );
        assert_eq!(
            r.check_and_record("greedy", "2", 200, 0),
            ReplayCheck::Fresh
        );
        assert_eq!(
            r.check_and_record("greedy", "3", 200, 0),
            ReplayCheck::ClientFull
        );
        assert_eq!(r.check_and_record("other", "1", 200, 0), ReplayCheck::Fresh);
        // A replay is still a replay, not a quota error.
        assert_eq!(
            r.check_and_record("greedy", "1", 100, 50),
            ReplayCheck::Replayed
        );
        // Once "1" expired, the client has room again.
        assert_eq!(
            r.check_and_record("greedy", "3", 300, 101),
            ReplayCheck::Fresh
        );
        assert_eq!(
            r.check_and_record("greedy", "4", 300, 101),
            ReplayCheck::ClientFull
        );
    }
}
