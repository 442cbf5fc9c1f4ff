//! The route table: `METHOD /path/{param}/…` templates in a segment trie. Literal segments win
//! over parameters (`/api/backend/projects/draft` before `/api/backend/projects/{projectId}`),
//! with backtracking when a literal branch dead-ends; one trailing slash is ignored.

use super::path::Segments;
use std::collections::{BTreeMap, HashMap};

/// Why a template could not be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// Not `/`-rooted, or an empty or malformed segment.
    #[error("invalid template {0}")]
    Template(String),
    /// Two parameters with different names at one position.
    #[error(
        "template {template}: parameter {{{name}}} conflicts with {{{existing}}} at the same position"
    )]
    ParamConflict {
        /// The template.
        template: String,
        /// Its parameter.
        name: String,
        /// The one already there.
        existing: String,
    },
    /// Same method and template twice.
    #[error("duplicate route {0}")]
    Duplicate(String),
}

/// The table is fixed at load and looked up once per path segment per request: a fast hasher,
/// since no request can insert into it.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

#[derive(Debug)]
struct Node<T> {
    literals: Map<String, Node<T>>,
    param: Option<(String, Box<Node<T>>)>,
    routes: Map<http::Method, T>,
}

impl<T> Default for Node<T> {
    fn default() -> Self {
        Self {
            literals: Map::default(),
            param: None,
            routes: Map::default(),
        }
    }
}

/// The outcome of a lookup.
#[derive(Debug, PartialEq, Eq)]
pub enum Match<'t, T> {
    /// A route, with its path parameters (decoded).
    Found(&'t T, BTreeMap<String, String>),
    /// The path exists for other methods.
    MethodNotAllowed(Vec<http::Method>),
    /// No route has this path.
    NotFound,
}

/// A method + path-template table.
#[derive(Debug)]
pub struct RouteTable<T> {
    root: Node<T>,
}

impl<T> Default for RouteTable<T> {
    fn default() -> Self {
        Self {
            root: Node::default(),
        }
    }
}

impl<T> RouteTable<T> {
    /// Adds `method template → value`.
    pub fn insert(
        &mut self,
        method: http::Method,
        template: &str,
        value: T,
    ) -> Result<(), RouteError> {
        let bad = || RouteError::Template(template.to_owned());
        let rest = template.strip_prefix('/').ok_or_else(bad)?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let mut node = &mut self.root;
        if !rest.is_empty() {
            for seg in rest.split('/') {
                if seg.is_empty() {
                    return Err(bad());
                }
                if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    if name.is_empty() || name.contains(['{', '}']) {
                        return Err(bad());
                    }
                    let slot = node
                        .param
                        .get_or_insert_with(|| (name.to_owned(), Box::default()));
                    if slot.0 != name {
                        return Err(RouteError::ParamConflict {
                            template: template.to_owned(),
                            name: name.to_owned(),
                            existing: slot.0.clone(),
                        });
                    }
                    node = &mut slot.1;
                } else {
                    if seg.contains(['{', '}']) {
                        return Err(bad());
                    }
                    node = node.literals.entry(seg.to_owned()).or_default();
                }
            }
        }
        if node.routes.contains_key(&method) {
            return Err(RouteError::Duplicate(format!("{method} {template}")));
        }
        node.routes.insert(method, value);
        Ok(())
    }

    /// Looks up a validated path.
    pub fn find(&self, method: &http::Method, path: &Segments<'_>) -> Match<'_, T> {
        let mut params = Vec::new();
        match find_node(&self.root, &path.decoded, &mut params) {
            None => Match::NotFound,
            Some(node) => match node.routes.get(method) {
                Some(v) => Match::Found(v, params.into_iter().collect()),
                None => {
                    let mut allowed: Vec<http::Method> = node.routes.keys().cloned().collect();
                    allowed.sort_by(|a, b| a.as_str().cmp(b.as_str()));
                    Match::MethodNotAllowed(allowed)
                }
            },
        }
    }
}

