//! The IAM write path behind the management API: service accounts, their credentials and role
//! bindings, and directory entries. It runs after the gateway authorized the request.
//!
//! Every operation validates first, then builds one batch (the writes, the binding and directory
//! changes, and an audit record with the state before and after), commits it in one
//! transaction, and only then publishes it to the in-memory snapshots. A failed commit publishes
//! nothing; a role assignment is checked against the live policy's role data (unknown role, role
//! not allowed at that level).

use super::directory::{Directory, IamChange, Project};
use super::{
    Accounts, AuthMethod, Binding, BindingResource, ClientKey, ClientSecret, Created, Credential,
    IamError, NewAccount, Owner, Principal, ServiceAccount, build_account,
};
use crate::model::RoleInfo;
use crate::model::grant::{GrantInput, TargetInput};
use crate::store::{AuditRecord, StoreError, Write};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// What kind of identity a binding names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectKind {
    /// A service account (`subjects`).
    ServiceAccount,
    /// A user (`subjects`).
    User,
    /// A group (`groups`).
    Group,
}

impl SubjectKind {
    /// The Console's `identityType`.
    pub fn identity_type(self) -> &'static str {
        match self {
            Self::ServiceAccount => "serviceAccount",
            Self::User => "user",
            Self::Group => "group",
        }
    }
}

/// One environment role of a role request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvRole {
    /// `envId`.
    pub env_id: String,
    /// Role; `""` removes.
    pub role: String,
}

/// One project's roles of a role request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectRole {
    /// Project `_id`.
    pub project_id: String,
    /// Project role; `Some("")` removes; `None` leaves it.
    pub role: Option<String>,
    /// Environment roles.
    pub environments: Vec<EnvRole>,
}

/// A role request: the company role and project / environment roles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleRequest {
    /// Company role; `Some("")` removes; `None` leaves it.
    pub role: Option<String>,
    /// Project roles.
    pub projects: Vec<ProjectRole>,
}

/// Which accounts an operation may touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Root accounts only.
    Root,
    /// Accounts of this company only.
    Company(String),
}

impl Scope {
    fn admits(&self, a: &ServiceAccount) -> bool {
        match (self, &a.owner) {
            (Self::Root, Owner::Root) => true,
            (Self::Company(c), Owner::Company(o)) => c == o,
            _ => false,
        }
    }
}

/// A service account as listed (never a secret or a hash).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountView {
    /// Id.
    pub client_id: String,
    /// Name.
    pub name: String,
    /// `client_secret_basic` or `private_key_jwt`.
    pub auth_method: &'static str,
    /// Company roles (company accounts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub company_roles: Option<Vec<String>>,
    /// Root permissions (root accounts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Vec<String>>,
    /// Key ids (`private_key_jwt`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kids: Option<Vec<String>>,
    /// Creation time.
    pub client_id_issued_at: i64,
    /// Last token, Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_login: Option<i64>,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ManageError {
    ManageError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// Why a management operation failed; each maps to one response.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    /// 400 naming the field.
    #[error("{field}: {message}")]
    Invalid {
        /// The field (`projectsRole[0].role`).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// 404.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// 404 naming the field that names something unknown (a project, an environment).
    #[error("{field}: {message}")]
    Unknown {
        /// The field (`projectsRole[0].projectId`).
        field: String,
        /// What is unknown.
        message: String,
    },
    /// 409.
    #[error("{0}")]
    Conflict(String),
    /// A project or environment the request names is unknown (404 when deny reasons are shown)
    /// or another company's (403 when shown). Either tells whether it exists, so by default the
    /// client gets a plain 403 and only the decision log keeps the reason.
    #[error("{field}: {message}")]
    Resource {
        /// The field (`projectsRole[0].projectId`).
        field: String,
        /// What is wrong with it.
        message: String,
        /// Unknown or another company's.
        fault: ResourceFault,
    },
    /// 503: storage failed, nothing was written.
    #[error("store unavailable")]
    Unavailable(String),
}

/// What is wrong with a resource a management request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceFault {
    /// Nobody registered it.
    Unknown,
    /// Another company owns it.
    OtherCompany,
}

impl ResourceFault {
    /// The deny reason it is logged with.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Unknown => "unknown_resource",
            Self::OtherCompany => "resource_mismatch",
        }
    }
}

impl From<IamError> for ManageError {
    fn from(e: IamError) -> Self {
        match e {
            IamError::Invalid { field, message } => invalid(field, message),
            IamError::NotFound => Self::NotFound("service account"),
            IamError::Conflict(c) => Self::Conflict(c),
            IamError::Store(s) => s.into(),
            IamError::Random => Self::Unavailable("randomness unavailable".to_owned()),
        }
    }
}

impl From<StoreError> for ManageError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(c) => Self::Conflict(c),
            other => Self::Unavailable(other.to_string()),
        }
    }
}

/// A check a write runs under the write lock before it reads anything (see `Manager::lock`):
/// `Err` refuses the write.
pub type Still<'a> = Option<&'a (dyn Fn(&Manager) -> Result<(), ManageError> + Send + Sync)>;

/// What an import added and changed (binding ids), and how many it left alone.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportSummary {
    /// Bindings that did not exist.
    pub added: Vec<String>,
    /// Bindings whose stored form differed.
    pub changed: Vec<String>,
    /// Bindings already stored as imported.
    pub unchanged: usize,
}

