//! A role as the policy data defines it (`policies/roles.json`): its rank and the levels where
//! it may be bound. Read by the policy when a revision loads, used by the management write path
//! to validate assignments.

/// A role as the policy data defines it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleInfo {
    /// Rank (higher may assign lower).
    pub rank: i64,
    /// Levels where it may be bound: `company`, `project`, `environment`, `root`.
    pub levels: Vec<String>,
}

/// The role model of the policy in service: each role by id, and the root permissions a root
/// account may hold (`data.root_permissions`). The policy's data is its one source; the
/// management write path and the bootstrap read it from here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleModel {
    /// Each role by id.
    pub roles: std::collections::HashMap<String, RoleInfo>,
    /// Every root permission, in the data's order.
    pub root_permissions: Vec<String>,
}

impl RoleModel {
    /// Whether `p` is a root permission.
    pub fn is_root_permission(&self, p: &str) -> bool {
        self.root_permissions.iter().any(|r| r == p)
    }
}
