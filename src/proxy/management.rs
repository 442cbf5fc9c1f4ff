//! The management API: the handlers of the routes the route table marks
//! `local`. They run at the end of the gateway's request path, after authentication and the
//! policy (route permission and no-escalation) allowed the request, in place of the upstream.
//!
//! Bodies are checked field by field so every error names its field: unknown fields, wrong
//! types, unknown roles and roles not allowed at a level are 400; nothing is written then.

use crate::authn::bearer::Caller;
use crate::error::{ApiError, Body, json};
use crate::iam::manage::{
    EnvRole, ManageError, Manager, ProjectRole, ResourceFault, RoleRequest, Scope, SubjectKind,
    auth_method, check_id,
};
use crate::iam::{NewAccount, Owner};
use crate::model::RoleModel;
use crate::proxy::route::PathParams;
use crate::util::unix_now;
use http::{HeaderValue, Response, StatusCode};
use serde_json::{Map, Value};

/// Largest `per_page` of a listing.
pub const MAX_PER_PAGE: usize = 200;

/// One management request, as the gateway hands it over.
#[derive(Debug)]
pub struct LocalRequest<'a> {
    /// The authenticated caller.
    pub caller: &'a Caller,
    /// Path parameters.
    pub params: &'a PathParams,
    /// Query pairs.
    pub query: &'a [(String, String)],
    /// The JSON body, if any.
    pub body: Option<&'a Value>,
    /// The role model of the live policy.
    pub model: &'a RoleModel,
    /// What the policy decided on ([`policy_facts`] before the decision): the write goes ahead
    /// only if the facts are the same under the write lock.
    pub decided: &'a PolicyFacts,
}

