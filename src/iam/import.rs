//! Import of the role bindings an existing Console keeps for Mia-Platform's Rönd sidecar: its
//! `roles` and `bindings` collections as exported (a JSON array, or one document per line),
//! turned into this gateway's bindings and written through the audited write path
//! ([`super::manage::Manager::import_bindings`]). Behind `iamgate import rond`; nothing on the
//! request path.
//!
//! Every document is checked before anything is written, and the first bad one aborts the whole
//! import, naming its file, its position and the field at fault. Rönd's looser model is made
//! explicit on the way in: a subject is the service account of that id when one exists in the
//! binding's company, otherwise a user of the named issuer; a group belongs to that issuer; a
//! project or environment binding names the company the directory gives the project. Documents
//! whose `__STATE__` is other than `PUBLIC` (trash, drafts) are skipped.

use crate::model::binding::{Binding, BindingResource, Principal};
use crate::model::role::RoleModel;
use crate::store::snapshot::AccountSnapshot;
use serde_json::Value;
use std::collections::{HashMap, HashSet};

/// Why an import stopped: the document at fault and what is wrong with it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{file}: document {position}: {field}: {message}")]
pub struct ImportError {
    /// The file.
    pub file: String,
    /// The document's position: its line in a one-document-per-line file, its index from 1 in
    /// an array.
    pub position: usize,
    /// The field at fault (`-` for the document as a whole).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// What the import knows besides the documents.
pub struct Context<'a> {
    /// The role table of the policy in service.
    pub model: &'a RoleModel,
    /// Every permission the policy defines, when it declares them.
    pub permissions: Option<&'a HashSet<String>>,
    /// `OLD=NEW` role renames.
    pub role_map: &'a HashMap<String, String>,
    /// The issuer subjects and groups belong to (a configured issuer's name), if any.
    pub issuer: Option<&'a str>,
    /// The accounts, to tell a service account from a user.
    pub accounts: &'a AccountSnapshot,
    /// The owner of a project (from the directory).
    pub company_of_project: &'a dyn Fn(&str) -> Option<String>,
}

/// The documents of one file with their positions: a JSON array, or one JSON document per line
/// (blank lines ignored).
pub fn documents(file: &str, text: &str) -> Result<Vec<(usize, Value)>, ImportError> {
    let fail = |position, message: String| ImportError {
        file: file.to_owned(),
        position,
        field: "-".to_owned(),
        message,
    };
    if text.trim_start().starts_with('[') {
        let all: Vec<Value> =
            serde_json::from_str(text).map_err(|e| fail(0, format!("not a JSON array: {e}")))?;
        return Ok(all
            .into_iter()
            .enumerate()
            .map(|(i, v)| (i + 1, v))
            .collect());
    }
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v = serde_json::from_str(line).map_err(|e| fail(i + 1, format!("not JSON: {e}")))?;
        out.push((i + 1, v));
    }
    Ok(out)
}

/// One document being read.
struct Doc<'a> {
    file: &'a str,
    position: usize,
    v: &'a Value,
}

impl Doc<'_> {
    fn fail(&self, field: &str, message: impl Into<String>) -> ImportError {
        ImportError {
            file: self.file.to_owned(),
            position: self.position,
            field: field.to_owned(),
            message: message.into(),
        }
    }

    /// Whether the document is live (`__STATE__` absent or `PUBLIC`).
    fn public(&self) -> Result<bool, ImportError> {
        if !self.v.is_object() {
            return Err(self.fail("-", "not a JSON object"));
        }
        match self.v.get("__STATE__") {
            None => Ok(true),
            Some(Value::String(s)) => Ok(s == "PUBLIC"),
            Some(_) => Err(self.fail("__STATE__", "not a string")),
        }
    }

    fn id(&self, field: &str) -> Result<String, ImportError> {
        match self.v.get(field) {
            Some(Value::String(s)) if is_name(s) => Ok(s.clone()),
            Some(Value::String(_)) => Err(self.fail(
                field,
                "must be 1 to 200 printable characters without spaces",
            )),
            Some(_) => Err(self.fail(field, "not a string")),
            None => Err(self.fail(field, "missing")),
        }
    }

    fn names(&self, field: &str) -> Result<Vec<String>, ImportError> {
        match self.v.get(field) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|x| match x {
                    Value::String(s) if is_name(s) => Ok(s.clone()),
                    _ => Err(self.fail(
                        field,
                        format!("{x} is not a name of 1 to 200 printable characters"),
                    )),
                })
                .collect(),
            Some(_) => Err(self.fail(field, "not an array")),
        }
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 200 && s.chars().all(|c| !c.is_control() && c != ' ')
}

/// The live role ids of the roles file (their names and permissions are checked for shape; what
/// a role grants is the policy's business, by id).
pub fn read_roles(file: &str, docs: &[(usize, Value)]) -> Result<HashSet<String>, ImportError> {
    let mut ids = HashSet::new();
    for (position, v) in docs {
        let d = Doc {
            file,
            position: *position,
            v,
        };
        if !d.public()? {
            continue;
        }
        let id = d.id("roleId")?;
        d.names("permissions")?;
        if let Some(name) = v.get("name")
            && !name.is_string()
        {
            return Err(d.fail("name", "not a string"));
        }
        if !ids.insert(id.clone()) {
            return Err(d.fail("roleId", format!("`{id}` appears twice")));
        }
    }
    Ok(ids)
}

