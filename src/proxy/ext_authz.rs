//! Envoy's ext_authz over gRPC (`envoy.service.auth.v3.Authorization/Check`): the second door to
//! the decisions of [`super::authz`]. A `CheckRequest` becomes the [`Original`] it describes, and
//! the [`Verdict`] an `OkHttpResponse` (identity headers set, or removed on a public route) or a
//! `DeniedHttpResponse` (status, JSON body, `WWW-Authenticate`). The server layer serves it on
//! `server.ext_authz_grpc_listen`; like `/-/authz` it answers trusted peers only.

use super::authz::{IngressMode, Original, OriginalBody, Verdict, denial, deny};
use super::gateway::{ConnInfo, Gateway, Refusal};
use crate::config::Cidr;
use crate::telemetry::trace::Tracing;
use bytes::Bytes;
use envoy_types::ext_authz::v3::pb::{
    Authorization, CheckRequest, CheckResponse, DeniedHttpResponse, HeaderAppendAction,
    HeaderValue as PbHeader, HeaderValueOption, HttpResponse, HttpStatus, OkHttpResponse,
};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use std::sync::Arc;

/// gRPC status codes of a `CheckResponse` (google.rpc.Code).
const OK: i32 = 0;
const PERMISSION_DENIED: i32 = 7;
const UNAVAILABLE: i32 = 14;
const UNAUTHENTICATED: i32 = 16;

/// The gRPC method a check arrives on, naming its server span.
const CHECK_METHOD: &str = "/envoy.service.auth.v3.Authorization/Check";

/// The `Authorization` service.
#[derive(Clone)]
pub struct ExtAuthz {
    gateway: Arc<Gateway>,
    mode: IngressMode,
    trusted: Arc<[Cidr]>,
    traces: Tracing,
}

impl std::fmt::Debug for ExtAuthz {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtAuthz").finish_non_exhaustive()
    }
}

impl ExtAuthz {
    /// The service deciding with `gateway`, answering the peers in `trusted`, each check a
    /// server span of `traces` (continuing the trace context of the request Envoy describes).
    pub fn new(
        gateway: Arc<Gateway>,
        mode: IngressMode,
        trusted: Arc<[Cidr]>,
        traces: Tracing,
    ) -> Self {
        Self {
            gateway,
            mode,
            trusted,
            traces,
        }
    }

    /// As a tower service for the listener.
    pub fn into_service(self) -> envoy_types::ext_authz::v3::pb::AuthorizationServer<Self> {
        envoy_types::ext_authz::v3::pb::AuthorizationServer::new(self)
    }
}

#[tonic::async_trait]
impl Authorization for ExtAuthz {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let trusted = request
            .extensions()
            .get::<ConnInfo>()
            .is_some_and(|c| self.trusted.iter().any(|t| t.contains(c.peer.ip())));
        let verdict = if !trusted {
            denial(deny(
                "untrusted_peer",
                "decisions are answered to the ingresses in server.trusted_proxies only",
            ))
            .await
        } else {
            match original_of(request.get_ref()) {
                Ok(mut original) => {
                    original.trace =
                        self.traces
                            .start(&Method::POST, CHECK_METHOD, &original.headers);
                    if let Some(t) = &original.trace {
                        t.set_route(&Method::POST, CHECK_METHOD);
                    }
                    let trace = original.trace.clone();
                    let verdict = self.gateway.decide_original(&self.mode, original).await;
                    if let Some(t) = trace {
                        t.finish(verdict.status());
                    }
                    verdict
                }
                Err(refusal) => denial(refusal).await,
            }
        };
        Ok(tonic::Response::new(response_of(verdict)))
    }
}

/// The request a `CheckRequest` describes. Headers come from `headers`, or from `header_map`
/// when Envoy encodes raw headers; pseudo-headers and names no HTTP header can carry are left
/// out. The body from `raw_body` or `body`; Envoy marks a cut one with
/// `x-envoy-auth-partial-body: true`.
#[allow(clippy::result_large_err)]
fn original_of(check: &CheckRequest) -> Result<Original, Refusal> {
    let bad = |what: &'static str| deny("bad_original_request", what);
    let http = check
        .attributes
        .as_ref()
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref())
        .ok_or_else(|| bad("the check names no HTTP request"))?;
    let method = super::authz::method_named(&http.method)?;
    let target = super::authz::origin_form(&http.path)?;
    let mut headers = HeaderMap::new();
    let mut add = |k: &str, v: &[u8]| {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_bytes(v),
        ) {
            headers.append(n, v);
        }
    };
    match &http.header_map {
        Some(map) => {
            for h in &map.headers {
                let v = if h.raw_value.is_empty() {
                    h.value.as_bytes()
                } else {
                    &h.raw_value
                };
                add(&h.key, v);
            }
        }
        None => {
            for (k, v) in &http.headers {
                add(k, v.as_bytes());
            }
        }
    }
    let bytes = if http.raw_body.is_empty() {
        Bytes::copy_from_slice(http.body.as_bytes())
    } else {
        Bytes::copy_from_slice(&http.raw_body)
    };
    let body = OriginalBody::of(&headers, Some(bytes));
    Ok(Original {
        method,
        target,
        headers,
        body,
        trace: None,
    })
}

fn header_option(name: &str, value: &str) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(PbHeader {
            key: name.to_owned(),
            value: value.to_owned(),
            ..Default::default()
        }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..Default::default()
    }
}

/// The `CheckResponse` of a verdict.
fn response_of(verdict: Verdict) -> CheckResponse {
    match verdict {
        Verdict::Allow { set, remove } => CheckResponse {
            status: Some(RpcStatus {
                code: OK,
                ..Default::default()
            }),
            http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                headers: set
                    .iter()
                    .filter_map(|(n, v)| Some(header_option(n.as_str(), v.to_str().ok()?)))
                    .collect(),
                headers_to_remove: remove.iter().map(|n| n.as_str().to_owned()).collect(),
                ..Default::default()
            })),
            ..Default::default()
        },
        Verdict::Deny {
            status,
            challenge,
            body,
        } => {
            let code = match status {
                StatusCode::UNAUTHORIZED => UNAUTHENTICATED,
                StatusCode::FORBIDDEN => PERMISSION_DENIED,
                _ => UNAVAILABLE,
            };
            let mut headers = vec![header_option(
                header::CONTENT_TYPE.as_str(),
                "application/json",
            )];
            if let Some(c) = challenge.as_ref().and_then(|c| c.to_str().ok()) {
                headers.push(header_option(header::WWW_AUTHENTICATE.as_str(), c));
            }
            CheckResponse {
                status: Some(RpcStatus {
                    code,
                    ..Default::default()
                }),
                http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
                    status: Some(HttpStatus {
                        code: i32::from(status.as_u16()),
                    }),
                    headers,
                    body: String::from_utf8_lossy(&body).into_owned(),
                })),
                ..Default::default()
            }
        }
    }
}
