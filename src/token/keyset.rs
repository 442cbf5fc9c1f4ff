//! The signing key set: one active key that signs, plus published `next` and `retired` keys.
//!
//! Publishing the next key before it signs lets consumers cache it ahead of a rotation, and keeping
//! a retired key published until every token it signed has expired means a rotation never breaks a
//! valid token. Keys come either from PEM files named in the config (operator-managed) or from a
//! managed directory `<data_dir>/keys` with a `keyset.json` manifest that `iamgate keys rotate`
//! edits and running servers re-read. The current set sits behind an `ArcSwap`, so the signer reads
//! it without a lock.

use super::{SigningKey, TokenError};
use crate::config::KeyFileSettings;
use arc_swap::ArcSwap;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A key's role in the set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    /// Signs new tokens. Exactly one.
    Active,
    /// Published ahead of its rotation.
    Next,
    /// Published until its tokens expire.
    Retired,
}

impl std::str::FromStr for KeyStatus {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "active" => Ok(Self::Active),
            "next" => Ok(Self::Next),
            "retired" => Ok(Self::Retired),
            _ => Err(()),
        }
    }
}

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

    /// The JWKS document (`{"keys":[…]}`), serialised once per set.
    pub fn jwks(&self) -> Bytes {
        self.jwks.clone()
    }
}

/// A shared, atomically replaceable [`KeySet`].
#[derive(Debug, Clone)]
pub struct KeyRing(Arc<ArcSwap<KeySet>>);

impl KeyRing {
    /// Wraps an initial set.
    pub fn new(set: KeySet) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(set)))
    }
    /// The current set.
    pub fn current(&self) -> Arc<KeySet> {
        self.0.load_full()
    }
    /// Replaces the set.
    pub fn replace(&self, set: KeySet) {
        self.0.store(Arc::new(set));
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

/// One entry of `keyset.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestEntry {
    /// Key id (RFC 7638 thumbprint).
    pub kid: String,
    /// Role.
    pub status: KeyStatus,
    /// PEM file name inside the key directory.
    pub file: String,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// When it stopped signing, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<i64>,
}

/// `keyset.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// All keys, newest last.
    pub keys: Vec<ManifestEntry>,
}

/// The managed key directory `<data_dir>/keys`.
#[derive(Debug, Clone)]
pub struct ManagedKeys {
    dir: PathBuf,
    /// How long a retired key stays published: token lifetime + clock skew.
    retain_secs: i64,
}

impl ManagedKeys {
    /// A managed key directory whose retired keys stay published for `retain_secs`.
    pub fn new(dir: impl Into<PathBuf>, retain_secs: i64) -> Self {
        Self {
            dir: dir.into(),
            retain_secs,
        }
    }

    fn manifest_path(&self) -> PathBuf {
        self.dir.join("keyset.json")
    }

    /// The manifest's raw bytes, for cheap change detection.
    pub fn manifest_bytes(&self) -> Option<Vec<u8>> {
        std::fs::read(self.manifest_path()).ok()
    }

    fn read_manifest(&self) -> Result<Option<Manifest>, TokenError> {
        match std::fs::read(self.manifest_path()) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| key_err("keyset.json", e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(key_err("keyset.json", e.to_string())),
        }
    }

    fn write_manifest(&self, m: &Manifest) -> Result<(), TokenError> {
        let bytes = serde_json::to_vec_pretty(m)?;
        crate::util::write_private_file(&self.manifest_path(), &bytes)
            .map_err(|e| key_err("keyset.json", e.to_string()))
    }

    fn new_entry(&self, status: KeyStatus, now: i64) -> Result<ManifestEntry, TokenError> {
        let key = SigningKey::generate(None)?;
        let file = format!("{}.pem", key.kid());
        crate::util::write_private_file(&self.dir.join(&file), key.to_pkcs8_pem()?.as_bytes())
            .map_err(|e| key_err(&file, e.to_string()))?;
        Ok(ManifestEntry {
            kid: key.kid().to_owned(),
            status,
            file,
            created_at: now,
            retired_at: None,
        })
    }

    /// Loads the key set, generating an active and a next key on first start.
    pub fn load_or_init(&self, now: i64) -> Result<KeySet, TokenError> {
        let manifest = match self.read_manifest()? {
            Some(m) => m,
            None => {
                let m = Manifest {
                    keys: vec![
                        self.new_entry(KeyStatus::Active, now)?,
                        self.new_entry(KeyStatus::Next, now)?,
                    ],
                };
                self.write_manifest(&m)?;
                m
            }
        };
        self.build(&manifest, now)
    }

