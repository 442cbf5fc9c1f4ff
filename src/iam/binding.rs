//! Role bindings in the data model of the Rönd sidecar used by the Console (field names kept
//! compatible): who (`subjects`, `groups`) holds which `roles` and `permissions` on which
//! `resource`. A binding without a resource is console-level (or root, for root permissions).

use serde::{Deserialize, Serialize};

/// The resource a binding is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BindingResource {
    /// `company`, `project` or `environment`.
    pub resource_type: String,
    /// The id; an environment's is `"<projectId>:<envId>"`.
    pub resource_id: String,
}

/// A role binding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Binding {
    /// Unique id.
    pub binding_id: String,
    /// Identity ids the binding applies to.
    #[serde(default)]
    pub subjects: Vec<String>,
    /// Groups the binding applies to.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Role ids.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Direct permissions.
    #[serde(default)]
    pub permissions: Vec<String>,
    /// Where it applies; `None` = console level / root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<BindingResource>,
}