/// The bindings of the bindings file, checked and made explicit; and how many documents were
/// skipped for their state.
pub fn read_bindings(
    file: &str,
    docs: &[(usize, Value)],
    roles: &HashSet<String>,
    cx: &Context<'_>,
) -> Result<(Vec<Binding>, usize), ImportError> {
    let mut out = Vec::new();
    let mut skipped = 0;
    let mut seen = HashSet::new();
    for (position, v) in docs {
        let d = Doc {
            file,
            position: *position,
            v,
        };
        if !d.public()? {
            skipped += 1;
            continue;
        }
        let b = binding(&d, roles, cx)?;
        if !seen.insert(b.binding_id.clone()) {
            return Err(d.fail("bindingId", format!("`{}` appears twice", b.binding_id)));
        }
        out.push(b);
    }
    Ok((out, skipped))
}

fn binding(d: &Doc<'_>, roles: &HashSet<String>, cx: &Context<'_>) -> Result<Binding, ImportError> {
    let binding_id = d.id("bindingId")?;
    let resource = d.v.get("resource").ok_or_else(|| {
        d.fail(
            "resource",
            "missing (bindings without a resource are not imported: they would apply everywhere)",
        )
    })?;
    let level = match resource.get("resourceType") {
        Some(Value::String(t)) if ["company", "project", "environment"].contains(&t.as_str()) => {
            t.clone()
        }
        _ => {
            return Err(d.fail(
                "resource.resourceType",
                "must be company, project or environment",
            ));
        }
    };
    let rid = match resource.get("resourceId") {
        Some(Value::String(s)) if is_name(s) => s.clone(),
        _ => return Err(d.fail("resource.resourceId", "missing or not a name")),
    };
    let company = match level.as_str() {
        "company" => rid.clone(),
        _ => {
            let project = match (level.as_str(), rid.split_once(':')) {
                ("environment", Some((p, e))) if !p.is_empty() && !e.is_empty() => p,
                ("environment", _) => {
                    return Err(d.fail(
                        "resource.resourceId",
                        "an environment is named <projectId>:<envId>",
                    ));
                }
                _ => rid.as_str(),
            };
            (cx.company_of_project)(project).ok_or_else(|| {
                d.fail(
                    "resource.resourceId",
                    format!("project `{project}` is unknown to iamgate (synchronise or register projects first)"),
                )
            })?
        }
    };

    let mut mapped = Vec::new();
    for role in d.names("roles")? {
        if !roles.contains(&role) {
            return Err(d.fail("roles", format!("`{role}` is not a role of the roles file")));
        }
        let ours = cx.role_map.get(&role).cloned().unwrap_or(role);
        let Some(info) = cx.model.roles.get(&ours) else {
            return Err(d.fail(
                "roles",
                format!(
                    "`{ours}` is not a role of iamgate's policy (map it with --role-map OLD=NEW)"
                ),
            ));
        };
        if !info.levels.contains(&level) {
            return Err(d.fail(
                "roles",
                format!(
                    "`{ours}` cannot be bound at {level} level (its levels: {})",
                    info.levels.join(", ")
                ),
            ));
        }
        mapped.push(ours);
    }
    let permissions = d.names("permissions")?;
    for p in &permissions {
        if cx.model.is_root_permission(p) {
            return Err(d.fail(
                "permissions",
                format!("`{p}` is a root permission, never held through a {level} binding"),
            ));
        }
        if cx.permissions.is_some_and(|all| !all.contains(p)) {
            return Err(d.fail(
                "permissions",
                format!("`{p}` is not a permission of iamgate's policy"),
            ));
        }
    }
    if mapped.is_empty() && permissions.is_empty() {
        return Err(d.fail(
            "roles",
            "neither roles nor permissions: the binding grants nothing",
        ));
    }

    let issuer = || {
        cx.issuer.ok_or_else(|| {
            d.fail(
                "subjects",
                "names a user or group, but no issuer is configured (give --issuer)",
            )
        })
    };
    let mut subjects = Vec::new();
    for s in d.names("subjects")? {
        let principal = match cx.accounts.get(&s) {
            Some(a) if a.owner == crate::iam::Owner::Company(company.clone()) => {
                Principal::ServiceAccount(s)
            }
            Some(_) => {
                return Err(d.fail(
                    "subjects",
                    format!("service account `{s}` does not belong to company `{company}`"),
                ));
            }
            None => Principal::User {
                issuer: issuer()?.to_owned(),
                id: s,
            },
        };
        subjects.push(principal.key());
    }
    let mut groups = Vec::new();
    for g in d.names("groups")? {
        groups.push(
            Principal::Group {
                issuer: issuer()?.to_owned(),
                name: g,
            }
            .key(),
        );
    }
    if subjects.is_empty() && groups.is_empty() {
        return Err(d.fail(
            "subjects",
            "neither subjects nor groups: the binding applies to nobody",
        ));
    }
    Ok(Binding {
        binding_id,
        subjects,
        groups,
        roles: mapped,
        permissions,
        resource: Some(BindingResource::scoped(&level, &rid, &company)),
    })
}
