//! Connection workers: one single-threaded tokio runtime per core, each serving the connections
//! handed to it, with everything a connection starts (its upstream connections, its HTTP/2
//! streams) on the same thread.
//!
//! On the shared work-stealing runtime a proxied request crossed threads: the client's connection
//! task and the upstream connection's task ran wherever they were stolen to, and each hand-off
//! between them was a cross-thread wake-up. Here a connection and its upstream exchanges stay on
//! one worker, and the upstream pool keeps its idle connections per worker ([`index`]).
//!
//! New connections are accepted in one place and each goes to the worker serving the fewest open
//! connections: with the kernel spreading them (`SO_REUSEPORT`), a few long-lived connections,
//! as an ingress opens, could land on one core and leave the other idle.

use std::cell::Cell;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::oneshot;

thread_local! {
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// The worker running the current thread, from 1; 0 on any other thread.
pub fn index() -> usize {
    INDEX.with(Cell::get)
}

struct Worker {
    handle: tokio::runtime::Handle,
    open: Arc<AtomicUsize>,
}

/// A set of connection workers. Dropped, each worker stops: the connections it still serves are
/// closed, so whoever owns it drains them first.
pub struct Workers {
    workers: Vec<Worker>,
    /// Ties go round: the next worker to look at first.
    next: AtomicUsize,
    _stop: Vec<oneshot::Sender<()>>,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers")
            .field("workers", &self.workers.len())
            .finish()
    }
}

/// One worker per available core (a container's CPU limit counts), the default.
pub fn per_core() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Workers {
    /// Starts `n` workers (at least one), their threads named `{name}-{i}`.
    pub fn start(n: usize, name: &str) -> std::io::Result<Self> {
        let n = n.max(1);
        let mut workers = Vec::with_capacity(n);
        let mut stops = Vec::with_capacity(n);
        for i in 1..=n {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handle = runtime.handle().clone();
            let (stop, stopped) = oneshot::channel::<()>();
            // Records go where the starting thread's go (its own subscriber, if it set one
            // rather than the process-wide one).
            let dispatch = tracing::dispatcher::get_default(Clone::clone);
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    INDEX.with(|c| c.set(i));
                    let _logs = tracing::dispatcher::set_default(&dispatch);
                    // Runs the connections spawned onto it until the set is dropped.
                    let _ = runtime.block_on(stopped);
                })?;
            workers.push(Worker {
                handle,
                open: Arc::new(AtomicUsize::new(0)),
            });
            stops.push(stop);
        }
        Ok(Self {
            workers,
            next: AtomicUsize::new(0),
            _stop: stops,
        })
    }

    /// Runs the connection `serve` makes on the worker serving the fewest open connections.
    /// `serve` is called on that worker, so what it creates (sockets, timers, tasks) is its own.
    pub fn spawn<F, Fut>(&self, serve: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let n = self.workers.len();
        // Never 0: `start` makes at least one.
        let first = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let Some(worker) = (0..n)
            .map(|k| &self.workers[(first + k) % n])
            .min_by_key(|w| w.open.load(Ordering::Relaxed))
        else {
            return;
        };
        let open = OpenGuard::new(worker.open.clone());
        worker.handle.spawn(async move {
            serve().await;
            drop(open);
        });
    }
}

/// One open connection counted on its worker until dropped.
struct OpenGuard(Arc<AtomicUsize>);

impl OpenGuard {
    fn new(open: Arc<AtomicUsize>) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        Self(open)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Spawns a connection that reports its worker and stays open until `close` fires.
    fn open(workers: &Workers, close: oneshot::Receiver<()>) -> std::sync::mpsc::Receiver<usize> {
        let (tx, rx) = std::sync::mpsc::channel();
        workers.spawn(move || async move {
            let _ = tx.send(index());
            let _ = close.await;
        });
        rx
    }

    fn worker_of(rx: &std::sync::mpsc::Receiver<usize>) -> usize {
        rx.recv_timeout(Duration::from_secs(5)).unwrap()
    }

    #[test]
    fn each_new_connection_goes_to_the_worker_serving_the_fewest() {
        let workers = Workers::start(2, "test-worker").unwrap();
        // Two long-lived connections, as an ingress keeps: one on each worker.
        let (close_a, a) = oneshot::channel();
        let (_close_b, b) = oneshot::channel::<()>();
        let (a, b) = (worker_of(&open(&workers, a)), worker_of(&open(&workers, b)));
        assert_eq!([a.min(b), a.max(b)], [1, 2]);
        close_a.send(()).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while workers.workers[a - 1].open.load(Ordering::Relaxed) != 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the closed connection stays counted"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let (_close_c, c) = oneshot::channel::<()>();
        let first = worker_of(&open(&workers, c));
        assert_eq!(first, a, "the next connection goes where one left");
        // Ties go round: eight more keep the two within one connection of each other.
        let mut held = Vec::new();
        for _ in 0..8 {
            let (close, c) = oneshot::channel::<()>();
            held.push(close);
            worker_of(&open(&workers, c));
            let [x, y] = [0, 1].map(|w| workers.workers[w].open.load(Ordering::Relaxed));
            assert!(x.abs_diff(y) <= 1, "{x} and {y} connections");
        }
        assert_eq!(index(), 0, "the test's own thread is no worker");
    }
}
