//! Brute-force protection for the token endpoint: failures are counted per client id and per
//! source address in fixed windows; a key over its limit gets 429 until its window ends, so a
//! legitimate client is never locked out for longer than one window.

use moka::future::Cache;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug)]
struct Window {
    started: Instant,
    failures: AtomicU32,
}

/// Failure counters for one kind of key.
#[derive(Debug, Clone)]
pub struct FailureLimiter {
    windows: Cache<String, Arc<Window>>,
    window: Duration,
    max: u32,
}

impl FailureLimiter {
    /// Allows `max` failures per `window`, tracking at most `capacity` keys.
    pub fn new(max: u32, window: Duration, capacity: u64) -> Self {
        Self {
            windows: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(window)
                .build(),
            window,
            max,
        }
    }

    /// `Some(seconds)` to wait when `key` is over its limit.
    pub async fn blocked(&self, key: &str) -> Option<u64> {
        let w = self.windows.get(key).await?;
        if w.failures.load(Ordering::Relaxed) < self.max {
            return None;
        }
        let left = self.window.saturating_sub(w.started.elapsed());
        if left.is_zero() {
            return None;
        }
        Some(left.as_secs().max(1))
    }

    /// Counts one failure for `key`.
    pub async fn fail(&self, key: &str) {
        let w = self
            .windows
            .get_with_by_ref(key, async {
                Arc::new(Window {
                    started: Instant::now(),
                    failures: AtomicU32::new(0),
                })
            })
            .await;
        w.failures.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn blocks_after_max_failures_and_releases_after_window() {
        let l = FailureLimiter::new(2, Duration::from_millis(300), 100);
        assert_eq!(l.blocked("a").await, None);
        l.fail("a").await;
        assert_eq!(l.blocked("a").await, None);
        l.fail("a").await;
        assert!(l.blocked("a").await.is_some());
        assert_eq!(l.blocked("b").await, None, "other keys unaffected");
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(l.blocked("a").await, None);
    }
}
