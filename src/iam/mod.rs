//! Identity and access management: service accounts and their credentials ([`Accounts`]), role
//! bindings and the project directory ([`directory`]), the management write path
//! ([`manage::Manager`]) and the directory sync ([`sync`]). Above the store and below the policy:
//! the token endpoint and bearer authentication read its in-memory snapshots, the management
//! handlers (`proxy::management`) call its write path, which validates what is written, commits
//! it to the [`Store`](crate::store::Store) in one transaction, then publishes a new snapshot.
//! No HTTP types and no policy here: what a write grants is computed here and decided above.

pub mod account;
pub mod directory;
pub mod follow;
pub mod import;
pub mod manage;
pub mod sync;

pub use account::{ClientSecret, SecretHasher, generate_client_id};
// The shared types this layer works with, under the names its callers know.
pub use crate::model::{
    AuthMethod, Binding, BindingResource, ClientKey, Credential, KeyError, Owner, Principal,
    SecretHash, ServiceAccount,
};

use crate::store::snapshot::AccountSnapshot;
use crate::store::{Store, StoreError};
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Why an account could not be created or changed.
#[derive(Debug, thiserror::Error)]
pub enum IamError {
    /// The request is invalid; `field` names what to fix.
    #[error("{field}: {message}")]
    Invalid {
        /// The offending field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// No such account.
    #[error("service account not found")]
    NotFound,
    /// Conflicts with existing data.
    #[error("conflict: {0}")]
    Conflict(String),
    /// Storage failed; nothing was changed.
    #[error(transparent)]
    Store(StoreError),
    /// Randomness unavailable.
    #[error("random generator failed")]
    Random,
}

impl From<StoreError> for IamError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => Self::Conflict(m),
            other => Self::Store(other),
        }
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> IamError {
    IamError::Invalid {
        field,
        message: message.into(),
    }
}

/// A request to create an account.
#[derive(Debug, Clone)]
pub struct NewAccount {
    /// Display name.
    pub name: String,
    /// Root or company.
    pub owner: Owner,
    /// Authentication method.
    pub method: AuthMethod,
    /// `publicKey` as given (JWK object or PEM/JWK string) for `private_key_jwt`.
    pub public_key: Option<serde_json::Value>,
    /// Root permissions.
    pub permissions: Vec<String>,
}

/// The creation response: the only time the secret is shown.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Created {
    /// The new client id.
    pub client_id: String,
    /// The secret, for `client_secret_basic`.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "ser_secret")]
    pub client_secret: Option<ClientSecret>,
    /// Creation time, Unix seconds.
    pub client_id_issued_at: i64,
    /// Company of a company account.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
    /// Key id of the registered key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
}

fn ser_secret<S: serde::Serializer>(v: &Option<ClientSecret>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(secret) => s.serialize_str(secret.expose()),
        None => s.serialize_none(),
    }
}

fn check_name(name: &str) -> Result<(), IamError> {
    let t = name.trim();
    if t.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(invalid(
            "name",
            "must be 1 to 200 characters without control characters",
        ));
    }
    Ok(())
}

/// Validates `new` and builds the account and its one-time response. No I/O.
pub fn build_account(
    new: NewAccount,
    hasher: &SecretHasher,
    root_permissions: &[String],
    now: i64,
) -> Result<(ServiceAccount, Created), IamError> {
    check_name(&new.name)?;
    let mut permissions = Vec::new();
    for p in &new.permissions {
        if new.owner != Owner::Root {
            return Err(invalid(
                "permissions",
                "only root service accounts hold permissions",
            ));
        }
        if !root_permissions.contains(p) {
            return Err(invalid(
                "permissions",
                format!("`{p}` is not a root permission"),
            ));
        }
        if !permissions.contains(p) {
            permissions.push(p.clone());
        }
    }
    let client_id = generate_client_id();
    let (credential, secret, kid) = match (new.method, new.public_key) {
        (AuthMethod::ClientSecretBasic, None) => {
            let secret = ClientSecret::generate().map_err(|_| IamError::Random)?;
            (
                Credential::Secret(hasher.hash(secret.expose())),
                Some(secret),
                None,
            )
        }
        (AuthMethod::ClientSecretBasic, Some(_)) => {
            return Err(invalid("publicKey", "only allowed with private_key_jwt"));
        }
        (AuthMethod::PrivateKeyJwt, Some(v)) => {
            let key = ClientKey::parse(&v).map_err(|e| invalid("publicKey", e.to_string()))?;
            let kid = key.kid.clone();
            (Credential::Keys(vec![key]), None, Some(kid))
        }
        (AuthMethod::PrivateKeyJwt, None) => {
            return Err(invalid("publicKey", "required with private_key_jwt"));
        }
    };
    let company = match &new.owner {
        Owner::Company(c) => Some(c.clone()),
        Owner::Root => None,
    };
    let account = ServiceAccount {
        client_id: client_id.clone(),
        name: new.name,
        owner: new.owner,
        credential,
        permissions: permissions.into(),
        created_at: now,
        last_login: None,
        retired_secret: None,
    };
    let created = Created {
        client_id,
        client_secret: secret,
        client_id_issued_at: now,
        company,
        kid,
    };
    Ok((account, created))
}

/// The account service: the one writer of accounts, keeping store and snapshot in step.
#[derive(Clone)]
pub struct Accounts {
    store: Arc<dyn Store>,
    snapshot: AccountSnapshot,
    hasher: Arc<SecretHasher>,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts")
            .field("count", &self.snapshot.len())
            .finish()
    }
}

