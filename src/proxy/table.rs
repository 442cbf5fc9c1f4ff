//! The route table configuration: which Console routes exist, who may call them, and where each
//! request names its company, project and environment.
//!
//! It sits right after path validation in the request path. The YAML model
//! (`config/routes.yaml` is the shipped default, embedded in the binary) is compiled once into a
//! [`RouteTable`] of [`Route`]s; every problem in a file is reported at once. Anything not in
//! the table is refused with 404 and never forwarded.

use super::route::{Match, RouteTable};
use serde::Deserialize;
use std::collections::HashSet;
use std::sync::Arc;

/// The default table, covering every route of the Console route inventory.
pub const DEFAULT_ROUTES: &str = include_str!("../../config/routes.yaml");

/// Longest product of multi-valued sources one check may expand to.
pub const MAX_TARGETS: usize = 64;

/// A route file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouteFile {
    /// The routes.
    pub routes: Vec<RawRoute>,
}

/// One route as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Unique id.
    pub id: String,
    /// HTTP method.
    pub method: String,
    /// Path template.
    pub path: String,
    /// `public`, `authenticated` or `policy` (default).
    pub access: Option<String>,
    /// Shorthand for one check.
    pub permission: Option<String>,
    /// Shorthand for one rule check.
    pub rule: Option<String>,
    /// Company id source.
    pub company: Option<String>,
    /// Project id source.
    pub project: Option<String>,
    /// Environment id source.
    pub env: Option<String>,
    /// Several checks.
    pub checks: Option<Vec<RawCheck>>,
    /// Response rule in `iamgate.responses`.
    pub response: Option<String>,
    /// Served by the gateway's management API (a handler name) instead of the upstream.
    pub local: Option<String>,
    /// `project`: on a 2xx answer, the Console's answer (a Console-shaped project) is recorded
    /// in the directory, in the company the request was authorized in.
    pub records: Option<String>,
    /// Removed: a management handler says itself what its request grants and acts on. Kept
    /// only to refuse old tables with a message instead of an unknown-field error.
    pub grants: Option<yaml_serde::Value>,
    /// Removed: a project is known only from an authority (directory sync, directory API,
    /// the Console's answer to a project creation), never from a request naming it.
    pub adopt_projects: Option<yaml_serde::Value>,
}

/// One check as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    /// Permission at the resource.
    pub permission: Option<String>,
    /// Rule in `iamgate.rules`.
    pub rule: Option<String>,
    /// Any valid token.
    pub authenticated: Option<bool>,
    /// Company id source (default: the route's).
    pub company: Option<String>,
    /// Project id source (default: the route's).
    pub project: Option<String>,
    /// Environment id source (default: the route's).
    pub env: Option<String>,
    /// Conditions, all of which must hold for the check to apply.
    #[serde(default)]
    pub when: Vec<String>,
}

/// One step of a body pointer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PointerStep {
    /// An object key (or array index written as digits).
    Key(String),
    /// Every element of an array.
    Each,
}

/// Where a request names an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A path template parameter.
    Path(String),
    /// A query parameter: every value, comma lists split.
    Query(String),
    /// A JSON body field by pointer.
    Body(Vec<PointerStep>),
}

impl Source {
    /// Parses `path:NAME`, `query:NAME` or `body:/json/pointer`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(n) = s.strip_prefix("path:") {
            return non_empty(n).map(Self::Path);
        }
        if let Some(n) = s.strip_prefix("query:") {
            return non_empty(n).map(Self::Query);
        }
        if let Some(p) = s.strip_prefix("body:") {
            let rest = p
                .strip_prefix('/')
                .ok_or_else(|| format!("`{s}`: a body pointer starts with /"))?;
            let steps = rest
                .split('/')
                .map(|seg| match seg {
                    "*" => Ok(PointerStep::Each),
                    "" => Err(format!("`{s}`: empty pointer segment")),
                    k => Ok(PointerStep::Key(k.replace("~1", "/").replace("~0", "~"))),
                })
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(Self::Body(steps));
        }
        Err(format!(
            "`{s}` is not path:NAME, query:NAME or body:/pointer"
        ))
    }

    /// A short description for error messages (`body /environment`).
    pub fn describe(&self) -> String {
        match self {
            Self::Path(n) => format!("path parameter {n}"),
            Self::Query(n) => format!("query parameter {n}"),
            Self::Body(steps) => {
                let mut s = String::from("body field ");
                for st in steps {
                    s.push('/');
                    match st {
                        PointerStep::Key(k) => s.push_str(k),
                        PointerStep::Each => s.push('*'),
                    }
                }
                s
            }
        }
    }
}