/// The IAM write path.
#[derive(Clone)]
pub struct Manager {
    accounts: Accounts,
    directory: Directory,
    writer: Arc<tokio::sync::Mutex<()>>,
    secret_grace_secs: i64,
    /// Names of the configured external issuers; the first is the one a bare user or group id
    /// in a management path belongs to.
    issuers: Arc<[String]>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager").finish_non_exhaustive()
    }
}

/// The id of the binding a management request makes for `principal` (a key) at one level: one
/// binding per identity and resource, so a role edit replaces it.
pub fn binding_id(company: &str, principal: &str, level: &str, rid: &str) -> String {
    format!("{company}/{principal}/{level}/{rid}")
}

/// Ids in paths and bodies are URL-safe and short.
pub fn check_id(field: &str, v: &str) -> Result<(), ManageError> {
    if crate::model::safe_id(v) {
        Ok(())
    } else {
        Err(invalid(
            field,
            "must be 1 to 128 characters of [A-Za-z0-9-._~]",
        ))
    }
}

fn audit(
    actor: &str,
    action: &str,
    target: &str,
    before: Option<Value>,
    after: Option<Value>,
    now: i64,
) -> Write {
    Write::Audit(AuditRecord {
        at: now,
        actor: actor.to_owned(),
        action: action.to_owned(),
        target: target.to_owned(),
        before,
        after,
    })
}

fn account_json(a: &ServiceAccount) -> Value {
    json!({
        "clientId": a.client_id,
        "name": a.name,
        "company": match &a.owner { Owner::Company(c) => Some(c.clone()), Owner::Root => None },
        "authMethod": a.credential.method().as_str(),
        "permissions": a.permissions,
        "kids": match &a.credential { Credential::Keys(k) => k.iter().map(|k| k.kid.clone()).collect(), Credential::Secret(_) => Vec::new() },
    })
}

impl Manager {
    /// A manager over the account service and the directory. `secret_grace_secs` is how long a
    /// rotated secret keeps working.
    pub fn new(accounts: Accounts, directory: Directory, secret_grace_secs: i64) -> Self {
        Self {
            accounts,
            directory,
            writer: Arc::new(tokio::sync::Mutex::new(())),
            secret_grace_secs,
            issuers: Arc::from(Vec::new()),
        }
    }

    /// Users and groups belong to these external issuers (configured names, the default first).
    pub fn with_issuers(mut self, names: Vec<String>) -> Self {
        self.issuers = Arc::from(names);
        self
    }

    /// The principal a management path names: `/service-accounts/{clientId}`, or
    /// `/users/{id}` and `/groups/{id}` where `id` is `<issuer>:<id>`, or a bare id of the
    /// first configured issuer.
    pub fn principal(&self, kind: SubjectKind, id: &str) -> Result<Principal, ManageError> {
        const FIELD: &str = "identityId";
        if kind == SubjectKind::ServiceAccount {
            check_id(FIELD, id)?;
            return Ok(Principal::ServiceAccount(id.to_owned()));
        }
        let (issuer, id) = match id.split_once(':') {
            Some((issuer, rest)) => {
                if !self.issuers.iter().any(|i| i == issuer) {
                    return Err(ManageError::Unknown {
                        field: FIELD.to_owned(),
                        message: format!("`{issuer}` is not a configured external issuer"),
                    });
                }
                (issuer.to_owned(), rest)
            }
            None => match self.issuers.first() {
                Some(default) => (default.clone(), id),
                None => {
                    return Err(invalid(
                        FIELD,
                        "users and groups belong to an external issuer, and none is configured (external_issuers)",
                    ));
                }
            },
        };
        check_id(FIELD, id)?;
        Ok(match kind {
            SubjectKind::Group => Principal::Group {
                issuer,
                name: id.to_owned(),
            },
            _ => Principal::User {
                issuer,
                id: id.to_owned(),
            },
        })
    }

    /// How the management API shows a principal: a bare id for service accounts and for users
    /// and groups of the default issuer, `<issuer>:<id>` for the others (the form its paths take).
    pub fn display_id(&self, p: &Principal) -> String {
        match p {
            Principal::ServiceAccount(id) => id.clone(),
            Principal::User { issuer, id: name } | Principal::Group { issuer, name } => {
                if self.issuers.first() == Some(issuer) {
                    name.clone()
                } else {
                    format!("{issuer}:{name}")
                }
            }
        }
    }

    /// The roles `principal` (a key) holds now on one resource of `company`, through the
    /// binding a management request made there.
    pub fn current_roles(
        &self,
        company: &str,
        principal: &str,
        level: &str,
        rid: &str,
    ) -> Vec<String> {
        self.directory
            .binding(&binding_id(company, principal, level, rid))
            .map(|b| b.roles)
            .unwrap_or_default()
    }

    /// The project `pid` as the directory knows it, in `company`: 404 naming `field` when it is
    /// unknown, 403 when another company owns it.
    pub fn project_in(
        &self,
        company: &str,
        pid: &str,
        field: &str,
    ) -> Result<Arc<Project>, ManageError> {
        match self.directory.project(pid) {
            None => Err(ManageError::Resource {
                field: field.to_owned(),
                message: format!("project `{pid}` is not known (register it first)"),
                fault: ResourceFault::Unknown,
            }),
            Some(p) if p.company_id != company => Err(ManageError::Resource {
                field: field.to_owned(),
                message: format!("project {pid} does not belong to company {company}"),
                fault: ResourceFault::OtherCompany,
            }),
            Some(p) => Ok(p),
        }
    }

