//! The signing key set: one active key that signs, plus published `next` and `retired` keys.
//!
//! Publishing the next key before it signs lets consumers cache it ahead of a rotation, and keeping
//! a retired key published until every token it signed has expired means a rotation never breaks a
//! valid token. Keys come either from PEM files named in the config (operator-managed) or from a
//! managed set that `iamgate keys rotate` edits and running servers re-read: a directory
//! `<data_dir>/keys` with a `keyset.json` manifest for one instance, or one sealed document in the
//! shared PostgreSQL store, so that every instance signs with the same keys and sees a rotation.
//! The current set sits behind an `ArcSwap`, so the signer reads it without a lock.

use super::{SigningKey, TokenError};
use crate::config::KeyFileSettings;
use arc_swap::ArcSwap;
use aws_lc_rs::digest::{Digest, SHA256, digest};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use crate::model::KeyStatus;

/// An immutable key set with its JWKS document pre-serialised.
pub struct KeySet {
    active: Arc<SigningKey>,
    published: Vec<(KeyStatus, Arc<SigningKey>)>,
    verifying: std::collections::HashMap<String, jsonwebtoken::DecodingKey>,
    jwks: Bytes,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("active", &self.active.kid())
            .field("published", &self.published.len())
            .finish()
    }
}

impl KeySet {
    /// Builds a set from keys with their statuses; exactly one must be active and kids unique.
    pub fn new(keys: Vec<(KeyStatus, Arc<SigningKey>)>) -> Result<Self, TokenError> {
        let mut active = keys.iter().filter(|(s, _)| *s == KeyStatus::Active);
        let (Some((_, first)), None) = (active.next(), active.next()) else {
            return Err(key_err("key set", "exactly one key must be active"));
        };
        let first = first.clone();
        let mut kids = std::collections::HashSet::new();
        for (_, k) in &keys {
            if !kids.insert(k.kid().to_owned()) {
                return Err(key_err(k.kid(), "duplicate kid in key set"));
            }
        }
        let jwks = serde_json::json!({
            "keys": keys.iter().map(|(_, k)| k.public_jwk()).collect::<Vec<_>>()
        });
        let mut verifying = std::collections::HashMap::new();
        for (_, k) in &keys {
            verifying.insert(k.kid().to_owned(), k.verifying_key()?);
        }
        Ok(Self {
            active: first,
            published: keys,
            verifying,
            jwks: Bytes::from(serde_json::to_vec(&jwks)?),
        })
    }

    /// The signing key.
    pub fn active(&self) -> &SigningKey {
        &self.active
    }

    /// Every published key with its status.
    pub fn published(&self) -> &[(KeyStatus, Arc<SigningKey>)] {
        &self.published
    }

    /// The verification key of a published key, by kid.
    pub fn verifying_key(&self, kid: &str) -> Option<&jsonwebtoken::DecodingKey> {
        self.verifying.get(kid)
    }

    /// Whether both sets publish the same keys with the same statuses.
    pub fn same_keys(&self, other: &KeySet) -> bool {
        self.published.len() == other.published.len()
            && self
                .published
                .iter()
                .zip(&other.published)
                .all(|((s1, k1), (s2, k2))| s1 == s2 && k1.kid() == k2.kid())
    }

    /// The JWKS document (`{"keys":[…]}`), serialised once per set.
    pub fn jwks(&self) -> Bytes {
        self.jwks.clone()
    }
}

/// A shared, atomically replaceable [`KeySet`], with a count of the replacements that took a
/// key away (a revocation, a retired key past its retention).
#[derive(Debug, Clone)]
pub struct KeyRing {
    set: Arc<ArcSwap<KeySet>>,
    removals: Arc<AtomicU64>,
}

impl KeyRing {
    /// Wraps an initial set.
    pub fn new(set: KeySet) -> Self {
        Self {
            set: Arc::new(ArcSwap::from_pointee(set)),
            removals: Arc::default(),
        }
    }
    /// The current set.
    pub fn current(&self) -> Arc<KeySet> {
        self.set.load_full()
    }
    /// Replaces the set. When it takes a key away, the removal count goes up after the new set
    /// is in place: whatever was verified under the old set before that is stale.
    pub fn replace(&self, set: KeySet) {
        let new = Arc::new(set);
        let old = self.set.swap(new.clone());
        let removed = old
            .published
            .iter()
            .any(|(_, k)| new.verifying_key(k.kid()).is_none());
        if removed {
            self.removals.fetch_add(1, Ordering::AcqRel);
        }
    }
    /// How many replacements so far took a key away. A verification made while this was `n`
    /// holds only while it is still `n`; read it before the set a verification uses.
    pub fn removals(&self) -> u64 {
        self.removals.load(Ordering::Acquire)
    }
}

