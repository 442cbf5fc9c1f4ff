//! Hot reload: the policy folder is polled; a change is read, compiled and tested, and swapped
//! in only when every `test_*` rule passes. A broken change leaves the running policy deciding,
//! is logged with its reason and counted.

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
    /// Counters shared with the process metrics.
    pub fn new(metrics: &Metrics) -> Self {
        let counter = |result| {
            metrics
                .policy_reloads
                .get_or_create(&ReloadLabels { result })
                .clone()
        };
        Self {
            applied: counter("applied"),
            rejected: counter("rejected"),
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

/// Tries to load `dir` into `engine`; returns whether a new revision was applied.
pub fn reload_once(engine: &PolicyEngine, dir: &Path, stats: &ReloadStats) -> bool {
    let result = PolicySource::read(dir).and_then(|source| {
        if *source.revision == *engine.revision() {
            return Ok(None);
        }
        let snapshot = Snapshot::compile_tested(source)?;
        engine.check_named(&snapshot)?;
        Ok(Some(snapshot))
    });
    match result {
        Ok(None) => false,
        Ok(Some(snapshot)) => {
            tracing::info!(revision = %snapshot.revision(), "policy reloaded");
            // Bookkeeping first: whoever sees the new revision also sees it counted.
            stats.applied.inc();
            if let Ok(mut e) = stats.last_error.lock() {
                *e = None;
            }
            engine.swap(snapshot);
            true
        }
        Err(e) => {
            tracing::error!(error = %e, running = %engine.revision(), "policy change rejected; the running policy stays in service");
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
            let _ = tokio::task::spawn_blocking(move || reload_once(&engine, &dir, &stats)).await;
        }
    });
}
