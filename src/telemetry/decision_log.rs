//! The decision log: one structured record per policy decision (target `iamgate::decision`),
//! with subject, route, method, path, resource, permission, outcome, reason, policy revision and
//! whether the cache answered. Credentials never reach it: the policy input carries only
//! [`masked_headers`], which blanks every header that can hold a secret.

use crate::policy::{Decision, DecisionInput};
use std::collections::BTreeMap;

/// Headers whose values are credentials or session material.
const SENSITIVE: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "client-key",
    "x-api-key",
    "x-auth-token",
];

/// Whether a header (any case) may carry a secret.
pub fn is_sensitive(name: &str) -> bool {
    SENSITIVE.iter().any(|s| s.eq_ignore_ascii_case(name))
}

/// Form parameters that carry credentials at the token endpoint.
pub fn is_sensitive_param(name: &str) -> bool {
    matches!(
        name,
        "client_secret" | "client_assertion" | "assertion" | "password" | "refresh_token"
    )
}

/// Header names lower-cased with sensitive values replaced by `***`; non-UTF-8 values dropped.
pub fn masked_headers(headers: &http::HeaderMap) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (name, value) in headers {
        let v = if is_sensitive(name.as_str()) {
            "***".to_owned()
        } else {
            match value.to_str() {
                Ok(v) => v.to_owned(),
                Err(_) => continue,
            }
        };
        out.insert(name.as_str().to_owned(), v);
    }
    out
}

/// Emits the record of one decision.
pub fn record(input: &DecisionInput, decision: &Decision, cached: bool) {
    let r = &input.resource;
    tracing::info!(
        target: "iamgate::decision",
        subject = %input.user.id,
        subject_type = %input.user.kind,
        method = %input.request.method,
        path = %input.request.path,
        route = %input.route.id,
        permission = input.route.permission.as_deref().unwrap_or(""),
        rule = input.route.rule.as_deref().unwrap_or(""),
        company = r.company_id.as_deref().unwrap_or(""),
        project = r.project_id.as_deref().unwrap_or(""),
        environment = r.env_id.as_deref().unwrap_or(""),
        allow = decision.allow,
        reason = %decision.reason,
        revision = %decision.revision,
        cached,
        "decision"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_masked_and_other_headers_kept() {
        let mut h = http::HeaderMap::new();
        h.insert("authorization", "Bearer secret-token".parse().unwrap());
        h.insert("cookie", "sid=abc".parse().unwrap());
        h.insert("client-key", "ck".parse().unwrap());
        h.insert("x-request-id", "r-1".parse().unwrap());
        let m = masked_headers(&h);
        assert_eq!(m["authorization"], "***");
        assert_eq!(m["cookie"], "***");
        assert_eq!(m["client-key"], "***");
        assert_eq!(m["x-request-id"], "r-1");
        assert!(!format!("{m:?}").contains("secret-token"));
        assert!(is_sensitive_param("client_assertion") && !is_sensitive_param("grant_type"));
    }
}
