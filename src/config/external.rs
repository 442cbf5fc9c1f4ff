//! Settings of the external issuers whose users' tokens the gateway accepts, and the rules for
//! their names (which appear in principals and management API ids).

use std::path::PathBuf;
use std::time::Duration;

/// Where an issuer's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A JWKS file, re-read on an unknown `kid`.
    File(PathBuf),
    /// An `http(s)` URL.
    Url(http::Uri),
}

/// Configuration of one external issuer.
#[derive(Debug, Clone)]
pub struct ExternalIssuerSettings {
    /// The name in principals and management API ids (validated by [`valid_issuer_name`]).
    pub name: String,
    /// Exact `iss`.
    pub issuer: String,
    /// Required `aud`.
    pub audience: String,
    /// Key source.
    pub jwks: JwksSource,
    /// Claim holding the user id.
    pub subject_claim: String,
    /// Claim holding the groups (array of strings, or one comma-separated string).
    pub groups_claim: String,
    /// Minimum time between JWKS refreshes.
    pub refresh_min: Duration,
    /// Clock skew.
    pub skew: Duration,
}

/// Whether `name` can name an issuer in principals: it never contains `:`, the separator of
/// `user:<issuer>:<subject>`.
pub fn valid_issuer_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// The name of an issuer configured without one: the host of its URL (`idp.example.com`).
pub fn default_issuer_name(issuer: &str) -> String {
    issuer
        .parse::<http::Uri>()
        .ok()
        .and_then(|u| u.host().map(str::to_owned))
        .unwrap_or_default()
}