fn non_empty(n: &str) -> Result<String, String> {
    if n.is_empty() {
        Err("source names no parameter".to_owned())
    } else {
        Ok(n.to_owned())
    }
}

/// A condition on the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cond {
    /// The source has a value.
    Present(Source),
    /// The source has no value.
    Absent(Source),
    /// The source's (first) value equals the text.
    Equals(Source, String),
}

impl Cond {
    /// Parses `SRC`, `!SRC` or `SRC=value`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(rest) = s.strip_prefix('!') {
            return Source::parse(rest).map(Self::Absent);
        }
        match s.split_once('=') {
            Some((src, v)) => Ok(Self::Equals(Source::parse(src)?, v.to_owned())),
            None => Source::parse(s).map(Self::Present),
        }
    }

    fn source(&self) -> &Source {
        match self {
            Self::Present(s) | Self::Absent(s) | Self::Equals(s, _) => s,
        }
    }
}

/// What a check requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// A permission at the resolved resource.
    Permission(Arc<str>),
    /// A rule in `iamgate.rules`.
    Rule(Arc<str>),
    /// Only a valid token.
    Authenticated,
}

/// One authorization check of a route.
#[derive(Debug, Clone)]
pub struct Check {
    /// What it requires.
    pub requirement: Requirement,
    /// Company id source.
    pub company: Option<Source>,
    /// Project id source.
    pub project: Option<Source>,
    /// Environment id source.
    pub env: Option<Source>,
    /// Conditions for the check to apply.
    pub when: Vec<Cond>,
}

/// Who may call a route.
#[derive(Debug, Clone)]
pub enum Access {
    /// No token needed; forwarded without identity.
    Public,
    /// Any valid token.
    Authenticated,
    /// The policy decides every applicable check.
    Policy(Vec<Check>),
}

/// A compiled route.
#[derive(Debug)]
pub struct Route {
    /// Id.
    pub id: Arc<str>,
    /// Who may call it.
    pub access: Access,
    /// Response rule in `iamgate.responses`.
    pub response: Option<Arc<str>>,
    /// Whether the JSON body must be read before deciding.
    pub needs_body: bool,
    /// Management handler serving the route.
    pub local: Option<Arc<str>>,
    /// Whether a 2xx answer is a created project to record (`records: project`).
    pub records_project: bool,
}

/// The compiled route table.
#[derive(Debug)]
pub struct Routes {
    table: RouteTable<Arc<Route>>,
    ids: Vec<Arc<str>>,
    /// Every permission a check names, with the route naming it.
    permissions: Vec<(Arc<str>, Arc<str>)>,
}

impl Routes {
    /// Compiles the shipped default table.
    pub fn default_table() -> Result<Self, Vec<String>> {
        Self::from_yaml(DEFAULT_ROUTES)
    }

    /// Parses and compiles a route file.
    pub fn from_yaml(text: &str) -> Result<Self, Vec<String>> {
        let raw: RawRouteFile = yaml_serde::from_str(text).map_err(|e| vec![e.to_string()])?;
        Self::compile(raw)
    }