fn key_err(what: &str, detail: impl Into<String>) -> TokenError {
    TokenError::Key {
        what: what.to_owned(),
        detail: detail.into(),
    }
}

/// Loads operator-provided PEM files.
pub fn load_configured(files: &[KeyFileSettings]) -> Result<KeySet, TokenError> {
    let mut keys = Vec::with_capacity(files.len());
    for f in files {
        let pem = std::fs::read_to_string(&f.path)
            .map_err(|e| key_err(&f.path.display().to_string(), e.to_string()))?;
        let key = SigningKey::from_pem(&pem, f.kid.clone())
            .map_err(|e| key_err(&f.path.display().to_string(), e.to_string()))?;
        keys.push((f.status, Arc::new(key)));
    }
    KeySet::new(keys)
}

/// What a managed key set records of each key, besides the key itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyInfo {
    /// Key id (RFC 7638 thumbprint).
    pub kid: String,
    /// Role.
    pub status: KeyStatus,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// When it stopped signing, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<i64>,
}

/// What [`ManagedKeys::revoke`] did.
#[derive(Debug, Clone, Serialize)]
pub struct Revoked {
    /// The revoked key's record as it was.
    pub revoked: KeyInfo,
    /// The set after it.
    pub keys: Vec<KeyInfo>,
}

/// One entry of `keyset.json`: the key's record and its PEM file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestEntry {
    kid: String,
    status: KeyStatus,
    /// PEM file name inside the key directory.
    file: String,
    created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retired_at: Option<i64>,
}

/// `keyset.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    keys: Vec<ManifestEntry>,
}

/// One entry of the shared (sealed) key set document: the record and the private key PEM.
#[derive(Serialize, Deserialize)]
struct SharedEntry {
    #[serde(flatten)]
    info: KeyInfo,
    pem: String,
}

/// A managed key with its record.
#[derive(Debug, Clone)]
struct Managed {
    info: KeyInfo,
    key: Arc<SigningKey>,
}

/// The shared document's name in the store.
const SHARED_NAME: &str = "signing-keys";

/// Where a managed key set lives.
#[derive(Debug, Clone)]
pub enum KeyHome {
    /// `<data_dir>/keys`: a `keyset.json` manifest and one PEM file per key (one instance).
    Dir(PathBuf),
    /// One document in the shared store, sealed under the pepper (several instances).
    Shared {
        /// The store every instance uses.
        store: Arc<dyn super::SharedDocs>,
        /// Seals the document.
        sealer: Arc<super::seal::Sealer>,
    },
}

/// A managed key set: generated on first start, rotated by `iamgate keys rotate`, re-read by
/// running servers.
#[derive(Debug, Clone)]
pub struct ManagedKeys {
    home: KeyHome,
    /// How long a retired key stays published: token lifetime + clock skew.
    retain_secs: i64,
    /// Keys parsed by earlier reads, by kid, with a digest of their PEM. A running server
    /// re-reads the set every few seconds (`signing.reload_secs`); parsing and checking an
    /// RSA-2048 key holds a worker thread for ~230 µs (release build), hashing its PEM ~1 µs.
    parsed: Arc<std::sync::Mutex<ParsedKeys>>,
}

/// Parsed keys by kid, with the digest of the PEM each was parsed from. Its debug form names
/// only the kids: a digest of private key material has no place in a debug print.
#[derive(Default)]
struct ParsedKeys(std::collections::HashMap<String, (Digest, Arc<SigningKey>)>);

impl std::fmt::Debug for ParsedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// A stored set with the revision it was read at.
struct Stored {
    keys: Vec<Managed>,
    /// `None` when nothing is stored yet.
    revision: Option<i64>,
}

impl ManagedKeys {
    /// A managed key set in `home` whose retired keys stay published for `retain_secs`.
    pub fn new(home: KeyHome, retain_secs: i64) -> Self {
        Self {
            home,
            retain_secs,
            parsed: Arc::default(),
        }
    }

