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

/// A caller's candidate bindings, shared and immutable. Its policy value is built once and
/// memoised, so a directory that hands out one `BindingSet` per subject pays the conversion once
/// per change, not once per request. The bindings themselves are shared with the directory.
#[derive(Debug, Clone, Default)]
pub struct BindingSet(Arc<BindingSetInner>);

#[derive(Debug, Default)]
struct BindingSetInner {
    list: Vec<Arc<Binding>>,
    value: std::sync::OnceLock<regorus::Value>,
}

impl BindingSet {
    /// Wraps bindings.
    pub fn new(list: Vec<Binding>) -> Self {
        Self::shared(list.into_iter().map(Arc::new).collect())
    }

    /// Wraps bindings shared with their owner (the directory).
    pub fn shared(list: Vec<Arc<Binding>>) -> Self {
        Self(Arc::new(BindingSetInner {
            list,
            value: std::sync::OnceLock::new(),
        }))
    }

    /// The bindings.
    pub fn as_slice(&self) -> &[Arc<Binding>] {
        &self.0.list
    }

    /// The bindings as a policy value (memoised).
    pub fn value(&self) -> regorus::Value {
        self.0
            .value
            .get_or_init(|| {
                regorus::Value::from(
                    self.0
                        .list
                        .iter()
                        .map(|b| binding_value(b))
                        .collect::<Vec<_>>(),
                )
            })
            .clone()
    }
}

impl From<Vec<Binding>> for BindingSet {
    fn from(list: Vec<Binding>) -> Self {
        Self::new(list)
    }
}

impl Serialize for BindingSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.list.iter().map(|b| &**b))
    }
}

impl<'de> Deserialize<'de> for BindingSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<Binding>::deserialize(d).map(Self::new)
    }
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
    pub bindings: BindingSet,
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

use regorus::Value;
use std::collections::BTreeMap as Map;

/// Every key of the input document, built once: a per-request object then clones reference
/// counts instead of allocating its key strings.
struct Keys {
    request: Value,
    method: Value,
    path: Value,
    path_params: Value,
    query: Value,
    headers: Value,
    user: Value,
    id: Value,
    kind: Value,
    groups: Value,
    permissions: Value,
    bindings: Value,
    properties: Value,
    resource: Value,
    company_id: Value,
    project_id: Value,
    env_id: Value,
    route: Value,
    permission: Value,
    rule: Value,
    grants: Value,
    role: Value,
    resource_type: Value,
    resource_id: Value,
    binding_id: Value,
    subjects: Value,
    roles: Value,
    empty_object: Value,
}

static KEYS: std::sync::LazyLock<Keys> = std::sync::LazyLock::new(|| Keys {
    request: s("request"),
    method: s("method"),
    path: s("path"),
    path_params: s("pathParams"),
    query: s("query"),
    headers: s("headers"),
    user: s("user"),
    id: s("id"),
    kind: s("type"),
    groups: s("groups"),
    permissions: s("permissions"),
    bindings: s("bindings"),
    properties: s("properties"),
    resource: s("resource"),
    company_id: s("companyId"),
    project_id: s("projectId"),
    env_id: s("envId"),
    route: s("route"),
    permission: s("permission"),
    rule: s("rule"),
    grants: s("grants"),
    role: s("role"),
    resource_type: s("resourceType"),
    resource_id: s("resourceId"),
    binding_id: s("bindingId"),
    subjects: s("subjects"),
    roles: s("roles"),
    empty_object: Value::new_object(),
});

fn s(v: &str) -> Value {
    Value::String(v.into())
}

fn strings(v: &[String]) -> Value {
    Value::from(v.iter().map(|x| s(x)).collect::<Vec<_>>())
}

fn string_map(m: &BTreeMap<String, String>) -> Value {
    if m.is_empty() {
        return KEYS.empty_object.clone();
    }
    Value::from(m.iter().map(|(k, v)| (s(k), s(v))).collect::<Map<_, _>>())
}

fn object<const N: usize>(pairs: [(&Value, Option<Value>); N]) -> Value {
    Value::from(
        pairs
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.clone(), v)))
            .collect::<Map<_, _>>(),
    )
}

