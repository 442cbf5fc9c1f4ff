//! `upstream:`: the Console API allowed requests are forwarded to, and the identity headers.

use super::check_url;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// `upstream:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawUpstream {
    /// `http(s)://host:port[/prefix]`. Without it, proxied routes answer 503.
    pub url: Option<String>,
    /// Connect timeout, milliseconds. Default 2000.
    pub connect_timeout_ms: Option<u64>,
    /// Time to the upstream's response headers, milliseconds. Default 30000.
    pub response_timeout_ms: Option<u64>,
    /// Extra PEM CA certificates trusted for an https upstream (besides the Mozilla roots).
    pub ca_file: Option<PathBuf>,
    /// Forward the caller's `Authorization` header. Default false.
    pub forward_authorization: Option<bool>,
    /// Names of the trusted identity headers.
    pub identity_headers: RawIdentityHeaders,
    /// Further headers removed from every forwarded request: those the upstream trusts when an
    /// ingress sets them (a client must never be able to). Default: none.
    pub strip_headers: Vec<String>,
}

/// `upstream.identity_headers:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawIdentityHeaders {
    /// Default `miauserid`.
    pub user_id: Option<String>,
    /// Default `miausergroups`.
    pub groups: Option<String>,
    /// Default `miauserproperties`.
    pub properties: Option<String>,
    /// Default `client-type`.
    pub client_type: Option<String>,
}

/// Upstream settings.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// Base URL; `None` = no upstream (proxied routes answer 503).
    pub url: Option<http::Uri>,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Response-header timeout.
    pub response_timeout: Duration,
    /// Extra CA file.
    pub ca_file: Option<PathBuf>,
    /// Forward `Authorization`.
    pub forward_authorization: bool,
    /// Identity header names.
    pub identity_headers: IdentityHeaders,
    /// Headers removed from every forwarded request.
    pub strip_headers: Vec<http::HeaderName>,
}

/// Names of the trusted identity headers (Console conventions by default).
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    /// The caller's id.
    pub user_id: http::HeaderName,
    /// Comma-separated groups.
    pub groups: http::HeaderName,
    /// JSON properties.
    pub properties: http::HeaderName,
    /// `serviceaccount` or `user`.
    pub client_type: http::HeaderName,
}

impl IdentityHeaders {
    /// The four names.
    pub fn all(&self) -> [&http::HeaderName; 4] {
        [
            &self.user_id,
            &self.groups,
            &self.properties,
            &self.client_type,
        ]
    }
}

impl RawUpstream {
    /// Checks the section; problems go to `errs`.
    pub(super) fn validate(self, errs: &mut Vec<String>) -> UpstreamSettings {
        let up = self;
        let upstream_url = up.url.as_deref().and_then(|u| {
            let u = u.trim_end_matches('/');
            check_url("upstream.url", u, errs);
            u.parse::<http::Uri>()
                .map_err(|e| errs.push(format!("upstream.url: {e}")))
                .ok()
        });
        let mut header_name = |field: &str, v: Option<String>, default: &'static str| match v {
            None => http::HeaderName::from_static(default),
            Some(n) => http::HeaderName::from_bytes(n.as_bytes()).unwrap_or_else(|_| {
                errs.push(format!(
                    "upstream.identity_headers.{field}: `{n}` is not a header name"
                ));
                http::HeaderName::from_static(default)
            }),
        };
        let ih = up.identity_headers;
        let identity_headers = IdentityHeaders {
            user_id: header_name("user_id", ih.user_id, "miauserid"),
            groups: header_name("groups", ih.groups, "miausergroups"),
            properties: header_name("properties", ih.properties, "miauserproperties"),
            client_type: header_name("client_type", ih.client_type, "client-type"),
        };
        let connect_ms = up.connect_timeout_ms.unwrap_or(2000);
        let response_ms = up.response_timeout_ms.unwrap_or(30_000);
        for (field, v) in [
            ("upstream.connect_timeout_ms", connect_ms),
            ("upstream.response_timeout_ms", response_ms),
        ] {
            if !(1..=600_000).contains(&v) {
                errs.push(format!("{field}: {v} is outside 1..=600000"));
            }
        }
        let mut strip_headers = Vec::new();
        for (i, n) in up.strip_headers.iter().enumerate() {
            match http::HeaderName::from_bytes(n.as_bytes()) {
                Ok(h) => strip_headers.push(h),
                Err(_) => errs.push(format!(
                    "upstream.strip_headers[{i}]: `{n}` is not a header name"
                )),
            }
        }
        UpstreamSettings {
            strip_headers,
            url: upstream_url,
            connect_timeout: Duration::from_millis(connect_ms),
            response_timeout: Duration::from_millis(response_ms),
            ca_file: up.ca_file,
            forward_authorization: up.forward_authorization.unwrap_or(false),
            identity_headers,
        }
    }
}
