//! The policy's own endpoints under `/api/iamgate/`, served locally like the management API
//! (routes `local: policy.*`, decided by the policy first): the live revision and its test
//! result, the recent decisions, and a playground deciding an input (or a recent decision's
//! input) with the live policy and explaining it. For the console's policy page and for people
//! with curl; nothing here changes anything.

use crate::error::{ApiError, Body, json};
use crate::policy::{DecisionInput, PolicyEngine};
use http::{Response, StatusCode};
use serde_json::Value;

/// The handler names the route table may use with `local:`.
pub const HANDLERS: &[&str] = &[
    "policy.status",
    "policy.decisions",
    "policy.eval",
    "policy.assignable",
];

/// What a request to one of these endpoints brings besides its body: for `policy.assignable`,
/// the caller's whole decision input and the request's company and project.
pub struct Asking<'a> {
    /// The caller's decision input for this request, details filled in.
    pub input: Option<&'a DecisionInput>,
    /// The company in the path.
    pub company: Option<&'a str>,
    /// `?projectId=`, checked to belong to the company.
    pub project: Option<(&'a str, Vec<String>)>,
}

fn ok(v: &Value) -> Response<Body> {
    json(StatusCode::OK, v.to_string())
}

fn bad(message: impl Into<std::borrow::Cow<'static, str>>) -> Response<Body> {
    ApiError::new(StatusCode::BAD_REQUEST, message).into_response()
}

/// The roles the caller may give at each level of `company` (or of its project), asked of the
/// live policy as the role-edit routes ask it: the user-management permission there and the
/// no-escalation rule for a grant of that role. The console offers only these; the API still
/// decides every edit.
fn assignable(policy: &PolicyEngine, a: &Asking<'_>) -> Response<Body> {
    use crate::policy::input::GrantInput;
    let (Some(base), Some(company)) = (a.input, a.company) else {
        return bad("no caller");
    };
    let snapshot = policy.snapshot();
    let model = snapshot.role_model();
    let mut levels: Vec<(&str, String, &str)> = Vec::new();
    match &a.project {
        None => levels.push((
            "company",
            company.to_owned(),
            "console.company.users.manage",
        )),
        Some((p, envs)) => {
            levels.push(("project", (*p).to_owned(), "console.project.users.manage"));
            for e in envs {
                levels.push((
                    "environment",
                    format!("{p}:{e}"),
                    "console.project.users.manage",
                ));
            }
        }
    }
    let mut out = serde_json::Map::new();
    for (level, rid, permission) in levels {
        let mut roles: Vec<&String> = model
            .roles
            .iter()
            .filter(|(_, info)| info.levels.iter().any(|l| l == level))
            .map(|(id, _)| id)
            .collect();
        roles.sort_by_key(|id| (std::cmp::Reverse(model.roles[*id].rank), (*id).clone()));
        let mut may = Vec::new();
        for role in roles {
            let mut input = base.clone();
            input.route.permission = Some(std::sync::Arc::from(permission));
            input.route.rule = None;
            input.target = None;
            // The decision's own resource is set per check and not kept: name it here.
            input.resource.company_id = Some(std::sync::Arc::from(company));
            if let Some((p, _)) = &a.project {
                input.resource.project_id = Some(std::sync::Arc::from(*p));
            }
            input.grants = Some(vec![GrantInput {
                role: Some(role.clone()),
                resource_type: Some(level.to_owned()),
                resource_id: Some(rid.clone()),
                company_id: Some(company.to_owned()),
                removes: None,
                permissions: None,
            }]);
            if snapshot.decide(&input).allow {
                may.push(Value::from(role.as_str()));
            }
        }
        let key = if level == "environment" {
            rid.split_once(':')
                .map_or(rid.clone(), |(_, e)| format!("environment:{e}"))
        } else {
            level.to_owned()
        };
        out.insert(key, Value::Array(may));
    }
    ok(&Value::Object(out))
}

/// Serves one policy endpoint.
pub fn handle(
    policy: &PolicyEngine,
    handler: &str,
    body: Option<&Value>,
    asking: &Asking<'_>,
) -> Response<Body> {
    match handler {
        "policy.assignable" => assignable(policy, asking),
        "policy.status" => {
            let snapshot = policy.snapshot();
            ok(&serde_json::json!({
                "revision": &**snapshot.revision(),
                "testsPassed": snapshot.tests_passed(),
                "shadowRevision": policy.shadow_revision().as_deref(),
            }))
        }
        "policy.decisions" => ok(&serde_json::json!(policy.recent_decisions())),
        "policy.eval" => {
            let Some(o) = body.and_then(Value::as_object) else {
                return bad("the body must be an object with `input` or `decisionId`");
            };
            let input: DecisionInput = match (o.get("input"), o.get("decisionId")) {
                (Some(v), None) => match serde_json::from_value(v.clone()) {
                    Ok(i) => i,
                    Err(e) => return bad(format!("input: {e}")),
                },
                (None, Some(id)) => {
                    let Some(id) = id.as_u64() else {
                        return bad("decisionId: must be a number");
                    };
                    match policy
                        .recent_decisions()
                        .into_iter()
                        .find(|d| d.id == id)
                        .and_then(|d| d.input)
                    {
                        Some(i) => i,
                        None => {
                            return ApiError::new(
                                StatusCode::NOT_FOUND,
                                "no recent decision with that id kept its input",
                            )
                            .into_response();
                        }
                    }
                }
                _ => return bad("give exactly one of `input` and `decisionId`"),
            };
            let snapshot = policy.snapshot();
            let d = snapshot.decide(&input);
            let explain = snapshot
                .explain(&input)
                .unwrap_or_else(|e| Value::String(e.to_string()));
            ok(&serde_json::json!({
                "allow": d.allow,
                "reason": &*d.reason,
                "revision": &*d.revision,
                "input": input,
                "explain": explain,
            }))
        }
        other => {
            tracing::error!(route = other, "route names an unknown policy handler");
            ApiError::new(StatusCode::NOT_FOUND, "no such route").into_response()
        }
    }
}