    /// The authority of the account or identity `principal` as the policy weighs it
    /// (`input.target`): a root account's permissions, then every role the principal holds in
    /// `company` (company accounts, users, groups) and at console level, written as grants.
    /// `None` when a service account is not in `scope` (the handler answers 404).
    pub fn authority(&self, scope: &Scope, principal: &Principal) -> Option<TargetInput> {
        let key = principal.key();
        let mut authority = Vec::new();
        if let Principal::ServiceAccount(id) = principal {
            let account = self.account_in(scope, id).ok()?;
            if account.owner == Owner::Root {
                authority.push(GrantInput::root_permissions(account.permissions.to_vec()));
            }
        }
        let company = match scope {
            Scope::Company(c) => Some(c.as_str()),
            Scope::Root => None,
        };
        for b in self.directory.bindings_naming(&key, principal.is_group()) {
            let Some(r) = &b.resource else { continue };
            let counts = r.resource_type == "console"
                || company.is_some_and(|c| self.directory.company_of(&b).as_deref() == Some(c));
            if !counts {
                continue;
            }
            for role in &b.roles {
                authority.push(GrantInput {
                    role: Some(role.clone()),
                    resource_type: Some(r.resource_type.clone()),
                    resource_id: Some(r.resource_id.clone()),
                    company_id: r.company_id.clone(),
                    removes: None,
                    permissions: None,
                });
            }
            if !b.permissions.is_empty() {
                authority.push(GrantInput::root_permissions(b.permissions.clone()));
            }
        }
        Some(TargetInput {
            principal: key,
            authority,
        })
    }

