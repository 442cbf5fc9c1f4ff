//! The policy input document (documented in `policies/README.md`). Names follow the Rönd sidecar
//! where it has the same concept (`input.request.*`, `input.user.{id,groups,bindings}`) so Rönd
//! policies carry over.

pub use crate::model::binding_set::BindingSet;
use crate::model::interned::{NameList, StoredBinding};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The HTTP request as the policy sees it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestInput {
    /// Method.
    pub method: Arc<str>,
    /// Path exactly as forwarded.
    pub path: Arc<str>,
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

#[derive(Debug)]
struct UserMemo {
    id: Arc<str>,
    kind: Arc<str>,
    issuer: Option<Arc<str>>,
    principal: Arc<str>,
    groups: Arc<[String]>,
    group_principals: Arc<[String]>,
    permissions: Arc<[String]>,
    properties: serde_json::Value,
    value: regorus::Value,
}

impl UserMemo {
    fn is_for(&self, u: &UserInput) -> bool {
        self.id == u.id
            && self.kind == u.kind
            && self.issuer == u.issuer
            && self.principal == u.principal
            && self.groups == u.groups
            && self.group_principals == u.group_principals
            && self.permissions == u.permissions
            && self.properties == u.properties
    }
}

/// Memo slots of a [`BindingSet`] this module fills: the bindings as a policy value, and the
/// whole `input.user` object of the first caller that used the set. A directory hands a service
/// account the same set on every request until a change, so both are built once per change.
const VALUE_SLOT: usize = 0;
const USER_SLOT: usize = 1;

/// The bindings of a set as a policy value (memoised in the set).
pub fn bindings_value(set: &BindingSet) -> regorus::Value {
    let build = || {
        regorus::Value::from(
            set.as_slice()
                .iter()
                .map(|b| binding_value(b, set.names()))
                .collect::<Vec<_>>(),
        )
    };
    set.memo(VALUE_SLOT)
        .get_or_init(|| Box::new(build()))
        .downcast_ref::<regorus::Value>()
        .cloned()
        // Only this module fills the slot, always with a value: the fallback never runs.
        .unwrap_or_else(build)
}

/// The authenticated caller.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserInput {
    /// Subject id (client id or user id).
    pub id: Arc<str>,
    /// `serviceaccount` or `user`.
    #[serde(rename = "type", default)]
    pub kind: Arc<str>,
    /// The configured name of the issuer that vouched for a user; absent for service accounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<Arc<str>>,
    /// The caller's principal key (`serviceaccount:<id>`, `user:<issuer>:<id>`): what bindings'
    /// `subjects` name.
    #[serde(default)]
    pub principal: Arc<str>,
    /// Groups, as the issuer names them.
    #[serde(default)]
    pub groups: Arc<[String]>,
    /// The groups' principal keys (`group:<issuer>:<name>`): what bindings' `groups` name.
    #[serde(default)]
    pub group_principals: Arc<[String]>,
    /// Root permissions held directly (root service accounts).
    #[serde(default)]
    pub permissions: Arc<[String]>,
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
    pub company_id: Option<Arc<str>>,
    /// Project.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub project_id: Option<Arc<str>>,
    /// Environment.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub env_id: Option<Arc<str>>,
}

/// The matched route.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteInput {
    /// Route id.
    pub id: Arc<str>,
    /// Required permission at the resource.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub permission: Option<Arc<str>>,
    /// Or a rule in package `iamgate.rules`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rule: Option<Arc<str>>,
}

pub use crate::model::grant::{GrantInput, TargetInput};

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
    /// The account or identity whose existence or credentials the request changes.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub target: Option<TargetInput>,
}

use regorus::Value;
use std::collections::BTreeMap as Map;

/// Every key of the input document, built once: a per-request object then clones reference
/// counts instead of allocating its key strings.
struct Keys {
    method: Value,
    path: Value,
    path_params: Value,
    query: Value,
    headers: Value,
    principal: Value,
    groups: Value,
    permissions: Value,
    resource: Value,
    role: Value,
    resource_type: Value,
    resource_id: Value,
    company_id: Value,
    removes: Value,
    authority: Value,
    binding_id: Value,
    subjects: Value,
    roles: Value,
    empty_object: Value,
    request_object: Template,
    user_object: Shape<9>,
    top_object: Shape<6>,
    resource_object: Shape<3>,
    route_object: Shape<3>,
}

/// An object some of whose keys may be absent: one frozen template per combination of present
/// keys, built on first use, filled like a [`Template`].
struct Shape<const N: usize> {
    keys: [Value; N],
    forms: Vec<std::sync::OnceLock<Template>>,
}

impl<const N: usize> Shape<N> {
    fn new(keys: [&Value; N]) -> Self {
        Self {
            keys: keys.map(Value::clone),
            forms: (0..1usize << N)
                .map(|_| std::sync::OnceLock::new())
                .collect(),
        }
    }

