//! Item filters: how a list answer is filtered one item at a time. The response rules package
//! declares, for a response rule over an array, the permission each item is checked for and the
//! item fields that name its company, project and environment (`item_filters` in
//! `iamgate.responses`). The gateway then keeps an item when the authorization decision, the
//! very one a request for that resource gets, on the compiled policy and with the time limit of
//! one decision, allows it. The rule of the same name (written with `filtered` in Rego) states
//! the same filter for the policy's tests, and a test keeps the two in agreement.

use super::PolicyError;
use super::input::{DecisionInput, ResourceInput};
use std::collections::HashMap;
use std::sync::Arc;

/// The rule holding the filters.
pub const ITEM_FILTERS: &str = "data.iamgate.responses.item_filters";

/// One declared filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemFilter {
    /// The permission every item is checked for.
    pub permission: Arc<str>,
    /// The item field holding the company id.
    pub company: Option<String>,
    /// The item field holding the project id.
    pub project: Option<String>,
    /// The item field holding the environment id.
    pub env: Option<String>,
}

impl ItemFilter {
    /// The resource `item` names: each declared field that holds a string (others are left out,
    /// as the Rego form leaves them out).
    pub fn resource(&self, item: &serde_json::Value) -> ResourceInput {
        let field = |name: &Option<String>| {
            name.as_deref()
                .and_then(|n| item.get(n))
                .and_then(serde_json::Value::as_str)
                .map(Arc::from)
        };
        ResourceInput {
            company_id: field(&self.company),
            project_id: field(&self.project),
            env_id: field(&self.env),
        }
    }

    /// Sets `input` up for deciding one item of the list: the route's permission is this
    /// filter's, and no custom rule.
    pub fn prepare(&self, input: &mut DecisionInput) {
        input.route.permission = Some(self.permission.clone());
        input.route.rule = None;
    }
}

/// Reads `item_filters` (an object: rule name → `{"permission", "fields"}`, fields mapping
/// `companyId`, `projectId`, `envId` to item field names); an absent rule is no filter.
pub fn read(value: &regorus::Value) -> Result<HashMap<String, ItemFilter>, PolicyError> {
    let bad = |name: &str, what: &str| {
        PolicyError::Compile(format!("iamgate.responses.item_filters.{name}: {what}"))
    };
    if *value == regorus::Value::Undefined {
        return Ok(HashMap::new());
    }
    let json: serde_json::Value = value
        .to_json_str()
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .ok_or_else(|| bad("", "not JSON"))?;
    let serde_json::Value::Object(map) = json else {
        return Err(bad("", "must be an object of rule name to filter"));
    };
    let mut out = HashMap::with_capacity(map.len());
    for (name, f) in map {
        let permission = f
            .get("permission")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| bad(&name, "needs a string `permission`"))?;
        let fields = f
            .get("fields")
            .and_then(serde_json::Value::as_object)
            .ok_or_else(|| bad(&name, "needs an object `fields`"))?;
        if f.as_object().is_some_and(|o| o.len() != 2) {
            return Err(bad(&name, "has keys other than `permission` and `fields`"));
        }
        let mut filter = ItemFilter {
            permission: Arc::from(permission),
            company: None,
            project: None,
            env: None,
        };
        for (key, field) in fields {
            let field = field
                .as_str()
                .ok_or_else(|| bad(&name, &format!("fields.{key} must be a string")))?
                .to_owned();
            match key.as_str() {
                "companyId" => filter.company = Some(field),
                "projectId" => filter.project = Some(field),
                "envId" => filter.env = Some(field),
                _ => {
                    return Err(bad(
                        &name,
                        &format!("fields.{key}: only companyId, projectId and envId"),
                    ));
                }
            }
        }
        out.insert(name, filter);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(json: serde_json::Value) -> regorus::Value {
        regorus::Value::from_json_str(&json.to_string()).unwrap()
    }

    #[test]
    fn filters_are_read_and_bad_ones_named() {
        let f = read(&value(serde_json::json!({
            "projects": {"permission": "console.project.view", "fields": {"companyId": "tenantId", "projectId": "_id"}}
        })))
        .unwrap();
        let p = &f["projects"];
        assert_eq!(p.project.as_deref(), Some("_id"));
        let r = p.resource(&serde_json::json!({"tenantId": "acme", "_id": 7}));
        assert_eq!(r.company_id.as_deref(), Some("acme"));
        assert_eq!(r.project_id, None, "a non-string id is left out");
        assert!(read(&regorus::Value::Undefined).unwrap().is_empty());
        for bad in [
            serde_json::json!([]),
            serde_json::json!({"x": {"fields": {}}}),
            serde_json::json!({"x": {"permission": "p", "fields": {"tenant": "t"}}}),
            serde_json::json!({"x": {"permission": "p", "fields": {"companyId": 1}}}),
            serde_json::json!({"x": {"permission": "p", "fields": {}, "extra": 1}}),
        ] {
            let e = read(&value(bad.clone())).unwrap_err().to_string();
            assert!(e.contains("item_filters"), "{bad}: {e}");
        }
    }

    /// The gateway's item-by-item filter keeps exactly the items the rule of the same name
    /// keeps, for callers of every reach and for items of every shape.
    #[test]
    fn the_item_filter_agrees_with_its_rego_rule() {
        let snapshot =
            crate::policy::engine::Snapshot::compile(crate::policy::embedded_source()).unwrap();
        let binding = |id: &str, role: &str, kind: &str, rid: &str, company: &str| {
            serde_json::json!({"bindingId": id, "subjects": ["serviceaccount:u1"], "groups": [],
                "roles": [role], "permissions": [],
                "resource": {"resourceType": kind, "resourceId": rid, "companyId": company}})
        };
        let callers = [
            (
                vec![binding("b1", "developer", "project", "p2", "c1")],
                vec![],
            ),
            (
                vec![binding("b1", "reporter", "company", "c1", "c1")],
                vec![],
            ),
            (vec![binding("b1", "guest", "company", "c1", "c1")], vec![]),
            (vec![], vec!["console.root.view"]),
            (vec![], vec![]),
        ];
        let body = serde_json::json!([
            {"_id": "p1", "tenantId": "c1"},
            {"_id": "p2", "tenantId": "c1", "name": "two"},
            {"_id": "p3", "tenantId": "c2"},
            {"tenantId": "c1"},
            {"_id": "p2"},
            {"_id": 2, "tenantId": "c1"},
            {"_id": "p2", "tenantId": ["c1"]},
            "p2",
            null,
            [],
        ]);
        let items = body.as_array().unwrap();
        for rule in ["projects", "companies"] {
            let filter = snapshot.item_filter(rule).unwrap();
            for (bindings, permissions) in &callers {
                let mut input: DecisionInput = serde_json::from_value(serde_json::json!({
                    "request": {"method": "GET", "path": "/api/backend/projects/"},
                    "user": {"id": "u1", "type": "serviceaccount", "principal": "serviceaccount:u1",
                        "permissions": permissions, "bindings": bindings},
                    "resource": {},
                    "route": {"id": "R2"},
                }))
                .unwrap();
                let rego = snapshot.respond(rule, &input, body.clone()).unwrap();
                filter.prepare(&mut input);
                let kept: Vec<serde_json::Value> = items
                    .iter()
                    .filter(|item| {
                        input.resource = filter.resource(item);
                        snapshot.decide(&input).allow
                    })
                    .cloned()
                    .collect();
                assert_eq!(
                    serde_json::Value::Array(kept),
                    rego,
                    "{rule} for {bindings:?} {permissions:?}"
                );
            }
        }
    }
}