impl Accounts {
    /// Loads every account from `store` into a fresh snapshot.
    pub async fn load(
        store: Arc<dyn Store>,
        hasher: Arc<SecretHasher>,
    ) -> Result<Self, StoreError> {
        let all = store.load_accounts().await?;
        Ok(Self {
            store,
            snapshot: AccountSnapshot::new(all),
            hasher,
        })
    }

    /// The snapshot the hot path reads.
    pub fn snapshot(&self) -> &AccountSnapshot {
        &self.snapshot
    }

    /// The secret hasher.
    pub fn hasher(&self) -> &Arc<SecretHasher> {
        &self.hasher
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
}

/// Loads the pepper from config, or from `<data_dir>/secret-pepper`, generating it on first use.
pub fn load_pepper(
    configured: Option<&crate::config::Secret>,
    data_dir: &Path,
) -> std::io::Result<Vec<u8>> {
    if let Some(p) = configured {
        return Ok(p.expose().as_bytes().to_vec());
    }
    let path = data_dir.join("secret-pepper");
    match std::fs::read_to_string(&path) {
        Ok(s) if s.trim().len() >= 16 => Ok(s.trim().as_bytes().to_vec()),
        Ok(_) => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} is too short", path.display()),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let pepper = crate::util::b64url(
                crate::util::random_bytes::<32>().map_err(|_| std::io::Error::other("rng"))?,
            );
            crate::util::write_private_file(&path, pepper.as_bytes())?;
            Ok(pepper.into_bytes())
        }
        Err(e) => Err(e),
    }
}

/// Creates the bootstrap root account, holding every root permission of the policy's role
/// model, when the store is empty. It goes through the management write path (audited, actor
/// `bootstrap`); its credentials are then written to `<data_dir>/bootstrap-credentials.json`
/// (mode 0600), and if that fails the account is deleted again: an account whose secret was
/// never recorded would be unusable. Returns the file path when it did.
pub async fn bootstrap(
    manager: &manage::Manager,
    name: &str,
    data_dir: &Path,
    model: &crate::model::RoleModel,
    now: i64,
) -> Result<Option<std::path::PathBuf>, manage::ManageError> {
    if !manager.accounts().snapshot().is_empty() {
        return Ok(None);
    }
    let new = NewAccount {
        name: name.to_owned(),
        owner: Owner::Root,
        method: AuthMethod::ClientSecretBasic,
        public_key: None,
        permissions: model.root_permissions.clone(),
    };
    let created = match manager
        .create_account(
            "bootstrap",
            new,
            &manage::RoleRequest::default(),
            model,
            now,
            None,
        )
        .await
    {
        Ok(c) => c,
        // Instances started together on an empty shared store all find it empty; the first
        // insert wins and the name is taken for the others, which start without a file of
        // their own (the account reaches them through the change feed).
        Err(manage::ManageError::Conflict(_)) => {
            tracing::info!(
                name,
                "another instance created the bootstrap account first; its credentials file is in that instance's data directory"
            );
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let path = data_dir.join("bootstrap-credentials.json");
    let written = serde_json::to_vec_pretty(&created)
        .map_err(std::io::Error::other)
        .and_then(|json| crate::util::write_private_file(&path, &json));
    if let Err(e) = written {
        manager
            .delete_account(
                "bootstrap",
                &manage::Scope::Root,
                &created.client_id,
                now,
                None,
            )
            .await?;
        return Err(manage::ManageError::Unavailable(format!(
            "writing {}: {e}",
            path.display()
        )));
    }
    Ok(Some(path))
}

/// Coalesces `lastLogin` updates: the token endpoint notes a login in memory, a background task
/// writes the batch every few seconds in one transaction, so a token costs no database write.
#[derive(Debug, Default, Clone)]
pub struct LastLogins(Arc<Mutex<HashMap<String, i64>>>);

impl LastLogins {
    /// Notes a login.
    pub fn note(&self, client_id: &str, now: i64) {
        if let Ok(mut m) = self.0.lock() {
            match m.get_mut(client_id) {
                Some(t) => *t = (*t).max(now),
                None => {
                    m.insert(client_id.to_owned(), now);
                }
            }
        }
    }

    /// Writes pending logins; on failure they are put back for the next round.
    pub async fn flush(&self, store: &dyn Store) -> Result<usize, StoreError> {
        let batch: Vec<(String, i64)> = match self.0.lock() {
            Ok(mut m) => m.drain().collect(),
            Err(_) => return Ok(0),
        };
        if batch.is_empty() {
            return Ok(0);
        }
        let n = batch.len();
        if let Err(e) = store.record_logins(batch.clone()).await {
            for (id, t) in batch {
                self.note(&id, t);
            }
            return Err(e);
        }
        Ok(n)
    }
}

/// Writes the noted logins every `every` (and once more at shutdown).
pub fn spawn_login_flusher(
    logins: LastLogins,
    store: Arc<dyn Store>,
    every: std::time::Duration,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    crate::util::spawn_periodic(every, shutdown, true, move || {
        let (logins, store) = (logins.clone(), store.clone());
        async move {
            if let Err(e) = logins.flush(store.as_ref()).await {
                tracing::warn!(error = %e, "could not record last logins; will retry");
            }
        }
    });
}
