//! The directory's data as the store reads and writes it: projects, binding changes, and the
//! whole IAM data set loaded at start. Plain data; the indexed snapshot is `iam::directory`'s.

use super::Binding;
use super::interned::BindingTable;
use serde::{Deserialize, Serialize};

/// A project known to the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Project {
    /// The project's `_id`.
    pub project_id: String,
    /// The owning company (`tenantId`).
    pub company_id: String,
    /// Its environments' `envId`s (may be empty when unknown).
    #[serde(default)]
    pub environments: Vec<String>,
}

/// Everything the store holds for the IAM snapshot.
#[derive(Debug, Default)]
pub struct IamData {
    /// Every binding, interned as read.
    pub bindings: BindingTable,
    /// Every known project.
    pub projects: Vec<Project>,
}

/// One write to bindings or the directory; a batch is applied in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IamChange {
    /// Insert or replace a binding.
    PutBinding(Binding),
    /// Remove a binding by id.
    DeleteBinding(String),
    /// Insert or replace a project.
    PutProject(Project),
    /// Remove a project by id.
    DeleteProject(String),
}
