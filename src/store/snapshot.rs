//! The in-memory account snapshot: what the token endpoint (and later the bearer layer) reads.
//!
//! An immutable map behind an `ArcSwap`: readers take a reference-counted view without locking,
//! writers build a new map and swap it in after the database transaction committed. Writes are
//! rare (account management) while reads happen on every request, which is the trade this makes.
//! The map is sharded copy-on-write, so a write copies one shard: at a hundred thousand
//! accounts, copying the whole map held a worker thread for milliseconds per write.

use crate::model::ServiceAccount;
use crate::model::chunks::{Keyed, ShardedMap};
use arc_swap::ArcSwap;
use std::sync::Arc;

/// Accounts by client id.
type AccountMap = ShardedMap<Arc<ServiceAccount>>;

impl Keyed for Arc<ServiceAccount> {
    fn key(&self) -> &str {
        &self.client_id
    }
}

/// A shared, atomically replaced view of every account. Local writes bump a generation, so a
/// resynchronisation that read the store before a local write cannot overwrite it.
#[derive(Debug, Clone, Default)]
pub struct AccountSnapshot(Arc<ArcSwap<AccountMap>>, Arc<std::sync::Mutex<u64>>);

impl AccountSnapshot {
    /// A snapshot holding `accounts`.
    pub fn new(accounts: Vec<ServiceAccount>) -> Self {
        let map: AccountMap = accounts.into_iter().map(Arc::new).collect();
        Self(Arc::new(ArcSwap::from_pointee(map)), Arc::default())
    }

    /// The generation: changes with every local write.
    pub fn generation(&self) -> u64 {
        self.1.lock().map(|g| *g).unwrap_or(u64::MAX)
    }

    /// Looks an account up.
    pub fn get(&self, client_id: &str) -> Option<Arc<ServiceAccount>> {
        self.0.load().get(client_id).cloned()
    }

    /// Every account (management listings; not for the request path).
    pub fn all(&self) -> Vec<Arc<ServiceAccount>> {
        self.0.load().values().cloned().collect()
    }

    /// Number of accounts.
    pub fn len(&self) -> usize {
        self.0.load().len()
    }

    /// Whether there are no accounts.
    pub fn is_empty(&self) -> bool {
        self.0.load().is_empty()
    }

    /// Replaces every account (resynchronisation from the shared store), unless a local write
    /// happened since `generation` was read; returns whether it replaced.
    pub fn replace_all_if(&self, generation: u64, accounts: Vec<ServiceAccount>) -> bool {
        let Ok(g) = self.1.lock() else { return false };
        if *g != generation {
            return false;
        }
        let map: AccountMap = accounts.into_iter().map(Arc::new).collect();
        self.0.store(Arc::new(map));
        true
    }

    /// Applies changes read from the shared store, unless a local write happened since
    /// `generation` was read (the rows may predate it); returns whether it applied.
    pub fn apply_all_if(
        &self,
        generation: u64,
        changes: Vec<(String, Option<ServiceAccount>)>,
    ) -> bool {
        let mut g = self.lock_generation();
        if *g != generation {
            return false;
        }
        let changes: Vec<(&str, &Option<ServiceAccount>)> =
            changes.iter().map(|(id, a)| (id.as_str(), a)).collect();
        self.publish(&mut g, &changes);
        true
    }

    /// Applies a change: `Some(account)` upserts, `None` removes `client_id`.
    pub fn apply(&self, client_id: &str, account: Option<ServiceAccount>) {
        let mut g = self.lock_generation();
        self.publish(&mut g, &[(client_id, &account)]);
    }

    /// The generation, held while a write is published (a poisoned lock still counts).
    fn lock_generation(&self) -> std::sync::MutexGuard<'_, u64> {
        self.1
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Bumps the generation and swaps in the map with `changes` applied.
    fn publish(&self, generation: &mut u64, changes: &[(&str, &Option<ServiceAccount>)]) {
        *generation = generation.wrapping_add(1);
        self.0.rcu(|current| {
            let mut next = AccountMap::clone(current);
            for (client_id, account) in changes {
                change(&mut next, client_id, account);
            }
            next
        });
    }
}

/// `Some(account)` upserts, `None` removes `client_id`.
fn change(map: &mut AccountMap, client_id: &str, account: &Option<ServiceAccount>) {
    match account {
        Some(a) if a.client_id == client_id => {
            map.insert(Arc::new(a.clone()));
        }
        // An account is stored under its own id; a mismatched pair changes nothing.
        Some(_) => {}
        None => {
            map.remove(client_id);
        }
    }
}
