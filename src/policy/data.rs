//! The policy's role model as data (`roles`, `root_permissions`, `permissions`, from
//! `policies/roles.json`), read and checked whenever a policy is compiled: at start, at reload,
//! by `iamgate policy test`.
//!
//! Rego treats a misspelt name as undefined, and undefined grants nothing: a role that names
//! `console.project.veiw` would silently grant less, a route that names it would deny everyone,
//! and neither shows in the policy's tests unless a test happens to cover that name. So every
//! name is checked against the one list of permissions, every role must say its rank and levels,
//! and a policy with an inconsistency is refused as a whole, with every problem listed.

use super::PolicyError;
use std::collections::{HashMap, HashSet};

/// Levels a role may be bound at.
pub const LEVELS: &[&str] = &["company", "project", "environment", "root"];

pub use crate::model::{RoleInfo, RoleModel};

/// The checked role model of a policy.
#[derive(Debug, Clone, Default)]
pub struct PolicyData {
    /// Each role by id, and the root permissions.
    pub model: RoleModel,
    /// `data.permissions`, when the policy declares it.
    pub permissions: Option<HashSet<String>>,
}

impl PolicyData {
    /// Reads and checks the role model of a policy's data files (merged as the engine merges
    /// them), before anything of the policy runs.
    pub fn of_source(source: &super::PolicySource) -> Result<Self, PolicyError> {
        let mut doc = serde_json::Value::Object(serde_json::Map::new());
        for (name, text) in &source.data {
            let value: serde_json::Value = serde_json::from_str(text)
                .map_err(|e| PolicyError::Load(format!("{name}: {e}")))?;
            if !value.is_object() {
                return Err(PolicyError::Load(format!(
                    "{name}: data must be a JSON object"
                )));
            }
            merge(&mut doc, value);
        }
        Self::read(&doc)
    }

    /// Reads and checks the role model in the policy's data document. A policy without any of
    /// `roles`, `root_permissions` and `permissions` has no role model and passes.
    pub fn read(data: &serde_json::Value) -> Result<Self, PolicyError> {
        let mut errs = Vec::new();
        let permissions = data
            .get("permissions")
            .map(|v| names_in(v, "permissions", &mut errs));
        let known = |name: &str, at: &str, errs: &mut Vec<String>| match &permissions {
            Some(all) if all.contains(name) => {}
            Some(_) => errs.push(format!(
                "{at} names `{name}`, which is not in data.permissions"
            )),
            None => errs.push(format!(
                "{at} names `{name}`, but the policy data has no `permissions` list"
            )),
        };
        let mut root_permissions = Vec::new();
        if let Some(root) = data.get("root_permissions") {
            let names = names_in(root, "root_permissions", &mut errs);
            // In the data's order: the bootstrap account lists them so.
            for p in root
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str())
            {
                if names.contains(p) && !root_permissions.iter().any(|r| r == p) {
                    known(p, "root_permissions", &mut errs);
                    root_permissions.push(p.to_owned());
                }
            }
        }
        let mut roles = HashMap::new();
        match data.get("roles") {
            None => {}
            Some(serde_json::Value::Object(map)) => {
                for (id, role) in map {
                    let at = format!("roles.{id}");
                    let Some(role) = role.as_object() else {
                        errs.push(format!("{at}: must be an object"));
                        continue;
                    };
                    let rank = match role.get("rank") {
                        Some(r) if r.as_i64().is_some_and(|n| n >= 0) => r.as_i64().unwrap_or(0),
                        Some(_) => {
                            errs.push(format!("{at}.rank: must be a whole number, 0 or more"));
                            0
                        }
                        None => {
                            errs.push(format!("{at}: has no rank"));
                            0
                        }
                    };
                    let levels = match role.get("levels") {
                        Some(v) => names_in(v, &format!("{at}.levels"), &mut errs),
                        None => HashSet::new(),
                    };
                    if levels.is_empty() {
                        errs.push(format!(
                            "{at}: names no levels (one or more of {})",
                            LEVELS.join(", ")
                        ));
                    }
                    for l in &levels {
                        if !LEVELS.contains(&l.as_str()) {
                            errs.push(format!(
                                "{at}.levels: `{l}` is not a level (one of {})",
                                LEVELS.join(", ")
                            ));
                        }
                    }
                    match role.get("permissions") {
                        Some(v) => {
                            for p in names_in(v, &format!("{at}.permissions"), &mut errs) {
                                known(&p, &format!("{at}.permissions"), &mut errs);
                            }
                        }
                        None => errs.push(format!("{at}: has no permissions list")),
                    }
                    let mut levels: Vec<String> = levels.into_iter().collect();
                    levels.sort();
                    roles.insert(id.clone(), RoleInfo { rank, levels });
                }
            }
            Some(_) => errs.push("roles: must be an object of roles by id".to_owned()),
        }
        if errs.is_empty() {
            Ok(Self {
                model: RoleModel {
                    roles,
                    root_permissions,
                },
                permissions,
            })
        } else {
            errs.sort();
            Err(PolicyError::Data(errs))
        }
    }

    /// Checks that every permission the deployment names (`(who, permission)`, for example a
    /// route of the route table) exists in `data.permissions`.
    pub fn check_named(&self, named: &[(String, String)]) -> Result<(), PolicyError> {
        let mut errs: Vec<String> = named
            .iter()
            .filter(|(_, p)| !self.permissions.as_ref().is_some_and(|all| all.contains(p)))
            .map(|(who, p)| match &self.permissions {
                Some(_) => format!("{who} names `{p}`, which is not in data.permissions"),
                None => {
                    format!("{who} names `{p}`, but the policy data has no `permissions` list")
                }
            })
            .collect();
        errs.sort();
        errs.dedup();
        if errs.is_empty() {
            Ok(())
        } else {
            Err(PolicyError::Data(errs))
        }
    }
}