fn bad(field: impl Into<String>, message: impl Into<String>) -> ManageError {
    ManageError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

impl ManageError {
    /// The JSON response.
    pub fn into_response(self) -> Response<Body> {
        let status = match &self {
            Self::Invalid { .. } => StatusCode::BAD_REQUEST,
            Self::NotFound(_) | Self::Unknown { .. } => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Resource { fault, .. } => {
                // The same answers the gateway gives a request naming such a project in a path;
                // the gateway conceals them from the client unless deny reasons are shown.
                let status = match fault {
                    ResourceFault::Unknown => StatusCode::NOT_FOUND,
                    ResourceFault::OtherCompany => StatusCode::FORBIDDEN,
                };
                return ApiError::new(status, self.to_string())
                    .with_reason(fault.reason())
                    .into_response();
            }
            Self::Unavailable(e) => {
                tracing::warn!(error = %e, "management write failed; nothing was written");
                return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store unavailable")
                    .into_response();
            }
        };
        ApiError::new(status, self.to_string()).into_response()
    }
}

/// A JSON object whose fields are read with their names in every error.
struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

impl<'a> Obj<'a> {
    fn new(v: Option<&'a Value>, path: &str, allowed: &[&str]) -> Result<Self, ManageError> {
        let name = if path.is_empty() { "body" } else { path };
        let map = v
            .ok_or_else(|| bad(name, "a JSON object is required"))?
            .as_object()
            .ok_or_else(|| bad(name, "must be a JSON object"))?;
        for k in map.keys() {
            if !allowed.contains(&k.as_str()) {
                return Err(bad(format!("{}{k}", prefix(path)), "unknown field"));
            }
        }
        Ok(Self {
            map,
            path: path.to_owned(),
        })
    }

    fn field(&self, k: &str) -> String {
        format!("{}{k}", prefix(&self.path))
    }

    fn str(&self, k: &str) -> Result<Option<&'a str>, ManageError> {
        match self.map.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.len() <= 1024 => Ok(Some(s)),
            Some(Value::String(_)) => Err(bad(self.field(k), "longer than 1024 characters")),
            Some(_) => Err(bad(self.field(k), "must be a string")),
        }
    }

    fn required_str(&self, k: &str) -> Result<&'a str, ManageError> {
        self.str(k)?
            .ok_or_else(|| bad(self.field(k), "is required"))
    }

    fn id(&self, k: &str) -> Result<&'a str, ManageError> {
        let v = self.required_str(k)?;
        check_id(&self.field(k), v)?;
        Ok(v)
    }

    fn array(&self, k: &str) -> Result<Option<&'a Vec<Value>>, ManageError> {
        match self.map.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(a)) if a.len() <= 1000 => Ok(Some(a)),
            Some(Value::Array(_)) => Err(bad(self.field(k), "more than 1000 items")),
            Some(_) => Err(bad(self.field(k), "must be an array")),
        }
    }

    fn strings(&self, k: &str) -> Result<Option<Vec<String>>, ManageError> {
        let Some(a) = self.array(k)? else {
            return Ok(None);
        };
        a.iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| bad(format!("{}[{i}]", self.field(k)), "must be a string"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

fn prefix(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("{path}.")
    }
}

/// Parses `role` and `projectsRole` of a body.
fn role_request(o: &Obj<'_>) -> Result<RoleRequest, ManageError> {
    let mut req = RoleRequest {
        role: o.str("role")?.map(str::to_owned),
        projects: vec![],
    };
    if let Some(items) = o.array("projectsRole")? {
        for (i, item) in items.iter().enumerate() {
            let path = format!("projectsRole[{i}]");
            let p = Obj::new(
                Some(item),
                &path,
                &["projectId", "role", "environmentsRole"],
            )?;
            let mut pr = ProjectRole {
                project_id: p.id("projectId")?.to_owned(),
                role: p.str("role")?.map(str::to_owned),
                environments: vec![],
            };
            if let Some(envs) = p.array("environmentsRole")? {
                for (j, e) in envs.iter().enumerate() {
                    let e = Obj::new(
                        Some(e),
                        &format!("{path}.environmentsRole[{j}]"),
                        &["envId", "role"],
                    )?;
                    pr.environments.push(EnvRole {
                        env_id: e.id("envId")?.to_owned(),
                        role: e.required_str("role")?.to_owned(),
                    });
                }
            }
            req.projects.push(pr);
        }
    }
    Ok(req)
}

/// Path parameters that hold an id, on any route.
const PATH_IDS: [&str; 6] = [
    "companyId",
    "projectId",
    "envId",
    "clientId",
    "kid",
    "identityId",
];

/// Holds every id in a path to the rules of ids in bodies ([`check_id`]), before anything else
/// reads it: an id that a body may not carry must not reach the store, a binding key or the
/// policy through a path (`/api/companies/a%2Fb/…`). A user or group may be `issuer:id`; the
/// issuer is matched against the configured names where the principal is resolved.
pub fn check_path_ids(params: &PathParams) -> Result<(), ManageError> {
    for (name, v) in params.iter() {
        if !PATH_IDS.contains(&name) {
            continue;
        }
        let id = match (name, v.split_once(':')) {
            ("identityId", Some((_, id))) => id,
            _ => v,
        };
        check_id(name, id)?;
    }
    Ok(())
}

fn param<'a>(r: &'a LocalRequest<'_>, name: &str) -> Result<&'a str, ManageError> {
    r.params
        .get(name)
        .ok_or_else(|| bad(name, "missing path parameter"))
}

fn created(v: &impl serde::Serialize) -> Response<Body> {
    let mut r = json(
        StatusCode::CREATED,
        serde_json::to_string(v).unwrap_or_default(),
    );
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    r
}

fn ok_json(v: &impl serde::Serialize) -> Response<Body> {
    json(StatusCode::OK, serde_json::to_string(v).unwrap_or_default())
}

fn no_content() -> Response<Body> {
    let mut r = Response::new(crate::error::full(bytes::Bytes::new()));
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

fn new_account(o: &Obj<'_>, owner: Owner) -> Result<NewAccount, ManageError> {
    Ok(NewAccount {
        name: o.required_str("name")?.to_owned(),
        method: auth_method(o.required_str("tokenEndpointAuthMethod")?)?,
        public_key: o.map.get("publicKey").filter(|v| !v.is_null()).cloned(),
        permissions: o.strings("permissions")?.unwrap_or_default(),
        owner,
    })
}

fn kinds(query: &[(String, String)]) -> Result<Vec<SubjectKind>, ManageError> {
    let mut out = Vec::new();
    for (k, v) in query {
        if k != "identityType" {
            continue;
        }
        for t in v.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            out.push(match t {
                "user" => SubjectKind::User,
                "group" => SubjectKind::Group,
                "serviceaccount" | "serviceAccount" => SubjectKind::ServiceAccount,
                other => {
                    return Err(bad(
                        "identityType",
                        format!("`{other}` is not user, group or serviceAccount"),
                    ));
                }
            });
        }
    }
    Ok(out)
}

fn number(
    query: &[(String, String)],
    key: &str,
    default: usize,
    max: usize,
) -> Result<usize, ManageError> {
    match query.iter().find(|(k, _)| k == key) {
        None => Ok(default),
        Some((_, v)) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| bad(key, format!("must be a number from 1 to {max}"))),
    }
}

