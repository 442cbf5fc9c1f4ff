//! Persistence behind one [`Store`] trait, and the in-memory [`snapshot`] the hot path reads.
//!
//! The token endpoint and (later) the proxy never wait on the database: they read an
//! [`snapshot::AccountSnapshot`] that every write updates after its transaction commits. The
//! trait is object-safe and async so SQLite (embedded default) and PostgreSQL (several instances)
//! implementations slot in without touching callers.

pub mod snapshot;
pub mod sqlite;

use crate::config::DatabaseSettings;
use crate::iam::ServiceAccount;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A boxed future returned by [`Store`] methods.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Store failures. Messages never contain credentials or connection strings.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database is unreachable or failed; the caller answers 503.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A uniqueness rule was violated.
    #[error("conflict: {0}")]
    Conflict(String),
    /// Stored data could not be decoded (corruption or a newer schema).
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

/// Durable storage of accounts.
pub trait Store: Send + Sync + 'static {
    /// Every account, for building the snapshot.
    fn load_accounts(&self) -> StoreFuture<'_, Vec<ServiceAccount>>;
    /// Inserts a new account with its keys in one transaction.
    fn insert_account(&self, account: ServiceAccount) -> StoreFuture<'_, ()>;
    /// Deletes an account and everything that hangs off it; `false` if it did not exist.
    fn delete_account(&self, client_id: String) -> StoreFuture<'_, bool>;
    /// Records coalesced last-login times in one transaction.
    fn record_logins(&self, logins: Vec<(String, i64)>) -> StoreFuture<'_, ()>;
    /// Every binding and directory entry, for building the IAM snapshot.
    fn load_iam(&self) -> StoreFuture<'_, crate::iam::directory::IamData>;
    /// Applies binding and directory changes in one transaction (all or nothing).
    fn apply_iam(&self, changes: Vec<crate::iam::directory::IamChange>) -> StoreFuture<'_, ()>;
    /// Cheap liveness query for `/-/ready`.
    fn ping(&self) -> StoreFuture<'_, ()>;
}

/// Opens the configured store, creating and migrating it as needed.
pub async fn open(db: &DatabaseSettings) -> Result<Arc<dyn Store>, StoreError> {
    match db {
        DatabaseSettings::Sqlite(path) => Ok(Arc::new(sqlite::SqliteStore::open(path).await?)),
        DatabaseSettings::Postgres(_) => Err(StoreError::Unavailable(
            "postgres is not supported by this build".to_owned(),
        )),
    }
}
