//! Brute-force protection for the token endpoint: failures are counted per source address (an
//! IPv6 client per /64, the block one subscriber gets) and per (client id, source address) in
//! fixed windows; a key over its limit gets 429 until its window ends. Never per client id
//! alone: client ids are not secret, and counting them would let anyone lock any client out
//! from everywhere, while a 256-bit secret needs no such guard. Behind a trusted ingress the
//! source address is the client it names (`crate::net::client_addr`).

use moka::future::Cache;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The key failures from `addr` are counted under: the address, or its /64 for IPv6.
pub fn address_key(addr: std::net::IpAddr) -> String {
    match addr.to_canonical() {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// The key failures of `client_id` from `address_key` are counted under.
pub fn client_key(client_id: &str, address_key: &str) -> String {
    // A client id never holds a NUL: the pair cannot be forged from another pair.
    format!("{client_id}\u{0}{address_key}")
}

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

    #[test]
    fn ipv6_clients_count_per_64_and_ipv4_per_address() {
        let k = |s: &str| address_key(s.parse().unwrap());
        assert_eq!(k("2001:db8::1"), k("2001:db8::ffff:1"));
        assert_ne!(k("2001:db8::1"), k("2001:db8:0:1::1"));
        assert_ne!(k("10.0.0.1"), k("10.0.0.2"));
        assert_eq!(k("::ffff:10.0.0.1"), k("10.0.0.1"));
        assert_ne!(
            client_key("a", &k("10.0.0.1")),
            client_key("a", &k("10.0.0.2"))
        );
    }
}