    /// Compiles routes, reporting every problem.
    pub fn compile(raw: RawRouteFile) -> Result<Self, Vec<String>> {
        let mut errs = Vec::new();
        let mut table = RouteTable::default();
        let mut ids = HashSet::new();
        let mut compiled = Vec::with_capacity(raw.routes.len());
        let mut permissions = Vec::new();
        for r in raw.routes {
            let at = format!("route {}", r.id);
            if r.id.is_empty() || !ids.insert(r.id.clone()) {
                errs.push(format!("{at}: id must be non-empty and unique"));
            }
            let method = match http::Method::from_bytes(r.method.as_bytes()) {
                Ok(m) if r.method.bytes().all(|b| b.is_ascii_uppercase()) => m,
                _ => {
                    errs.push(format!("{at}: `{}` is not an HTTP method", r.method));
                    continue;
                }
            };
            match compile_route(&r) {
                Ok(route) => {
                    compiled.push(route.id.clone());
                    if let Access::Policy(checks) = &route.access {
                        for c in checks {
                            if let Requirement::Permission(p) = &c.requirement {
                                permissions.push((route.id.clone(), p.clone()));
                            }
                        }
                    }
                    if let Err(e) = check_params(&r.path, &route) {
                        errs.push(format!("{at}: {e}"));
                    }
                    if let Err(e) = table.insert(method, &r.path, Arc::new(route)) {
                        errs.push(format!("{at}: {e}"));
                    }
                }
                Err(mut es) => {
                    for e in es.drain(..) {
                        errs.push(format!("{at}: {e}"));
                    }
                }
            }
        }
        if errs.is_empty() {
            Ok(Self {
                table,
                ids: compiled,
                permissions,
            })
        } else {
            Err(errs)
        }
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Every route's id, in file order.
    pub fn ids(&self) -> &[Arc<str>] {
        &self.ids
    }

    /// Every permission the table's checks name, as `("route <id>", permission)`: the policy
    /// must define each one.
    pub fn named_permissions(&self) -> Vec<(String, String)> {
        self.permissions
            .iter()
            .map(|(id, p)| (format!("route {id}"), p.to_string()))
            .collect()
    }

    /// Looks a validated path up.
    pub fn find(
        &self,
        method: &http::Method,
        path: &super::path::Segments<'_>,
    ) -> Match<'_, Arc<Route>> {
        self.table.find(method, path)
    }
}

fn compile_route(r: &RawRoute) -> Result<Route, Vec<String>> {
    let mut errs = Vec::new();
    let mut src = |s: &Option<String>| -> Option<Source> {
        s.as_deref()
            .and_then(|s| Source::parse(s).map_err(|e| errs.push(e)).ok())
    };
    let (company, project, env) = (src(&r.company), src(&r.project), src(&r.env));
    let access = r.access.as_deref().unwrap_or("policy");
    let shorthand = r.permission.is_some() || r.rule.is_some();
    let access = match access {
        "public" | "authenticated" if shorthand || r.checks.is_some() => {
            errs.push(format!(
                "access {access} takes no permission, rule or checks"
            ));
            Access::Public
        }
        "public" => Access::Public,
        "authenticated" => Access::Authenticated,
        "policy" => {
            let raw_checks: Vec<RawCheck> = match (&r.checks, shorthand) {
                (Some(_), true) => {
                    errs.push("give either permission/rule or checks, not both".to_owned());
                    vec![]
                }
                (Some(c), false) if c.is_empty() => {
                    errs.push("checks must not be empty".to_owned());
                    vec![]
                }
                (Some(c), false) => c.clone(),
                (None, true) => vec![RawCheck {
                    permission: r.permission.clone(),
                    rule: r.rule.clone(),
                    authenticated: None,
                    company: None,
                    project: None,
                    env: None,
                    when: vec![],
                }],
                (None, false) => {
                    errs.push(
                        "a policy route needs a permission, a rule or checks (or access: public / authenticated)"
                            .to_owned(),
                    );
                    vec![]
                }
            };
            let mut checks = Vec::new();
            for (i, c) in raw_checks.iter().enumerate() {
                match compile_check(c, &company, &project, &env) {
                    Ok(c) => checks.push(c),
                    Err(e) => errs.push(format!("checks[{i}]: {e}")),
                }
            }
            Access::Policy(checks)
        }
        other => {
            errs.push(format!(
                "access `{other}` is not public, authenticated or policy"
            ));
            Access::Public
        }
    };
    if r.grants.is_some() {
        errs.push(
            "`grants` was removed: a management handler says what its request grants; delete the key"
                .to_owned(),
        );
    }
    if r.adopt_projects.is_some() {
        errs.push(
            "`adopt_projects` was removed: projects are known only from the directory; delete the key"
                .to_owned(),
        );
    }
    if let Some(l) = &r.local
        && !crate::proxy::management::HANDLERS.contains(&l.as_str())
        && !crate::proxy::policy_api::HANDLERS.contains(&l.as_str())
    {
        errs.push(format!("local `{l}` is not a management or policy handler"));
    }
    if r.local.is_some() && !matches!(access, Access::Policy(_)) {
        errs.push("a local route must be decided by the policy".to_owned());
    }
    let records_project = match r.records.as_deref() {
        None => false,
        Some("project") => {
            // The project is recorded in the company the request was authorized in; a route
            // that decides without one would let the answer alone pick the company.
            let each_names_company = match &access {
                Access::Policy(checks) => checks.iter().all(|c| {
                    c.company.is_some() && matches!(c.requirement, Requirement::Permission(_))
                }),
                _ => false,
            };
            if !each_names_company || r.local.is_some() || r.response.is_some() {
                errs.push(
                    "records: project needs a forwarded route whose every check is a permission with a company source, and no response rule"
                        .to_owned(),
                );
            }
            true
        }
        Some(other) => {
            errs.push(format!("records `{other}` is not known (only `project`)"));
            false
        }
    };
    if !errs.is_empty() {
        return Err(errs);
    }
    let needs_body = r.local.is_some()
        || match &access {
            Access::Policy(checks) => checks.iter().any(|c| {
                [&c.company, &c.project, &c.env]
                    .into_iter()
                    .flatten()
                    .chain(c.when.iter().map(Cond::source))
                    .any(|s| matches!(s, Source::Body(_)))
            }),
            _ => false,
        };
    Ok(Route {
        id: Arc::from(r.id.as_str()),
        access,
        response: r.response.as_deref().map(Arc::from),
        needs_body,
        local: r.local.as_deref().map(Arc::from),
        records_project,
    })
}

