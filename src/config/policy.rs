//! `policy:`: the policy folder, its reload, the decision time limit, evaluator and cache, and a
//! shadow folder.

use super::secs_in;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// `policy:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPolicy {
    /// Policy folder. Default `./policies` when it exists, else the policy built into the binary.
    pub dir: Option<PathBuf>,
    /// Milliseconds between checks of the folder for changes. Default 500.
    pub reload_ms: Option<u64>,
    /// Time limit of one decision, milliseconds; over it the request is denied. Default 50.
    pub decision_timeout_ms: Option<u64>,
    /// `rvm` (default, regorus' register VM) or `interpreter`.
    pub evaluator: Option<String>,
    /// Decision cache.
    pub cache: RawPolicyCache,
    /// A candidate policy folder decided beside the live one on every request and never
    /// enforced; its disagreements are counted and logged. Unset (default): none.
    pub shadow_dir: Option<PathBuf>,
}

/// `policy.cache:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPolicyCache {
    /// Default true.
    pub enabled: Option<bool>,
    /// Entries. Default 100000.
    pub capacity: Option<u64>,
    /// Seconds an entry lives. Default 60.
    pub ttl_secs: Option<u64>,
}

/// Policy engine settings.
#[derive(Debug, Clone)]
pub struct PolicySettings {
    /// The configured folder; `None` = `./policies` if present, else the embedded policy.
    pub dir: Option<PathBuf>,
    /// Reload poll interval.
    pub reload: Duration,
    /// Per-decision time limit.
    pub decision_timeout: Duration,
    /// Decision cache; `None` = disabled.
    pub cache: Option<CacheSettings>,
    /// Evaluate with regorus' interpreter instead of its register VM.
    pub interpreter: bool,
    /// The shadow policy's folder.
    pub shadow_dir: Option<PathBuf>,
}

/// Decision-cache settings.
#[derive(Debug, Clone, Copy)]
pub struct CacheSettings {
    /// Entries.
    pub capacity: u64,
    /// Time to live.
    pub ttl: Duration,
}

impl RawPolicy {
    /// Checks the section; problems go to `errs`.
    pub(super) fn validate(self, errs: &mut Vec<String>) -> PolicySettings {
        let reload_ms = self.reload_ms.unwrap_or(500);
        if !(50..=60_000).contains(&reload_ms) {
            errs.push(format!(
                "policy.reload_ms: {reload_ms} is outside 50..=60000"
            ));
        }
        let timeout_ms = self.decision_timeout_ms.unwrap_or(50);
        if !(1..=10_000).contains(&timeout_ms) {
            errs.push(format!(
                "policy.decision_timeout_ms: {timeout_ms} is outside 1..=10000"
            ));
        }
        let cache_capacity = self.cache.capacity.unwrap_or(100_000);
        if cache_capacity == 0 {
            errs.push(
                "policy.cache.capacity: must be at least 1 (or set enabled: false)".to_owned(),
            );
        }
        let cache_ttl = secs_in(
            "policy.cache.ttl_secs",
            self.cache.ttl_secs,
            60,
            1..=86_400,
            errs,
        );
        let interpreter = match self.evaluator.as_deref() {
            None | Some("rvm") => false,
            Some("interpreter") => true,
            Some(other) => {
                errs.push(format!(
                    "policy.evaluator: `{other}` is not rvm or interpreter"
                ));
                false
            }
        };
        if let Some(d) = &self.shadow_dir
            && self.dir.as_ref() == Some(d)
        {
            errs.push(
                "policy.shadow_dir: is the live policy folder; a shadow is a candidate beside it"
                    .to_owned(),
            );
        }
        PolicySettings {
            interpreter,
            shadow_dir: self.shadow_dir,
            dir: self.dir,
            reload: Duration::from_millis(reload_ms),
            decision_timeout: Duration::from_millis(timeout_ms),
            cache: self.cache.enabled.unwrap_or(true).then_some(CacheSettings {
                capacity: cache_capacity,
                ttl: cache_ttl,
            }),
        }
    }
}
