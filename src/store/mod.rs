//! Persistence behind one [`Store`] trait, and the in-memory [`snapshot`] the hot path reads.
//!
//! Above the shared types and the token layer (it implements the token layer's `SharedDocs`),
//! below the IAM layer that writes through it. The token endpoint and the proxy never wait on
//! the database: they read an [`snapshot::AccountSnapshot`] and the directory, which every write
//! updates after its transaction commits. SQLite (embedded default) and PostgreSQL (several
//! instances) share one schema ([`schema`]) and carry out every write by the same statements
//! ([`sql`]).

pub mod postgres;
pub mod schema;
pub mod snapshot;
pub mod sql;
pub mod sqlite;

use crate::config::DatabaseSettings;
use crate::model::ServiceAccount;
use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A boxed future returned by [`Store`] methods.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Store failures. Messages never contain credentials or connection strings.
#[derive(Debug, Clone, thiserror::Error)]
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

/// One audit record: who changed what, with the state before and after (never secrets).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AuditRecord {
    /// Unix seconds.
    pub at: i64,
    /// The caller's id.
    pub actor: String,
    /// What was done (`service-account.create`, `roles.update`, …).
    pub action: String,
    /// What it was done to.
    pub target: String,
    /// State before.
    pub before: Option<serde_json::Value>,
    /// State after.
    pub after: Option<serde_json::Value>,
}

/// What recording an assertion's `jti` in the shared replay record found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JtiOutcome {
    /// First use: recorded.
    Fresh,
    /// Seen before and not yet expired.
    Replayed,
    /// The client holds as many unexpired records as it may; nothing was recorded.
    ClientFull,
}

/// One write of a batch; a batch is committed in one transaction, all or nothing.
#[derive(Debug, Clone)]
pub enum Write {
    /// A new account (with its keys). Conflicts on an existing id or a duplicate name.
    InsertAccount(ServiceAccount),
    /// Remove an account and its keys.
    DeleteAccount(String),
    /// Replace an account's credential (keys added or removed, secret rotated).
    UpdateCredential {
        /// The account.
        client_id: String,
        /// The new credential.
        credential: crate::model::Credential,
        /// A replaced secret still accepted until the given time.
        retired_secret: Option<(crate::model::SecretHash, i64)>,
    },
    /// A binding or directory change.
    Iam(crate::model::IamChange),
    /// An audit record.
    Audit(AuditRecord),
}

/// How both stores encode values into columns, so SQLite and PostgreSQL cannot drift apart.
pub(crate) mod columns {
    use super::StoreError;
    use crate::model::{Credential, SecretHash};

    /// The `secret_hash` column of a credential.
    pub fn secret_hash(c: &Credential) -> Option<Vec<u8>> {
        match c {
            Credential::Secret(h) => Some(h.0.to_vec()),
            Credential::Keys(_) => None,
        }
    }

    /// The `retired_secret_hash` and `retired_secret_until` columns.
    pub fn retired(r: &Option<(SecretHash, i64)>) -> (Option<Vec<u8>>, Option<i64>) {
        match r {
            Some((h, until)) => (Some(h.0.to_vec()), Some(*until)),
            None => (None, None),
        }
    }

    /// The columns of one `service_accounts` row, as both stores read them.
    pub struct AccountRow {
        pub client_id: String,
        pub name: String,
        pub company_id: Option<String>,
        pub auth_method: String,
        pub secret_hash: Option<Vec<u8>>,
        pub permissions: String,
        pub created_at: i64,
        pub last_login: Option<i64>,
        pub retired_hash: Option<Vec<u8>>,
        pub retired_until: Option<i64>,
    }

    /// The column list matching [`AccountRow`], in order.
    pub const ACCOUNT_COLUMNS: &str = "client_id, name, company_id, auth_method, secret_hash, permissions, created_at, last_login, retired_secret_hash, retired_secret_until";

    impl AccountRow {
        /// Decodes the row; a `private_key_jwt` account takes its keys out of `keys`.
        pub fn into_account(
            self,
            keys: &mut std::collections::HashMap<String, Vec<crate::model::ClientKey>>,
        ) -> Result<crate::model::ServiceAccount, StoreError> {
            let id = self.client_id;
            let hash = |bytes: Vec<u8>| -> Result<SecretHash, StoreError> {
                bytes
                    .try_into()
                    .map(SecretHash)
                    .map_err(|_| StoreError::Corrupt(format!("secret hash of {id}")))
            };
            let credential = match (self.auth_method.as_str(), self.secret_hash) {
                ("client_secret_basic", Some(h)) => Credential::Secret(hash(h)?),
                ("private_key_jwt", _) => Credential::Keys(keys.remove(&id).unwrap_or_default()),
                _ => return Err(StoreError::Corrupt(format!("auth method of {id}"))),
            };
            let retired_secret = match (self.retired_hash, self.retired_until) {
                (Some(h), Some(until)) => Some((hash(h)?, until)),
                _ => None,
            };
            let permissions: Vec<String> = serde_json::from_str(&self.permissions)
                .map_err(|_| StoreError::Corrupt(format!("permissions of {id}")))?;
            Ok(crate::model::ServiceAccount {
                name: self.name,
                owner: self
                    .company_id
                    .map_or(crate::model::Owner::Root, crate::model::Owner::Company),
                credential,
                permissions: permissions.into(),
                created_at: self.created_at,
                last_login: self.last_login,
                retired_secret,
                client_id: id,
            })
        }
    }