fn subject_kind(route: &str) -> SubjectKind {
    if route.contains(".user.") {
        SubjectKind::User
    } else if route.contains(".group.") {
        SubjectKind::Group
    } else {
        SubjectKind::ServiceAccount
    }
}

/// The body of `POST /api/service-accounts`.
fn root_create(body: Option<&Value>) -> Result<NewAccount, ManageError> {
    let o = Obj::new(
        body,
        "",
        &[
            "name",
            "permissions",
            "tokenEndpointAuthMethod",
            "publicKey",
        ],
    )?;
    new_account(&o, Owner::Root)
}

/// The body of `POST /api/companies/{companyId}/service-accounts`.
fn company_create(
    body: Option<&Value>,
    company: &str,
) -> Result<(NewAccount, RoleRequest), ManageError> {
    let o = Obj::new(
        body,
        "",
        &[
            "name",
            "role",
            "tokenEndpointAuthMethod",
            "publicKey",
            "projectsRole",
        ],
    )?;
    Ok((
        new_account(&o, Owner::Company(company.to_owned()))?,
        role_request(&o)?,
    ))
}

/// The body of a role edit (`PATCH …/{service-accounts|users|groups}/{id}`).
fn role_edit(body: Option<&Value>) -> Result<RoleRequest, ManageError> {
    role_request(&Obj::new(body, "", &["role", "projectsRole"])?)
}

/// Checks a management request's body before the policy decides on it, so a malformed request
/// gets a 400 naming its field rather than a 403 about what it would grant. Writes nothing.
pub fn prevalidate(
    route: &str,
    body: Option<&Value>,
    model: &RoleModel,
) -> Result<(), ManageError> {
    let roles = &model.roles;
    match route {
        "root.create" => {
            let new = root_create(body)?;
            for (i, p) in new.permissions.iter().enumerate() {
                if !model.is_root_permission(p) {
                    return Err(bad(
                        format!("permissions[{i}]"),
                        format!("`{p}` is not a root permission"),
                    ));
                }
            }
            Ok(())
        }
        "company.sa.create" => {
            let (_, req) = company_create(body, "")?;
            Manager::validate_roles(&req, roles, true)
        }
        "company.sa.roles" | "company.user.roles" | "company.group.roles" => {
            Manager::validate_roles(&role_edit(body)?, roles, false)
        }
        _ => Ok(()),
    }
}

/// What a management request means to the policy: what it grants (`input.grants`, for the
/// no-escalation rule) and the account or identity whose existence or credentials it changes
/// (`input.target`, for the authority rule). Read from the same parse the handler uses, so the
/// policy decides on exactly what will be written. Unknown projects and environments are 404
/// here, before the policy runs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PolicyFacts {
    /// What the request grants.
    pub grants: Option<Vec<crate::policy::input::GrantInput>>,
    /// What it acts on.
    pub target: Option<crate::policy::input::TargetInput>,
}

