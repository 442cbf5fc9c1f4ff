//! `management:` and `directory:`: the management API's client keys and secret rotation grace,
//! and the periodic sync of the project directory from the Console.

use super::{MIN_SECRET_CHARS, Secret, check_fetch_url, secret_or_file, secs_in};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// `management:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawManagement {
    /// Accepted `Client-key` header values; when set, management requests must carry one.
    pub client_keys: Vec<Secret>,
    /// A file of further accepted `Client-key` values, one per line (a mounted secret).
    pub client_keys_file: Option<PathBuf>,
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
    /// A file holding `sync_token` (a mounted secret); not with `sync_token`.
    pub sync_token_file: Option<PathBuf>,
    /// Seconds between syncs. Default 300.
    pub sync_interval_secs: Option<u64>,
}

/// The directory sync: the URL, its bearer token and the interval.
pub type DirectorySync = (http::Uri, Option<Secret>, Duration);

impl RawManagement {
    /// Checks the section (problems go to `errs`): the client keys and the secret rotation grace.
    pub(super) fn validate(self, errs: &mut Vec<String>) -> (Vec<Secret>, Duration) {
        let mut client_keys = self.client_keys;
        if let Some(path) = &self.client_keys_file {
            match crate::util::read_bounded(path, super::MAX_SECRET_FILE)
                .and_then(|b| String::from_utf8(b).map_err(std::io::Error::other))
            {
                Ok(text) => client_keys.extend(
                    text.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(|l| Secret(l.to_owned())),
                ),
                Err(e) => errs.push(format!(
                    "management.client_keys_file: cannot read {}: {e}",
                    path.display()
                )),
            }
        }
        if client_keys
            .iter()
            .any(|k| k.expose().len() < MIN_SECRET_CHARS)
        {
            errs.push(format!(
                "management.client_keys: each key needs at least {MIN_SECRET_CHARS} characters (128 bits of base64)"
            ));
        }
        let secret_rotation_grace = secs_in(
            "management.secret_rotation_grace_secs",
            self.secret_rotation_grace_secs,
            0,
            0..=30 * 86_400,
            errs,
        );
        (client_keys, secret_rotation_grace)
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
        let sync_token = secret_or_file(
            "directory.sync_token",
            self.sync_token,
            self.sync_token_file.as_deref(),
            errs,
        );
        self.sync_url.as_deref().and_then(|u| {
            check_fetch_url("directory.sync_url", u, errs);
            u.parse::<http::Uri>()
                .map_err(|e| errs.push(format!("directory.sync_url: {e}")))
                .ok()
                .map(|u| (u, sync_token.clone(), sync_every))
        })
    }
}
