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
pub const HANDLERS: &[&str] = &["policy.status", "policy.decisions", "policy.eval"];

fn ok(v: &Value) -> Response<Body> {
    json(StatusCode::OK, v.to_string())
}

fn bad(message: impl Into<std::borrow::Cow<'static, str>>) -> Response<Body> {
    ApiError::new(StatusCode::BAD_REQUEST, message).into_response()
}

/// Serves one policy endpoint.
pub fn handle(policy: &PolicyEngine, handler: &str, body: Option<&Value>) -> Response<Body> {
    match handler {
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