    /// The object with the present `values` (in key order) under their keys.
    fn fill(&self, values: [Option<Value>; N]) -> Value {
        let mask = values
            .iter()
            .enumerate()
            .fold(0usize, |m, (i, v)| if v.is_some() { m | 1 << i } else { m });
        let Some(form) = self.forms.get(mask) else {
            return Value::new_object();
        };
        let form = form.get_or_init(|| {
            let present: Vec<&Value> = (0..N)
                .filter(|i| mask & (1 << i) != 0)
                .filter_map(|i| self.keys.get(i))
                .collect();
            Template::new(&present)
        });
        form.fill(
            self.keys
                .iter()
                .zip(values)
                .filter_map(|(k, v)| v.map(|v| (k, v))),
        )
    }
}

/// An object whose keys are always the same, frozen once. A per-request copy replaces the values
/// in place, which costs one allocation instead of building, sorting and freezing a map.
struct Template(Value);

impl Template {
    fn new(keys: &[&Value]) -> Self {
        Self(Value::from(
            keys.iter()
                .map(|k| ((*k).clone(), Value::Null))
                .collect::<Map<_, _>>(),
        ))
    }

    /// The object with `pairs` as its values; every key must be one of the template's.
    fn fill<'k>(&self, pairs: impl IntoIterator<Item = (&'k Value, Value)>) -> Value {
        let mut v = self.0.clone();
        if let Ok(o) = v.as_object_mut() {
            for (k, x) in pairs {
                o.insert(k.clone(), x);
            }
        }
        v
    }
}

static KEYS: std::sync::LazyLock<Keys> = std::sync::LazyLock::new(|| {
    let (request, user, resource, route, grants, target) = (
        s("request"),
        s("user"),
        s("resource"),
        s("route"),
        s("grants"),
        s("target"),
    );
    let (method, path, path_params, query, headers) = (
        s("method"),
        s("path"),
        s("pathParams"),
        s("query"),
        s("headers"),
    );
    let (company_id, project_id, env_id, permission, rule) = (
        s("companyId"),
        s("projectId"),
        s("envId"),
        s("permission"),
        s("rule"),
    );
    let (id, kind, issuer, principal, groups, group_principals) = (
        s("id"),
        s("type"),
        s("issuer"),
        s("principal"),
        s("groups"),
        s("groupPrincipals"),
    );
    let (permissions, bindings, properties) = (s("permissions"), s("bindings"), s("properties"));
    Keys {
        request_object: Template::new(&[&method, &path, &path_params, &query, &headers]),
        user_object: Shape::new([
            &id,
            &kind,
            &issuer,
            &principal,
            &groups,
            &group_principals,
            &permissions,
            &bindings,
            &properties,
        ]),
        top_object: Shape::new([&request, &user, &resource, &route, &grants, &target]),
        resource_object: Shape::new([&company_id, &project_id, &env_id]),
        route_object: Shape::new([&id, &permission, &rule]),
        method,
        path,
        path_params,
        query,
        headers,
        principal,
        groups,
        permissions,
        resource,
        role: s("role"),
        resource_type: s("resourceType"),
        resource_id: s("resourceId"),
        company_id,
        removes: s("removes"),
        authority: s("authority"),
        binding_id: s("bindingId"),
        subjects: s("subjects"),
        roles: s("roles"),
        empty_object: Value::new_object(),
    }
});

fn s(v: &str) -> Value {
    Value::String(v.into())
}

/// `v` as a shared string, without allocating for the few values most requests carry (methods,
/// caller types).
pub fn interned(v: &str) -> Arc<str> {
    static COMMON: std::sync::LazyLock<Vec<Arc<str>>> = std::sync::LazyLock::new(|| {
        [
            "GET",
            "POST",
            "PUT",
            "PATCH",
            "DELETE",
            "HEAD",
            "OPTIONS",
            "serviceaccount",
            "user",
        ]
        .into_iter()
        .map(Arc::from)
        .collect()
    });
    COMMON
        .iter()
        .find(|c| ***c == *v)
        .cloned()
        .unwrap_or_else(|| Arc::from(v))
}