fn compile_check(
    c: &RawCheck,
    company: &Option<Source>,
    project: &Option<Source>,
    env: &Option<Source>,
) -> Result<Check, String> {
    let requirement = match (&c.permission, &c.rule, c.authenticated) {
        (Some(p), None, None) if !p.is_empty() => Requirement::Permission(Arc::from(p.as_str())),
        (None, Some(r), None) if !r.is_empty() => Requirement::Rule(Arc::from(r.as_str())),
        (None, None, Some(true)) => Requirement::Authenticated,
        _ => {
            return Err("needs exactly one of permission, rule or authenticated: true".to_owned());
        }
    };
    let pick = |own: &Option<String>, default: &Option<Source>| -> Result<Option<Source>, String> {
        match own {
            Some(s) => Source::parse(s).map(Some),
            None => Ok(default.clone()),
        }
    };
    let check = Check {
        company: pick(&c.company, company)?,
        project: pick(&c.project, project)?,
        env: pick(&c.env, env)?,
        when: c
            .when
            .iter()
            .map(|w| Cond::parse(w))
            .collect::<Result<_, _>>()?,
        requirement,
    };
    // A permission is checked at a resource of its own scope: make sure the route says where
    // that resource comes from, so a table mistake fails at start-up, not as a silent deny.
    if let Requirement::Permission(p) = &check.requirement {
        let needs = if p.starts_with("console.company.") || p.starts_with("marketplace.company.") {
            vec![("company", check.company.is_some())]
        } else if p.starts_with("console.project.") {
            vec![("project", check.project.is_some())]
        } else if p.starts_with("console.environment.") {
            vec![
                ("project", check.project.is_some()),
                ("env", check.env.is_some()),
            ]
        } else {
            vec![]
        };
        for (what, ok) in needs {
            if !ok {
                return Err(format!("permission {p} needs a {what} source"));
            }
        }
    }
    Ok(check)
}

