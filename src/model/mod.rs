//! The plain types every layer shares: service accounts and their credentials, role bindings
//! and principals, projects, key statuses, roles, grants. No I/O and no policy: the store
//! persists them, the IAM layer validates and indexes them, the policy reads them.
//!
//! The interned binding table and the copy-on-write chunks live here too: the store loads the
//! directory's data straight into them, so they sit below both.

pub mod account;
pub mod binding;
pub mod binding_set;
pub(crate) mod chunks;
pub mod client_key;
pub mod directory;
pub mod grant;
pub mod interned;
pub mod key;
pub mod role;

pub use account::{AuthMethod, Credential, Owner, SecretHash, ServiceAccount};
pub use binding::{Binding, BindingResource, Principal};
pub use binding_set::BindingSet;
pub use client_key::{ClientKey, KeyError};
pub use directory::{IamChange, IamData, Project};
pub use grant::{GrantInput, TargetInput};
pub use key::KeyStatus;
pub use role::{RoleInfo, RoleModel};

/// Whether `v` may serve as an id (of a company, project, environment, account or key): 1 to 128
/// characters of the URL-safe alphabet `[A-Za-z0-9-._~]`, so an id never carries a separator,
/// a quote or a control character into a path, a binding key, a log or SQL.
pub fn safe_id(v: &str) -> bool {
    (1..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
}