/// Merges `from` into `into`, objects key by key.
fn merge(into: &mut serde_json::Value, from: serde_json::Value) {
    match (into, from) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// The strings of a list of unique, non-empty names; anything else is reported at `at`.
fn names_in(v: &serde_json::Value, at: &str, errs: &mut Vec<String>) -> HashSet<String> {
    let mut out = HashSet::new();
    let Some(list) = v.as_array() else {
        errs.push(format!("{at}: must be a list of names"));
        return out;
    };
    for (i, item) in list.iter().enumerate() {
        match item.as_str() {
            Some(s) if !s.is_empty() => {
                if !out.insert(s.to_owned()) {
                    errs.push(format!("{at}: `{s}` is listed twice"));
                }
            }
            _ => errs.push(format!("{at}[{i}]: must be a non-empty string")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors(data: serde_json::Value) -> Vec<String> {
        match PolicyData::read(&data) {
            Err(PolicyError::Data(e)) => e,
            other => panic!("expected data errors, got {other:?}"),
        }
    }

    #[test]
    fn the_shipped_role_model_is_consistent() {
        let data: serde_json::Value =
            serde_json::from_str(include_str!("../../policies/roles.json")).unwrap();
        let d = PolicyData::read(&data).unwrap();
        assert_eq!(d.model.roles["company-owner"].rank, 60);
        assert_eq!(d.model.root_permissions.len(), 12);
        assert!(d.model.is_root_permission("console.root.user.bind"));
        assert_eq!(
            d.model.roles["maintainer"].levels,
            ["company", "environment", "project"]
        );
    }

    #[test]
    fn a_policy_without_a_role_model_passes_but_names_nothing() {
        let d = PolicyData::read(&json!({})).unwrap();
        assert!(d.model.roles.is_empty());
        let e = d
            .check_named(&[("route r".into(), "console.company.view".into())])
            .unwrap_err();
        assert!(e.to_string().contains("route r names `console.company.view`, but the policy data has no `permissions` list"), "{e}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let e = errors(json!({
            "permissions": ["a.view", "a.edit", "a.view", 3],
            "root_permissions": ["a.view", "root.typo"],
            "roles": {
                "good": {"rank": 1, "levels": ["company"], "permissions": ["a.view"]},
                "typo": {"rank": 2, "levels": ["company"], "permissions": ["a.veiw"]},
                "norank": {"levels": ["project"], "permissions": []},
                "badrank": {"rank": "high", "levels": ["project"], "permissions": []},
                "nolevels": {"rank": 3, "levels": [], "permissions": []},
                "badlevel": {"rank": 3, "levels": ["tenant"], "permissions": []},
                "noperms": {"rank": 3, "levels": ["company"]},
                "notobject": 7
            }
        }));
        let expected = [
            "permissions: `a.view` is listed twice",
            "permissions[3]: must be a non-empty string",
            "root_permissions names `root.typo`, which is not in data.permissions",
            "roles.typo.permissions names `a.veiw`, which is not in data.permissions",
            "roles.norank: has no rank",
            "roles.badrank.rank: must be a whole number, 0 or more",
            "roles.nolevels: names no levels (one or more of company, project, environment, root)",
            "roles.badlevel.levels: `tenant` is not a level (one of company, project, environment, root)",
            "roles.noperms: has no permissions list",
            "roles.notobject: must be an object",
        ];
        for x in expected {
            assert!(e.iter().any(|m| m == x), "missing {x:?} in {e:#?}");
        }
        assert_eq!(e.len(), expected.len(), "{e:#?}");
    }

    #[test]
    fn roles_need_the_permissions_list() {
        let e = errors(
            json!({"roles": {"r": {"rank": 1, "levels": ["company"], "permissions": ["x"]}}}),
        );
        assert_eq!(
            e,
            ["roles.r.permissions names `x`, but the policy data has no `permissions` list"]
        );
    }

    #[test]
    fn named_permissions_must_exist() {
        let d = PolicyData::read(&json!({"permissions": ["a"]})).unwrap();
        assert!(d.check_named(&[("route r".into(), "a".into())]).is_ok());
        let e = d
            .check_named(&[
                ("route r".into(), "b".into()),
                ("route s".into(), "a".into()),
            ])
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "policy data is inconsistent: route r names `b`, which is not in data.permissions"
        );
    }
}
