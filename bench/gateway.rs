//! Request-path pieces: access-token verification (uncached and cached), path validation and
//! route matching on a table the size of the Console's; and the directory at the scale data
//! set's size (a million bindings): a caller's bindings on the request path, one write's new
//! state and the management reads; and the account snapshot at a hundred thousand accounts.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// The allocator the shipped binary uses, so that figures match production.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{Criterion, criterion_group, criterion_main};
use iamgate::proxy::path::split;
use iamgate::proxy::route::RouteTable;
use iamgate::token::verifier::AccessTokenVerifier;
use iamgate::token::{Issuer, KeyRing, KeySet, KeyStatus, SigningKey};
use iamgate::util::unix_now;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

fn verification(c: &mut Criterion) {
    let key = Arc::new(SigningKey::generate(None).unwrap());
    let ring = KeyRing::new(KeySet::new(vec![(KeyStatus::Active, key)]).unwrap());
    let issuer = Issuer {
        issuer: Arc::from("https://gw"),
        audience: Arc::from("https://gw"),
        lifetime_secs: 3600,
        keys: ring.clone(),
    };
    let now = unix_now();
    let token = issuer
        .mint("sa-1", &["console.root.view".to_owned()], now)
        .unwrap()
        .token;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let cached = AccessTokenVerifier::new(
        ring.clone(),
        "https://gw",
        "https://gw",
        Duration::from_secs(30),
        1 << 20,
    );
    rt.block_on(cached.verify(&token, now)).unwrap();
    c.bench_function("access_token_verify_cached", |b| {
        b.iter(|| black_box(rt.block_on(cached.verify(black_box(&token), now)).unwrap()))
    });
    c.bench_function("access_token_verify_uncached", |b| {
        b.iter(|| {
            // A fresh verifier per iteration: no cache hit, full RS256 verification.
            let v = AccessTokenVerifier::new(
                ring.clone(),
                "https://gw",
                "https://gw",
                Duration::from_secs(30),
                1 << 20,
            );
            black_box(rt.block_on(v.verify(black_box(&token), now)).unwrap())
        })
    });
}

fn routing(c: &mut Criterion) {
    let mut t = RouteTable::default();
    let templates = [
        "/api/backend/tenants/",
        "/api/backend/projects/",
        "/api/backend/projects/draft",
        "/api/backend/projects/{projectId}",
        "/api/backend/projects/{projectId}/environments/{envId}",
        "/api/tenants/{companyId}/clusters/{clusterId}",
        "/api/backend/tenants/{companyId}/providers/",
        "/api/backend/tenants/{companyId}/providers/{providerId}",
        "/api/backend/tenants/{companyId}/rules",
        "/api/companies/{companyId}/identities",
        "/api/companies/{companyId}/service-accounts",
        "/api/companies/{companyId}/service-accounts/{clientId}",
        "/api/deploy/projects/{projectId}/trigger/pipeline/",
        "/api/deploy/projects/{projectId}/deployment/",
        "/api/projects/{projectId}/environments/{envId}/pods/",
        "/api/projects/{projectId}/environments/{envId}/pods/{podName}",
        "/api/projects/{projectId}/environments/{envId}/jobs/",
        "/api/projects/{projectId}/environments/{envId}/jobs/{jobName}",
    ];
    for (i, tpl) in templates.iter().enumerate() {
        t.insert(http::Method::GET, tpl, i).unwrap();
        t.insert(http::Method::POST, tpl, i).unwrap();
    }
    let path =
        "/api/projects/64f0c1a2b3c4d5e6f7a8b9c0/environments/production/pods/api-7d9f8-xk2lp";
    c.bench_function("path_split", |b| {
        b.iter(|| black_box(split(black_box(path)).unwrap()))
    });
    let segs = split(path).unwrap();
    c.bench_function("route_match", |b| {
        b.iter(|| black_box(t.find(&http::Method::GET, black_box(&segs))))
    });
}

