//! Every error that reaches a client becomes an HTTP response here, and only here.
//!
//! Each error records whose fault it was (client, upstream, internal) so logs and metrics can tell
//! a misbehaving caller from a broken gateway. Bodies are JSON; OAuth errors follow RFC 6749 §5.2
//! and also carry the Console's `statusCode` and `message`. No body ever contains a secret.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use std::borrow::Cow;

/// Response body type of every handler: boxed so proxied streams and fixed bodies share one type.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// A fixed body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// Whose fault a failure was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The caller sent something wrong.
    Client,
    /// The gateway or its dependencies failed.
    Internal,
}

/// A `200`-style JSON response with the given status.
pub fn json(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The Console's management error shape: `{"statusCode","error","message"}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Human-readable message; never contains secrets.
    pub message: Cow<'static, str>,
    /// Stable reason id (policy denials: `permission_denied`, `unknown_resource`, …).
    pub reason: Option<Cow<'static, str>>,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            status,
            message: message.into(),
            reason: None,
        }
    }

    /// Adds a stable reason id to the body.
    pub fn with_reason(mut self, reason: impl Into<Cow<'static, str>>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// Whose fault it was.
    pub fn fault(&self) -> Fault {
        if self.status.is_server_error() {
            Fault::Internal
        } else {
            Fault::Client
        }
    }

    /// The JSON body: `statusCode`, `error`, `message` and, when set, `reason`.
    pub fn body(&self) -> String {
        let mut body = serde_json::json!({
            "statusCode": self.status.as_u16(),
            "error": self.status.canonical_reason().unwrap_or("Error"),
            "message": self.message,
        });
        if let (Some(reason), Some(obj)) = (&self.reason, body.as_object_mut()) {
            obj.insert(
                "reason".to_owned(),
                serde_json::Value::from(reason.as_ref()),
            );
        }
        body.to_string()
    }

    /// The response. A refusal whose reason is one of [`CONCEALED_REASONS`] carries that reason
    /// as a [`ConcealedReason`] extension, so the gateway can hide it from the client.
    pub fn into_response(self) -> Response<Body> {
        let concealed = self
            .reason
            .as_ref()
            .filter(|r| CONCEALED_REASONS.contains(&r.as_ref()))
            .cloned();
        let mut resp = json(self.status, self.body());
        if let Some(reason) = concealed {
            resp.extensions_mut().insert(ConcealedReason(reason));
        }
        resp
    }

    /// What a client is told instead of a concealed refusal: the answer of any policy deny.
    pub fn plain_deny() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "the caller may not perform this request",
        )
        .with_reason("permission_denied")
    }
}

/// Reasons that tell the caller whether a resource exists (`unknown_resource`: a project or an
/// environment nobody registered) or who owns it (`resource_mismatch`: a project another company
/// owns). Told to an outsider, they turn the gateway into a directory of every tenant's
/// projects, so by default the client gets [`ApiError::plain_deny`] and only the decision log
/// keeps the reason.
pub const CONCEALED_REASONS: [&str; 2] = ["unknown_resource", "resource_mismatch"];

/// The reason of a refusal that is concealed from the client unless the operator chose to show
/// deny reasons (a response extension; never sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConcealedReason(pub Cow<'static, str>);

/// RFC 6749 §5.2 error codes we emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthCode {
    /// Malformed request.
    InvalidRequest,
    /// Client authentication failed.
    InvalidClient,
    /// Grant type not supported.
    UnsupportedGrantType,
    /// Client may not use this grant.
    UnauthorizedClient,
    /// Too many failures or the replay record is full.
    TemporarilyUnavailable,
    /// Internal failure.
    ServerError,
}

impl OAuthCode {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::ServerError => "server_error",
        }
    }
}

/// A token endpoint error.
#[derive(Debug, Clone)]
pub struct OAuthError {
    /// HTTP status.
    pub status: StatusCode,
    /// RFC 6749 code.
    pub code: OAuthCode,
    /// Printable-ASCII description, no quotes or backslashes (RFC 6749 §5.2).
    pub description: Cow<'static, str>,
    /// Add `WWW-Authenticate: Basic` (the client used the Authorization header).
    pub basic_challenge: bool,
    /// Seconds for `Retry-After`.
    pub retry_after: Option<u64>,
}

impl OAuthError {
    fn new(status: StatusCode, code: OAuthCode, description: impl Into<Cow<'static, str>>) -> Self {
        Self {
            status,
            code,
            description: description.into(),
            basic_challenge: false,
            retry_after: None,
        }
    }

    /// 400 `invalid_request`.
    pub fn invalid_request(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            OAuthCode::InvalidRequest,
            description,
        )
    }

    /// 401 `invalid_client`.
    pub fn invalid_client(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            OAuthCode::InvalidClient,
            description,
        )
    }

    /// 400 `unsupported_grant_type`.
    pub fn unsupported_grant_type() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            OAuthCode::UnsupportedGrantType,
            "only grant_type=client_credentials is supported",
        )
    }

    /// 429 with `Retry-After`.
    pub fn too_many(retry_after: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            OAuthCode::TemporarilyUnavailable,
            "too many failed authentication attempts; retry later",
        );
        e.retry_after = Some(retry_after.max(1));
        e
    }

    /// 429: the client holds as many unexpired assertions as it may (`oauth.replay_per_client`);
    /// it alone is refused until some expire.
    pub fn too_many_assertions() -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            OAuthCode::TemporarilyUnavailable,
            "this client holds too many unexpired assertions; use shorter-lived assertions or wait until some expire",
        );
        e.retry_after = Some(60);
        e
    }

    /// 503, e.g. the replay record is full.
    pub fn unavailable(description: &'static str) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            OAuthCode::TemporarilyUnavailable,
            description,
        );
        e.retry_after = Some(1);
        e
    }

    /// 500 `server_error`.
    pub fn server_error() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            OAuthCode::ServerError,
            "internal error",
        )
    }

    /// 405 for a non-POST request.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            OAuthCode::InvalidRequest,
            "the token endpoint accepts POST only",
        )
    }

    /// 413 for an oversized body.
    pub fn too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            OAuthCode::InvalidRequest,
            "request body too large",
        )
    }

    /// Adds the Basic challenge.
    pub fn with_basic_challenge(mut self) -> Self {
        self.basic_challenge = true;
        self
    }

    /// Whose fault it was.
    pub fn fault(&self) -> Fault {
        if self.status.is_server_error() && self.status != StatusCode::SERVICE_UNAVAILABLE {
            Fault::Internal
        } else {
            Fault::Client
        }
    }

    /// The response, with the no-store headers every token endpoint answer carries.
    pub fn into_response(self) -> Response<Body> {
        let desc: String = self
            .description
            .chars()
            .filter(|c| (' '..='~').contains(c) && *c != '"' && *c != '\\')
            .collect();
        let body = serde_json::json!({
            "error": self.code.as_str(),
            "error_description": desc,
            "statusCode": self.status.as_u16(),
            "message": desc,
        });
        let mut resp = json(self.status, body.to_string());
        no_store(resp.headers_mut());
        if self.basic_challenge {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"iamgate\", charset=\"UTF-8\""),
            );
        }
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if self.status == StatusCode::METHOD_NOT_ALLOWED {
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
        resp
    }
}

/// `Cache-Control: no-store` and `Pragma: no-cache` (RFC 6749 §5.1).
pub fn no_store(h: &mut http::HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}
