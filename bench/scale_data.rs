//! Generates the scale data set into a fresh SQLite store: 1,000 companies, 10,000 projects (ten
//! per company, three environments each), 100,000 company service accounts and 1,000,000
//! bindings (ten per account, at company, project and environment level). One extra account,
//! `scale-probe`, holds a known secret and a developer role on one project, for the load run;
//! another, `scale-admin`, is company owner of the same company, for the management writes.
//!
//! `cargo bench --bench scale_data -- DATA_DIR [COMPANIES]` (the directory must not hold a store
//! yet; COMPANIES defaults to 1000, and 1 gives the small data set the scale run is compared
//! with); prints the probe's credentials and project as JSON. `bench/load-scale.sh` drives it.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use iamgate::iam::directory::{IamChange, Project};
use iamgate::iam::{
    Binding, BindingResource, ClientSecret, Credential, Owner, Principal, SecretHasher,
    ServiceAccount,
};
use iamgate::store::Write;
use std::path::PathBuf;

const PROJECTS_PER_COMPANY: usize = 10;
const ACCOUNTS_PER_COMPANY: usize = 100;
const BINDINGS_PER_ACCOUNT: usize = 10;
const ENVS: [&str; 3] = ["dev", "staging", "prod"];
const ROLES: [&str; 4] = ["guest", "reporter", "developer", "maintainer"];
const BATCH: usize = 50_000;

fn project_id(c: usize, p: usize) -> String {
    format!("{:012x}{:012x}", c, p)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let dir = args
        .first()
        .map(PathBuf::from)
        .ok_or_else(|| anyhow::anyhow!("usage: scale_data DATA_DIR [COMPANIES]"))?;
    let companies: usize = args.get(1).map_or(Ok(1_000), |n| n.parse())?;
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("iamgate.db");
    anyhow::ensure!(!db.exists(), "{} already exists", db.display());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let store = iamgate::store::sqlite::SqliteStore::open(&db).await?;
        use iamgate::store::Store;
        let pepper = iamgate::iam::load_pepper(None, &dir)?;
        let hasher = SecretHasher::new(&pepper);
        let started = std::time::Instant::now();
        let mut writes = Vec::with_capacity(BATCH);
        let flush = async |writes: &mut Vec<Write>| -> anyhow::Result<()> {
            store.commit(std::mem::take(writes)).await?;
            Ok(())
        };
        for c in 0..companies {
            for p in 0..PROJECTS_PER_COMPANY {
                writes.push(Write::Iam(IamChange::PutProject(Project {
                    project_id: project_id(c, p),
                    company_id: format!("company-{c}"),
                    environments: ENVS.iter().map(|e| (*e).to_owned()).collect(),
                })));
            }
        }
        flush(&mut writes).await?;
        // Every generated account shares one hash: hashing is not what this run measures.
        let shared_hash = hasher.hash("not-a-real-secret");
        let mut bindings = 0usize;
        for c in 0..companies {
            for a in 0..ACCOUNTS_PER_COMPANY {
                let id = format!("sa-{c}-{a}");
                writes.push(Write::InsertAccount(ServiceAccount {
                    client_id: id.clone(),
                    name: format!("account {c}/{a}"),
                    owner: Owner::Company(format!("company-{c}")),
                    credential: Credential::Secret(shared_hash.clone()),
                    permissions: Default::default(),
                    created_at: 1_700_000_000,
                    last_login: None,
                    retired_secret: None,
                }));
                for b in 0..BINDINGS_PER_ACCOUNT {
                    let p = project_id(c, (a + b) % PROJECTS_PER_COMPANY);
                    let resource = match b % 3 {
                        0 if b == 0 => ("company", format!("company-{c}")),
                        1 => ("environment", format!("{p}:{}", ENVS[b % ENVS.len()])),
                        _ => ("project", p),
                    };
                    writes.push(Write::Iam(IamChange::PutBinding(Binding {
                        binding_id: format!("{id}-{b}"),
                        subjects: vec![Principal::service_account(&id)],
                        groups: vec![],
                        roles: vec![ROLES[(a + b) % ROLES.len()].to_owned()],
                        permissions: vec![],
                        resource: Some(BindingResource::scoped(
                            resource.0,
                            &resource.1,
                            &format!("company-{c}"),
                        )),
                    })));
                    bindings += 1;
                }
                if writes.len() >= BATCH {
                    flush(&mut writes).await?;
                }
            }
        }
        let probe_company = companies - 1;
        let probe_project = project_id(probe_company, 5);
        // An account of the probe company with a known secret and one role at `on`.
        let mut probe =
            |id: &str, role: &str, on: (&str, String)| -> anyhow::Result<ClientSecret> {
                let secret = ClientSecret::generate().map_err(|_| anyhow::anyhow!("rng"))?;
                writes.push(Write::InsertAccount(ServiceAccount {
                    client_id: id.to_owned(),
                    name: id.replace('-', " "),
                    owner: Owner::Company(format!("company-{probe_company}")),
                    credential: Credential::Secret(hasher.hash(secret.expose())),
                    permissions: Default::default(),
                    created_at: 1_700_000_000,
                    last_login: None,
                    retired_secret: None,
                }));
                writes.push(Write::Iam(IamChange::PutBinding(Binding {
                    binding_id: format!("{id}-0"),
                    subjects: vec![Principal::service_account(id)],
                    groups: vec![],
                    roles: vec![role.to_owned()],
                    permissions: vec![],
                    resource: Some(BindingResource::scoped(
                        on.0,
                        &on.1,
                        &format!("company-{probe_company}"),
                    )),
                })));
                Ok(secret)
            };
        let secret = probe(
            "scale-probe",
            "developer",
            ("project", probe_project.clone()),
        )?;
        let admin_secret = probe(
            "scale-admin",
            "company-owner",
            ("company", format!("company-{probe_company}")),
        )?;
        flush(&mut writes).await?;
        eprintln!(
            "generated {} projects, {} accounts, {} bindings in {:.1}s",
            companies * PROJECTS_PER_COMPANY,
            companies * ACCOUNTS_PER_COMPANY + 2,
            bindings + 2,
            started.elapsed().as_secs_f64()
        );
        println!(
            "{}",
            serde_json::json!({
                "clientId": "scale-probe",
                "clientSecret": secret.expose(),
                "projectId": probe_project,
                "adminId": "scale-admin",
                "adminSecret": admin_secret.expose(),
                "companyId": format!("company-{probe_company}"),
                "accounts": ACCOUNTS_PER_COMPANY,
            })
        );
        Ok(())
    })
}