fn directory(c: &mut Criterion) {
    use iamgate::iam::directory::{Directory, IamChange, IamData, Project};
    use iamgate::iam::{Binding, BindingResource};
    use iamgate::model::interned::BindingTable;
    let binding = |i: usize| Binding {
        binding_id: format!("sa-{}-{}", i / 10, i % 10),
        subjects: vec![format!("serviceaccount:sa-{}", i / 10)],
        groups: vec![],
        roles: vec![["guest", "developer", "maintainer"][i % 3].to_owned()],
        permissions: vec![],
        resource: Some(BindingResource::scoped(
            "project",
            &format!("p-{}", i % 10_000),
            "c1",
        )),
    };
    let mut table = BindingTable::with_capacity(1_000_000);
    for i in 0..1_000_000 {
        table.push(&binding(i));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let directory = rt.block_on(async {
        let store = iamgate::store::sqlite::SqliteStore::open(&dir.path().join("db"))
            .await
            .unwrap();
        let d = Directory::load(Arc::new(store)).await.unwrap();
        assert!(
            d.replace_if(
                d.version(),
                IamData {
                    bindings: table,
                    // Ten projects per company, as the scale data set has.
                    projects: (0..10_000)
                        .map(|p| Project {
                            project_id: format!("p-{p}"),
                            company_id: format!("c-{}", p / 10),
                            environments: vec![],
                        })
                        .collect(),
                }
            )
            .await
        );
        d
    });
    assert_eq!(
        directory.bindings_for("serviceaccount:sa-4242", &[]).len(),
        10
    );
    c.bench_function("directory/bindings_for (1M bindings)", |b| {
        b.iter(|| black_box(directory.bindings_for(black_box("serviceaccount:sa-4242"), &[])))
    });
    let mut group = c.benchmark_group("directory/management reads (1M bindings)");
    group.sample_size(10);
    assert_eq!(directory.bindings_in_company("c-42").len(), 1000);
    group.bench_function("a company's bindings", |b| {
        b.iter(|| black_box(directory.bindings_in_company(black_box("c-42"))))
    });
    // What the management API did before bindings_in_company and bindings_naming.
    group.bench_function("a company's bindings, filtering every binding", |b| {
        b.iter(|| {
            let all = directory.all_bindings();
            black_box(
                all.into_iter()
                    .filter(|b| directory.company_of(b).as_deref() == Some("c-42"))
                    .count(),
            )
        })
    });
    group.bench_function("an account's bindings", |b| {
        b.iter(|| black_box(directory.bindings_naming(black_box("sa-4242"), false)))
    });
    group.finish();
    let mut group = c.benchmark_group("directory/write (1M bindings)");
    group.sample_size(20);
    // Published without the store write, which is the database's cost, not the directory's.
    let mut n = 0usize;
    group.bench_function("put, known names", |b| {
        b.iter(|| {
            n += 1;
            rt.block_on(directory.publish(vec![IamChange::PutBinding(binding(n % 1_000_000))]))
        })
    });
    group.bench_function("put, a new subject", |b| {
        b.iter(|| {
            n += 1;
            let mut new = binding(n % 1_000_000);
            new.subjects = vec![format!("new-{n}")];
            new.binding_id = format!("new-{n}");
            rt.block_on(directory.publish(vec![IamChange::PutBinding(new)]))
        })
    });
    group.finish();
}

fn accounts(c: &mut Criterion) {
    use iamgate::iam::{ClientSecret, Credential, Owner, SecretHasher, ServiceAccount};
    use iamgate::store::snapshot::AccountSnapshot;
    let hash = SecretHasher::new(b"bench-pepper-0123456789")
        .hash(ClientSecret::generate().unwrap().expose());
    let account = |i: usize| ServiceAccount {
        client_id: format!("sa-{i}"),
        name: format!("account {i}"),
        owner: Owner::Company(format!("company-{}", i / 100)),
        credential: Credential::Secret(hash.clone()),
        permissions: Default::default(),
        created_at: 1_700_000_000,
        last_login: None,
        retired_secret: None,
    };
    let snapshot = AccountSnapshot::new((0..100_000).map(account).collect());
    let mut g = c.benchmark_group("accounts (100k)");
    g.bench_function("get", |b| {
        b.iter(|| black_box(snapshot.get(black_box("sa-4242"))))
    });
    let mut n = 0usize;
    g.bench_function("write", |b| {
        b.iter(|| {
            n += 1;
            let a = account(n % 100_000);
            snapshot.apply(&a.client_id.clone(), Some(a));
        })
    });
    g.finish();
}

criterion_group!(benches, verification, routing, directory, accounts);
criterion_main!(benches);