    async fn read(&self) -> Result<Stored, TokenError> {
        let (entries, revision) = match &self.home {
            KeyHome::Dir(dir) => (read_dir(dir)?, None),
            KeyHome::Shared { store, sealer } => {
                let Some((version, sealed)) = store.load_shared(SHARED_NAME).await? else {
                    return Ok(Stored {
                        keys: Vec::new(),
                        revision: None,
                    });
                };
                let plain = sealer.open(SHARED_NAME, &sealed)?;
                let entries: Vec<SharedEntry> = serde_json::from_slice(&plain)
                    .map_err(|e| key_err("shared key set", e.to_string()))?;
                (entries, Some(version))
            }
        };
        Ok(Stored {
            keys: self.parse(entries)?,
            revision,
        })
    }

    /// The keys of `entries`, parsed only where the kid is new or its PEM changed; after a
    /// good read the cache holds exactly its keys, after a failed one it is as it was.
    fn parse(&self, entries: Vec<SharedEntry>) -> Result<Vec<Managed>, TokenError> {
        let mut parsed = self
            .parsed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut next = std::collections::HashMap::with_capacity(entries.len());
        let mut keys = Vec::with_capacity(entries.len());
        for e in entries {
            let pem_digest = digest(&SHA256, e.pem.as_bytes());
            let key = match parsed.0.get(&e.info.kid) {
                Some((d, key)) if d.as_ref() == pem_digest.as_ref() => key.clone(),
                _ => Arc::new(SigningKey::from_pem(&e.pem, Some(e.info.kid.clone()))?),
            };
            next.insert(e.info.kid.clone(), (pem_digest, key.clone()));
            keys.push(Managed { info: e.info, key });
        }
        *parsed = ParsedKeys(next);
        Ok(keys)
    }

    /// Writes `keys` if nothing changed since `revision`; `Ok(false)` if another writer won.
    async fn write(&self, keys: &[Managed], revision: Option<i64>) -> Result<bool, TokenError> {
        match &self.home {
            KeyHome::Dir(dir) => write_dir(dir, keys).map(|()| true),
            KeyHome::Shared { store, sealer } => {
                let mut entries = Vec::with_capacity(keys.len());
                for k in keys {
                    entries.push(SharedEntry {
                        info: k.info.clone(),
                        pem: k.key.to_pkcs8_pem()?,
                    });
                }
                let plain = serde_json::to_vec(&entries)?;
                let sealed = sealer.seal(SHARED_NAME, &plain)?;
                Ok(store.store_shared(SHARED_NAME, revision, sealed).await?)
            }
        }
    }

    fn is_expired(&self, i: &KeyInfo, now: i64) -> bool {
        i.status == KeyStatus::Retired
            && i.retired_at
                .is_some_and(|t| t.saturating_add(self.retain_secs) < now)
    }

    fn build(&self, keys: &[Managed], now: i64) -> Result<KeySet, TokenError> {
        KeySet::new(
            keys.iter()
                .filter(|k| !self.is_expired(&k.info, now))
                .map(|k| (k.info.status, k.key.clone()))
                .collect(),
        )
    }

    /// Loads the key set, generating an active and a next key on first start (once, even
    /// when several instances start together on a shared store).
    pub async fn load_or_init(&self, now: i64) -> Result<KeySet, TokenError> {
        for _ in 0..3 {
            let stored = self.read().await?;
            if !stored.keys.is_empty() {
                return self.build(&stored.keys, now);
            }
            let keys = vec![
                new_key(KeyStatus::Active, now)?,
                new_key(KeyStatus::Next, now)?,
            ];
            if self.write(&keys, stored.revision).await? {
                return self.build(&keys, now);
            }
            // Another instance initialised it first: use theirs.
        }
        Err(key_err(
            "key set",
            "could not initialise: too many concurrent writers",
        ))
    }

    /// Rotates: `next` becomes active, the active key retires, a new `next` is generated and
    /// retired keys past their retention are removed. Returns the new records.
    pub async fn rotate(&self, now: i64) -> Result<Vec<KeyInfo>, TokenError> {
        let (keys, ()) = self
            .edit("rotate", |keys| Ok((self.rotated(keys, now)?, ())), now)
            .await?;
        Ok(keys)
    }

