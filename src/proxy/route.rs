//! The route table: `METHOD /path/{param}/…` templates in a segment trie. Literal segments win
//! over parameters (`/api/backend/projects/draft` before `/api/backend/projects/{projectId}`),
//! with backtracking when a literal branch dead-ends; one trailing slash is ignored.

use super::path::Segments;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

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
    /// A parameter's name is shared with every match that binds it: no copy per request.
    param: Option<(Arc<str>, Box<Node<T>>)>,
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
    Found(&'t T, PathParams),
    /// The path exists for other methods.
    MethodNotAllowed(Vec<http::Method>),
    /// No route has this path.
    NotFound,
}

/// A matched route's path parameters, decoded, in the order of the path. The values share one
/// buffer and the names are the table's: a match with parameters costs two allocations, not a
/// map node and two strings per parameter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathParams {
    text: String,
    /// Each parameter's name and the end of its value in `text`; a value starts where the one
    /// before it ends.
    ends: Vec<(Arc<str>, usize)>,
}

impl PathParams {
    /// The value of the parameter `name`; a name a template binds twice has its last value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().rev().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Every parameter as `(name, value)`, in the order of the path.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&str, &str)> {
        self.ends.iter().enumerate().map(|(i, (name, end))| {
            let start = i
                .checked_sub(1)
                .and_then(|before| self.ends.get(before))
                .map_or(0, |(_, e)| *e);
            (&**name, self.text.get(start..*end).unwrap_or_default())
        })
    }

    /// Whether the route has no parameters.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The parameters as a map, as the policy input carries them (a repeated name keeps its
    /// last value).
    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.iter()
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect()
    }

    fn push(&mut self, name: Arc<str>, value: &str) {
        self.text.push_str(value);
        self.ends.push((name, self.text.len()));
    }
}

impl<'a> FromIterator<(&'a str, &'a str)> for PathParams {
    fn from_iter<I: IntoIterator<Item = (&'a str, &'a str)>>(pairs: I) -> Self {
        let mut out = Self::default();
        for (n, v) in pairs {
            out.push(Arc::from(n), v);
        }
        out
    }
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
                        .get_or_insert_with(|| (Arc::from(name), Box::default()));
                    if &*slot.0 != name {
                        return Err(RouteError::ParamConflict {
                            template: template.to_owned(),
                            name: name.to_owned(),
                            existing: slot.0.to_string(),
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
        // The search records where each parameter sits; the values are copied once, on a match.
        let mut bound = Vec::new();
        match find_node(&self.root, &path.decoded, 0, &mut bound) {
            None => Match::NotFound,
            Some(node) => match node.routes.get(method) {
                Some(v) => {
                    let segs = &path.decoded;
                    let mut params = PathParams {
                        text: String::with_capacity(
                            bound
                                .iter()
                                .map(|(_, i)| segs.get(*i).map_or(0, |s| s.len()))
                                .sum(),
                        ),
                        ends: Vec::with_capacity(bound.len()),
                    };
                    for (name, i) in bound {
                        params.push(name.clone(), segs.get(i).map_or("", |s| s.as_ref()));
                    }
                    Match::Found(v, params)
                }
                None => {
                    let mut allowed: Vec<http::Method> = node.routes.keys().cloned().collect();
                    allowed.sort_by(|a, b| a.as_str().cmp(b.as_str()));
                    Match::MethodNotAllowed(allowed)
                }
            },
        }
    }
}

/// The node `segs[at..]` leads to from `node`, with the parameters bound on the way (name and
/// segment index) in `params`.
fn find_node<'t, T>(
    node: &'t Node<T>,
    segs: &[std::borrow::Cow<'_, str>],
    at: usize,
    params: &mut Vec<(&'t Arc<str>, usize)>,
) -> Option<&'t Node<T>> {
    let Some(first) = segs.get(at) else {
        return (!node.routes.is_empty()).then_some(node);
    };
    if let Some(child) = node.literals.get(first.as_ref())
        && let Some(found) = find_node(child, segs, at + 1, params)
    {
        return Some(found);
    }
    let (name, child) = node.param.as_ref()?;
    params.push((name, at));
    match find_node(child, segs, at + 1, params) {
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
        assert_eq!(params.get("projectId"), Some("p1"));
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
        assert_eq!(params.get("projectId"), Some("draft"));
        assert_eq!(params.get("envId"), Some("dev"));
    }

    #[test]
    fn encoded_slash_is_one_parameter_value() {
        let t = table();
        let Match::Found(_, params) = find(&t, Method::GET, "/api/backend/projects/a%2Fb") else {
            panic!()
        };
        assert_eq!(params.get("projectId"), Some("a/b"));
    }

    #[test]
    fn parameters_keep_path_order_and_a_repeated_name_its_last_value() {
        let mut t = RouteTable::default();
        t.insert(Method::GET, "/a/{x}/b/{y}/c/{x}", "r").unwrap();
        let Match::Found(_, params) = find(&t, Method::GET, "/a/1/b/%2F2/c/3") else {
            panic!()
        };
        assert_eq!(
            params.iter().collect::<Vec<_>>(),
            [("x", "1"), ("y", "/2"), ("x", "3")]
        );
        assert_eq!(params.get("x"), Some("3"));
        assert_eq!(params.get("z"), None);
        assert_eq!(
            params.to_map(),
            BTreeMap::from([("x".into(), "3".into()), ("y".into(), "/2".into())])
        );
        let Match::Found(_, none) = find(&table(), Method::GET, "/api/backend/projects") else {
            panic!()
        };
        assert!(none.is_empty());
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