    /// An optional JSON document as text.
    pub fn json_text(v: &Option<serde_json::Value>) -> Option<String> {
        v.as_ref().map(|v| v.to_string())
    }

    /// Optional JSON text as a document.
    pub fn json_value(v: Option<String>) -> Result<Option<serde_json::Value>, StoreError> {
        v.map(|t| {
            serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(format!("audit record: {e}")))
        })
        .transpose()
    }
}

/// What other instances changed, merged over the notifications not yet taken: the ids of the
/// accounts, bindings and projects a committed batch wrote, or `all` when a notification did not
/// say (or said too much) and everything must be read again.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Changed {
    /// Read everything again.
    #[serde(skip)]
    pub all: bool,
    /// The instance that wrote it, which skips its own notifications: it published its writes
    /// itself after committing them.
    #[serde(default, rename = "i", skip_serializing_if = "String::is_empty")]
    pub origin: String,
    /// Accounts written (inserted, updated or deleted).
    #[serde(default, rename = "a", skip_serializing_if = "BTreeSet::is_empty")]
    pub accounts: BTreeSet<String>,
    /// Bindings put or deleted.
    #[serde(default, rename = "b", skip_serializing_if = "BTreeSet::is_empty")]
    pub bindings: BTreeSet<String>,
    /// Projects put or deleted.
    #[serde(default, rename = "p", skip_serializing_if = "BTreeSet::is_empty")]
    pub projects: BTreeSet<String>,
}

/// Past this many pending ids, reading everything again is the cheaper and safer way.
const MAX_PENDING: usize = 10_000;

impl Changed {
    /// The ids a batch of writes touches.
    pub fn of(writes: &[Write]) -> Self {
        use crate::model::IamChange;
        let mut c = Self::default();
        for w in writes {
            match w {
                Write::InsertAccount(a) => c.accounts.insert(a.client_id.clone()),
                Write::DeleteAccount(id) | Write::UpdateCredential { client_id: id, .. } => {
                    c.accounts.insert(id.clone())
                }
                Write::Iam(IamChange::PutBinding(b)) => c.bindings.insert(b.binding_id.clone()),
                Write::Iam(IamChange::DeleteBinding(id)) => c.bindings.insert(id.clone()),
                Write::Iam(IamChange::PutProject(p)) => c.projects.insert(p.project_id.clone()),
                Write::Iam(IamChange::DeleteProject(id)) => c.projects.insert(id.clone()),
                Write::Audit(_) => false,
            };
        }
        c
    }

    /// Adds another notification's changes; `None` (an unreadable one) means everything.
    pub fn merge(&mut self, other: Option<Changed>) {
        match other {
            Some(o) if !self.all && !o.all => {
                self.accounts.extend(o.accounts);
                self.bindings.extend(o.bindings);
                self.projects.extend(o.projects);
                if self.accounts.len() + self.bindings.len() + self.projects.len() > MAX_PENDING {
                    *self = Self::everything();
                }
            }
            _ => *self = Self::everything(),
        }
    }

    /// Everything changed.
    pub fn everything() -> Self {
        Self {
            all: true,
            ..Self::default()
        }
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        !self.all
            && self.accounts.is_empty()
            && self.bindings.is_empty()
            && self.projects.is_empty()
    }
}

/// Other instances' changes on a shared store: a wake-up per notification (coalesced) and the
/// changes merged since the last [`ChangeFeed::next`]. Ends when the feed breaks.
#[derive(Debug)]
pub struct ChangeFeed {
    /// One pending wake-up at most.
    pub wake: tokio::sync::mpsc::Receiver<()>,
    /// What the notifications said.
    pub pending: Arc<std::sync::Mutex<Changed>>,
}

impl ChangeFeed {
    /// The next changes; `None` when the feed ended.
    pub async fn next(&mut self) -> Option<Changed> {
        self.wake.recv().await?;
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Some(std::mem::take(&mut *pending))
    }
}

/// The current rows of the ids a [`Changed`] names; an id without a row was deleted.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Accounts that exist.
    pub accounts: Vec<ServiceAccount>,
    /// Bindings that exist.
    pub bindings: Vec<crate::model::Binding>,
    /// Projects that exist.
    pub projects: Vec<crate::model::Project>,
}