/// A binding as a policy value (field names as in the Rönd data model).
pub fn binding_value(b: &Binding) -> Value {
    let k = &*KEYS;
    object([
        (&k.binding_id, Some(s(&b.binding_id))),
        (&k.subjects, Some(strings(&b.subjects))),
        (&k.groups, Some(strings(&b.groups))),
        (&k.roles, Some(strings(&b.roles))),
        (&k.permissions, Some(strings(&b.permissions))),
        (
            &k.resource,
            b.resource.as_ref().map(|r| {
                object([
                    (&k.resource_type, Some(s(&r.resource_type))),
                    (&k.resource_id, Some(s(&r.resource_id))),
                ])
            }),
        ),
    ])
}

impl DecisionInput {
    /// Builds the engine's input value directly (no JSON round trip: this runs per request).
    pub fn to_value(&self) -> Result<Value, serde_json::Error> {
        let k = &*KEYS;
        let r = &self.request;
        let u = &self.user;
        let properties = match &u.properties {
            serde_json::Value::Null => k.empty_object.clone(),
            other => Value::from(other.clone()),
        };
        let grants = self.grants.as_ref().map(|gs| {
            Value::from(
                gs.iter()
                    .map(|g| {
                        object([
                            (&k.role, g.role.as_deref().map(s)),
                            (&k.resource_type, g.resource_type.as_deref().map(s)),
                            (&k.resource_id, g.resource_id.as_deref().map(s)),
                            (&k.permissions, g.permissions.as_deref().map(strings)),
                        ])
                    })
                    .collect::<Vec<_>>(),
            )
        });
        Ok(object([
            (
                &k.request,
                Some(object([
                    (&k.method, Some(s(&r.method))),
                    (&k.path, Some(s(&r.path))),
                    (&k.path_params, Some(string_map(&r.path_params))),
                    (&k.query, Some(string_map(&r.query))),
                    (&k.headers, Some(string_map(&r.headers))),
                ])),
            ),
            (
                &k.user,
                Some(object([
                    (&k.id, Some(s(&u.id))),
                    (&k.kind, Some(s(&u.kind))),
                    (&k.groups, Some(strings(&u.groups))),
                    (&k.permissions, Some(strings(&u.permissions))),
                    (&k.bindings, Some(u.bindings.value())),
                    (&k.properties, Some(properties)),
                ])),
            ),
            (
                &k.resource,
                Some(object([
                    (&k.company_id, self.resource.company_id.as_deref().map(s)),
                    (&k.project_id, self.resource.project_id.as_deref().map(s)),
                    (&k.env_id, self.resource.env_id.as_deref().map(s)),
                ])),
            ),
            (
                &k.route,
                Some(object([
                    (&k.id, Some(s(&self.route.id))),
                    (&k.permission, self.route.permission.as_deref().map(s)),
                    (&k.rule, self.route.rule.as_deref().map(s)),
                ])),
            ),
            (&k.grants, grants),
        ]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iam::BindingResource;

    #[test]
    fn direct_conversion_equals_the_serde_json_form() {
        let input = DecisionInput {
            request: RequestInput {
                method: "GET".into(),
                path: "/p".into(),
                path_params: [("projectId".to_owned(), "p1".to_owned())].into(),
                ..Default::default()
            },
            user: UserInput {
                id: "u".into(),
                kind: "user".into(),
                groups: vec!["g".into()],
                permissions: vec!["console.root.view".into()],
                bindings: BindingSet::new(vec![
                    Binding {
                        binding_id: "b".into(),
                        subjects: vec!["u".into()],
                        groups: vec![],
                        roles: vec!["guest".into()],
                        permissions: vec![],
                        resource: Some(BindingResource {
                            resource_type: "project".into(),
                            resource_id: "p1".into(),
                        }),
                    },
                    Binding {
                        binding_id: "c".into(),
                        subjects: vec![],
                        groups: vec!["g".into()],
                        roles: vec![],
                        permissions: vec!["x".into()],
                        resource: None,
                    },
                ]),
                properties: serde_json::json!({"a": 1}),
            },
            resource: ResourceInput {
                company_id: Some("c1".into()),
                project_id: Some("p1".into()),
                env_id: None,
            },
            route: RouteInput {
                id: "r".into(),
                permission: Some("console.project.view".into()),
                rule: None,
            },
            grants: Some(vec![GrantInput {
                role: Some("guest".into()),
                resource_type: Some("project".into()),
                resource_id: Some("p1".into()),
                permissions: None,
            }]),
        };
        let via_json = Value::from(serde_json::to_value(&input).unwrap());
        assert_eq!(input.to_value().unwrap(), via_json);
    }
}
