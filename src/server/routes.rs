//! The application behind the stack: the gateway's own endpoints (token endpoint, JWKS, metadata,
//! health, readiness, metrics, and the decisions for an ingress at `/-/authz`) first, then every
//! other request goes to the proxied path ([`Gateway`]).

use crate::authn::TokenEndpoint;
use crate::error::{ApiError, Body, json};
use crate::proxy::deadline::Deadline;
use crate::proxy::gateway::{ConnInfo, Gateway};
use crate::proxy::{authz, console};
use crate::store::Store;
use crate::telemetry::trace::RequestTrace;
use crate::token::{KeyRing, metadata};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use std::sync::Arc;

/// Shared state of the gateway's own endpoints.
pub struct App {
    /// Token endpoint.
    pub token: TokenEndpoint,
    /// Signing keys (JWKS).
    pub keys: KeyRing,
    /// RFC 8414 document.
    pub metadata: Bytes,
    /// Store, for readiness.
    pub store: Arc<dyn Store>,
    /// Prometheus metrics.
    pub metrics: Arc<crate::telemetry::metrics::Metrics>,
    /// The proxied request path.
    pub gateway: Arc<Gateway>,
    /// Decisions for an existing ingress at `/-/authz` (`authz.enabled`).
    pub authz: Option<crate::proxy::authz::IngressMode>,
    /// The trusted ingresses' address ranges (`server.trusted_proxies`).
    pub trusted_proxies: Arc<[crate::config::Cidr]>,
    /// Health, readiness and metrics on the public listener (no `server.admin_listen`).
    pub ops_on_public: bool,
    /// Distributed tracing (off unless `telemetry.otlp_endpoint` is set).
    pub traces: crate::telemetry::trace::Tracing,
    /// The web console is served at `/console/`.
    pub console: bool,
}

fn cacheable(mut resp: Response<Body>, max_age: &'static str) -> Response<Body> {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(max_age));
    resp
}

/// The operational endpoints: on the public listener, or on `server.admin_listen` alone.
pub const OPS_PATHS: [&str; 3] = ["/-/healthz", "/-/ready", "/-/metrics"];

fn get_only() -> Response<Body> {
    let mut r = ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed").into_response();
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    r
}

impl App {
    /// Serves one of [`OPS_PATHS`] (404 for any other path).
    pub async fn ops<B>(&self, req: &Request<B>) -> Response<Body> {
        let get = req.method() == Method::GET || req.method() == Method::HEAD;
        match req.uri().path() {
            _ if !get && OPS_PATHS.contains(&req.uri().path()) => get_only(),
            "/-/healthz" => json(StatusCode::OK, r#"{"status":"ok"}"#),
            "/-/metrics" => {
                let mut r = Response::new(crate::error::full(self.metrics.encode()));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                r
            }
            "/-/ready" => match self.store.ping().await {
                Ok(()) => json(StatusCode::OK, r#"{"status":"ready"}"#),
                Err(e) => {
                    tracing::warn!(error = %e, "readiness check failed");
                    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store unreachable")
                        .into_response()
                }
            },
            _ => ApiError::new(StatusCode::NOT_FOUND, "no such endpoint").into_response(),
        }
    }

    /// Dispatches one request, running under `deadline` (driven by [`Deadline::run`]).
    pub async fn route(
        &self,
        req: Request<Incoming>,
        mut conn: ConnInfo,
        deadline: &Deadline,
    ) -> Response<Body> {
        let origin = crate::net::client_addr(&self.trusted_proxies, conn.peer.ip(), req.headers());
        (conn.client, conn.trusted) = (origin.client, origin.peer_trusted);
        let path = req.uri().path();
        let get = req.method() == Method::GET || req.method() == Method::HEAD;
        if let Some(t) = req.extensions().get::<RequestTrace>() {
            t.set_client(conn.client);
            // The gateway's own endpoints name their span by their path (a fixed set); a
            // proxied request's span is named by its route once one matches.
            let own = [
                metadata::TOKEN_PATH,
                metadata::JWKS_PATH,
                "/.well-known/oauth-authorization-server",
                "/.well-known/openid-configuration",
            ];
            if own.contains(&path) || OPS_PATHS.contains(&path) {
                t.set_route(req.method(), path);
            } else if authz::is_decision_path(path) && self.authz.is_some() {
                t.set_route(req.method(), "/-/authz");
            }
        }
        // Paths other than the proxied one are boxed: a future holds the state of its largest
        // branch, and the proxied request's future is moved several times on its way down the
        // stack; the token endpoint's state alone would double what each move copies.
        match path {
            metadata::TOKEN_PATH => Box::pin(self.token.handle(req, conn.client)).await,
            metadata::JWKS_PATH if get => cacheable(
                json(StatusCode::OK, self.keys.current().jwks()),
                "public, max-age=300",
            ),
            "/.well-known/oauth-authorization-server" | "/.well-known/openid-configuration"
                if get =>
            {
                cacheable(
                    json(StatusCode::OK, self.metadata.clone()),
                    "public, max-age=3600",
                )
            }
            metadata::JWKS_PATH
            | "/.well-known/oauth-authorization-server"
            | "/.well-known/openid-configuration" => get_only(),
            _ if self.ops_on_public && OPS_PATHS.contains(&path) => Box::pin(self.ops(&req)).await,
            p if self.console && console::is_console_path(p) => console::serve(&req),
            p if authz::is_decision_path(p) => match &self.authz {
                Some(mode) => {
                    Box::pin(authz::serve_http(&self.gateway, mode, req, conn.trusted)).await
                }
                None => self.gateway.handle(req, conn, deadline).await,
            },
            // The proxied request boxes its own large state, where it is built.
            _ => self.gateway.handle(req, conn, deadline).await,
        }
    }
}

/// The operational endpoints alone, for `server.admin_listen`: probes and scrapes reach them on
/// a port the public Service never exposes.
#[derive(Clone)]
pub struct OpsService(pub Arc<App>);

impl tower::Service<Request<Incoming>> for OpsService {
    type Response = Response<Body>;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response<Body>, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let app = self.0.clone();
        Box::pin(async move { Ok(app.ops(&req).await) })
    }
}
