//! `management:` and `directory:`: the management API's client keys and secret rotation grace,
//! and the periodic sync of the project directory from the Console.

use super::{Secret, check_url, secs_in};
use serde::Deserialize;
use std::time::Duration;

/// `management:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawManagement {
    /// Accepted `Client-key` header values; when set, management requests must carry one.
    pub client_keys: Vec<Secret>,
    /// Seconds a rotated client secret keeps working. Default 0.
    pub secret_rotation_grace_secs: Option<u64>,
}

/// `directory:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDirectory {
    /// A Console endpoint answering `[{"_id","tenantId","environments":[{"envId"}]}]`, polled.
    pub sync_url: Option<String>,
    /// Bearer token sent to `sync_url`.
    pub sync_token: Option<Secret>,
    /// Seconds between syncs. Default 300.
    pub sync_interval_secs: Option<u64>,
}

/// The directory sync: the URL, its bearer token and the interval.
pub type DirectorySync = (http::Uri, Option<Secret>, Duration);

impl RawManagement {
    /// Checks the section (problems go to `errs`): the client keys and the secret rotation grace.
    pub(super) fn validate(self, errs: &mut Vec<String>) -> (Vec<Secret>, Duration) {
        if self.client_keys.iter().any(|k| k.expose().len() < 8) {
            errs.push("management.client_keys: each key needs at least 8 characters".to_owned());
        }
        let secret_rotation_grace = secs_in(
            "management.secret_rotation_grace_secs",
            self.secret_rotation_grace_secs,
            0,
            0..=30 * 86_400,
            errs,
        );
        (self.client_keys, secret_rotation_grace)
    }
}

impl RawDirectory {
    /// Checks the section (problems go to `errs`): the sync, when a URL is set.
    pub(super) fn validate(self, errs: &mut Vec<String>) -> Option<DirectorySync> {
        let sync_every = secs_in(
            "directory.sync_interval_secs",
            self.sync_interval_secs,
            300,
            1..=86_400,
            errs,
        );
        self.sync_url.as_deref().and_then(|u| {
            check_url("directory.sync_url", u, errs);
            u.parse::<http::Uri>()
                .map_err(|e| errs.push(format!("directory.sync_url: {e}")))
                .ok()
                .map(|u| (u, self.sync_token.clone(), sync_every))
        })
    }
}
