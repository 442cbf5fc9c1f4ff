//! The proxied request path, innermost service of the stack: validate the path, match the route,
//! authenticate the bearer, resolve the resources, ask the policy, forward, and filter the
//! answer when the route names a response rule.
//!
//! Every refusal happens before a byte goes upstream. The path the policy sees is the path that
//! is forwarded (ambiguous paths are refused, not normalised). Bodies stream both ways, except a
//! request body the decision needs (read up to a cap, then forwarded unchanged) and the answer of
//! a response-filtered route (read up to a cap, filtered, re-serialised).

use super::deadline::Deadline;
use super::path::split;
use super::resolve::{RequestView, Target};
use super::route::{Match, PathParams};
use super::table::{Access, Requirement, Route, Routes};
use super::upstream::{Identity, Upstream, X_REQUEST_ID};
use crate::authn::bearer::{BearerAuth, Caller};
use crate::error::{ApiError, Body, ConcealedReason, full};
use crate::iam::directory::Directory;
use crate::policy::PolicyEngine;
use crate::policy::input::{
    DecisionInput, RequestInput, ResourceInput, RouteInput, UserInput, interned,
};
use crate::telemetry::metrics::{DecisionCounters, Metrics, RequestCounters};
use crate::telemetry::trace::{RequestTrace, SpanKind};
use crate::util::unix_now;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// Facts about the connection a request came in on, put in its extensions by the listener.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// Peer address.
    pub peer: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The client's address: the peer, or behind a trusted ingress the client it names
    /// (`crate::net::client_addr`). Set per request.
    pub client: std::net::IpAddr,
    /// Whether the peer is a trusted ingress (`server.trusted_proxies`). Set per request.
    pub trusted: bool,
}

/// Limits of the proxied path.
#[derive(Debug, Clone, Copy)]
pub struct GatewayLimits {
    /// Largest request body read for a decision (413 beyond).
    pub max_decision_body: usize,
    /// Largest upstream answer read for a response rule (502 beyond).
    pub max_filtered_response: usize,
}

/// Request headers the policy may read; never credentials.
const POLICY_HEADERS: &[&str] = &["accept", "content-type", "user-agent", "x-request-id"];

/// The management API behind `local` routes.
#[derive(Debug, Clone)]
pub struct Management {
    /// The IAM write path.
    pub manager: crate::iam::manage::Manager,
    /// Accepted `Client-key` values; empty = no client key required.
    pub client_keys: Arc<[crate::config::Secret]>,
}

/// The proxied request path.
pub struct Gateway {
    management: Option<Management>,
    table: arc_swap::ArcSwap<Table>,
    auth: BearerAuth,
    directory: Directory,
    policy: Arc<PolicyEngine>,
    upstream: Option<Upstream>,
    limits: GatewayLimits,
    metrics: Arc<Metrics>,
    decisions: DecisionCounters,
    /// Whether refusals over unknown or foreign resources keep their reason for the client.
    expose_deny_reasons: bool,
}

/// The route table in service and its request counters: replaced together when the route file
/// changes, read once per request.
struct Table {
    routes: Arc<Routes>,
    requests: RequestCounters,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("routes", &self.table.load().routes.len())
            .finish_non_exhaustive()
    }
}

/// A request refused on the way (before or after the upstream): its finished response.
pub(super) type Refusal = Response<Body>;

/// What [`Gateway::decide`] allowed, and what it learnt on the way that serving needs.
pub(super) struct Allowed {
    /// The caller; `None` on a public route.
    pub caller: Option<Caller>,
    /// The policy input (policy routes and response rules), kept for a response rule.
    pub input: Option<DecisionInput>,
    /// The company every target was decided in, when they all name the same one.
    pub company: Option<Arc<str>>,
    /// The decision body as JSON, where the policy read one.
    pub json: Option<serde_json::Value>,
    /// The query's pairs (where a caller is known).
    pub query: Vec<(String, String)>,
    /// The facts a management write was decided on.
    pub decided: crate::proxy::management::PolicyFacts,
    /// Whether `input` already holds the request details.
    pub filled: bool,
}

