//! Settings of the external issuers whose users' tokens the gateway accepts, and the rules for
//! their names (which appear in principals and management API ids).

use super::{check_fetch_url, secs_in};
use serde::Deserialize;
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

/// One `external_issuers:` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExternalIssuer {
    /// Short name in principals (`user:<name>:<subject>`) and management API ids
    /// (`<name>:<subject>`). Default: the host of `issuer`.
    pub name: Option<String>,
    /// Exact `iss`.
    pub issuer: String,
    /// Required `aud`.
    pub audience: String,
    /// JWKS file.
    pub jwks_file: Option<PathBuf>,
    /// JWKS URL.
    pub jwks_url: Option<String>,
    /// Claim with the user id. Default `sub`.
    pub subject_claim: Option<String>,
    /// Claim with the groups. Default `groups`.
    pub groups_claim: Option<String>,
    /// Minimum seconds between JWKS refreshes on unknown kids. Default 30.
    pub refresh_min_secs: Option<u64>,
}

/// Checks every `external_issuers:` entry (problems go to `errs`); `skew` is the token
/// endpoint's clock skew, applied to external tokens too.
pub(super) fn validate_all(
    raw: Vec<RawExternalIssuer>,
    skew: Duration,
    errs: &mut Vec<String>,
) -> Vec<ExternalIssuerSettings> {
    let mut external_issuers = Vec::new();
    let mut issuer_names = std::collections::HashSet::new();
    for (i, e) in raw.into_iter().enumerate() {
        let at = format!("external_issuers[{i}]");
        if e.issuer.is_empty() || e.audience.is_empty() {
            errs.push(format!("{at}: issuer and audience must not be empty"));
        }
        // The name is part of every stored principal of this issuer's users and groups: it
        // must be unambiguous, and two issuers must never share one.
        let name = e
            .name
            .clone()
            .unwrap_or_else(|| default_issuer_name(&e.issuer));
        if !valid_issuer_name(&name) {
            errs.push(format!(
                "{at}.name: `{name}` must be 1 to 64 characters of [A-Za-z0-9-._~]{}",
                if e.name.is_none() {
                    " (derived from the issuer's host; set name)"
                } else {
                    ""
                }
            ));
        } else if !issuer_names.insert(name.clone()) {
            errs.push(format!(
                    "{at}.name: `{name}` is already the name of another issuer; give each a distinct name"
                ));
        }
        let jwks = match (e.jwks_file, e.jwks_url) {
            (Some(f), None) => Some(JwksSource::File(f)),
            (None, Some(u)) => {
                check_fetch_url(&format!("{at}.jwks_url"), &u, errs);
                u.parse::<http::Uri>()
                    .map_err(|err| errs.push(format!("{at}.jwks_url: {err}")))
                    .ok()
                    .map(JwksSource::Url)
            }
            _ => {
                errs.push(format!("{at}: give exactly one of jwks_file and jwks_url"));
                None
            }
        };
        let refresh_min = secs_in(
            &format!("{at}.refresh_min_secs"),
            e.refresh_min_secs,
            30,
            0..=86_400,
            errs,
        );
        if let Some(jwks) = jwks {
            external_issuers.push(ExternalIssuerSettings {
                name,
                issuer: e.issuer,
                audience: e.audience,
                jwks,
                subject_claim: e.subject_claim.unwrap_or_else(|| "sub".to_owned()),
                groups_claim: e.groups_claim.unwrap_or_else(|| "groups".to_owned()),
                refresh_min,
                skew,
            });
        }
    }
    external_issuers
}