    /// Takes the write lock, then runs `still`: a write acts on the state it finds under the
    /// lock, so what the policy decided on (the target's authority, the roles a request removes)
    /// must still hold there, or a change that landed in between would be written unchecked.
    async fn lock(&self, still: Still<'_>) -> Result<tokio::sync::MutexGuard<'_, ()>, ManageError> {
        let guard = self.writer.lock().await;
        if let Some(check) = still {
            check(self)?;
        }
        Ok(guard)
    }

    /// The directory.
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// The account service.
    pub fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    /// Rewrites bindings of an earlier version in one audited transaction; returns how many
    /// changed. A bare subject becomes the service account of that client id if one exists and a
    /// user otherwise; users and groups without an issuer go to the first configured issuer (or
    /// stay unassigned, `user::<id>`, matching nobody, until one is configured); a resource gets
    /// its company from the directory (a binding on an unknown project keeps none and matches
    /// nothing); a binding without a resource becomes an explicit console-level binding; and the
    /// id of a binding the management API made follows its new principal.
    pub async fn upgrade_bindings(&self, now: i64) -> Result<usize, ManageError> {
        let _guard = self.writer.lock().await;
        let default = self.issuers.first().map(String::as_str).unwrap_or("");
        let snapshot = self.accounts.snapshot();
        // A user or group without an issuer (bare, or `user::<id>` / `group::<name>` left by an
        // earlier upgrade with no issuer configured) goes to the default issuer.
        let assign = |prefix: &str, name: &str| format!("{prefix}{default}:{name}");
        let subject = |s: &str| -> String {
            match Principal::parse(s) {
                Some(Principal::User { issuer, id }) if issuer.is_empty() => {
                    assign(crate::model::binding::USER_PREFIX, &id)
                }
                Some(_) => s.to_owned(),
                None if snapshot.get(s).is_some() => Principal::service_account(s),
                None => assign(crate::model::binding::USER_PREFIX, s),
            }
        };
        let group = |g: &str| -> String {
            match Principal::parse(g) {
                Some(Principal::Group { issuer, name }) if issuer.is_empty() => {
                    assign(crate::model::binding::GROUP_PREFIX, &name)
                }
                Some(Principal::Group { .. }) => g.to_owned(),
                _ => {
                    let bare = g
                        .strip_prefix(crate::model::binding::GROUP_PREFIX)
                        .map_or(g, |rest| rest.strip_prefix(':').unwrap_or(rest));
                    assign(crate::model::binding::GROUP_PREFIX, bare)
                }
            }
        };
        let mut writes = Vec::new();
        let mut changed = Vec::new();
        for old in self.directory.legacy_bindings() {
            let mut b = old.clone();
            b.subjects = old.subjects.iter().map(|s| subject(s)).collect();
            b.groups = old.groups.iter().map(|g| group(g)).collect();
            b.resource = Some(match old.resource.clone() {
                None => BindingResource::console(),
                Some(mut r) => {
                    if r.company_id.is_none() {
                        r.company_id = match r.resource_type.as_str() {
                            "company" => Some(r.resource_id.clone()),
                            "project" => self
                                .directory
                                .project(&r.resource_id)
                                .map(|p| p.company_id.clone()),
                            "environment" => r
                                .resource_id
                                .split_once(':')
                                .and_then(|(p, _)| self.directory.project(p))
                                .map(|p| p.company_id.clone()),
                            _ => None,
                        };
                    }
                    r
                }
            });
            // A management binding's id is `<company>/<principal>/<level>/<rid>`; the earlier
            // form was `<company>/<sa|user|group>/<id>/<level>/<rid>`.
            let parts: Vec<&str> = old.binding_id.split('/').collect();
            let new_key = b.subjects.first().or(b.groups.first()).cloned();
            if let (Some(r), Some(key), 1) =
                (&b.resource, &new_key, b.subjects.len() + b.groups.len())
            {
                let legacy = match parts.as_slice() {
                    [c, "sa" | "user" | "group", _, level, rid] => Some((*c, *level, *rid)),
                    [c, _, level, rid] => Some((*c, *level, *rid)),
                    _ => None,
                };
                if let Some((c, level, rid)) = legacy
                    && level == r.resource_type
                    && rid == r.resource_id
                {
                    b.binding_id = binding_id(c, key, level, rid);
                }
            }
            if b == old {
                continue;
            }
            if b.binding_id != old.binding_id {
                writes.push(Write::Iam(IamChange::DeleteBinding(old.binding_id.clone())));
            }
            writes.push(Write::Iam(IamChange::PutBinding(b.clone())));
            changed.push(json!({"before": old, "after": b}));
        }
        let n = changed.len();
        if n > 0 {
            writes.push(audit(
                "iamgate",
                "bindings.upgrade",
                "bindings",
                None,
                Some(Value::from(changed)),
                now,
            ));
            self.commit(writes, vec![]).await?;
        }
        Ok(n)
    }

    /// Commits `writes` in one transaction, then publishes account and directory changes.
    async fn commit(
        &self,
        writes: Vec<Write>,
        accounts: Vec<(String, Option<ServiceAccount>)>,
    ) -> Result<(), ManageError> {
        let iam: Vec<IamChange> = writes
            .iter()
            .filter_map(|w| match w {
                Write::Iam(c) => Some(c.clone()),
                _ => None,
            })
            .collect();
        self.accounts.store().commit(writes).await?;
        for (id, a) in accounts {
            self.accounts.snapshot().apply(&id, a);
        }
        if !iam.is_empty() {
            self.directory.publish(iam).await;
        }
        Ok(())
    }

    fn account_in(
        &self,
        scope: &Scope,
        client_id: &str,
    ) -> Result<Arc<ServiceAccount>, ManageError> {
        self.accounts
            .snapshot()
            .get(client_id)
            .filter(|a| scope.admits(a))
            .ok_or(ManageError::NotFound("service account"))
    }

    fn check_name_free(&self, owner: &Owner, name: &str) -> Result<(), ManageError> {
        let taken = self
            .accounts
            .snapshot()
            .all()
            .iter()
            .any(|a| a.owner == *owner && a.name == name);
        if taken {
            return Err(ManageError::Conflict(format!(
                "a service account named {name:?} exists"
            )));
        }
        Ok(())
    }

    /// Checks every role of a request against the policy's roles (exists, allowed at its level;
    /// `""` only where removals are allowed). No state is read.
    pub fn validate_roles(
        req: &RoleRequest,
        roles: &HashMap<String, RoleInfo>,
        for_create: bool,
    ) -> Result<(), ManageError> {
        let check = |field: String, role: &str, level: &str| -> Result<(), ManageError> {
            if role.is_empty() {
                return if for_create {
                    Err(invalid(field, "must name a role"))
                } else {
                    Ok(())
                };
            }
            let info = roles
                .get(role)
                .ok_or_else(|| invalid(field.clone(), format!("unknown role `{role}`")))?;
            if !info.levels.iter().any(|l| l == level) {
                return Err(invalid(
                    field,
                    format!("role `{role}` cannot be assigned at {level} level"),
                ));
            }
            Ok(())
        };
        if let Some(r) = &req.role {
            check("role".to_owned(), r, "company")?;
        }
        for (i, p) in req.projects.iter().enumerate() {
            if let Some(r) = &p.role {
                check(format!("projectsRole[{i}].role"), r, "project")?;
            }
            for (j, e) in p.environments.iter().enumerate() {
                check(
                    format!("projectsRole[{i}].environmentsRole[{j}].role"),
                    &e.role,
                    "environment",
                )?;
            }
        }
        Ok(())
    }

    /// Checks that every project and environment a role request names is known in `company`
    /// (404 naming the field otherwise, 403 for another company's project). Writes nothing.
    pub fn check_resources(&self, company: &str, req: &RoleRequest) -> Result<(), ManageError> {
        let mut seen = std::collections::HashSet::new();
        for (i, p) in req.projects.iter().enumerate() {
            let at = format!("projectsRole[{i}]");
            if !seen.insert(p.project_id.as_str()) {
                return Err(invalid(format!("{at}.projectId"), "named twice"));
            }
            let known = self.project_in(company, &p.project_id, &format!("{at}.projectId"))?;
            for (j, e) in p.environments.iter().enumerate() {
                if !known.environments.contains(&e.env_id) {
                    return Err(ManageError::Resource {
                        field: format!("{at}.environmentsRole[{j}].envId"),
                        message: format!(
                            "environment `{}` is not known in project {}",
                            e.env_id, p.project_id
                        ),
                        fault: ResourceFault::Unknown,
                    });
                }
            }
        }
        Ok(())
    }

    /// The grants a role request makes for `principal` in `company`, as the no-escalation rule
    /// weighs them: each role with its level, resource and company, and the roles the principal
    /// holds there now (which the request replaces or removes).
    pub fn grants(&self, company: &str, principal: &str, req: &RoleRequest) -> Vec<GrantInput> {
        let grant = |role: &str, level: &str, rid: String| GrantInput {
            role: Some(role.to_owned()),
            removes: Some(self.current_roles(company, principal, level, &rid)),
            resource_type: Some(level.to_owned()),
            resource_id: Some(rid),
            company_id: Some(company.to_owned()),
            permissions: None,
        };
        let mut out = Vec::new();
        if let Some(role) = &req.role {
            out.push(grant(role, "company", company.to_owned()));
        }
        for p in &req.projects {
            if let Some(role) = &p.role {
                out.push(grant(role, "project", p.project_id.clone()));
            }
            for e in &p.environments {
                out.push(grant(
                    &e.role,
                    "environment",
                    format!("{}:{}", p.project_id, e.env_id),
                ));
            }
        }
        out
    }

    /// Validates a role request against the policy's roles and the directory and builds its
    /// binding changes. `for_create` forbids removals.
    fn role_changes(
        &self,
        company: &str,
        principal: &Principal,
        req: &RoleRequest,
        roles: &HashMap<String, RoleInfo>,
        for_create: bool,
    ) -> Result<Vec<IamChange>, ManageError> {
        Self::validate_roles(req, roles, for_create)?;
        self.check_resources(company, req)?;
        let key = principal.key();
        let change = |level: &str, rid: &str, role: &str| {
            let id = binding_id(company, &key, level, rid);
            if role.is_empty() {
                return IamChange::DeleteBinding(id);
            }
            let (subjects, groups) = if principal.is_group() {
                (vec![], vec![key.clone()])
            } else {
                (vec![key.clone()], vec![])
            };
            IamChange::PutBinding(Binding {
                binding_id: id,
                subjects,
                groups,
                roles: vec![role.to_owned()],
                permissions: vec![],
                resource: Some(BindingResource::scoped(level, rid, company)),
            })
        };
        let mut out = Vec::new();
        if let Some(role) = &req.role {
            out.push(change("company", company, role));
        }
        for p in &req.projects {
            if let Some(role) = &p.role {
                out.push(change("project", &p.project_id, role));
            }
            for e in &p.environments {
                let rid = format!("{}:{}", p.project_id, e.env_id);
                out.push(change("environment", &rid, &e.role));
            }
        }
        Ok(out)
    }

    /// Creates an account (root, or company with roles) in one transaction.
    pub async fn create_account(
        &self,
        actor: &str,
        new: NewAccount,
        roles_req: &RoleRequest,
        roles: &crate::model::RoleModel,
        now: i64,
        still: Still<'_>,
    ) -> Result<Created, ManageError> {
        let _guard = self.lock(still).await?;
        let (account, created) =
            build_account(new, self.accounts.hasher(), &roles.root_permissions, now)?;
        self.check_name_free(&account.owner, &account.name)?;
        let mut writes = vec![Write::InsertAccount(account.clone())];
        let changes = match &account.owner {
            Owner::Company(c) => self.role_changes(
                c,
                &Principal::ServiceAccount(account.client_id.clone()),
                roles_req,
                &roles.roles,
                true,
            )?,
            Owner::Root => vec![],
        };
        let after = json!({"account": account_json(&account), "bindings": changes_json(&changes)});
        writes.extend(changes.into_iter().map(Write::Iam));
        writes.push(audit(
            actor,
            "service-account.create",
            &account.client_id,
            None,
            Some(after),
            now,
        ));
        let id = account.client_id.clone();
        self.commit(writes, vec![(id, Some(account))]).await?;
        Ok(created)
    }

    /// Deletes an account and every binding naming it.
    pub async fn delete_account(
        &self,
        actor: &str,
        scope: &Scope,
        client_id: &str,
        now: i64,
        still: Still<'_>,
    ) -> Result<(), ManageError> {
        let _guard = self.lock(still).await?;
        let account = self.account_in(scope, client_id)?;
        let key = Principal::service_account(client_id);
        let bindings = self.directory.bindings_naming(&key, false);
        let mut writes = vec![Write::DeleteAccount(client_id.to_owned())];
        for b in &bindings {
            if b.subjects.len() == 1 && b.groups.is_empty() {
                writes.push(Write::Iam(IamChange::DeleteBinding(b.binding_id.clone())));
            } else {
                let mut kept = b.clone();
                kept.subjects.retain(|s| *s != key);
                writes.push(Write::Iam(IamChange::PutBinding(kept)));
            }
        }
        writes.push(audit(
            actor,
            "service-account.delete",
            client_id,
            Some(json!({"account": account_json(&account), "bindings": bindings})),
            None,
            now,
        ));
        self.commit(writes, vec![(client_id.to_owned(), None)])
            .await
    }

    /// Changes the roles of an identity in a company.
    #[allow(clippy::too_many_arguments)] // each is a distinct input of one audited write
    pub async fn set_roles(
        &self,
        actor: &str,
        company: &str,
        principal: &Principal,
        req: &RoleRequest,
        roles: &HashMap<String, RoleInfo>,
        now: i64,
        still: Still<'_>,
    ) -> Result<(), ManageError> {
        let _guard = self.lock(still).await?;
        if let Principal::ServiceAccount(id) = principal {
            self.account_in(&Scope::Company(company.to_owned()), id)?;
        }
        let changes = self.role_changes(company, principal, req, roles, false)?;
        let before: Vec<Binding> = changes
            .iter()
            .filter_map(|c| match c {
                IamChange::PutBinding(b) => self.directory.binding(&b.binding_id),
                IamChange::DeleteBinding(id) => self.directory.binding(id),
                _ => None,
            })
            .collect();
        let after = changes_json(&changes);
        let mut writes: Vec<Write> = changes.into_iter().map(Write::Iam).collect();
        writes.push(audit(
            actor,
            "roles.update",
            &principal.key(),
            Some(json!(before)),
            Some(after),
            now,
        ));
        self.commit(writes, vec![]).await
    }

    /// Writes imported `bindings` (see [`super::import`]) in one audited transaction: each is
    /// added, or replaces the binding of its id when that differs; one equal to what is stored
    /// is left alone, so importing the same documents again changes nothing. With `dry_run`,
    /// nothing is written. Returns what was (or would be) added and changed.
    pub async fn import_bindings(
        &self,
        actor: &str,
        bindings: Vec<Binding>,
        dry_run: bool,
        now: i64,
    ) -> Result<ImportSummary, ManageError> {
        let _guard = self.lock(None).await?;
        let mut summary = ImportSummary::default();
        let mut before = Vec::new();
        let mut changes = Vec::new();
        for b in bindings {
            match self.directory.binding(&b.binding_id) {
                Some(existing) if existing == b => summary.unchanged += 1,
                Some(existing) => {
                    summary.changed.push(b.binding_id.clone());
                    before.push(existing);
                    changes.push(IamChange::PutBinding(b));
                }
                None => {
                    summary.added.push(b.binding_id.clone());
                    changes.push(IamChange::PutBinding(b));
                }
            }
        }
        if dry_run || changes.is_empty() {
            return Ok(summary);
        }
        let after = changes_json(&changes);
        let mut writes: Vec<Write> = changes.into_iter().map(Write::Iam).collect();
        writes.push(audit(
            actor,
            "bindings.import",
            "rond",
            Some(json!(before)),
            Some(after),
            now,
        ));
        self.commit(writes, vec![]).await?;
        Ok(summary)
    }

    /// Removes every binding of a user or group in a company.
    pub async fn remove_identity(
        &self,
        actor: &str,
        company: &str,
        principal: &Principal,
        now: i64,
        still: Still<'_>,
    ) -> Result<(), ManageError> {
        let _guard = self.lock(still).await?;
        let key = principal.key();
        let bindings: Vec<Binding> = self
            .directory
            .bindings_naming(&key, principal.is_group())
            .into_iter()
            .filter(|b| self.directory.company_of(b).as_deref() == Some(company))
            .collect();
        if bindings.is_empty() {
            return Err(ManageError::NotFound("identity"));
        }
        let mut writes: Vec<Write> = bindings
            .iter()
            .map(|b| Write::Iam(IamChange::DeleteBinding(b.binding_id.clone())))
            .collect();
        writes.push(audit(
            actor,
            "identity.remove",
            &key,
            Some(json!(bindings)),
            None,
            now,
        ));
        self.commit(writes, vec![]).await
    }

    async fn replace_credential(
        &self,
        actor: &str,
        action: &str,
        account: &ServiceAccount,
        credential: Credential,
        retired_secret: Option<(super::SecretHash, i64)>,
        now: i64,
    ) -> Result<(), ManageError> {
        let mut next = account.clone();
        next.credential = credential.clone();
        next.retired_secret = retired_secret.clone();
        let writes = vec![
            Write::UpdateCredential {
                client_id: account.client_id.clone(),
                credential,
                retired_secret,
            },
            audit(
                actor,
                action,
                &account.client_id,
                Some(account_json(account)),
                Some(account_json(&next)),
                now,
            ),
        ];
        self.commit(writes, vec![(account.client_id.clone(), Some(next))])
            .await
    }

    /// Adds a public key to a `private_key_jwt` account; returns its kid.
    pub async fn add_key(
        &self,
        actor: &str,
        scope: &Scope,
        client_id: &str,
        public_key: &Value,
        now: i64,
        still: Still<'_>,
    ) -> Result<String, ManageError> {
        let _guard = self.lock(still).await?;
        let account = self.account_in(scope, client_id)?;
        let Credential::Keys(keys) = &account.credential else {
            return Err(ManageError::Conflict(
                "the account authenticates with a client secret".to_owned(),
            ));
        };
        let key = ClientKey::parse(public_key).map_err(|e| invalid("publicKey", e.to_string()))?;
        if keys.iter().any(|k| k.kid == key.kid) {
            return Err(ManageError::Conflict(format!("key {} exists", key.kid)));
        }
        if keys.len() >= 10 {
            return Err(ManageError::Conflict(
                "an account holds at most 10 keys".to_owned(),
            ));
        }
        let kid = key.kid.clone();
        let mut next = keys.clone();
        next.push(key);
        self.replace_credential(
            actor,
            "service-account.key.add",
            &account,
            Credential::Keys(next),
            None,
            now,
        )
        .await?;
        Ok(kid)
    }

    /// Removes a key; the last key cannot be removed.
    pub async fn remove_key(
        &self,
        actor: &str,
        scope: &Scope,
        client_id: &str,
        kid: &str,
        now: i64,
        still: Still<'_>,
    ) -> Result<(), ManageError> {
        let _guard = self.lock(still).await?;
        let account = self.account_in(scope, client_id)?;
        let Credential::Keys(keys) = &account.credential else {
            return Err(ManageError::NotFound("key"));
        };
        if !keys.iter().any(|k| k.kid == kid) {
            return Err(ManageError::NotFound("key"));
        }
        if keys.len() == 1 {
            return Err(ManageError::Conflict(
                "the last key cannot be removed; add another first".to_owned(),
            ));
        }
        let next: Vec<ClientKey> = keys.iter().filter(|k| k.kid != kid).cloned().collect();
        self.replace_credential(
            actor,
            "service-account.key.remove",
            &account,
            Credential::Keys(next),
            None,
            now,
        )
        .await
    }

    /// Rotates the secret of a `client_secret_basic` account; the old one keeps working for the
    /// configured grace period.
    pub async fn rotate_secret(
        &self,
        actor: &str,
        scope: &Scope,
        client_id: &str,
        now: i64,
        still: Still<'_>,
    ) -> Result<ClientSecret, ManageError> {
        let _guard = self.lock(still).await?;
        let account = self.account_in(scope, client_id)?;
        let Credential::Secret(old) = &account.credential else {
            return Err(ManageError::Conflict(
                "the account authenticates with private_key_jwt".to_owned(),
            ));
        };
        let secret = ClientSecret::generate()
            .map_err(|_| ManageError::Unavailable("randomness unavailable".to_owned()))?;
        let hash = self.accounts.hasher().hash(secret.expose());
        let retired =
            (self.secret_grace_secs > 0).then(|| (old.clone(), now + self.secret_grace_secs));
        self.replace_credential(
            actor,
            "service-account.secret.rotate",
            &account,
            Credential::Secret(hash),
            retired,
            now,
        )
        .await?;
        Ok(secret)
    }

    /// Records or updates a project.
    pub async fn register_project(
        &self,
        actor: &str,
        project: Project,
        now: i64,
    ) -> Result<(), ManageError> {
        self.put_project(actor, "project.register", project, now)
            .await
    }

    /// Records the project the Console's answer to a creation describes, which the caller was
    /// allowed to create in `company`. An answer naming another company, or a project that
    /// belongs to another company, records nothing: only the directory sync moves a project.
    pub async fn record_created_project(
        &self,
        actor: &str,
        company: &str,
        project: Project,
        now: i64,
    ) -> Result<(), ManageError> {
        check_id("_id", &project.project_id)?;
        for (i, e) in project.environments.iter().enumerate() {
            check_id(&format!("environments[{i}].envId"), e)?;
        }
        if project.company_id != company {
            return Err(ManageError::Conflict(format!(
                "the answer names company {}, the creation was allowed in {company}",
                project.company_id
            )));
        }
        self.put_project(actor, "project.create", project, now)
            .await
    }

    async fn put_project(
        &self,
        actor: &str,
        action: &str,
        project: Project,
        now: i64,
    ) -> Result<(), ManageError> {
        let _guard = self.writer.lock().await;
        let before = self.directory.project(&project.project_id);
        if let Some(b) = &before
            && b.company_id != project.company_id
        {
            return Err(ManageError::Conflict(format!(
                "project {} belongs to another company",
                project.project_id
            )));
        }
        let writes = vec![
            audit(
                actor,
                action,
                &project.project_id,
                before.map(|b| json!(*b)),
                Some(json!(project)),
                now,
            ),
            Write::Iam(IamChange::PutProject(project)),
        ];
        self.commit(writes, vec![]).await
    }

    /// Applies the Console's project list (the directory sync): new and changed projects in one
    /// transaction. A project the Console now gives to another company loses every binding made
    /// in its old company (on the project and its environments) in the same transaction, with an
    /// audit record, so no grant outlives the move. Returns how many projects changed.
    pub async fn sync_projects(
        &self,
        projects: Vec<Project>,
        now: i64,
    ) -> Result<usize, ManageError> {
        let _guard = self.writer.lock().await;
        let mut writes = Vec::new();
        let mut changed = 0;
        for p in projects {
            let before = self.directory.project(&p.project_id);
            if before.as_deref() == Some(&p) {
                continue;
            }
            changed += 1;
            if let Some(old) = before.as_deref().filter(|b| b.company_id != p.company_id) {
                let env_prefix = format!("{}:", p.project_id);
                let stale: Vec<Binding> = self
                    .directory
                    .bindings_in_company(&old.company_id)
                    .into_iter()
                    .filter(|b| {
                        b.resource.as_ref().is_some_and(|r| {
                            (r.resource_type == "project" && r.resource_id == p.project_id)
                                || (r.resource_type == "environment"
                                    && r.resource_id.starts_with(&env_prefix))
                        })
                    })
                    .collect();
                for b in &stale {
                    writes.push(Write::Iam(IamChange::DeleteBinding(b.binding_id.clone())));
                }
                writes.push(audit(
                    "directory-sync",
                    "project.move",
                    &p.project_id,
                    Some(json!({"project": old, "bindings": stale})),
                    Some(json!({"project": p})),
                    now,
                ));
            }
            writes.push(Write::Iam(IamChange::PutProject(p)));
        }
        if changed > 0 {
            self.commit(writes, vec![]).await?;
        }
        Ok(changed)
    }

    /// The newest audit records.
    pub async fn audit(&self, limit: usize) -> Result<Vec<AuditRecord>, ManageError> {
        Ok(self.accounts.store().audit_log(limit).await?)
    }

    /// Root accounts as listed.
    pub fn root_accounts(&self) -> Vec<AccountView> {
        self.view(|a| a.owner == Owner::Root, |_| None)
    }

    /// A company's accounts with their company roles.
    pub fn company_accounts(&self, company: &str) -> Vec<AccountView> {
        let roles = |a: &ServiceAccount| {
            Some(self.company_roles(company, &Principal::service_account(&a.client_id), false))
        };
        self.view(|a| a.owner.is_company(company), roles)
    }

    fn view(
        &self,
        keep: impl Fn(&ServiceAccount) -> bool,
        company_roles: impl Fn(&ServiceAccount) -> Option<Vec<String>>,
    ) -> Vec<AccountView> {
        let mut out: Vec<AccountView> = self
            .accounts
            .snapshot()
            .all()
            .iter()
            .filter(|a| keep(a))
            .map(|a| AccountView {
                client_id: a.client_id.clone(),
                name: a.name.clone(),
                auth_method: a.credential.method().as_str(),
                company_roles: company_roles(a),
                permissions: (a.owner == Owner::Root).then(|| a.permissions.to_vec()),
                kids: match &a.credential {
                    Credential::Keys(k) => Some(k.iter().map(|k| k.kid.clone()).collect()),
                    Credential::Secret(_) => None,
                },
                client_id_issued_at: a.created_at,
                last_login: a.last_login,
            })
            .collect();
        out.sort_by(|a, b| {
            (a.client_id_issued_at, &a.client_id).cmp(&(b.client_id_issued_at, &b.client_id))
        });
        out
    }

    fn company_roles(&self, company: &str, principal: &str, group: bool) -> Vec<String> {
        let mut roles: Vec<String> = self
            .directory
            .bindings_naming(principal, group)
            .into_iter()
            .filter(|b| {
                b.resource
                    .as_ref()
                    .is_some_and(|r| r.resource_type == "company" && r.resource_id == company)
            })
            .flat_map(|b| b.roles)
            .collect();
        roles.sort();
        roles.dedup();
        roles
    }

    /// Every identity with a role in `company` (or a service account of it), with its company
    /// roles and, for `project_ids`, its project and environment roles.
    pub fn identities(
        &self,
        company: &str,
        kinds: &[SubjectKind],
        project_ids: &[String],
    ) -> Vec<Value> {
        let bindings = self.directory.bindings_in_company(company);
        // Keyed by (kind order, principal key): users, groups, then service accounts.
        let mut ids: std::collections::BTreeMap<(u8, String), (SubjectKind, String, String)> =
            Default::default();
        for a in self.accounts.snapshot().all().iter() {
            if a.owner.is_company(company) {
                ids.insert(
                    (2, Principal::service_account(&a.client_id)),
                    (
                        SubjectKind::ServiceAccount,
                        a.client_id.clone(),
                        a.name.clone(),
                    ),
                );
            }
        }
        for b in &bindings {
            for key in b.subjects.iter().chain(&b.groups) {
                // A service account of another company bound here is listed like any identity.
                let entry = match Principal::parse(key) {
                    Some(p @ Principal::User { .. }) => (0, SubjectKind::User, p),
                    Some(p @ Principal::Group { .. }) => (1, SubjectKind::Group, p),
                    Some(p @ Principal::ServiceAccount(_)) => (2, SubjectKind::ServiceAccount, p),
                    None => continue,
                };
                let (order, kind, p) = entry;
                ids.entry((order, key.clone())).or_insert_with(|| {
                    let shown = self.display_id(&p);
                    (kind, shown.clone(), shown)
                });
            }
        }
        ids.into_iter()
            .filter(|(_, (k, _, _))| kinds.is_empty() || kinds.contains(k))
            .map(|((_, key), (kind, id, name))| {
                let is_group = kind == SubjectKind::Group;
                let holds = |b: &&Binding| {
                    if is_group {
                        b.groups.contains(&key)
                    } else {
                        b.subjects.contains(&key)
                    }
                };
                let roles_at = |t: &str, rid: &str| -> Vec<String> {
                    let mut r: Vec<String> = bindings
                        .iter()
                        .filter(holds)
                        .filter(|b| {
                            b.resource
                                .as_ref()
                                .is_some_and(|r| r.resource_type == t && r.resource_id == rid)
                        })
                        .flat_map(|b| b.roles.clone())
                        .collect();
                    r.sort();
                    r.dedup();
                    r
                };
                let projects: Vec<Value> = project_ids
                    .iter()
                    .map(|p| {
                        let envs = self
                            .directory
                            .project(p)
                            .map(|proj| proj.environments.clone())
                            .unwrap_or_default();
                        json!({
                            "_id": p,
                            "roles": roles_at("project", p),
                            "environments": envs.iter().map(|e| json!({
                                "envId": e,
                                "roles": roles_at("environment", &format!("{p}:{e}")),
                            })).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                let mut v = json!({
                    "identityId": id,
                    "name": name,
                    "identityType": kind.identity_type(),
                    "companyRoles": roles_at("company", company),
                });
                if !project_ids.is_empty()
                    && let Some(o) = v.as_object_mut()
                {
                    o.insert("projects".to_owned(), Value::from(projects));
                }
                v
            })
            .collect()
    }
}

fn changes_json(changes: &[IamChange]) -> Value {
    Value::from(
        changes
            .iter()
            .map(|c| match c {
                IamChange::PutBinding(b) => json!({"put": b}),
                IamChange::DeleteBinding(id) => json!({"delete": id}),
                IamChange::PutProject(p) => json!({"project": p}),
                IamChange::DeleteProject(id) => json!({"deleteProject": id}),
            })
            .collect::<Vec<_>>(),
    )
}

/// Parses `tokenEndpointAuthMethod`.
pub fn auth_method(v: &str) -> Result<AuthMethod, ManageError> {
    AuthMethod::parse(v).ok_or_else(|| {
        invalid(
            "tokenEndpointAuthMethod",
            "must be client_secret_basic or private_key_jwt",
        )
    })
}
