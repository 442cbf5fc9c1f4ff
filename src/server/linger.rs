//! Lingering close for the public listener's TCP connections, beneath TLS and HTTP: when a
//! connection ends while the client may still be sending (a request refused before its body was
//! read, the usual case being a 401 or 413 to an upload), the rest of what the client sends is
//! read away, within a bound, before the socket closes.
//!
//! Closing a socket with unread data makes the kernel reset the connection, and a reset can
//! reach the client before it has read the answer: a client that sends its whole body before
//! reading gets a broken pipe instead of the 413 that explains it. nginx's `lingering_close`
//! does the same for the same reason.

use super::watchdog::Progress;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// Longest the rest of a client's data is read away after the gateway has finished with the
/// connection: as long as a client has to send a request head.
const LINGER_TOTAL: Duration = Duration::from_secs(10);

/// Longest wait for more of it: a client that has stopped sending gets its close at once.
const LINGER_IDLE: Duration = Duration::from_secs(2);

/// A served TCP connection that reads away what the client still sends once it is dropped,
/// unless the client had closed its side already or the connection was abandoned.
pub(super) struct Linger {
    /// The socket, taken by the draining task when this is dropped.
    stream: Option<TcpStream>,
    /// The client closed its side, or the connection failed: nothing is left to read away.
    done: bool,
    /// The connection's watchdog: a connection closed for stalling (a slowloris client, which
    /// would go on trickling into the lingering read) closes outright.
    progress: Arc<Progress>,
}

impl Linger {
    /// Serves `stream`, with a lingering close unless `progress` says it was abandoned.
    pub(super) fn new(stream: TcpStream, progress: Arc<Progress>) -> Self {
        Self {
            stream: Some(stream),
            done: false,
            progress,
        }
    }

    fn stream(&mut self) -> io::Result<Pin<&mut TcpStream>> {
        match self.stream.as_mut() {
            Some(s) => Ok(Pin::new(s)),
            // Only `drop` takes the socket; no I/O can follow it.
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// A failed write means the client is gone: nothing to read away.
    fn failed_if(&mut self, polled: &Poll<io::Result<usize>>) {
        if let Poll::Ready(Err(_)) = polled {
            self.done = true;
        }
    }
}

/// Reads away what the client still sends after the gateway's final write, within the bounds,
/// then closes. The write side is shut first, so the client sees the end of the answer.
async fn drain(mut stream: TcpStream) {
    let _ = stream.shutdown().await;
    let until = tokio::time::Instant::now() + LINGER_TOTAL;
    loop {
        let wait = until.min(tokio::time::Instant::now() + LINGER_IDLE);
        match tokio::time::timeout_at(wait, discard(&mut stream)).await {
            Ok(Ok(n)) if n > 0 => {}
            // The client's close, a failure, or a bound reached.
            _ => return,
        }
    }
}

thread_local! {
    /// Where a thread's draining connections read what they throw away: one buffer per thread,
    /// borrowed within a single poll, so a lingering connection's task holds no buffer of its
    /// own (many of them is what a flood of refused uploads leaves behind).
    static SCRATCH: std::cell::RefCell<Box<[u8]>> = std::cell::RefCell::new(vec![0u8; 16 << 10].into_boxed_slice());
}

/// Reads once from `stream` and throws the bytes away; how many there were (0 at the end).
async fn discard(stream: &mut TcpStream) -> io::Result<usize> {
    std::future::poll_fn(|cx| {
        SCRATCH.with_borrow_mut(|scratch| {
            let mut buf = ReadBuf::new(scratch);
            Pin::new(&mut *stream)
                .poll_read(cx, &mut buf)
                .map_ok(|()| buf.filled().len())
        })
    })
    .await
}

impl Drop for Linger {
    fn drop(&mut self) {
        let Some(stream) = self.stream.take() else {
            return;
        };
        if self.done || self.progress.abandoned() {
            return;
        }
        // Outside a runtime (never the case for a served connection) the socket simply closes.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(drain(stream));
        }
    }
}

impl AsyncRead for Linger {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let asked = buf.remaining() > 0;
        let polled = this.stream()?.poll_read(cx, buf);
        match &polled {
            Poll::Ready(Ok(())) if asked && buf.filled().len() == before => this.done = true,
            Poll::Ready(Err(_)) => this.done = true,
            _ => {}
        }
        polled
    }
}

impl AsyncWrite for Linger {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = this.stream()?.poll_write(cx, buf);
        this.failed_if(&polled);
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = this.stream()?.poll_write_vectored(cx, bufs);
        this.failed_if(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().stream()?.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().stream()?.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;
    use tokio::time::Instant;

    /// A connected pair over loopback: (the gateway's side, the client's side).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (served, _) = listener.accept().await.unwrap();
        (served, client)
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_sending_is_closed_after_the_idle_bound() {
        let (served, mut client) = pair().await;
        let started = Instant::now();
        let draining = tokio::spawn(drain(served));
        // The answer's end reaches the client at once: the write side is shut first.
        let mut byte = [0u8; 1];
        assert_eq!(client.read(&mut byte).await.unwrap(), 0);
        draining.await.unwrap();
        assert_eq!(started.elapsed(), LINGER_IDLE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_never_stops_sending_is_closed_after_the_total_bound() {
        let (served, mut client) = pair().await;
        let started = Instant::now();
        let draining = tokio::spawn(drain(served));
        let sending = tokio::spawn(async move {
            while client.write_all(&[b'x'; 1024]).await.is_ok() {
                tokio::time::sleep(LINGER_IDLE / 2).await;
            }
        });
        draining.await.unwrap();
        let took = started.elapsed();
        assert!(
            took >= LINGER_TOTAL && took <= LINGER_TOTAL + LINGER_IDLE,
            "{took:?}"
        );
        sending.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_closes_ends_the_linger_at_once() {
        let (served, client) = pair().await;
        let started = Instant::now();
        drop(client);
        drain(served).await;
        assert!(started.elapsed() < LINGER_IDLE);
    }

    #[tokio::test]
    async fn nothing_lingers_once_the_client_has_closed() {
        let (served, client) = pair().await;
        let mut served = Linger::new(served, Progress::start());
        drop(client);
        let mut rest = Vec::new();
        served.read_to_end(&mut rest).await.unwrap();
        assert!(served.done);
    }
}
