//! Resource resolution: turns a route's checks and one request into the concrete resources the
//! policy must allow, between route matching and the decision.
//!
//! Ids come from path parameters, query parameters or the JSON body, as each check declares. A
//! multi-valued source (a repeated or comma-separated query key, a `*` in a body pointer) yields
//! one target per value, and every target must be allowed. A declared source the request does not
//! fill is the client's error (400 naming the field); a check whose `when` conditions do not
//! hold is skipped.

use super::route::PathParams;
use super::table::{Check, Cond, MAX_TARGETS, PointerStep, Source};

/// Why a request's resources could not be resolved; answered with 400 (413 never: the body cap
/// is enforced before this stage).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// A declared source has no value.
    #[error("the request names no {0}")]
    Missing(String),
    /// A body field is not a string.
    #[error("{0} must be a non-empty string")]
    WrongType(String),
    /// Too many combinations.
    #[error("the request names too many resources (more than {MAX_TARGETS})")]
    TooMany,
}

/// The parts of a request that sources read.
#[derive(Debug)]
pub struct RequestView<'a> {
    /// Decoded path parameters.
    pub path_params: &'a PathParams,
    /// Decoded query pairs, in order.
    pub query: &'a [(String, String)],
    /// The parsed JSON body, when the route needs it.
    pub body: Option<&'a serde_json::Value>,
}

/// One resource to decide on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    /// Company id named by the request.
    pub company: Option<String>,
    /// Project id.
    pub project: Option<String>,
    /// Environment id.
    pub env: Option<String>,
}

fn body_values<'v>(
    v: &'v serde_json::Value,
    steps: &[PointerStep],
    out: &mut Vec<&'v serde_json::Value>,
) {
    let Some((first, rest)) = steps.split_first() else {
        out.push(v);
        return;
    };
    match (first, v) {
        (PointerStep::Each, serde_json::Value::Array(items)) => {
            for item in items {
                body_values(item, rest, out);
            }
        }
        (PointerStep::Key(k), serde_json::Value::Object(o)) => {
            if let Some(next) = o.get(k) {
                body_values(next, rest, out);
            }
        }
        (PointerStep::Key(k), serde_json::Value::Array(items)) => {
            if let Some(next) = k.parse::<usize>().ok().and_then(|i| items.get(i)) {
                body_values(next, rest, out);
            }
        }
        _ => {}
    }
}

