//! A signing key's status in the key set: configured in the key file settings, stored in the
//! shared key set, published in the JWKS.

use serde::{Deserialize, Serialize};

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
