//! The load harness's reference leg: a pass-through proxy built from iamgate's own transport
//! (the same connection workers, one single-threaded runtime per core with connections handed to
//! the least loaded, hyper's HTTP/1.1 server, the same upstream pool and allocator) with no
//! authentication, no route table, no policy and no header rewriting. Whatever this leg loses
//! to nginx is the cost of the transport alone, which no gateway logic on top can win back.
//!
//! `hyper_floor LISTEN UPSTREAM`, e.g. `hyper_floor 127.0.0.1:18285 http://127.0.0.1:18281`;
//! `bench/load-peers.sh` builds and runs it.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use http::Request;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use iamgate::proxy::pool::{IDLE_TIMEOUT, MAX_IDLE, Pool};
use iamgate::util::workers::{self, Workers};
use std::sync::Arc;
use std::time::Duration;

fn main() {
    let mut args = std::env::args().skip(1);
    let listen: std::net::SocketAddr = args.next().expect("LISTEN").parse().unwrap();
    let upstream: http::Uri = args.next().expect("UPSTREAM").parse().unwrap();
    let host = http::HeaderValue::from_str(upstream.authority().unwrap().as_str()).unwrap();
    let connector = iamgate::net::connector(Duration::from_secs(1), None).unwrap();
    let pool = Arc::new(Pool::new(connector, upstream, IDLE_TIMEOUT, MAX_IDLE));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let workers = Workers::start(workers::per_core(), "floor-conn").unwrap();
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await.unwrap();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let (pool, host) = (pool.clone(), host.clone());
            let stream = stream.into_std().unwrap();
            workers.spawn(move || async move {
                let stream = tokio::net::TcpStream::from_std(stream).unwrap();
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (pool, host) = (pool.clone(), host.clone());
                    async move {
                        let (mut parts, body) = req.into_parts();
                        parts.headers.insert(http::header::HOST, host);
                        let forwarded = Request::from_parts(parts, body.boxed());
                        pool.send(forwarded).await
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
}
