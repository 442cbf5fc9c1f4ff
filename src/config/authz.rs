//! `authz:`: decisions for an existing ingress (`/-/authz` on the listener, Envoy's ext_authz over
//! gRPC on `server.ext_authz_grpc_listen`), where iamgate decides and the ingress forwards.

use serde::Deserialize;

/// `authz:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAuthz {
    /// Answer decisions at `/-/authz` (for peers in `server.trusted_proxies` only). Default true.
    pub enabled: Option<bool>,
    /// A route whose answer a response rule filters (lists of companies, projects and
    /// environments) cannot be filtered by an authorizer, which never sees the answer: `deny`
    /// (default) refuses it with reason `response_rule`; `skip` decides the request's own checks
    /// and lets the unfiltered answer through.
    pub response_rules: Option<String>,
}

/// Decision-only settings.
#[derive(Debug, Clone, Copy)]
pub struct AuthzSettings {
    /// `/-/authz` is served.
    pub enabled: bool,
    /// Response-rule routes are decided on their checks alone instead of refused.
    pub skip_response_rules: bool,
}

impl RawAuthz {
    /// Checks the section; problems go to `errs`.
    pub(super) fn validate(self, errs: &mut Vec<String>) -> AuthzSettings {
        let skip_response_rules = match self.response_rules.as_deref() {
            None | Some("deny") => false,
            Some("skip") => true,
            Some(other) => {
                errs.push(format!(
                    "authz.response_rules: `{other}` is not deny or skip"
                ));
                false
            }
        };
        AuthzSettings {
            enabled: self.enabled.unwrap_or(true),
            skip_response_rules,
        }
    }
}