/// The identity handed on for `caller` (upstream headers, an ingress's allow answer).
pub(super) fn identity_of(caller: &Caller) -> Identity {
    Identity {
        user_id: caller.id.clone(),
        groups: caller.groups.clone(),
        properties: caller.properties_json(),
        // A static value, no copy per request: both kinds' names are plain header text.
        client_type: HeaderValue::from_static(caller.kind.as_str()),
    }
}

fn bad_request(message: impl Into<std::borrow::Cow<'static, str>>) -> Refusal {
    ApiError::new(StatusCode::BAD_REQUEST, message).into_response()
}

impl Gateway {
    /// A gateway over its parts.
    pub fn new(
        routes: Arc<Routes>,
        auth: BearerAuth,
        directory: Directory,
        policy: Arc<PolicyEngine>,
        upstream: Option<Upstream>,
        limits: GatewayLimits,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            management: None,
            table: arc_swap::ArcSwap::from_pointee(Table {
                requests: metrics.request_counters(routes.ids()),
                routes,
            }),
            decisions: metrics.decision_counters(),
            auth,
            directory,
            policy,
            upstream,
            limits,
            metrics,
            expose_deny_reasons: false,
        }
    }

    /// Shows clients the reasons of refusals over unknown or foreign resources
    /// (`server.expose_deny_reasons`), for an internal audience that may know every tenant.
    pub fn with_deny_reasons(mut self, expose: bool) -> Self {
        self.expose_deny_reasons = expose;
        self
    }

    /// The refusal the client gets: one whose reason tells whether a resource exists or who owns
    /// it becomes the plain deny of any policy refusal, unless the operator chose to show
    /// reasons. Its reason is in the decision log already.
    fn conceal(&self, refused: Refusal) -> Refusal {
        if !self.expose_deny_reasons && refused.extensions().get::<ConcealedReason>().is_some() {
            ApiError::plain_deny().into_response()
        } else {
            refused
        }
    }

    /// Writes a refusal made before the policy was asked (a project the directory does not
    /// know, or one another company owns) to the decision log, as every policy deny is, so that
    /// the operator still sees the reason the client is not told.
    fn log_refusal(&self, input: &DecisionInput, refused: Refusal) -> Refusal {
        if let Some(ConcealedReason(reason)) = refused.extensions().get::<ConcealedReason>() {
            self.policy.record_refusal(input, reason);
        }
        refused
    }

    /// Puts a new route table in service (the route file changed); requests already matched
    /// finish on the old one.
    pub fn replace_routes(&self, routes: Arc<Routes>) {
        self.table.store(Arc::new(Table {
            requests: self.metrics.request_counters(routes.ids()),
            routes,
        }));
    }

    /// Serves the routes the table marks `local` with this management API.
    pub fn with_management(mut self, management: Management) -> Self {
        self.management = Some(management);
        self
    }

    /// Handles one proxied request running under `deadline` (driven by [`Deadline::run`]).
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        conn: ConnInfo,
        deadline: &Deadline,
    ) -> Response<Body> {
        let started = Instant::now();
        let (route, params) = match self.find(req.method(), req.uri().path()) {
            Ok(found) => found,
            Err(refused) => {
                self.count(None, refused.status(), started);
                return refused;
            }
        };
        if let Some(t) = req.extensions().get::<RequestTrace>() {
            t.set_route(req.method(), &route.id);
        }
        // The route's future is boxed where it is built, and only there: it is the request's
        // largest state (about 4 KB), and a future held by value is copied whole each time its
        // owner is built or moved, once per layer of the stack above.
        let result = Box::pin(self.serve_route(req, conn, route.clone(), params, deadline)).await;
        let resp = result.unwrap_or_else(|refused| refused);
        self.count(Some(&route.id), resp.status(), started);
        resp
    }

    /// Counts one answered request under its route and records its latency.
    pub(super) fn count(&self, route_id: Option<&str>, status: StatusCode, started: Instant) {
        self.table.load().requests.inc(route_id, status);
        self.metrics
            .request_latency
            .observe(started.elapsed().as_secs_f64());
    }

    /// The largest request body read for a decision.
    pub(super) fn max_decision_body(&self) -> usize {
        self.limits.max_decision_body
    }

    /// The route `method` and `path` match, with the path's parameters; 400 for a path the
    /// rules refuse or an id parameter that breaks the rules of ids in bodies, 405 (with
    /// `Allow`) or 404 when nothing matches.
    #[allow(clippy::result_large_err)]
    pub(super) fn find(
        &self,
        method: &http::Method,
        path: &str,
    ) -> Result<(Arc<Route>, PathParams), Refusal> {
        let segments = split(path).map_err(|e| bad_request(e.to_string()))?;
        match self.table.load().routes.find(method, &segments) {
            Match::Found(route, params) => {
                crate::proxy::management::check_path_ids(&params).map_err(|e| e.into_response())?;
                Ok((route.clone(), params))
            }
            Match::MethodNotAllowed(allowed) => {
                let mut r = ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
                    .into_response();
                let list: Vec<&str> = allowed.iter().map(|m| m.as_str()).collect();
                if let Ok(v) = HeaderValue::from_str(&list.join(", ")) {
                    r.headers_mut().insert(header::ALLOW, v);
                }
                Err(r)
            }
            Match::NotFound => {
                Err(ApiError::new(StatusCode::NOT_FOUND, "no such route").into_response())
            }
        }
    }

    async fn serve_route(
        &self,
        req: Request<Incoming>,
        conn: ConnInfo,
        route: Arc<Route>,
        params: PathParams,
        deadline: &Deadline,
    ) -> Result<Response<Body>, Refusal> {
        if route.local.is_some()
            && let Some(m) = &self.management
            && !m.client_keys.is_empty()
        {
            use subtle::ConstantTimeEq;
            let presented = req
                .headers()
                .get("client-key")
                .map(|v| v.as_bytes())
                .unwrap_or_default();
            let known = m
                .client_keys
                .iter()
                .fold(subtle::Choice::from(0), |acc, k| {
                    acc | k.expose().as_bytes().ct_eq(presented)
                });
            if !bool::from(known) {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "missing or invalid Client-key header",
                )
                .into_response());
            }
        }
        let (parts, body) = req.into_parts();
        let request_id = parts
            .headers
            .get(X_REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());

        // The body is read only when the decision needs it; otherwise it streams.
        let (buffered, body): (Option<Bytes>, Body) = if route.needs_body {
            let bytes = Box::pin(self.read_decision_body(&parts.headers, body)).await?;
            (Some(bytes.clone()), full(bytes))
        } else {
            (None, body.boxed())
        };
        let Allowed {
            caller,
            mut input,
            company: authorized_company,
            json,
            query,
            decided,
            filled,
        } = self
            .decide(&parts, &route, &params, buffered.as_ref())
            .await?;
        if let Some(handler) = &route.local {
            if super::policy_api::HANDLERS.contains(&&**handler)
                && matches!(route.access, Access::Policy(_))
                && let Some(c) = &caller
            {
                // The caller's whole input, for the questions asked on its behalf.
                if let (Some(i), false) = (&mut input, filled) {
                    self.fill_details(i, &parts, c, &params, &query);
                }
                let company = params.get("companyId");
                let project = match query.iter().find(|(k, _)| k == "projectId") {
                    None => None,
                    Some((_, p)) => match self.directory.project(p) {
                        Some(found) if Some(found.company_id.as_str()) == company => {
                            Some((p.as_str(), found.environments.clone()))
                        }
                        _ => {
                            return Err(ApiError::new(StatusCode::NOT_FOUND, "no such project")
                                .into_response());
                        }
                    },
                };
                return Ok(super::policy_api::handle(
                    &self.policy,
                    handler,
                    json.as_ref(),
                    &super::policy_api::Asking {
                        input: input.as_ref(),
                        company,
                        project,
                    },
                ));
            }
            return match (&self.management, &caller) {
                (Some(m), Some(caller)) if matches!(route.access, Access::Policy(_)) => {
                    let snapshot = self.policy.snapshot();
                    Ok(self.conceal(
                        crate::proxy::management::handle(
                            &m.manager,
                            handler,
                            crate::proxy::management::LocalRequest {
                                caller,
                                params: &params,
                                query: &query,
                                body: json.as_ref(),
                                model: snapshot.role_model(),
                                decided: &decided,
                            },
                        )
                        .await,
                    ))
                }
                // A local route must be decided by the policy and served here, never forwarded.
                _ => Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "management API unavailable",
                )
                .into_response()),
            };
        }

        let Some(upstream) = &self.upstream else {
            return Err(
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no upstream configured")
                    .into_response(),
            );
        };
        if let (Some(_), Some(input), Some(c), false) =
            (&route.response, &mut input, &caller, filled)
        {
            self.fill_details(input, &parts, c, &params, &query);
        }
        let mut forward = Request::from_parts(parts, body);
        if route.response.is_some() || route.records_project {
            // The answer is parsed: ask for it unencoded.
            forward.headers_mut().remove(header::ACCEPT_ENCODING);
        }
        let identity = caller.as_ref().map(identity_of);
        let resp = upstream
            .forward_within(
                forward,
                identity,
                &super::upstream::Hop {
                    peer: conn.peer.ip(),
                    trusted: conn.trusted,
                    tls: conn.tls,
                },
                &request_id,
                deadline,
            )
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, request_id = %request_id, "upstream request failed");
                e.into_response()
            })?;
        match (&route.response, input) {
            // The answers read whole are boxed: their state would otherwise be part of every
            // proxied request's future, which is moved (copied) several times per request.
            (Some(rule), Some(input)) if resp.status().is_success() => {
                Box::pin(self.filter_response(rule, input, resp)).await
            }
            _ if route.records_project && resp.status().is_success() => {
                let actor = caller.as_ref().map_or("", |c| c.id.as_str());
                Ok(
                    Box::pin(self.record_project(resp, authorized_company, actor, &request_id))
                        .await,
                )
            }
            _ => Ok(resp),
        }
    }

    /// Authenticates the caller and decides every check of `route` for the request `parts`
    /// names, with `body` where the route's decision reads one. Shared by the proxied path and
    /// the decisions an ingress asks for (`super::authz`), so both decide alike.
    pub(super) async fn decide(
        &self,
        parts: &http::request::Parts,
        route: &Route,
        params: &PathParams,
        body: Option<&Bytes>,
    ) -> Result<Allowed, Refusal> {
        self.decide_revealing(parts, route, params, body)
            .await
            .map_err(|r| self.conceal(r))
    }

    /// [`Self::decide`], with every refusal's reason as it was made.
    async fn decide_revealing(
        &self,
        parts: &http::request::Parts,
        route: &Route,
        params: &PathParams,
        body: Option<&Bytes>,
    ) -> Result<Allowed, Refusal> {
        // Authentication and the decision get spans of their own only in a sampled trace.
        let trace = parts
            .extensions
            .get::<RequestTrace>()
            .filter(|t| t.is_recording());
        let caller = match route.access {
            Access::Public => None,
            _ => {
                let span = trace.map(|t| t.child("authenticate", SpanKind::Internal));
                let caller = self
                    .auth
                    .authenticate(&parts.headers, parts.uri.query(), unix_now())
                    .await;
                if let Some(span) = &span {
                    match &caller {
                        Ok(c) => {
                            span.set("iamgate.caller.kind", c.kind.as_str());
                            span.set("iamgate.caller.id", c.id.clone());
                        }
                        Err(_) => span.fail("unauthenticated"),
                    }
                }
                Some(caller.map_err(|e| e.into_response())?)
            }
        };
        // The query is parsed and the input document built only where the policy reads them.
        let query: Vec<(String, String)> = match (&caller, parts.uri.query()) {
            (Some(_), Some(q)) => form_urlencoded::parse(q.as_bytes()).into_owned().collect(),
            _ => Vec::new(),
        };
        let mut input = match (&caller, &route.access) {
            (Some(caller), Access::Policy(_)) => Some(self.base_input(parts, caller, route)),
            (Some(caller), _) if route.response.is_some() => {
                Some(self.base_input(parts, caller, route))
            }
            _ => None,
        };
        // The input's request details are built at most once, and only where a policy runs: on
        // a decision-cache miss, or for a response rule.
        let mut filled = false;
        let mut company = None;
        let mut decided = crate::proxy::management::PolicyFacts::default();
        let mut json = None;
        let mut fill = |i: &mut DecisionInput| {
            if let (false, Some(c)) = (filled, &caller) {
                self.fill_details(i, parts, c, params, &query);
                filled = true;
            }
        };
        if let (Access::Policy(checks), Some(_), Some(input)) = (&route.access, &caller, &mut input)
        {
            json = match body {
                Some(b) if !b.is_empty() => Some(
                    serde_json::from_slice::<serde_json::Value>(b)
                        .map_err(|_| bad_request("request body is not valid JSON"))?,
                ),
                _ => None,
            };
            let view = RequestView {
                path_params: params,
                query: &query,
                body: json.as_ref(),
            };
            if let (Some(handler), Some(m)) = (&route.local, &self.management) {
                crate::proxy::management::prevalidate(
                    handler,
                    json.as_ref(),
                    self.policy.snapshot().role_model(),
                )
                .map_err(|e| e.into_response())?;
                let facts = crate::proxy::management::policy_facts(
                    &m.manager,
                    handler,
                    params,
                    json.as_ref(),
                )
                .map_err(|e| self.log_refusal(input, e.into_response()))?;
                input.grants = facts.grants.clone();
                input.target = facts.target.clone();
                decided = facts;
            }
            let span = trace.map(|t| t.child("authorize", SpanKind::Internal));
            let decided = self.authorize(checks, &view, input, &mut fill).await;
            if let Some(span) = &span {
                span.set("iamgate.decision.allow", decided.is_ok());
                if let Err(refused) = &decided {
                    span.set(
                        "http.response.status_code",
                        i64::from(refused.status().as_u16()),
                    );
                }
            }
            company = decided?;
        }
        Ok(Allowed {
            caller,
            input,
            company,
            json,
            query,
            decided,
            filled,
        })
    }

    /// Records the project the Console's 2xx answer describes, in the company the request was
    /// authorized in, and hands the answer on unchanged. The Console did create the project, so
    /// a failure to record it never fails the request: it is logged, and the project stays
    /// unknown (refused where named) until the directory sync brings it.
    async fn record_project(
        &self,
        resp: Response<Body>,
        company: Option<Arc<str>>,
        actor: &str,
        request_id: &str,
    ) -> Response<Body> {
        let (parts, body) = resp.into_parts();
        let bytes = match Limited::new(body, self.limits.max_filtered_response)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                tracing::warn!(
                    request_id,
                    "project creation answer too large or unreadable"
                );
                return ApiError::new(StatusCode::BAD_GATEWAY, "upstream answer unreadable")
                    .into_response();
            }
        };
        let recorded = match (&self.management, company) {
            (Some(m), Some(company)) => crate::iam::sync::parse_project(&bytes)
                .map_err(|e| e.to_string())
                .map(|p| (m, company, p)),
            (None, _) => Err("no management API to record it with".to_owned()),
            (_, None) => Err("the request was not authorized in exactly one company".to_owned()),
        };
        let result = match recorded {
            Ok((m, company, project)) => m
                .manager
                .record_created_project(actor, &company, project, unix_now())
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!(request_id, error = %e, "created project not recorded; the directory sync will bring it");
        }
        Response::from_parts(parts, full(bytes))
    }

    /// Reads a body the decision needs, up to `server.max_decision_body_bytes` (413 beyond, a
    /// declared length first); 400 when it cannot be read.
    pub(super) async fn read_decision_body(
        &self,
        headers: &http::HeaderMap,
        body: Incoming,
    ) -> Result<Bytes, Refusal> {
        let cap = self.limits.max_decision_body;
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body larger than {cap} bytes"),
            )
            .into_response()
        };
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > cap as u64) {
            return Err(too_large());
        }
        match Limited::new(body, cap).collect().await {
            Ok(c) => Ok(c.to_bytes()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
            Err(_) => Err(bad_request("request body could not be read")),
        }
    }

    /// The input's cache-key part (method, path for the decision log, caller, route); the rest
    /// is filled by [`fill_details`](Self::fill_details) when a policy actually runs.
    fn base_input(
        &self,
        parts: &http::request::Parts,
        caller: &Caller,
        route: &Route,
    ) -> DecisionInput {
        DecisionInput {
            request: RequestInput {
                method: interned(parts.method.as_str()),
                path: Arc::from(parts.uri.path()),
                path_params: BTreeMap::new(),
                query: BTreeMap::new(),
                headers: BTreeMap::new(),
            },
            user: UserInput {
                id: Arc::from(caller.id.as_str()),
                kind: interned(caller.kind.as_str()),
                issuer: caller.issuer_name.clone(),
                principal: caller.principal.clone(),
                groups: caller.groups.clone(),
                group_principals: caller.group_principals.clone(),
                permissions: caller.permissions.clone(),
                bindings: Default::default(),
                properties: serde_json::Value::Null,
            },
            resource: ResourceInput::default(),
            route: RouteInput {
                id: route.id.clone(),
                permission: None,
                rule: None,
            },
            grants: None,
            target: None,
        }
    }

    /// Completes `input` with what only a running policy reads: path parameters, query (first
    /// value of each key), selected headers, the caller's bindings and properties.
    fn fill_details(
        &self,
        input: &mut DecisionInput,
        parts: &http::request::Parts,
        caller: &Caller,
        params: &PathParams,
        pairs: &[(String, String)],
    ) {
        let r = &mut input.request;
        r.path_params = params.to_map();
        for (k, v) in pairs {
            r.query.entry(k.clone()).or_insert_with(|| v.clone());
        }
        r.headers = POLICY_HEADERS
            .iter()
            .filter_map(|n| {
                parts
                    .headers
                    .get(*n)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| ((*n).to_owned(), v.to_owned()))
            })
            .collect();
        input.user.bindings = self
            .directory
            .bindings_for(&caller.principal, &caller.group_principals);
        input.user.properties = caller.properties();
    }

    /// Completes a target from the directory. A project's company always comes from the
    /// directory: a project it does not know is refused with 404 naming where the request named
    /// it (nothing is recorded), and a request naming a company that does not own the project is
    /// refused outright.
    // A refusal is the finished response, built once on the refusal path; boxing it would cost
    // an allocation there and gain nothing on the allowed path.
    #[allow(clippy::result_large_err)]
    fn complete(&self, t: &Target, check: &super::table::Check) -> Result<ResourceInput, Refusal> {
        let company_id = match &t.project {
            Some(p) => match self.directory.project(p) {
                Some(project) => {
                    if t.company.as_ref().is_some_and(|c| *c != project.company_id) {
                        self.decisions.deny.inc();
                        return Err(ApiError::new(
                            StatusCode::FORBIDDEN,
                            "the caller may not perform this request",
                        )
                        .with_reason("resource_mismatch")
                        .into_response());
                    }
                    Some(Arc::from(project.company_id.as_str()))
                }
                None => {
                    let field = check
                        .project
                        .as_ref()
                        .map_or_else(|| "project".to_owned(), |s| s.describe());
                    return Err(ApiError::new(
                        StatusCode::NOT_FOUND,
                        format!("{field}: project `{p}` is not known"),
                    )
                    .with_reason("unknown_resource")
                    .into_response());
                }
            },
            None => t.company.as_deref().map(Arc::from),
        };
        Ok(ResourceInput {
            company_id,
            project_id: t.project.as_deref().map(Arc::from),
            env_id: t.env.as_deref().map(Arc::from),
        })
    }

    /// Decides every applicable check; on allow, returns the company every target was decided
    /// in, when they all name the same one.
    async fn authorize(
        &self,
        checks: &[super::table::Check],
        view: &RequestView<'_>,
        input: &mut DecisionInput,
        fill: &mut (dyn FnMut(&mut DecisionInput) + Send),
    ) -> Result<Option<Arc<str>>, Refusal> {
        let deny = |reason: &str| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "the caller may not perform this request",
            )
            .with_reason(reason.to_owned())
            .into_response()
        };
        let mut applied = 0usize;
        let version = self.directory.version();
        let (mut company, mut one_company) = (None::<Arc<str>>, true);
        for check in checks {
            if !view.applies(check) {
                continue;
            }
            applied += 1;
            let (permission, rule) = match &check.requirement {
                Requirement::Authenticated => continue,
                Requirement::Permission(p) => (Some(p.clone()), None),
                Requirement::Rule(r) => (None, Some(r.clone())),
            };
            let targets = view
                .targets(check)
                .map_err(|e| bad_request(e.to_string()))?;
            // Each target is decided on the one input, its fields set in place: a copy of the
            // whole document per target cost as much as the cached decision itself.
            input.route.permission = permission;
            input.route.rule = rule;
            for target in &targets {
                let resource = self.complete(target, check).map_err(|refused| {
                    input.resource = ResourceInput {
                        company_id: target.company.as_deref().map(Arc::from),
                        project_id: target.project.as_deref().map(Arc::from),
                        env_id: target.env.as_deref().map(Arc::from),
                    };
                    self.log_refusal(input, refused)
                })?;
                match (&company, &resource.company_id) {
                    (_, None) => one_company = false,
                    (None, Some(c)) => company = Some(c.clone()),
                    (Some(a), Some(b)) => one_company &= a == b,
                }
                input.resource = resource;
                let decision = self.policy.decide_filling(input, version, &mut *fill);
                if decision.allow {
                    self.decisions.allow.inc();
                } else {
                    self.decisions.deny.inc();
                    tracing::debug!(caller = %input.user.id, reason = %decision.reason, "denied");
                    return Err(deny(&decision.reason));
                }
            }
        }
        if applied == 0 {
            return Err(deny("no_applicable_check"));
        }
        // Back to the request's own document, as a response rule reads it.
        input.resource = ResourceInput::default();
        input.route.permission = None;
        input.route.rule = None;
        Ok(company.filter(|_| one_company))
    }

    async fn filter_response(
        &self,
        rule: &Arc<str>,
        input: DecisionInput,
        resp: Response<Body>,
    ) -> Result<Response<Body>, Refusal> {
        let fail =
            |message: &'static str| ApiError::new(StatusCode::BAD_GATEWAY, message).into_response();
        let (mut parts, body) = resp.into_parts();
        if parts
            .headers
            .get(header::CONTENT_ENCODING)
            .is_some_and(|v| v != "identity")
        {
            return Err(fail("upstream answer is encoded and cannot be filtered"));
        }
        let bytes = Limited::new(body, self.limits.max_filtered_response)
            .collect()
            .await
            .map_err(|_| fail("upstream answer too large to filter or unreadable"))?
            .to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|_| fail("upstream answer is not JSON and cannot be filtered"))?;
        let snapshot = self.policy.snapshot();
        parts.headers.remove(header::CONTENT_LENGTH);
        parts.headers.remove(header::ETAG);
        parts.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let json = match (snapshot.item_filter(rule).cloned(), json) {
            // A list the policy filters item by item: decided and streamed a slice at a time.
            (Some(filter), serde_json::Value::Array(items)) => {
                return Ok(super::item_filter::stream(
                    parts, snapshot, filter, input, items,
                ));
            }
            (_, json) => json,
        };
        let rule = rule.clone();
        // The interpreter may take milliseconds on a long list: keep it off the reactor.
        let filtered = tokio::task::spawn_blocking(move || snapshot.respond(&rule, &input, json))
            .await
            .map_err(|_| fail("response rule failed"))?
            .map_err(|e| {
                tracing::warn!(error = %e, "response rule failed; refusing the answer");
                fail("response rule failed")
            })?;
        let out = serde_json::to_vec(&filtered).map_err(|_| fail("response rule failed"))?;
        Ok(Response::from_parts(parts, full(Bytes::from(out))))
    }
}
