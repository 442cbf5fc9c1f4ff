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
