//! `signing:`: the access-token signing keys (PEM files, or a generated set).

use super::secs_in;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// `signing:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSigning {
    /// PEM key files. When empty, keys are generated and rotated under `<data_dir>/keys`.
    pub keys: Vec<RawKeyFile>,
    /// Seconds between checks of the generated key set for rotations. Default 5.
    pub reload_secs: Option<u64>,
}

/// One configured signing key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKeyFile {
    /// PKCS#8 or PKCS#1 RSA private key PEM.
    pub path: PathBuf,
    /// `active` (exactly one), `next` or `retired`.
    pub status: String,
    /// Key id; default the RFC 7638 thumbprint.
    pub kid: Option<String>,
}

/// Signing key sources.
#[derive(Debug, Clone)]
pub struct SigningSettings {
    /// Configured PEM files; empty = managed key set in `<data_dir>/keys`.
    pub keys: Vec<KeyFileSettings>,
    /// Reload interval for the managed key set.
    pub reload: Duration,
}

/// A configured key file.
#[derive(Debug, Clone)]
pub struct KeyFileSettings {
    /// PEM path.
    pub path: PathBuf,
    /// Its role in the key set.
    pub status: crate::model::KeyStatus,
    /// Explicit kid.
    pub kid: Option<String>,
}

impl RawSigning {
    /// Checks the section; problems go to `errs`.
    pub(super) fn validate(self, errs: &mut Vec<String>) -> SigningSettings {
        let mut keys = Vec::new();
        let mut actives = 0;
        for (i, k) in self.keys.into_iter().enumerate() {
            match k.status.parse::<crate::model::KeyStatus>() {
                Ok(status) => {
                    if status == crate::model::KeyStatus::Active {
                        actives += 1;
                    }
                    keys.push(KeyFileSettings {
                        path: k.path,
                        status,
                        kid: k.kid,
                    });
                }
                Err(()) => errs.push(format!(
                    "signing.keys[{i}].status: `{}` is not one of active, next, retired",
                    k.status
                )),
            }
        }
        if !keys.is_empty() && actives != 1 {
            errs.push(format!(
                "signing.keys: exactly one key must be active, found {actives}"
            ));
        }
        let reload = secs_in("signing.reload_secs", self.reload_secs, 5, 1..=3600, errs);

        SigningSettings { keys, reload }
    }
}
