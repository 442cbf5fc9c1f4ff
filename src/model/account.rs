//! The service-account record: who owns an account, how it authenticates, what it
//! holds. Plain data shared by the store, the IAM write path, authentication and the policy
//! input; generating and hashing secrets is `iam::account`'s.

use super::client_key::ClientKey;
use serde::Serialize;
use std::fmt;
use std::sync::Arc;

/// Token endpoint authentication method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// HTTP Basic with client id and secret.
    ClientSecretBasic,
    /// Signed JWT assertion (RFC 7523).
    PrivateKeyJwt,
}

impl AuthMethod {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecretBasic => "client_secret_basic",
            Self::PrivateKeyJwt => "private_key_jwt",
        }
    }
    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "client_secret_basic" => Some(Self::ClientSecretBasic),
            "private_key_jwt" => Some(Self::PrivateKeyJwt),
            _ => None,
        }
    }
}

/// Who owns the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// Company-independent root account.
    Root,
    /// Account of one company.
    Company(String),
}

impl Owner {
    /// Whether this is the account of `company` (without building an `Owner` to compare).
    pub fn is_company(&self, company: &str) -> bool {
        matches!(self, Self::Company(c) if c == company)
    }
}

/// A keyed hash of a client secret. `Debug` prints nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretHash(pub [u8; 32]);

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash(***)")
    }
}

/// How the account authenticates.
#[derive(Debug, Clone, PartialEq)]
pub enum Credential {
    /// `client_secret_basic`.
    Secret(SecretHash),
    /// `private_key_jwt`, one or more keys (rotation).
    Keys(Vec<ClientKey>),
}

impl Credential {
    /// The method this credential is for.
    pub fn method(&self) -> AuthMethod {
        match self {
            Self::Secret(_) => AuthMethod::ClientSecretBasic,
            Self::Keys(_) => AuthMethod::PrivateKeyJwt,
        }
    }
}

/// A service account.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceAccount {
    /// Server-generated id, `[A-Za-z0-9-._~]`.
    pub client_id: String,
    /// Display name.
    pub name: String,
    /// Root or company.
    pub owner: Owner,
    /// Secret hash or public keys.
    pub credential: Credential,
    /// Root permissions (root accounts only). Shared: every request of the account hands the
    /// same list to the policy input and the decision-cache key.
    pub permissions: Arc<[String]>,
    /// Creation time, Unix seconds (`clientIdIssuedAt`).
    pub created_at: i64,
    /// Last successful token request, Unix seconds.
    pub last_login: Option<i64>,
    /// The secret replaced by a rotation, accepted until the given Unix time (grace period).
    pub retired_secret: Option<(SecretHash, i64)>,
}