    /// Revokes `kid` at once: it leaves the set (its private key is deleted, it leaves the JWKS,
    /// and every instance refuses its tokens at its next reload). The active key is replaced
    /// first by the next one, which a new next key follows; a revoked next key is replaced by a
    /// new one. Returns the revoked key's record and the new records.
    pub async fn revoke(&self, kid: &str, now: i64) -> Result<Revoked, TokenError> {
        let (keys, revoked) = self
            .edit(
                "revoke",
                |mut keys| {
                    let Some(at) = keys.iter().position(|k| k.info.kid == kid) else {
                        return Err(key_err(
                            kid,
                            "is not in the managed key set (revoked already, expired, or never one of ours)",
                        ));
                    };
                    let gone = keys.remove(at);
                    match gone.info.status {
                        KeyStatus::Active => {
                            match keys.iter_mut().find(|k| k.info.status == KeyStatus::Next) {
                                Some(next) => next.info.status = KeyStatus::Active,
                                None => keys.push(new_key(KeyStatus::Active, now)?),
                            }
                            keys.push(new_key(KeyStatus::Next, now)?);
                        }
                        KeyStatus::Next => keys.push(new_key(KeyStatus::Next, now)?),
                        KeyStatus::Retired => {}
                    }
                    keys.retain(|k| !self.is_expired(&k.info, now));
                    Ok((keys, gone.info))
                },
                now,
            )
            .await?;
        Ok(Revoked { revoked, keys })
    }

    /// Applies `change` to the stored set and writes the result if nothing changed meanwhile;
    /// when another writer committed first, applies it again to what that one wrote. A set that
    /// cannot load is never written.
    async fn edit<T>(
        &self,
        what: &str,
        change: impl Fn(Vec<Managed>) -> Result<(Vec<Managed>, T), TokenError>,
        now: i64,
    ) -> Result<(Vec<KeyInfo>, T), TokenError> {
        for _ in 0..5 {
            let stored = self.read().await?;
            if stored.keys.is_empty() {
                return Err(key_err(
                    "key set",
                    "no managed key set yet; start the server once",
                ));
            }
            let (keys, out) = change(stored.keys)?;
            self.build(&keys, now)?;
            if self.write(&keys, stored.revision).await? {
                return Ok((keys.into_iter().map(|k| k.info).collect(), out));
            }
        }
        Err(key_err(
            "key set",
            format!("could not {what}: too many concurrent writers"),
        ))
    }

    fn rotated(&self, mut keys: Vec<Managed>, now: i64) -> Result<Vec<Managed>, TokenError> {
        let has_next = keys.iter().any(|k| k.info.status == KeyStatus::Next);
        let mut promoted = false;
        for k in &mut keys {
            match k.info.status {
                KeyStatus::Active => {
                    k.info.status = KeyStatus::Retired;
                    k.info.retired_at = Some(now);
                }
                KeyStatus::Next if !promoted => {
                    k.info.status = KeyStatus::Active;
                    promoted = true;
                }
                _ => {}
            }
        }
        if !has_next {
            keys.push(new_key(KeyStatus::Active, now)?);
        }
        keys.push(new_key(KeyStatus::Next, now)?);
        keys.retain(|k| !self.is_expired(&k.info, now));
        Ok(keys)
    }

    /// Re-reads the set (after a rotation by the CLI or another instance); also drops retired
    /// keys whose tokens have all expired.
    pub async fn reload(&self, now: i64) -> Result<KeySet, TokenError> {
        let stored = self.read().await?;
        if stored.keys.is_empty() {
            return Err(key_err("key set", "missing"));
        }
        self.build(&stored.keys, now)
    }
}

fn new_key(status: KeyStatus, now: i64) -> Result<Managed, TokenError> {
    let key = SigningKey::generate(None)?;
    Ok(Managed {
        info: KeyInfo {
            kid: key.kid().to_owned(),
            status,
            created_at: now,
            retired_at: None,
        },
        key: Arc::new(key),
    })
}

/// The manifest's keys with their PEM, unparsed.
fn read_dir(dir: &Path) -> Result<Vec<SharedEntry>, TokenError> {
    let manifest: Manifest = match std::fs::read(dir.join("keyset.json")) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map_err(|e| key_err("keyset.json", e.to_string()))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Manifest::default(),
        Err(e) => return Err(key_err("keyset.json", e.to_string())),
    };
    let mut keys = Vec::with_capacity(manifest.keys.len());
    for e in manifest.keys {
        if e.file.contains(['/', '\\']) || e.file.starts_with('.') {
            return Err(key_err(
                &e.file,
                "file must be a plain name inside the key directory",
            ));
        }
        let path = dir.join(&e.file);
        let pem = std::fs::read_to_string(&path)
            .map_err(|err| key_err(&path.display().to_string(), err.to_string()))?;
        keys.push(SharedEntry {
            info: KeyInfo {
                kid: e.kid,
                status: e.status,
                created_at: e.created_at,
                retired_at: e.retired_at,
            },
            pem,
        });
    }
    Ok(keys)
}