/// A shared string as a policy value: regorus' strings are the same `Arc<str>`, so no copy.
fn shared(v: &Arc<str>) -> Value {
    Value::String(v.clone())
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

/// A binding as a policy value (field names as in the Rönd data model). Its strings are the
/// names table's own `Arc<str>`s: no copy.
pub fn binding_value(b: &StoredBinding, names: &NameList) -> Value {
    let k = &*KEYS;
    let name = |sym| names.shared(sym).map_or_else(|| s(""), shared);
    let list =
        |l: crate::model::interned::Syms<'_>| Value::from(l.iter().map(name).collect::<Vec<_>>());
    object([
        (&k.binding_id, Some(s(b.id()))),
        (&k.subjects, Some(list(b.subjects()))),
        (&k.groups, Some(list(b.groups()))),
        (&k.roles, Some(list(b.roles()))),
        (&k.permissions, Some(list(b.permissions()))),
        (
            &k.resource,
            b.resource().map(|(t, id, company)| {
                object([
                    (&k.resource_type, Some(name(t))),
                    (&k.resource_id, Some(name(id))),
                    (&k.company_id, company.map(name)),
                ])
            }),
        ),
    ])
}

impl UserInput {
    /// `input.user` as a policy value, memoised with the caller's binding set.
    pub fn value(&self) -> Value {
        let memo = self.bindings.memo(USER_SLOT);
        match memo.get().and_then(|m| m.downcast_ref::<UserMemo>()) {
            Some(m) if m.is_for(self) => m.value.clone(),
            Some(_) => self.build(),
            None => {
                let value = self.build();
                let _ = memo.set(Box::new(UserMemo {
                    id: self.id.clone(),
                    kind: self.kind.clone(),
                    issuer: self.issuer.clone(),
                    principal: self.principal.clone(),
                    groups: self.groups.clone(),
                    group_principals: self.group_principals.clone(),
                    permissions: self.permissions.clone(),
                    properties: self.properties.clone(),
                    value: value.clone(),
                }));
                value
            }
        }
    }

    fn build(&self) -> Value {
        let k = &*KEYS;
        let properties = match &self.properties {
            serde_json::Value::Null => k.empty_object.clone(),
            other => Value::from(other.clone()),
        };
        k.user_object.fill([
            Some(shared(&self.id)),
            Some(shared(&self.kind)),
            self.issuer.as_ref().map(shared),
            Some(shared(&self.principal)),
            Some(strings(&self.groups)),
            Some(strings(&self.group_principals)),
            Some(strings(&self.permissions)),
            Some(bindings_value(&self.bindings)),
            Some(properties),
        ])
    }
}

impl DecisionInput {
    /// Builds the engine's input value directly (no JSON round trip: this runs per request).
    pub fn to_value(&self) -> Result<Value, serde_json::Error> {
        let k = &*KEYS;
        let r = &self.request;
        let grant_list = |gs: &[GrantInput]| {
            Value::from(
                gs.iter()
                    .map(|g| {
                        object([
                            (&k.role, g.role.as_deref().map(s)),
                            (&k.resource_type, g.resource_type.as_deref().map(s)),
                            (&k.resource_id, g.resource_id.as_deref().map(s)),
                            (&k.company_id, g.company_id.as_deref().map(s)),
                            (&k.removes, g.removes.as_deref().map(strings)),
                            (&k.permissions, g.permissions.as_deref().map(strings)),
                        ])
                    })
                    .collect::<Vec<_>>(),
            )
        };
        let grants = self.grants.as_deref().map(grant_list);
        let target = self.target.as_ref().map(|t| {
            object([
                (&k.principal, Some(s(&t.principal))),
                (&k.authority, Some(grant_list(&t.authority))),
            ])
        });
        let request = k.request_object.fill([
            (&k.method, shared(&r.method)),
            (&k.path, shared(&r.path)),
            (&k.path_params, string_map(&r.path_params)),
            (&k.query, string_map(&r.query)),
            (&k.headers, string_map(&r.headers)),
        ]);
        let user = self.user.value();
        let resource = k.resource_object.fill([
            self.resource.company_id.as_ref().map(shared),
            self.resource.project_id.as_ref().map(shared),
            self.resource.env_id.as_ref().map(shared),
        ]);
        let route = k.route_object.fill([
            Some(shared(&self.route.id)),
            self.route.permission.as_ref().map(shared),
            self.route.rule.as_ref().map(shared),
        ]);
        Ok(k.top_object.fill([
            Some(request),
            Some(user),
            Some(resource),
            Some(route),
            grants,
            target,
        ]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Binding, BindingResource};

    #[test]
    fn common_strings_are_shared_and_others_copied() {
        assert!(Arc::ptr_eq(&interned("GET"), &interned("GET")));
        assert!(Arc::ptr_eq(&interned("user"), &interned("user")));
        assert_eq!(&*interned("PROPFIND"), "PROPFIND");
        assert_eq!(&*interned(""), "");
    }

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
                issuer: Some("idp".into()),
                principal: "user:idp:u".into(),
                groups: vec!["g".into()].into(),
                group_principals: vec!["group:idp:g".into()].into(),
                permissions: vec!["console.root.view".into()].into(),
                bindings: BindingSet::new(vec![
                    Binding {
                        binding_id: "b".into(),
                        subjects: vec!["u".into()],
                        groups: vec![],
                        roles: vec!["guest".into()],
                        permissions: vec![],
                        resource: Some(BindingResource::scoped("project", "p1", "c1")),
                    },
                    Binding {
                        binding_id: "c".into(),
                        subjects: vec![],
                        groups: vec!["g".into()],
                        roles: vec![],
                        permissions: vec!["x".into()],
                        resource: Some(BindingResource::console()),
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
                company_id: Some("c1".into()),
                removes: Some(vec!["reporter".into()]),
                permissions: None,
            }]),
            target: Some(TargetInput {
                principal: "serviceaccount:x".into(),
                authority: vec![GrantInput {
                    role: None,
                    resource_type: None,
                    resource_id: None,
                    company_id: None,
                    removes: None,
                    permissions: Some(vec!["console.root.view".into()]),
                }],
            }),
        };
        let via_json = Value::from(serde_json::to_value(&input).unwrap());
        assert_eq!(input.to_value().unwrap(), via_json);
    }
}