/// Durable storage of accounts.
pub trait Store: crate::token::SharedDocs + Send + Sync + 'static {
    /// Every account, for building the snapshot.
    fn load_accounts(&self) -> StoreFuture<'_, Vec<ServiceAccount>>;
    /// Inserts a new account with its keys in one transaction.
    fn insert_account(&self, account: ServiceAccount) -> StoreFuture<'_, ()>;
    /// Deletes an account and everything that hangs off it; `false` if it did not exist.
    fn delete_account(&self, client_id: String) -> StoreFuture<'_, bool>;
    /// Records coalesced last-login times in one transaction.
    fn record_logins(&self, logins: Vec<(String, i64)>) -> StoreFuture<'_, ()>;
    /// Every binding and directory entry, for building the IAM snapshot.
    fn load_iam(&self) -> StoreFuture<'_, crate::model::IamData>;
    /// Applies binding and directory changes in one transaction (all or nothing).
    fn apply_iam(&self, changes: Vec<crate::model::IamChange>) -> StoreFuture<'_, ()>;
    /// Commits a batch of writes in one transaction.
    fn commit(&self, writes: Vec<Write>) -> StoreFuture<'_, ()>;
    /// The newest `limit` audit records, newest first.
    fn audit_log(&self, limit: usize) -> StoreFuture<'_, Vec<AuditRecord>>;
    /// A feed of other instances' changes, when the store is shared; it ends when the feed
    /// breaks, and the caller asks again.
    fn changes(&self) -> StoreFuture<'_, Option<ChangeFeed>> {
        Box::pin(async { Ok(None) })
    }
    /// The current rows of what `changed` names (not `all`), for applying another instance's
    /// change without reading everything.
    fn load_changed(&self, _changed: Changed) -> StoreFuture<'_, Loaded> {
        Box::pin(async {
            Err(StoreError::Unavailable(
                "this store is not shared between instances".to_owned(),
            ))
        })
    }
    /// Whether assertion `jti`s are recorded here, shared by every instance on this store.
    /// Otherwise each instance keeps its own in-memory record (one instance per SQLite file).
    fn shares_replay(&self) -> bool {
        false
    }
    /// Records `(client_id, jti)` until `expires_at`, unless it is a replay (an expired earlier
    /// record does not count) or the client already holds `per_client` unexpired records.
    fn record_jti(
        &self,
        _client_id: String,
        _jti: String,
        _expires_at: i64,
        _now: i64,
        _per_client: usize,
    ) -> StoreFuture<'_, JtiOutcome> {
        Box::pin(async {
            Err(StoreError::Unavailable(
                "this store keeps no replay record".to_owned(),
            ))
        })
    }
    /// Drops replay records expired before `now`; returns how many.
    fn purge_jtis(&self, _now: i64) -> StoreFuture<'_, u64> {
        Box::pin(async { Ok(0) })
    }
    /// Cheap liveness query for `/-/ready`.
    fn ping(&self) -> StoreFuture<'_, ()>;
}

impl std::fmt::Debug for dyn Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never connection details.
        f.write_str("Store")
    }
}

/// Opens the configured store, creating and migrating it as needed.
pub async fn open(db: &DatabaseSettings) -> Result<Arc<dyn Store>, StoreError> {
    match db {
        DatabaseSettings::Sqlite(path) => Ok(Arc::new(sqlite::SqliteStore::open(path).await?)),
        DatabaseSettings::Postgres { url, tls } => Ok(Arc::new(
            postgres::PgStore::open_with(url.expose(), tls).await?,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{IamChange, Project};

    #[test]
    fn a_batch_names_the_rows_it_writes_and_merged_notifications_add_up() {
        let project = Project {
            project_id: "p1".into(),
            company_id: "c1".into(),
            environments: vec![],
        };
        let c = Changed::of(&[
            Write::DeleteAccount("sa1".into()),
            Write::Iam(IamChange::DeleteBinding("b1".into())),
            Write::Iam(IamChange::PutProject(project)),
            Write::Iam(IamChange::DeleteProject("p2".into())),
        ]);
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(text, r#"{"a":["sa1"],"b":["b1"],"p":["p1","p2"]}"#);
        let back: Changed = serde_json::from_str(&text).unwrap();
        assert_eq!(back, c);
        assert!(!back.all);

        let mut pending = Changed::default();
        assert!(pending.is_empty());
        pending.merge(Some(c));
        pending.merge(serde_json::from_str(r#"{"b":["b2"],"i":"other"}"#).ok());
        assert_eq!(pending.bindings.iter().collect::<Vec<_>>(), ["b1", "b2"]);
        assert_eq!(pending.accounts.len(), 1);
        // A payload that is not a change (the key set's name) means everything, and stays so.
        pending.merge(serde_json::from_str("signing-keys").ok());
        assert!(pending.all && pending.bindings.is_empty());
        pending.merge(Some(Changed::of(&[Write::DeleteAccount("sa2".into())])));
        assert!(pending.all && pending.accounts.is_empty());
    }

    #[test]
    fn too_many_pending_ids_mean_everything() {
        let mut pending = Changed::default();
        for i in 0..MAX_PENDING {
            pending.merge(Some(Changed::of(&[Write::DeleteAccount(format!("sa{i}"))])));
        }
        assert!(!pending.all);
        pending.merge(Some(Changed::of(&[Write::DeleteAccount(
            "one more".into(),
        )])));
        assert!(pending.all && pending.accounts.is_empty());
    }
}