/// Writes new keys' PEM files, then the manifest, then removes files no longer listed: a crash
/// at any point leaves a manifest whose every file exists.
fn write_dir(dir: &Path, keys: &[Managed]) -> Result<(), TokenError> {
    let old = read_dir(dir).unwrap_or_default();
    let mut manifest = Manifest::default();
    for k in keys {
        let file = format!("{}.pem", k.info.kid);
        let path = dir.join(&file);
        if !path.exists() {
            crate::util::write_private_file(&path, k.key.to_pkcs8_pem()?.as_bytes())
                .map_err(|e| key_err(&file, e.to_string()))?;
        }
        manifest.keys.push(ManifestEntry {
            kid: k.info.kid.clone(),
            status: k.info.status,
            file,
            created_at: k.info.created_at,
            retired_at: k.info.retired_at,
        });
    }
    let bytes = serde_json::to_vec_pretty(&manifest)?;
    crate::util::write_private_file(&dir.join("keyset.json"), &bytes)
        .map_err(|e| key_err("keyset.json", e.to_string()))?;
    for gone in old
        .iter()
        .filter(|o| keys.iter().all(|k| k.info.kid != o.info.kid))
    {
        let _ = std::fs::remove_file(dir.join(format!("{}.pem", gone.info.kid)));
    }
    Ok(())
}