/// The [`PolicyFacts`] of one management request.
pub fn policy_facts(
    m: &Manager,
    route: &str,
    params: &PathParams,
    body: Option<&Value>,
) -> Result<PolicyFacts, ManageError> {
    let p = |name: &str| {
        params
            .get(name)
            .ok_or_else(|| bad(name, "missing path parameter"))
    };
    let id = || p("clientId").or_else(|_| p("identityId"));
    let company = || p("companyId");
    let target = |scope: Scope, kind: SubjectKind| -> Result<PolicyFacts, ManageError> {
        let principal = m.principal(kind, id()?)?;
        Ok(PolicyFacts {
            grants: None,
            target: m.authority(&scope, &principal),
        })
    };
    match route {
        "root.create" => {
            let new = root_create(body)?;
            Ok(PolicyFacts {
                grants: Some(vec![crate::policy::input::GrantInput::root_permissions(
                    new.permissions,
                )]),
                target: None,
            })
        }
        "company.sa.create" => {
            let company = company()?;
            let (_, req) = company_create(body, company)?;
            m.check_resources(company, &req)?;
            // A new account holds nothing yet: only what the request grants counts.
            Ok(PolicyFacts {
                grants: Some(m.grants(company, "", &req)),
                target: None,
            })
        }
        "company.sa.roles" | "company.user.roles" | "company.group.roles" => {
            let company = company()?;
            let req = role_edit(body)?;
            m.check_resources(company, &req)?;
            let principal = m.principal(subject_kind(route), id()?)?;
            Ok(PolicyFacts {
                grants: Some(m.grants(company, &principal.key(), &req)),
                target: None,
            })
        }
        "company.user.remove"
        | "company.group.remove"
        | "company.sa.delete"
        | "company.sa.key.add"
        | "company.sa.key.remove"
        | "company.sa.secret.rotate" => {
            target(Scope::Company(company()?.to_owned()), subject_kind(route))
        }
        "root.delete" | "root.key.add" | "root.key.remove" | "root.secret.rotate" => {
            target(Scope::Root, SubjectKind::ServiceAccount)
        }
        _ => Ok(PolicyFacts::default()),
    }
}