fn find_node<'t, T>(
    node: &'t Node<T>,
    segs: &[std::borrow::Cow<'_, str>],
    params: &mut Vec<(String, String)>,
) -> Option<&'t Node<T>> {
    let Some((first, rest)) = segs.split_first() else {
        return (!node.routes.is_empty()).then_some(node);
    };
    if let Some(child) = node.literals.get(first.as_ref())
        && let Some(found) = find_node(child, rest, params)
    {
        return Some(found);
    }
    let (name, child) = node.param.as_ref()?;
    params.push((name.clone(), first.as_ref().to_owned()));
    match find_node(child, rest, params) {
        Some(found) => Some(found),
        None => {
            params.pop();
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::path::split;
    use super::*;
    use http::Method;

    fn table() -> RouteTable<&'static str> {
        let mut t = RouteTable::default();
        t.insert(Method::GET, "/api/backend/projects/", "list")
            .unwrap();
        t.insert(Method::GET, "/api/backend/projects/draft", "draft")
            .unwrap();
        t.insert(Method::GET, "/api/backend/projects/{projectId}", "one")
            .unwrap();
        t.insert(
            Method::DELETE,
            "/api/backend/projects/{projectId}",
            "delete",
        )
        .unwrap();
        t.insert(
            Method::GET,
            "/api/backend/projects/{projectId}/environments/{envId}",
            "env",
        )
        .unwrap();
        t.insert(
            Method::GET,
            "/api/backend/projects/draft/preview",
            "preview",
        )
        .unwrap();
        t
    }

    fn find<'t>(t: &'t RouteTable<&'static str>, m: Method, p: &str) -> Match<'t, &'static str> {
        t.find(&m, &split(p).unwrap())
    }

    #[test]
    fn literal_wins_over_parameter_and_trailing_slash_is_ignored() {
        let t = table();
        assert!(matches!(
            find(&t, Method::GET, "/api/backend/projects/draft"),
            Match::Found(&"draft", _)
        ));
        assert!(matches!(
            find(&t, Method::GET, "/api/backend/projects/draft/"),
            Match::Found(&"draft", _)
        ));
        assert!(matches!(
            find(&t, Method::GET, "/api/backend/projects"),
            Match::Found(&"list", _)
        ));
        let Match::Found(v, params) = find(&t, Method::GET, "/api/backend/projects/p1") else {
            panic!()
        };
        assert_eq!(*v, "one");
        assert_eq!(params["projectId"], "p1");
    }

    #[test]
    fn backtracks_from_a_dead_literal_branch_to_the_parameter() {
        let t = table();
        // `draft` is a literal child, but draft/environments/x exists only under {projectId}.
        let Match::Found(v, params) = find(
            &t,
            Method::GET,
            "/api/backend/projects/draft/environments/dev",
        ) else {
            panic!()
        };
        assert_eq!(*v, "env");
        assert_eq!(params["projectId"], "draft");
        assert_eq!(params["envId"], "dev");
    }

    #[test]
    fn encoded_slash_is_one_parameter_value() {
        let t = table();
        let Match::Found(_, params) = find(&t, Method::GET, "/api/backend/projects/a%2Fb") else {
            panic!()
        };
        assert_eq!(params["projectId"], "a/b");
    }

    #[test]
    fn unknown_paths_and_methods() {
        let t = table();
        assert_eq!(
            find(&t, Method::GET, "/api/backend/nothing"),
            Match::NotFound
        );
        assert_eq!(
            find(&t, Method::GET, "/api/backend/projects/p1/extra"),
            Match::NotFound
        );
        assert_eq!(find(&t, Method::GET, "/"), Match::NotFound);
        assert_eq!(
            find(&t, Method::POST, "/api/backend/projects/p1"),
            Match::MethodNotAllowed(vec![Method::DELETE, Method::GET])
        );
    }

    #[test]
    fn bad_templates_are_refused() {
        let mut t: RouteTable<()> = RouteTable::default();
        t.insert(Method::GET, "/a/{id}", ()).unwrap();
        assert!(matches!(
            t.insert(Method::GET, "/a/{other}/b", ()),
            Err(RouteError::ParamConflict { .. })
        ));
        assert!(matches!(
            t.insert(Method::GET, "/a/{id}", ()),
            Err(RouteError::Duplicate(_))
        ));
        assert!(t.insert(Method::GET, "a", ()).is_err());
        assert!(t.insert(Method::GET, "/a//b", ()).is_err());
        assert!(t.insert(Method::GET, "/a/x{y}", ()).is_err());
    }
}
