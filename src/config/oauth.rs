//! `oauth:`: the token endpoint and the access tokens it mints.

use super::{check_url, secs_in};
use serde::Deserialize;
use std::time::Duration;

/// `oauth:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawOAuth {
    /// `iss` of access tokens. Default: the public URL.
    pub issuer: Option<String>,
    /// `aud` of access tokens. Default: the public URL.
    pub access_token_audience: Option<String>,
    /// Access token lifetime in seconds. Default 3600.
    pub access_token_lifetime_secs: Option<u64>,
    /// Accepted client-assertion audiences. Default: `console-client-credentials`, the issuer and
    /// the token endpoint URL.
    pub assertion_audiences: Option<Vec<String>>,
    /// Longest accepted assertion lifetime (`exp - now`), seconds, before skew. Default 3600.
    pub max_assertion_lifetime_secs: Option<u64>,
    /// Clock skew tolerated on `exp`, `nbf`, `iat`, seconds. Default 30.
    pub clock_skew_secs: Option<u64>,
    /// How many unexpired `(client_id, jti)` pairs are remembered. Default 100000.
    pub replay_cache_capacity: Option<usize>,
    /// How many unexpired `jti`s one client may hold in the replay record. Default 1000.
    pub replay_per_client: Option<usize>,
    /// Largest accepted token request body, bytes. Default 16384.
    pub max_request_bytes: Option<usize>,
    /// Brute-force protection.
    pub rate_limit: RawRateLimit,
}

/// `oauth.rate_limit:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRateLimit {
    /// Window length, seconds. Default 60.
    pub window_secs: Option<u64>,
    /// Failures per client id per window before 429. Default 20.
    pub max_failures_per_client: Option<u32>,
    /// Failures per source address per window before 429. Default 100.
    pub max_failures_per_address: Option<u32>,
}

/// Token endpoint settings.
#[derive(Debug, Clone)]
pub struct OAuthSettings {
    /// Access token `iss`; `None` = public URL.
    pub issuer: Option<String>,
    /// Access token `aud`; `None` = public URL.
    pub access_token_audience: Option<String>,
    /// Access token lifetime.
    pub access_token_lifetime: Duration,
    /// Accepted assertion audiences; `None` = the defaults.
    pub assertion_audiences: Option<Vec<String>>,
    /// Maximum `exp - now` of an assertion (skew is added on top).
    pub max_assertion_lifetime: Duration,
    /// Clock skew.
    pub clock_skew: Duration,
    /// Replay cache capacity.
    pub replay_cache_capacity: usize,
    /// Unexpired `jti`s one client may hold.
    pub replay_per_client: usize,
    /// Request body limit.
    pub max_request_bytes: usize,
    /// Rate limiting.
    pub rate_limit: RateLimitSettings,
}

/// Failure rate limiting.
#[derive(Debug, Clone)]
pub struct RateLimitSettings {
    /// Fixed window.
    pub window: Duration,
    /// Failures per client id per window.
    pub max_failures_per_client: u32,
    /// Failures per source address per window.
    pub max_failures_per_address: u32,
}

impl RawOAuth {
    /// Checks the section; problems go to `errs`.
    pub(super) fn validate(self, errs: &mut Vec<String>) -> OAuthSettings {
        let o = self;
        let issuer = o
            .issuer
            .map(|u| check_url("oauth.issuer", u.trim_end_matches('/'), errs));
        let access_token_audience = o.access_token_audience;
        if access_token_audience.as_deref() == Some("") {
            errs.push("oauth.access_token_audience: must not be empty".to_owned());
        }
        let lifetime = secs_in(
            "oauth.access_token_lifetime_secs",
            o.access_token_lifetime_secs,
            3600,
            60..=86_400,
            errs,
        );
        if let Some(a) = &o.assertion_audiences
            && (a.is_empty() || a.iter().any(|s| s.is_empty()))
        {
            errs.push(
                "oauth.assertion_audiences: needs at least one non-empty audience".to_owned(),
            );
        }
        let max_assertion = secs_in(
            "oauth.max_assertion_lifetime_secs",
            o.max_assertion_lifetime_secs,
            3600,
            1..=86_400,
            errs,
        );
        let skew = secs_in(
            "oauth.clock_skew_secs",
            o.clock_skew_secs,
            30,
            0..=600,
            errs,
        );
        let replay_cache_capacity = o.replay_cache_capacity.unwrap_or(100_000);
        if !(1..=100_000_000).contains(&replay_cache_capacity) {
            errs.push("oauth.replay_cache_capacity: must be 1..=100000000".to_owned());
        }
        let replay_per_client = o
            .replay_per_client
            .unwrap_or(1000.min(replay_cache_capacity));
        if replay_per_client == 0 || replay_per_client > replay_cache_capacity {
            errs.push(format!(
                "oauth.replay_per_client: must be 1..=replay_cache_capacity ({replay_cache_capacity})"
            ));
        }
        let max_request_bytes = o.max_request_bytes.unwrap_or(16 * 1024);
        if !(1024..=1024 * 1024).contains(&max_request_bytes) {
            errs.push("oauth.max_request_bytes: must be 1024..=1048576".to_owned());
        }
        let window = secs_in(
            "oauth.rate_limit.window_secs",
            o.rate_limit.window_secs,
            60,
            1..=86_400,
            errs,
        );
        let per_client = o.rate_limit.max_failures_per_client.unwrap_or(20);
        let per_addr = o.rate_limit.max_failures_per_address.unwrap_or(100);
        if per_client == 0 || per_addr == 0 {
            errs.push("oauth.rate_limit: failure limits must be at least 1".to_owned());
        }

        OAuthSettings {
            issuer,
            access_token_audience,
            access_token_lifetime: lifetime,
            assertion_audiences: o.assertion_audiences,
            max_assertion_lifetime: max_assertion,
            clock_skew: skew,
            replay_cache_capacity,
            replay_per_client,
            max_request_bytes,
            rate_limit: RateLimitSettings {
                window,
                max_failures_per_client: per_client,
                max_failures_per_address: per_addr,
            },
        }
    }
}
