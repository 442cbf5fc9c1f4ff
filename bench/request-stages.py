#!/usr/bin/env python3
"""Per-stage instructions of one proxied request, from two callgrind profiles of the same binary
(an idle run and a loaded one, as bench/request-instructions.sh makes them): each stage's
inclusive instructions in the loaded run minus the idle run, divided by the requests answered.
Stages are functions on the request path; an inclusive figure counts everything they call, so
stages nest (the decision contains authentication) and the column does not add up. memcpy and
the allocator are counted where they run, inside the other stages. Function names follow the
build's inlining: a stage shown as "-" was inlined into its caller.

    python3 bench/request-stages.py idle.out loaded.out REQUESTS
"""
import re
import subprocess
import sys

# (label, regular expression on callgrind_annotate's function name), outermost first.
STAGES = [
    ("hyper server connection (all of a request)", r"<hyper_util::server::conn::auto::UpgradeableConnection<I,S,E> as core::future::future::Future>::poll$"),
    ("  read and parse the request head", r"hyper::proto::h1::conn::Conn<I,B,T>::poll_read_head$"),
    ("  write the response head", r"hyper::proto::h1::conn::Conn<I,B,T>::write_head$"),
    ("  flush to the socket", r"hyper::proto::h1::io::Buffered<T,B>::poll_flush$"),
    ("  tower stack: request id, masking, shed, limit, timeout", r"<hyper_util::service::oneshot::Oneshot<S,Req> as core::future::future::Future>::poll$"),
    ("    application: route, decide, forward", r"iamgate::server::routes::App::route::\{\{closure\}\}$"),
    ("      route match and path rules", r"iamgate::proxy::gateway::Gateway::find$"),
    ("      decide (authentication and authorization)", r"iamgate::proxy::gateway::Gateway::decide_revealing::\{\{closure\}\}$"),
    ("        token SHA-256 (no SHA-NI under valgrind)", r"aws_lc_0_\d+_0_SHA256$"),
    ("        bearer token from the header", r"iamgate::authn::bearer::extract$"),
    ("        policy input (cache key parts)", r"iamgate::proxy::gateway::Gateway::base_input$"),
    ("        cached decision", r"iamgate::policy::engine::PolicyEngine::decide_filling$"),
    ("        resource targets", r"iamgate::proxy::resolve::RequestView::targets$"),
    ("      identity headers", r"iamgate::proxy::upstream::Identity::headers$"),
    ("      hop-by-hop and inbound header removal", r"iamgate::proxy::upstream::strip_hop_by_hop$"),
    ("      upstream client: parse the response head", r"<hyper::proto::h1::role::Client as hyper::proto::h1::Http1Transaction>::parse$"),
    ("      upstream client: encode the request head", r"<hyper::proto::h1::role::Client as hyper::proto::h1::Http1Transaction>::encode$"),
    ("tokio scheduler (everything on the worker)", r"tokio::runtime::scheduler::multi_thread::worker::Context::run_task$"),
    ("memcpy (futures and buffers moved)", r"^__memcpy_avx_unaligned_erms$"),
    ("allocator (malloc and free, everywhere)", r"^(mi_malloc|mi_free|_mi_malloc_generic|mi_malloc_aligned|mi_theap_malloc_aligned)$"),
]


def inclusive(path):
    out = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--threshold=100", path],
        capture_output=True, text=True, check=True,
    ).stdout
    costs = {}
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+) \([^)]*\)\s+\S*?:(.*) \[", line)
        if m:
            name = m.group(2)
            costs[name] = costs.get(name, 0) + int(m.group(1).replace(",", ""))
    return costs


def main():
    idle, loaded, n = inclusive(sys.argv[1]), inclusive(sys.argv[2]), int(sys.argv[3])
    print(f"{'stage':<58} instructions per request")
    for label, pattern in STAGES:
        rx = re.compile(pattern)
        names = [k for k in loaded if rx.search(k)]
        total = sum(loaded.get(k, 0) - idle.get(k, 0) for k in names)
        shown = f"{total / n:10,.0f}" if names else "         -"
        print(f"{label:<58} {shown}")


main()
