//! The policy input document (documented in `policies/README.md`). Names follow the Rönd sidecar
//! where it has the same concept (`input.request.*`, `input.user.{id,groups,bindings}`) so Rönd
//! policies carry over.

use crate::iam::Binding;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The HTTP request as the policy sees it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestInput {
    /// Method.
    pub method: String,
    /// Path exactly as forwarded.
    pub path: String,
    /// Route template parameters.
    #[serde(default)]
    pub path_params: BTreeMap<String, String>,
    /// Query parameters (first value of each).
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// Selected headers, lower-case names; never credentials.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// The authenticated caller.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserInput {
    /// Subject id (client id or user id).
    pub id: String,
    /// `serviceaccount` or `user`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Root permissions held directly (root service accounts).
    #[serde(default)]
    pub permissions: Vec<String>,
    /// Bindings that may apply to the caller (the policy decides which do).
    #[serde(default)]
    pub bindings: Arc<Vec<Binding>>,
    /// Free-form properties (forwarded as `miauserproperties`).
    #[serde(default)]
    pub properties: serde_json::Value,
}

/// The resolved resource of the request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceInput {
    /// Owning company (set by the directory for known projects).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub company_id: Option<String>,
    /// Project.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub project_id: Option<String>,
    /// Environment.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub env_id: Option<String>,
}

/// The matched route.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteInput {
    /// Route id.
    pub id: String,
    /// Required permission at the resource.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub permission: Option<String>,
    /// Or a rule in package `iamgate.rules`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rule: Option<String>,
}

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
    /// Root permissions being granted.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub permissions: Option<Vec<String>>,
}

/// The whole input document.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DecisionInput {
    /// Request.
    pub request: RequestInput,
    /// Caller.
    pub user: UserInput,
    /// Resource.
    pub resource: ResourceInput,
    /// Route.
    pub route: RouteInput,
    /// Grants requested by a role-assignment request.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub grants: Option<Vec<GrantInput>>,
}

impl DecisionInput {
    /// Converts to the engine's value type.
    pub fn to_value(&self) -> Result<regorus::Value, serde_json::Error> {
        Ok(regorus::Value::from(serde_json::to_value(self)?))
    }
}
