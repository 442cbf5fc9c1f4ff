//! What a management request grants and whom it acts on, as the policy weighs them
//! (`input.grants`, `input.target`): computed by the IAM write path, decided by the policy.

use serde::{Deserialize, Serialize};

/// One thing the caller wants to grant (role assignment or root permissions).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrantInput {
    /// Role id; `""` removes a role.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub role: Option<String>,
    /// `company`, `project` or `environment`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub resource_type: Option<String>,
    /// Resource id (`project:env` for environments).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub resource_id: Option<String>,
    /// The company the grant is made in (the directory's owner of a project).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub company_id: Option<String>,
    /// The roles the identity holds there now, which the request replaces or removes.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub removes: Option<Vec<String>>,
    /// Root permissions being granted.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub permissions: Option<Vec<String>>,
}

impl GrantInput {
    /// A grant of root permissions (`{"permissions": [...]}`).
    pub fn root_permissions(permissions: Vec<String>) -> Self {
        Self {
            role: None,
            resource_type: None,
            resource_id: None,
            company_id: None,
            removes: None,
            permissions: Some(permissions),
        }
    }
}

/// The account or identity a request changes the existence or credentials of.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetInput {
    /// Its principal key.
    pub principal: String,
    /// Its authority, written as grants: its roles where the request acts (`role`,
    /// `resourceType`, `resourceId`, `companyId`), or `{"permissions": [...]}` for a root
    /// account. The caller must be allowed to grant every one of them.
    pub authority: Vec<GrantInput>,
}