/// Every `path:NAME` source must name a parameter of the template.
fn check_params(template: &str, route: &Route) -> Result<(), String> {
    let Access::Policy(checks) = &route.access else {
        return Ok(());
    };
    let params: HashSet<&str> = template
        .split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect();
    for c in checks {
        let sources = [&c.company, &c.project, &c.env]
            .into_iter()
            .flatten()
            .chain(c.when.iter().map(Cond::source));
        for s in sources {
            if let Source::Path(n) = s
                && !params.contains(n.as_str())
            {
                return Err(format!("path:{n} is not a parameter of {template}"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::path::split;

    #[test]
    fn the_default_table_compiles_and_covers_the_inventory() {
        let routes = Routes::default_table().unwrap();
        assert!(routes.len() >= 80, "{}", routes.len());
        let find = |m: http::Method, p: &str| match routes.find(&m, &split(p).unwrap()) {
            Match::Found(r, _) => r.id.to_string(),
            other => format!("{other:?}"),
        };
        assert_eq!(find(http::Method::GET, "/api/backend/projects/draft"), "C8");
        assert_eq!(find(http::Method::GET, "/api/backend/projects/p1/"), "P1");
        assert_eq!(
            find(
                http::Method::POST,
                "/api/deploy/projects/p1/trigger/pipeline/"
            ),
            "DP1"
        );
        assert_eq!(
            find(
                http::Method::GET,
                "/api/projects/p/environments/dev/pods/describe/"
            ),
            "E3.pods"
        );
        assert_eq!(
            find(
                http::Method::GET,
                "/api/projects/p/environments/dev/pods/web-1/containers/app/logs"
            ),
            "E5"
        );
        assert_eq!(
            find(http::Method::POST, "/api/refreshToken"),
            "refresh-token.camel"
        );
    }

    #[test]
    fn every_problem_of_a_file_is_reported() {
        let errs = Routes::from_yaml(
            r#"
routes:
  - {id: a, method: get, path: /x, access: public}
  - {id: b, method: GET, path: "/p/{projectId}", permission: console.project.view}
  - {id: b, method: GET, path: /y, permission: console.company.view, company: "query:"}
  - {id: c, method: GET, path: "/z/{id}", permission: console.company.view, company: "path:other"}
  - {id: d, method: GET, path: /w, access: public, permission: console.company.view}
  - {id: e, method: GET, path: /v, access: sometimes}
  - {id: f, method: GET, path: /u}
  - {id: g, method: GET, path: /t, checks: [{permission: console.company.view, rule: x, company: "body:/c"}]}
  - {id: h, method: GET, path: /s, access: public}
  - {id: i, method: GET, path: /s, access: public}
"#,
        )
        .unwrap_err();
        let text = errs.join("\n");
        for want in [
            "route a: `get` is not an HTTP method",
            "route b: checks[0]: permission console.project.view needs a project source",
            "route b: id must be non-empty and unique",
            "source names no parameter",
            "route c: path:other is not a parameter",
            "route d: access public takes no permission",
            "route e: access `sometimes`",
            "route f: a policy route needs",
            "route g: checks[0]: needs exactly one",
            "route i: duplicate route GET /s",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        let errs = Routes::from_yaml(
            "routes:\n  - {id: a, method: GET, path: /x, access: public, permision: x}\n",
        )
        .unwrap_err();
        assert!(errs[0].contains("unknown field"), "{errs:?}");
    }

    #[test]
    fn sources_and_conditions_parse() {
        assert_eq!(
            Source::parse("body:/projectsRole/*/projectId").unwrap(),
            Source::Body(vec![
                PointerStep::Key("projectsRole".into()),
                PointerStep::Each,
                PointerStep::Key("projectId".into())
            ])
        );
        assert_eq!(
            Cond::parse("!query:env").unwrap(),
            Cond::Absent(Source::Query("env".into()))
        );
        assert_eq!(
            Cond::parse("body:/contextType=project").unwrap(),
            Cond::Equals(
                Source::Body(vec![PointerStep::Key("contextType".into())]),
                "project".into()
            )
        );
        assert!(Source::parse("header:x").is_err());
        assert!(Source::parse("body:x").is_err());
        assert!(Source::parse("body:/a//b").is_err());
    }
}