    fn is_expired(&self, e: &ManifestEntry, now: i64) -> bool {
        e.status == KeyStatus::Retired
            && e.retired_at
                .is_some_and(|t| t.saturating_add(self.retain_secs) < now)
    }

    fn build(&self, m: &Manifest, now: i64) -> Result<KeySet, TokenError> {
        let mut keys = Vec::new();
        for e in m.keys.iter().filter(|e| !self.is_expired(e, now)) {
            if e.file.contains(['/', '\\']) || e.file.starts_with('.') {
                return Err(key_err(
                    &e.file,
                    "file must be a plain name inside the key directory",
                ));
            }
            let path = self.dir.join(&e.file);
            let pem = std::fs::read_to_string(&path)
                .map_err(|err| key_err(&path.display().to_string(), err.to_string()))?;
            keys.push((
                e.status,
                Arc::new(SigningKey::from_pem(&pem, Some(e.kid.clone()))?),
            ));
        }
        KeySet::new(keys)
    }

    /// Rotates: `next` becomes active, the active key retires, a new `next` is generated and
    /// retired keys past their retention are removed. Returns the new manifest.
    pub fn rotate(&self, now: i64) -> Result<Manifest, TokenError> {
        let mut m = self.read_manifest()?.ok_or_else(|| {
            key_err(
                "keyset.json",
                "no managed key set yet; start the server once",
            )
        })?;
        let has_next = m.keys.iter().any(|e| e.status == KeyStatus::Next);
        let mut promoted = false;
        for e in &mut m.keys {
            match e.status {
                KeyStatus::Active => {
                    e.status = KeyStatus::Retired;
                    e.retired_at = Some(now);
                }
                KeyStatus::Next if !promoted => {
                    e.status = KeyStatus::Active;
                    promoted = true;
                }
                _ => {}
            }
        }
        if !has_next {
            m.keys.push(self.new_entry(KeyStatus::Active, now)?);
        }
        m.keys.push(self.new_entry(KeyStatus::Next, now)?);
        let (gone, kept): (Vec<_>, Vec<_>) =
            m.keys.into_iter().partition(|e| self.is_expired(e, now));
        m.keys = kept;
        // Validate before committing: a manifest that cannot load is never written.
        self.build(&m, now)?;
        self.write_manifest(&m)?;
        for e in gone {
            let _ = std::fs::remove_file(self.dir.join(&e.file));
        }
        Ok(m)
    }

    /// Re-reads the manifest (after a rotation by the CLI or another instance).
    pub fn reload(&self, now: i64) -> Result<KeySet, TokenError> {
        let m = self
            .read_manifest()?
            .ok_or_else(|| key_err("keyset.json", "missing"))?;
        self.build(&m, now)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_publishes_active_and_next_and_rotation_keeps_old_key_published() {
        let dir = tempfile::tempdir().unwrap();
        let mk = ManagedKeys::new(dir.path().join("keys"), 3630);
        let set = mk.load_or_init(1000).unwrap();
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

        mk.rotate(2000).unwrap();
        let set = mk.reload(2000).unwrap();
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
        mk.rotate(2000 + 3631).unwrap();
        let set = mk.reload(2000 + 3631).unwrap();
        assert!(set.published().iter().all(|(_, k)| k.kid() != first_active));
        assert!(
            !dir.path()
                .join("keys")
                .join(format!("{first_active}.pem"))
                .exists()
        );
    }

    #[cfg(unix)]
    #[test]
    fn key_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mk = ManagedKeys::new(dir.path().join("keys"), 10);
        let set = mk.load_or_init(0).unwrap();
        let meta = std::fs::metadata(
            dir.path()
                .join("keys")
                .join(format!("{}.pem", set.active().kid())),
        )
        .unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn key_set_requires_exactly_one_active() {
        let k = Arc::new(SigningKey::generate(None).unwrap());
        assert!(KeySet::new(vec![(KeyStatus::Next, k.clone())]).is_err());
        assert!(KeySet::new(vec![(KeyStatus::Active, k.clone()), (KeyStatus::Active, k)]).is_err());
    }
}
