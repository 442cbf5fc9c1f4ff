//! Decision benchmarks with the shipped policy: uncached (compiled policy evaluation) and cached
//! (decision cache hit), for a company maintainer deploying to an environment.
//! `IAMGATE_BENCH_POLICIES=DIR` runs them on another policy folder.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// The allocator the shipped binary uses, so that figures match production.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{Criterion, criterion_group};
use iamgate::iam::{Binding, BindingResource};
use iamgate::policy::engine::CacheSettings;
use iamgate::policy::input::{BindingSet, RequestInput, ResourceInput, RouteInput, UserInput};
use iamgate::policy::{DecisionInput, PolicyEngine, PolicySource, Snapshot};
use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

fn input() -> DecisionInput {
    let b = |id: &str, role: &str, t: &str, rid: &str| Binding {
        binding_id: id.into(),
        subjects: vec!["serviceaccount:sa-1".into()],
        groups: vec![],
        roles: vec![role.into()],
        permissions: vec![],
        // Made in c1, or in the company it is bound on.
        resource: Some(BindingResource::scoped(
            t,
            rid,
            if t == "company" { rid } else { "c1" },
        )),
    };
    DecisionInput {
        request: RequestInput {
            method: "POST".into(),
            path: "/api/deploy/project/p1/trigger/pipeline/".into(),
            ..Default::default()
        },
        user: UserInput {
            id: "sa-1".into(),
            kind: "serviceaccount".into(),
            principal: "serviceaccount:sa-1".into(),
            groups: vec!["ci".into()].into(),
            bindings: BindingSet::new(vec![
                b("b1", "maintainer", "company", "c1"),
                b("b2", "reporter", "project", "p7"),
                b("b3", "developer", "company", "c2"),
            ]),
            ..Default::default()
        },
        resource: ResourceInput {
            company_id: Some("c1".into()),
            project_id: Some("p1".into()),
            env_id: Some("dev".into()),
        },
        route: RouteInput {
            id: "deploy".into(),
            permission: Some("console.environment.deploy.trigger".into()),
            rule: None,
        },
        grants: None,
        target: None,
    }
}

fn decisions(c: &mut Criterion) {
    iamgate::policy::engine::set_decision_timeout(Duration::from_millis(50));
    // IAMGATE_BENCH_POLICIES benchmarks another policy folder (a security team's edit) against
    // the same input; by default the shipped policies.
    let dir = std::env::var_os("IAMGATE_BENCH_POLICIES").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"),
        std::path::PathBuf::from,
    );
    let source = PolicySource::read(&dir).unwrap();
    // Warnings (a policy the RVM cannot compile runs on the interpreter) go to stderr.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::WARN)
        .try_init();
    let snapshot = Snapshot::compile(source.clone()).unwrap();
    eprintln!("decisions on the RVM: {}", snapshot.uses_rvm());
    let i = input();
    assert!(snapshot.decide(&i).allow);
    c.bench_function("decision_uncached", |b| {
        b.iter(|| black_box(snapshot.decide(black_box(&i))))
    });
    // The alternative: regorus' tree-walking interpreter on the same compiled policy.
    assert!(snapshot.decide_interpreted(&i).allow);
    c.bench_function("decision_uncached_interpreter", |b| {
        b.iter(|| black_box(snapshot.decide_interpreted(black_box(&i))))
    });

    let mut deny = input();
    deny.resource.company_id = Some("c2".into());
    c.bench_function("decision_uncached_deny", |b| {
        b.iter(|| black_box(snapshot.decide(black_box(&deny))))
    });

    let engine = PolicyEngine::new(
        Snapshot::compile(source).unwrap(),
        Some(CacheSettings {
            capacity: 10_000,
            ttl: Duration::from_secs(60),
        }),
        false,
    );
    assert!(engine.decide(&i, 1).allow);
    c.bench_function("decision_cached", |b| {
        b.iter(|| black_box(engine.decide(black_box(&i), 1)))
    });
}

criterion_group!(benches, decisions);

fn baseline(c: &mut Criterion) {
    let trivial = Snapshot::compile(PolicySource::from_files(
        Path::new("<bench>"),
        vec![("p.rego".into(), "package iamgate.authz\nimport rego.v1\ndecision := {\"allow\": true, \"reason\": \"granted\"}\n".into())],
    ))
    .unwrap();
    let i = input();
    c.bench_function("decision_trivial_policy", |b| {
        b.iter(|| black_box(trivial.decide(black_box(&i))))
    });
    c.bench_function("input_to_value", |b| {
        b.iter(|| black_box(i.to_value().unwrap()))
    });
}

criterion_group!(overhead, baseline);

/// `IAMGATE_BENCH_DECISIONS=N` makes N uncached decisions and exits, for instruction counts that
/// do not depend on the machine's speed: run it under `valgrind --tool=callgrind` with N=0 and
/// N=400 and divide the difference by 400 (`bench/policy-instructions.sh`).
fn count_only(n: usize) {
    iamgate::policy::engine::set_decision_timeout(Duration::from_millis(50));
    let source =
        PolicySource::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap();
    let snapshot = Snapshot::compile(source).unwrap();
    let i = input();
    assert!(snapshot.decide(&i).allow);
    for _ in 0..n {
        black_box(snapshot.decide(black_box(&i)));
    }
}

fn main() {
    if let Some(n) = std::env::var("IAMGATE_BENCH_DECISIONS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        count_only(n);
        return;
    }
    benches();
    overhead();
    Criterion::default().configure_from_args().final_summary();
}