impl RequestView<'_> {
    /// Every value of `src` (empty when absent). Body values must be strings.
    pub fn values(&self, src: &Source) -> Result<Vec<String>, ResolveError> {
        match src {
            Source::Path(n) => Ok(self
                .path_params
                .get(n)
                .map(str::to_owned)
                .into_iter()
                .collect()),
            Source::Query(n) => Ok(self
                .query
                .iter()
                .filter(|(k, _)| k == n)
                .flat_map(|(_, v)| v.split(','))
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .collect()),
            Source::Body(steps) => {
                let Some(body) = self.body else {
                    return Ok(vec![]);
                };
                let mut found = Vec::new();
                body_values(body, steps, &mut found);
                found
                    .into_iter()
                    .filter(|v| !v.is_null())
                    .map(|v| match v {
                        serde_json::Value::String(s) if !s.is_empty() => Ok(s.clone()),
                        _ => Err(ResolveError::WrongType(src.describe())),
                    })
                    .collect()
            }
        }
    }

    /// Whether `cond` holds. A body field that is present but not a string counts as present
    /// (so `when: [body:/role]` applies to `"role": ""`, a removal).
    pub fn holds(&self, cond: &Cond) -> bool {
        let present = |s: &Source| match s {
            Source::Body(steps) => self.body.is_some_and(|b| {
                let mut found = Vec::new();
                body_values(b, steps, &mut found);
                found.iter().any(|v| !v.is_null())
            }),
            other => self.values(other).is_ok_and(|v| !v.is_empty()),
        };
        match cond {
            Cond::Present(s) => present(s),
            Cond::Absent(s) => !present(s),
            Cond::Equals(s, want) => self
                .values(s)
                .is_ok_and(|v| v.first().is_some_and(|x| x == want)),
        }
    }

    /// Whether every condition of `check` holds.
    pub fn applies(&self, check: &Check) -> bool {
        check.when.iter().all(|c| self.holds(c))
    }

    /// The targets of an applicable check: the product of its sources' values.
    pub fn targets(&self, check: &Check) -> Result<Vec<Target>, ResolveError> {
        // Most checks name at most one value per part, from the path: one target, without the
        // product's intermediate lists (five allocations on every proxied request).
        let single = |src: &Option<Source>| match src {
            None => Some(Ok(None)),
            Some(s @ Source::Path(n)) => Some(
                self.path_params
                    .get(n)
                    .map(|v| Some(v.to_owned()))
                    .ok_or_else(|| ResolveError::Missing(s.describe())),
            ),
            Some(_) => None,
        };
        if let (Some(company), Some(project), Some(env)) = (
            single(&check.company),
            single(&check.project),
            single(&check.env),
        ) {
            return Ok(vec![Target {
                company: company?,
                project: project?,
                env: env?,
            }]);
        }
        let each = |src: &Option<Source>| -> Result<Vec<Option<String>>, ResolveError> {
            match src {
                None => Ok(vec![None]),
                Some(s) => {
                    let v = self.values(s)?;
                    if v.is_empty() {
                        return Err(ResolveError::Missing(s.describe()));
                    }
                    Ok(v.into_iter().map(Some).collect())
                }
            }
        };
        let (companies, projects, envs) = (
            each(&check.company)?,
            each(&check.project)?,
            each(&check.env)?,
        );
        if companies.len() * projects.len() * envs.len() > MAX_TARGETS {
            return Err(ResolveError::TooMany);
        }
        let mut out = Vec::new();
        for c in &companies {
            for p in &projects {
                for e in &envs {
                    let t = Target {
                        company: c.clone(),
                        project: p.clone(),
                        env: e.clone(),
                    };
                    if !out.contains(&t) {
                        out.push(t);
                    }
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::table::{Requirement, Source};
    use std::sync::Arc;

    fn check(company: Option<&str>, project: Option<&str>, env: Option<&str>) -> Check {
        let p = |s: Option<&str>| s.map(|s| Source::parse(s).unwrap());
        Check {
            requirement: Requirement::Permission(Arc::from("x")),
            company: p(company),
            project: p(project),
            env: p(env),
            when: vec![],
        }
    }

    #[test]
    fn sources_read_path_query_and_body() {
        let params = PathParams::from_iter([("projectId", "p1")]);
        let query = vec![
            ("projectIds".to_owned(), "a,b".to_owned()),
            ("projectIds".to_owned(), "c".to_owned()),
        ];
        let body = serde_json::json!({"environment": "dev", "projectsRole": [{"projectId": "x"}, {"projectId": "y"}]});
        let view = RequestView {
            path_params: &params,
            query: &query,
            body: Some(&body),
        };
        let t = view
            .targets(&check(
                None,
                Some("path:projectId"),
                Some("body:/environment"),
            ))
            .unwrap();
        assert_eq!(
            t,
            vec![Target {
                company: None,
                project: Some("p1".into()),
                env: Some("dev".into())
            }]
        );
        let t = view
            .targets(&check(None, Some("query:projectIds"), None))
            .unwrap();
        assert_eq!(t.len(), 3);
        let t = view
            .targets(&check(None, Some("body:/projectsRole/*/projectId"), None))
            .unwrap();
        assert_eq!(
            t.iter()
                .map(|t| t.project.clone().unwrap())
                .collect::<Vec<_>>(),
            ["x", "y"]
        );
    }

    #[test]
    fn missing_and_wrong_typed_ids_are_client_errors() {
        let params = PathParams::default();
        let body = serde_json::json!({"environment": 5, "list": ["a", {"x": 1}]});
        let view = RequestView {
            path_params: &params,
            query: &[],
            body: Some(&body),
        };
        assert_eq!(
            view.targets(&check(None, None, Some("body:/environment"))),
            Err(ResolveError::WrongType("body field /environment".into()))
        );
        assert_eq!(
            view.targets(&check(None, None, Some("body:/nothing"))),
            Err(ResolveError::Missing("body field /nothing".into()))
        );
        assert_eq!(
            view.targets(&check(None, Some("body:/list/*"), None)),
            Err(ResolveError::WrongType("body field /list/*".into()))
        );
        assert_eq!(
            view.targets(&check(Some("query:tenantId"), None, None)),
            Err(ResolveError::Missing("query parameter tenantId".into()))
        );
    }

    #[test]
    fn conditions() {
        let params = PathParams::from_iter([("contextType", "project")]);
        let body = serde_json::json!({"role": ""});
        let view = RequestView {
            path_params: &params,
            query: &[],
            body: Some(&body),
        };
        assert!(view.holds(&Cond::parse("body:/role").unwrap()));
        assert!(view.holds(&Cond::parse("!body:/projectsRole").unwrap()));
        assert!(view.holds(&Cond::parse("path:contextType=project").unwrap()));
        assert!(!view.holds(&Cond::parse("path:contextType=company").unwrap()));
        assert!(!view.holds(&Cond::parse("query:environment").unwrap()));
    }

    #[test]
    fn expansion_is_bounded() {
        let params = PathParams::default();
        let ids: Vec<String> = (0..100).map(|i| format!("p{i}")).collect();
        let query = vec![("projectIds".to_owned(), ids.join(","))];
        let view = RequestView {
            path_params: &params,
            query: &query,
            body: None,
        };
        assert_eq!(
            view.targets(&check(None, Some("query:projectIds"), None)),
            Err(ResolveError::TooMany)
        );
    }
}