/// Re-reads the managed key set every `every` and puts it in `ring`: keys rotated by another
/// instance or the CLI are picked up, retired keys drop out once their tokens expired.
pub fn spawn_key_reloader(
    managed: ManagedKeys,
    ring: KeyRing,
    every: std::time::Duration,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let managed = Arc::new(managed);
    crate::util::spawn_periodic(every, shutdown, false, move || {
        let (managed, ring) = (managed.clone(), ring.clone());
        async move {
            // Also rebuilt when unchanged, so retired keys drop out once their tokens expired.
            match managed.reload(crate::util::unix_now()).await {
                Ok(set) => {
                    if !set.same_keys(&ring.current()) {
                        tracing::info!(active = set.active().kid(), "signing key set reloaded");
                    }
                    ring.replace(set);
                }
                Err(TokenError::Store(e)) => {
                    // An unreachable store is reported by the health check; keep signing.
                    tracing::debug!(error = %e, "signing key set not checked");
                }
                Err(e) => {
                    tracing::error!(error = %e, "signing key set rejected; keeping the current one")
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn revoking_takes_a_key_out_of_the_set_at_once_and_promotes_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("keys");
        let mk = ManagedKeys::new(KeyHome::Dir(home.clone()), 3630);
        let set = mk.load_or_init(1000).await.unwrap();
        let kid_of = |set: &KeySet, st: KeyStatus| {
            set.published()
                .iter()
                .find(|(s, _)| *s == st)
                .map(|(_, k)| k.kid().to_owned())
        };
        let (active, next) = (
            set.active().kid().to_owned(),
            kid_of(&set, KeyStatus::Next).unwrap(),
        );
        mk.rotate(2000).await.unwrap();
        // The retired key (the first active one) goes at once, not after its retention.
        let out = mk.revoke(&active, 2001).await.unwrap();
        assert_eq!(out.revoked.status, KeyStatus::Retired);
        let set = mk.reload(2001).await.unwrap();
        assert!(set.verifying_key(&active).is_none());
        assert!(
            !home.join(format!("{active}.pem")).exists(),
            "private key deleted"
        );
        // The active key: the next one signs instead, and a new next one is published.
        assert_eq!(set.active().kid(), next);
        let next2 = kid_of(&set, KeyStatus::Next).unwrap();
        mk.revoke(&next, 2002).await.unwrap();
        let set = mk.reload(2002).await.unwrap();
        assert_eq!(set.active().kid(), next2);
        assert!(set.verifying_key(&next).is_none());
        assert!(!String::from_utf8_lossy(&set.jwks()).contains(&next));
        let next3 = kid_of(&set, KeyStatus::Next).unwrap();
        assert_ne!(next3, next2);
        // The next key: replaced by a new one, the active one stays.
        mk.revoke(&next3, 2003).await.unwrap();
        let set = mk.reload(2003).await.unwrap();
        assert_eq!(set.active().kid(), next2);
        assert!(set.verifying_key(&next3).is_none());
        assert!(kid_of(&set, KeyStatus::Next).is_some());
        // A kid that is not in the set: an error naming it, nothing written.
        let before = std::fs::read(home.join("keyset.json")).unwrap();
        let e = mk.revoke(&next, 2004).await.unwrap_err().to_string();
        assert!(e.contains(&next), "{e}");
        assert_eq!(std::fs::read(home.join("keyset.json")).unwrap(), before);
    }

    #[tokio::test]
    async fn init_publishes_active_and_next_and_rotation_keeps_old_key_published() {
        let dir = tempfile::tempdir().unwrap();
        let mk = ManagedKeys::new(KeyHome::Dir(dir.path().join("keys")), 3630);
        let set = mk.load_or_init(1000).await.unwrap();
        assert_eq!(set.published().len(), 2);
        let first_active = set.active().kid().to_owned();
        let next = set
            .published()
            .iter()
            .find(|(s, _)| *s == KeyStatus::Next)
            .unwrap()
            .1
            .kid()
            .to_owned();

        mk.rotate(2000).await.unwrap();
        let set = mk.reload(2000).await.unwrap();
        assert_eq!(set.active().kid(), next, "next key is promoted");
        let jwks: serde_json::Value = serde_json::from_slice(&set.jwks()).unwrap();
        let kids: Vec<_> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect();
        assert!(kids.contains(&first_active), "retired key still published");
        assert_eq!(kids.len(), 3);
        for k in jwks["keys"].as_array().unwrap() {
            assert!(k.get("d").is_none() && k.get("p").is_none());
        }

        // Past the retention, the retired key disappears on the next rotation.
        mk.rotate(2000 + 3631).await.unwrap();
        let set = mk.reload(2000 + 3631).await.unwrap();
        assert!(set.published().iter().all(|(_, k)| k.kid() != first_active));
        assert!(
            !dir.path()
                .join("keys")
                .join(format!("{first_active}.pem"))
                .exists()
        );
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn key_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mk = ManagedKeys::new(KeyHome::Dir(dir.path().join("keys")), 10);
        let set = mk.load_or_init(0).await.unwrap();
        let meta = std::fs::metadata(
            dir.path()
                .join("keys")
                .join(format!("{}.pem", set.active().kid())),
        )
        .unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }

    #[tokio::test]
    async fn a_reload_reuses_unchanged_keys_and_parses_a_changed_file_again() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let mk = ManagedKeys::new(KeyHome::Dir(keys.clone()), 3630);
        mk.load_or_init(1000).await.unwrap();
        let first = mk.reload(1000).await.unwrap();
        let again = mk.reload(1001).await.unwrap();
        assert_eq!(first.published().len(), 2);
        for ((_, a), (_, b)) in first.published().iter().zip(again.published()) {
            assert!(Arc::ptr_eq(a, b), "{} parsed again", a.kid());
        }

        // The active key's file replaced in place, under the same kid.
        let kid = first.active().kid().to_owned();
        let replacement = SigningKey::generate(Some(kid.clone())).unwrap();
        std::fs::write(
            keys.join(format!("{kid}.pem")),
            replacement.to_pkcs8_pem().unwrap(),
        )
        .unwrap();
        let changed = mk.reload(1002).await.unwrap();
        assert_eq!(changed.active().kid(), kid);
        assert_eq!(changed.active().public_jwk(), replacement.public_jwk());
        assert_ne!(changed.active().public_jwk(), first.active().public_jwk());
        let next = |s: &KeySet| {
            s.published()
                .iter()
                .find(|(st, _)| *st == KeyStatus::Next)
                .unwrap()
                .1
                .clone()
        };
        assert!(Arc::ptr_eq(&next(&first), &next(&changed)));

        // A file that no longer parses is an error, and the next good read recovers.
        std::fs::write(keys.join(format!("{kid}.pem")), "not a key").unwrap();
        assert!(mk.reload(1003).await.is_err());
        std::fs::write(
            keys.join(format!("{kid}.pem")),
            replacement.to_pkcs8_pem().unwrap(),
        )
        .unwrap();
        let recovered = mk.reload(1004).await.unwrap();
        assert_eq!(recovered.active().public_jwk(), replacement.public_jwk());
        assert!(Arc::ptr_eq(&next(&first), &next(&recovered)));
        assert!(!format!("{mk:?}").contains("BEGIN"));
    }

    #[test]
    fn key_set_requires_exactly_one_active() {
        let k = Arc::new(SigningKey::generate(None).unwrap());
        assert!(KeySet::new(vec![(KeyStatus::Next, k.clone())]).is_err());
        assert!(KeySet::new(vec![(KeyStatus::Active, k.clone()), (KeyStatus::Active, k)]).is_err());
    }
}
