//! Hot reload: the policy folder is polled; a change is read, compiled and tested, and swapped
//! in only when every `test_*` rule passes. A broken change leaves the running policy deciding,
//! is logged with its reason and counted. A shadow folder (`policy.shadow_dir`) is watched the
//! same way and feeds the shadow slot.

use super::engine::{PolicyEngine, Snapshot};
use super::source::PolicySource;
use crate::telemetry::metrics::{Metrics, ReloadLabels};
use prometheus_client::metrics::counter::Counter;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// Reload counters (exported as `iamgate_policy_reloads_total`) and the last rejection.
#[derive(Debug, Default)]
pub struct ReloadStats {
    /// Policies swapped in.
    pub applied: Counter,
    /// Changes refused (did not compile or tests failed).
    pub rejected: Counter,
    /// Why the last change was refused, until a later one is applied.
    pub last_error: Mutex<Option<String>>,
}

impl ReloadStats {
    /// Counters shared with the process metrics (`applied`, `rejected`).
    pub fn new(metrics: &Metrics) -> Self {
        Self::labelled(metrics, "applied", "rejected")
    }

    /// Counters of the shadow folder's reloads (`shadow_applied`, `shadow_rejected`).
    pub fn for_shadow(metrics: &Metrics) -> Self {
        Self::labelled(metrics, "shadow_applied", "shadow_rejected")
    }

    fn labelled(metrics: &Metrics, applied: &'static str, rejected: &'static str) -> Self {
        let counter = |result| {
            metrics
                .policy_reloads
                .get_or_create(&ReloadLabels { result })
                .clone()
        };
        Self {
            applied: counter(applied),
            rejected: counter(rejected),
            last_error: Mutex::new(None),
        }
    }
}

/// A cheap fingerprint of a folder: names, sizes and modification times, of the files symlinks
/// lead to (a ConfigMap's files are symlinks through `..data`, which the kubelet swaps to a new
/// folder: the names stay, what they lead to changes).
fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), 0)];
    while let Some((d, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(meta) = std::fs::metadata(e.path()) else {
                continue;
            };
            if meta.is_dir() && depth < 4 {
                stack.push((e.path(), depth + 1));
            } else {
                out.push((e.path(), meta.len(), meta.modified().ok()));
            }
        }
    }
    out.sort();
    out
}

/// Which policy a folder feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// The policy that decides.
    Live,
    /// The candidate decided beside it and never enforced (`policy.shadow_dir`).
    Shadow,
}

impl Slot {
    fn name(self) -> &'static str {
        match self {
            Self::Live => "policy",
            Self::Shadow => "shadow policy",
        }
    }
}

/// Tries to load `dir` into `engine`'s `slot`; returns whether a new revision was applied. Both
/// slots pass the same gate: tests, the evaluators' agreement, the route table's permissions.
pub fn reload_once(engine: &PolicyEngine, dir: &Path, stats: &ReloadStats, slot: Slot) -> bool {
    let running = match slot {
        Slot::Live => Some(engine.revision()),
        Slot::Shadow => engine.shadow_revision(),
    };
    let result = PolicySource::read(dir).and_then(|source| {
        if running.as_deref() == Some(&*source.revision) {
            return Ok(None);
        }
        let snapshot = Snapshot::compile_tested(source)?;
        engine.check_named(&snapshot)?;
        Ok(Some(snapshot))
    });
    let what = slot.name();
    match result {
        Ok(None) => false,
        Ok(Some(snapshot)) => {
            tracing::info!(revision = %snapshot.revision(), "{what} reloaded");
            // In service first, counted after: whoever sees the count (a metric, a test) must
            // find the new revision deciding, not the old one still.
            match slot {
                Slot::Live => engine.swap(snapshot),
                Slot::Shadow => engine.swap_shadow(snapshot),
            }
            if let Ok(mut e) = stats.last_error.lock() {
                *e = None;
            }
            stats.applied.inc();
            true
        }
        Err(e) => {
            tracing::error!(error = %e, running = running.as_deref().unwrap_or(""), "{what} change rejected; the running one stays in service");
            stats.rejected.inc();
            if let Ok(mut last) = stats.last_error.lock() {
                *last = Some(e.to_string());
            }
            false
        }
    }
}

/// Polls `dir` every `every` until `shutdown` flips.
pub fn spawn(
    engine: Arc<PolicyEngine>,
    dir: PathBuf,
    slot: Slot,
    every: Duration,
    stats: Arc<ReloadStats>,
    shutdown: watch::Receiver<bool>,
) {
    // Start from "unknown" so the first tick compares the folder with the revision in service:
    // a change written between start-up and the first tick is not missed.
    let last = Arc::new(Mutex::new(Vec::new()));
    crate::util::spawn_periodic(every, shutdown, false, move || {
        let (engine, dir, stats, last) = (engine.clone(), dir.clone(), stats.clone(), last.clone());
        async move {
            let now = fingerprint(&dir);
            match last.lock() {
                Ok(mut l) if *l != now => *l = now,
                _ => return,
            }
            // Compiling and testing is CPU work: keep it off the request threads' queue.
            let _ =
                tokio::task::spawn_blocking(move || reload_once(&engine, &dir, &stats, slot)).await;
        }
    });
}
