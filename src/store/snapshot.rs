//! The in-memory account snapshot: what the token endpoint (and later the bearer layer) reads.
//!
//! An immutable map behind an `ArcSwap`: readers take a reference-counted view without locking,
//! writers build a new map and swap it in after the database transaction committed. Writes are
//! rare (account management) while reads happen on every request, which is the trade this makes.

use crate::iam::ServiceAccount;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::Arc;

/// Accounts by client id.
pub type AccountMap = HashMap<String, Arc<ServiceAccount>>;

/// A shared, atomically replaced view of every account.
#[derive(Debug, Clone, Default)]
pub struct AccountSnapshot(Arc<ArcSwap<AccountMap>>);

impl AccountSnapshot {
    /// A snapshot holding `accounts`.
    pub fn new(accounts: Vec<ServiceAccount>) -> Self {
        let map = accounts
            .into_iter()
            .map(|a| (a.client_id.clone(), Arc::new(a)))
            .collect();
        Self(Arc::new(ArcSwap::from_pointee(map)))
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

    /// Replaces every account (resynchronisation from the shared store).
    pub fn replace_all(&self, accounts: Vec<ServiceAccount>) {
        let map = accounts
            .into_iter()
            .map(|a| (a.client_id.clone(), Arc::new(a)))
            .collect();
        self.0.store(Arc::new(map));
    }

    /// Applies a change: `Some(account)` upserts, `None` removes `client_id`.
    pub fn apply(&self, client_id: &str, account: Option<ServiceAccount>) {
        self.0.rcu(|current| {
            let mut next = AccountMap::clone(current);
            match &account {
                Some(a) => {
                    next.insert(client_id.to_owned(), Arc::new(a.clone()));
                }
                None => {
                    next.remove(client_id);
                }
            }
            next
        });
    }
}