/// Serves one management route.
pub async fn handle(m: &Manager, route: &str, r: LocalRequest<'_>) -> Response<Body> {
    match dispatch(m, route, &r).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

async fn dispatch(
    m: &Manager,
    route: &str,
    r: &LocalRequest<'_>,
) -> Result<Response<Body>, ManageError> {
    let actor = r.caller.id.as_str();
    let now = unix_now();
    let company_scope = || param(r, "companyId").map(|c| Scope::Company(c.to_owned()));
    let scope = || -> Result<Scope, ManageError> {
        if route.starts_with("root.") {
            Ok(Scope::Root)
        } else {
            company_scope()
        }
    };
    let client_id = || param(r, "clientId").or_else(|_| param(r, "identityId"));
    // Between the decision and the write lock another request may have changed the target (a
    // broader authority, other roles to remove): the facts are computed again under the lock
    // and the write is refused unless the policy saw exactly them.
    let recheck = |m: &Manager| -> Result<(), ManageError> {
        if policy_facts(m, route, r.params, r.body)? == *r.decided {
            Ok(())
        } else {
            Err(ManageError::Conflict(
                "the account or identity changed while this request was decided; retry".to_owned(),
            ))
        }
    };
    let still: crate::iam::manage::Still<'_> = Some(&recheck);
    match route {
        "root.list" => Ok(ok_json(&m.root_accounts())),
        "root.create" => {
            let new = root_create(r.body)?;
            let c = m
                .create_account(actor, new, &RoleRequest::default(), r.model, now, still)
                .await?;
            Ok(created(&c))
        }
        "company.sa.create" => {
            let company = param(r, "companyId")?;
            let (new, roles) = company_create(r.body, company)?;
            let c = m
                .create_account(actor, new, &roles, r.model, now, still)
                .await?;
            Ok(created(&c))
        }
        "root.delete" | "company.sa.delete" => {
            m.delete_account(actor, &scope()?, client_id()?, now, still)
                .await?;
            Ok(no_content())
        }
        "company.sa.list" => Ok(ok_json(&m.company_accounts(param(r, "companyId")?))),
        "company.sa.roles" | "company.user.roles" | "company.group.roles" => {
            let company = param(r, "companyId")?;
            let principal = m.principal(subject_kind(route), client_id()?)?;
            let roles = role_edit(r.body)?;
            if roles.role.is_none() && roles.projects.is_empty() {
                return Err(bad("body", "names no role to change"));
            }
            m.set_roles(
                actor,
                company,
                &principal,
                &roles,
                &r.model.roles,
                now,
                still,
            )
            .await?;
            Ok(no_content())
        }
        "company.user.remove" | "company.group.remove" => {
            let company = param(r, "companyId")?;
            let principal = m.principal(subject_kind(route), client_id()?)?;
            m.remove_identity(actor, company, &principal, now, still)
                .await?;
            Ok(no_content())
        }
        "root.key.add" | "company.sa.key.add" => {
            let o = Obj::new(r.body, "", &["publicKey"])?;
            let key = o
                .map
                .get("publicKey")
                .filter(|v| !v.is_null())
                .ok_or_else(|| bad("publicKey", "is required"))?;
            let kid = m
                .add_key(actor, &scope()?, client_id()?, key, now, still)
                .await?;
            Ok(created(&serde_json::json!({ "kid": kid })))
        }
        "root.key.remove" | "company.sa.key.remove" => {
            m.remove_key(actor, &scope()?, client_id()?, param(r, "kid")?, now, still)
                .await?;
            Ok(no_content())
        }
        "root.secret.rotate" | "company.sa.secret.rotate" => {
            let secret = m
                .rotate_secret(actor, &scope()?, client_id()?, now, still)
                .await?;
            Ok(created(&serde_json::json!({
                "clientId": client_id()?,
                "clientSecret": secret.expose(),
            })))
        }
        "company.identities" => {
            let company = param(r, "companyId")?;
            let kinds = kinds(r.query)?;
            let project_ids: Vec<String> = r
                .query
                .iter()
                .filter(|(k, _)| k == "projectIds")
                .flat_map(|(_, v)| v.split(','))
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .collect();
            let page = number(r.query, "page", 1, 1_000_000)?;
            let per_page = number(r.query, "per_page", 25, MAX_PER_PAGE)?;
            let all = m.identities(company, &kinds, &project_ids);
            let pages = all.len().div_ceil(per_page).max(1);
            let rows: Vec<Value> = all
                .into_iter()
                .skip((page - 1).saturating_mul(per_page))
                .take(per_page)
                .collect();
            let mut resp = ok_json(&rows);
            if let Ok(v) = HeaderValue::from_str(&pages.to_string()) {
                resp.headers_mut().insert("x-total-pages", v);
            }
            Ok(resp)
        }
        "directory.register" => {
            let project_id = param(r, "projectId")?;
            check_id("projectId", project_id)?;
            let o = Obj::new(r.body, "", &["companyId", "environments"])?;
            let company = o.id("companyId")?.to_owned();
            let environments = o.strings("environments")?.unwrap_or_default();
            for (i, e) in environments.iter().enumerate() {
                check_id(&format!("environments[{i}]"), e)?;
            }
            m.register_project(
                actor,
                crate::iam::directory::Project {
                    project_id: project_id.to_owned(),
                    company_id: company,
                    environments,
                },
                now,
            )
            .await?;
            Ok(no_content())
        }
        "audit.list" => {
            let limit = number(r.query, "limit", 100, 1000)?;
            let records = m.audit(limit).await?;
            Ok(ok_json(&records))
        }
        other => {
            tracing::error!(route = other, "route names an unknown management handler");
            Ok(ApiError::new(StatusCode::NOT_FOUND, "no such route").into_response())
        }
    }
}

/// Route handler names the route table may use with `local:`.
pub const HANDLERS: &[&str] = &[
    "root.list",
    "root.create",
    "root.delete",
    "root.key.add",
    "root.key.remove",
    "root.secret.rotate",
    "company.sa.list",
    "company.sa.create",
    "company.sa.roles",
    "company.sa.delete",
    "company.sa.key.add",
    "company.sa.key.remove",
    "company.sa.secret.rotate",
    "company.user.roles",
    "company.group.roles",
    "company.user.remove",
    "company.group.remove",
    "company.identities",
    "directory.register",
    "audit.list",
];
