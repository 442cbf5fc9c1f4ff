//! Attacks at the seams of the authorization model, performed over real sockets against a real
//! gateway, each refused: account takeover between root accounts, project squatting across
//! companies, and identity collisions between service accounts, users and issuers.

use crate::common;

use common::upstream::TestUpstream;
use common::{Gateway, Resp, TestKey, gateway};
use http::Method;
use iamgate::util::unix_now;
use serde_json::{Value, json};

const P1: &str = "64b7e1a0c0ffee0000000001";
const P_NEW: &str = "64b7e1a0c0ffee00000000a1";
const P_MOVED: &str = "64b7e1a0c0ffee00000000a2";

async fn call(gw: &Gateway, method: Method, path: &str, token: &str, body: Value) -> Resp {
    let body = if body.is_null() {
        bytes::Bytes::new()
    } else {
        bytes::Bytes::from(body.to_string())
    };
    gw.call(
        method,
        path,
        Some(token),
        &[("content-type", "application/json")],
        body,
    )
    .await
}

fn bootstrap(gw: &Gateway) -> (String, String) {
    let file = gw.running().bootstrap_file.clone().unwrap();
    let creds: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    (
        creds["clientId"].as_str().unwrap().to_owned(),
        creds["clientSecret"].as_str().unwrap().to_owned(),
    )
}

async fn token(gw: &Gateway, id: &str, secret: &str) -> String {
    let r = gw.token_basic(id, secret).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.json()["access_token"].as_str().unwrap().to_owned()
}

/// Creates a root account through the API with `admin`'s token; returns its creation answer.
async fn root_account(gw: &Gateway, admin: &str, name: &str, permissions: &[&str]) -> Value {
    let r = call(
        gw,
        Method::POST,
        "/api/service-accounts",
        admin,
        json!({"name": name, "permissions": permissions, "tokenEndpointAuthMethod": "client_secret_basic"}),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.json()
}

/// `PATCH path` giving the identity there `role` on `project`, with `token`.
async fn project_role_edit(
    gw: &Gateway,
    path: &str,
    token: &str,
    project: &str,
    role: &str,
) -> Resp {
    call(
        gw,
        Method::PATCH,
        path,
        token,
        json!({"projectsRole": [{"projectId": project, "role": role}]}),
    )
    .await
}

async fn audit_len(gw: &Gateway) -> usize {
    gw.running()
        .accounts
        .store()
        .audit_log(1000)
        .await
        .unwrap()
        .len()
}

fn assert_refused(r: &Resp, reason: &str) {
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(r.json()["reason"], reason, "{:?}", r.body);
}

#[tokio::test]
async fn a_narrow_root_account_cannot_take_over_a_broader_one() {
    let gw = gateway().start().await;
    let (boot_id, boot_secret) = bootstrap(&gw);
    let admin = token(&gw, &boot_id, &boot_secret).await;
    let narrow = root_account(
        &gw,
        &admin,
        "narrow",
        &["console.root.serviceaccount.manage"],
    )
    .await;
    let narrow_token = token(
        &gw,
        narrow["clientId"].as_str().unwrap(),
        narrow["clientSecret"].as_str().unwrap(),
    )
    .await;

    // The attack: rotate the bootstrap admin's secret, sign in with it, hold every root
    // permission. Refused, and the admin's own secret keeps working.
    let r = call(
        &gw,
        Method::POST,
        &format!("/api/service-accounts/{boot_id}/secret"),
        &narrow_token,
        Value::Null,
    )
    .await;
    assert_refused(&r, "insufficient_authority");
    assert!(r.json().get("clientSecret").is_none());
    token(&gw, &boot_id, &boot_secret).await;
    // Deleting the broader account, likewise.
    let r = call(
        &gw,
        Method::DELETE,
        &format!("/api/service-accounts/{boot_id}"),
        &narrow_token,
        Value::Null,
    )
    .await;
    assert_refused(&r, "insufficient_authority");

    // Keys of a broader private_key_jwt account: neither added nor removed.
    let key = TestKey::new("wide-1");
    let r = call(
        &gw,
        Method::POST,
        "/api/service-accounts",
        &admin,
        json!({"name": "wide", "permissions": ["console.root.serviceaccount.manage", "console.root.view"],
               "tokenEndpointAuthMethod": "private_key_jwt", "publicKey": key.jwk()}),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let wide = r.json()["clientId"].as_str().unwrap().to_owned();
    let mine = TestKey::new("attacker-1");
    let r = call(
        &gw,
        Method::POST,
        &format!("/api/service-accounts/{wide}/keys"),
        &narrow_token,
        json!({"publicKey": mine.jwk()}),
    )
    .await;
    assert_refused(&r, "insufficient_authority");
    let r = call(
        &gw,
        Method::DELETE,
        &format!("/api/service-accounts/{wide}/keys/wide-1"),
        &narrow_token,
        Value::Null,
    )
    .await;
    assert_refused(&r, "insufficient_authority");
    let r = gw.token_assertion(&mine.assertion(&wide)).await;
    assert_eq!(r.status, 401, "the attacker's key was never registered");

    // Accounts of equal or lesser authority stay manageable by the narrow account.
    let peer = root_account(&gw, &admin, "peer", &["console.root.serviceaccount.manage"]).await;
    let lesser = root_account(&gw, &admin, "lesser", &[]).await;
    for a in [&peer, &lesser] {
        let id = a["clientId"].as_str().unwrap();
        let r = call(
            &gw,
            Method::POST,
            &format!("/api/service-accounts/{id}/secret"),
            &narrow_token,
            Value::Null,
        )
        .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        token(&gw, id, r.json()["clientSecret"].as_str().unwrap()).await;
        let r = call(
            &gw,
            Method::DELETE,
            &format!("/api/service-accounts/{id}"),
            &narrow_token,
            Value::Null,
        )
        .await;
        assert_eq!(r.status, 204, "{:?}", r.body);
    }
    // The audit log shows the refused attempts changed nothing.
    let r = call(
        &gw,
        Method::GET,
        "/api/iamgate/audit-log?limit=1000",
        &admin,
        Value::Null,
    )
    .await;
    let log = r.json();
    assert!(
        !log.as_array()
            .unwrap()
            .iter()
            .any(
                |e| (e["target"] == boot_id.as_str() || e["target"] == wide.as_str())
                    && e["action"] != "service-account.create"
            ),
        "{log}"
    );
}

#[tokio::test]
async fn a_company_cannot_squat_another_companys_project() {
    let console = TestUpstream::start().await;
    console.answer(
        "/api/backend/projects/",
        200,
        json!([{"_id": P_MOVED, "tenantId": "evil", "environments": [{"envId": "dev"}]}]),
    );
    let up = TestUpstream::start().await;
    let gw = gateway()
        .upstream(&up.url())
        .with_users()
        .with(&format!(
            "directory: {{sync_url: \"{}/api/backend/projects/\", sync_interval_secs: 1}}",
            console.url()
        ))
        .start()
        .await;
    let dir = gw.running().directory.clone();
    let deadline = std::time::Instant::now() + common::WAIT;
    common::wait_until(deadline, "sync", || dir.project(P_MOVED).is_some()).await;
    let (_evil, evil_token) = gw.company_owner("evil").await;
    let (_acme, acme_token) = gw.company_owner("acme").await;

    // The attack: name acme's coming project under evil, in a role edit and in an account
    // creation. Refused with the plain 403 of any deny (a 404 would tell evil that no such
    // project exists yet); nothing is recorded.
    let r = project_role_edit(
        &gw,
        "/api/companies/evil/users/mallory",
        &evil_token,
        P_NEW,
        "project-admin",
    )
    .await;
    assert_refused(&r, "permission_denied");
    let r = call(
        &gw,
        Method::POST,
        "/api/companies/evil/service-accounts",
        &evil_token,
        json!({"name": "squatter", "role": "guest", "tokenEndpointAuthMethod": "client_secret_basic",
               "projectsRole": [{"projectId": P_NEW, "role": "developer"}]}),
    )
    .await;
    assert_refused(&r, "permission_denied");
    assert!(dir.project(P_NEW).is_none());
    assert!(
        !gw.running()
            .accounts
            .snapshot()
            .all()
            .iter()
            .any(|a| a.name == "squatter")
    );
    // A proxied request naming it records nothing either.
    let r = gw
        .get_as(
            &format!("/api/backend/projects/{P_NEW}/revisions"),
            &evil_token,
        )
        .await;
    assert_refused(&r, "permission_denied");
    assert!(dir.project(P_NEW).is_none());
    // The real owner registers it: no 409.
    let r = call(
        &gw,
        Method::PUT,
        &format!("/api/iamgate/directory/projects/{P_NEW}"),
        &acme_token,
        json!({"companyId": "acme", "environments": ["dev"]}),
    )
    .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    // A binding evil made on that project (as a store of the previous version may hold) names
    // evil as its company: it never matches acme's project.
    let (mole, mole_token) = gw.company_sa("evil").await;
    gw.bind_binding(iamgate::iam::Binding {
        binding_id: "evil/adopted".into(),
        subjects: vec![iamgate::iam::Principal::service_account(&mole)],
        groups: vec![],
        roles: vec!["project-admin".into()],
        permissions: vec![],
        resource: Some(iamgate::iam::BindingResource::scoped(
            "project", P_NEW, "evil",
        )),
    })
    .await;
    let r = gw
        .get_as(
            &format!("/api/backend/projects/{P_NEW}/revisions"),
            &mole_token,
        )
        .await;
    assert_refused(&r, "permission_denied");

    // The directory sync moves a project: the old company's bindings on it go, audited.
    let r = call(
        &gw,
        Method::PATCH,
        &format!("/api/companies/evil/service-accounts/{mole}"),
        &evil_token,
        json!({"projectsRole": [{"projectId": P_MOVED, "role": "developer", "environmentsRole": [{"envId": "dev", "role": "maintainer"}]}]}),
    )
    .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let path = format!("/api/backend/projects/{P_MOVED}/revisions");
    assert_eq!(gw.get_as(&path, &mole_token).await.status, 200);
    console.answer(
        "/api/backend/projects/",
        200,
        json!([{"_id": P_MOVED, "tenantId": "acme", "environments": [{"envId": "dev"}]}]),
    );
    common::wait_until(deadline, "resync", || {
        dir.project(P_MOVED).unwrap().company_id == "acme"
    })
    .await;
    assert_refused(&gw.get_as(&path, &mole_token).await, "permission_denied");
    let key = iamgate::iam::Principal::service_account(&mole);
    assert!(
        dir.bindings_naming(&key, false)
            .iter()
            .all(|b| b.resource.as_ref().unwrap().resource_id != P_MOVED
                && !b
                    .resource
                    .as_ref()
                    .unwrap()
                    .resource_id
                    .starts_with(P_MOVED)),
        "the old company's bindings on the moved project are gone"
    );
    let (boot_id, boot_secret) = bootstrap(&gw);
    let admin = token(&gw, &boot_id, &boot_secret).await;
    let log = call(
        &gw,
        Method::GET,
        "/api/iamgate/audit-log",
        &admin,
        Value::Null,
    )
    .await
    .json();
    let moved = log
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "project.move")
        .expect("an audit record of the move");
    assert_eq!(moved["target"], P_MOVED);
    assert_eq!(moved["before"]["bindings"].as_array().unwrap().len(), 2);
    // Acme's owner now manages it; evil does not.
    let r = project_role_edit(
        &gw,
        "/api/companies/evil/users/mallory",
        &evil_token,
        P_MOVED,
        "developer",
    )
    .await;
    assert_refused(&r, "permission_denied");
}

fn user_token(key: &TestKey, iss: &str, sub: &str, groups: &[&str]) -> String {
    key.sign(&json!({
        "iss": iss, "aud": "console", "sub": sub, "groups": groups,
        "iat": unix_now(), "exp": unix_now() + 600,
    }))
}

#[tokio::test]
async fn identities_of_another_kind_or_issuer_never_share_roles() {
    const CORP: &str = "https://corp.example.test";
    const PARTNER: &str = "https://partner.example.test";
    let up = TestUpstream::start().await;
    let keys = tempfile::tempdir().unwrap();
    let (corp_key, partner_key) = (TestKey::new("corp-1"), TestKey::new("partner-1"));
    let mut issuers = String::from("external_issuers:\n");
    for (name, iss, key) in [
        ("corp", CORP, &corp_key),
        ("partner", PARTNER, &partner_key),
    ] {
        let file = keys.path().join(format!("{name}.json"));
        std::fs::write(&file, json!({"keys": [key.jwk()]}).to_string()).unwrap();
        issuers.push_str(&format!(
            "  - {{name: {name}, issuer: \"{iss}\", audience: console, jwks_file: {}}}\n",
            file.display()
        ));
    }
    let gw = gateway().upstream(&up.url()).with(&issuers).start().await;
    gw.project(P1, "acme", &["dev"]).await;
    let path = format!("/api/backend/projects/{P1}/revisions");

    // A service account with a role on P1; a user whose subject is that client id gets none.
    let (sa, sa_token) = gw.company_sa("acme").await;
    gw.bind(&sa, "maintainer", Some(("project", P1))).await;
    assert_eq!(gw.get_as(&path, &sa_token).await.status, 200);
    let impostor = user_token(&corp_key, CORP, &sa, &[]);
    assert_refused(&gw.get_as(&path, &impostor).await, "permission_denied");

    // alice of corp gets a role through the API (a bare id names the first issuer); alice of
    // partner, the same subject, gets nothing, even right after corp's alice was allowed (the
    // decision cache keys on the issuer).
    let (_own, own_token) = gw.company_owner("acme").await;
    let r = project_role_edit(
        &gw,
        "/api/companies/acme/users/alice",
        &own_token,
        P1,
        "developer",
    )
    .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let corp_alice = user_token(&corp_key, CORP, "alice", &[]);
    let partner_alice = user_token(&partner_key, PARTNER, "alice", &[]);
    assert_eq!(gw.get_as(&path, &corp_alice).await.status, 200);
    assert_refused(&gw.get_as(&path, &partner_alice).await, "permission_denied");
    // partner's alice is named explicitly: now she has her own role.
    let r = project_role_edit(
        &gw,
        "/api/companies/acme/users/partner:alice",
        &own_token,
        P1,
        "guest",
    )
    .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert_eq!(gw.get_as(&path, &partner_alice).await.status, 200);
    // An issuer that is not configured is named: 404.
    let r = call(
        &gw,
        Method::PATCH,
        "/api/companies/acme/users/nowhere:alice",
        &own_token,
        json!({"role": "guest"}),
    )
    .await;
    assert_eq!(r.status, 404, "{:?}", r.body);

    // Groups belong to their issuer too.
    let r = project_role_edit(
        &gw,
        "/api/companies/acme/groups/devs",
        &own_token,
        P1,
        "developer",
    )
    .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let corp_dev = user_token(&corp_key, CORP, "carol", &["devs"]);
    let partner_dev = user_token(&partner_key, PARTNER, "carol", &["devs"]);
    assert_eq!(gw.get_as(&path, &corp_dev).await.status, 200);
    assert_refused(&gw.get_as(&path, &partner_dev).await, "permission_denied");

    // The identities listing shows each the way its path names it.
    let r = call(
        &gw,
        Method::GET,
        "/api/companies/acme/identities?identityType=user",
        &own_token,
        Value::Null,
    )
    .await;
    let ids: Vec<String> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["identityId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["alice", "partner:alice"]);
}

#[tokio::test]
async fn bindings_of_the_previous_version_are_upgraded_with_their_decisions_intact() {
    // Bindings as the previous version wrote them (tests/fixtures/bindings-v0.json): bare
    // subjects and groups, resources without a company, a console-level binding without a
    // resource, management binding ids of the earlier form.
    let up = TestUpstream::start().await;
    let gw = gateway().upstream(&up.url()).with_users().start().await;
    gw.project(P1, "acme", &["dev"]).await;
    let (sa, _) = gw.company_sa("acme").await;
    let (rootish, _) = gw.company_sa("globex").await;
    let fixture = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bindings-v0.json"),
    )
    .unwrap()
    .replace("$SA", &sa)
    .replace("$ROOTISH", &rootish);
    let legacy: Vec<iamgate::iam::Binding> = serde_json::from_str(&fixture).unwrap();
    gw.running()
        .directory
        .apply(
            legacy
                .into_iter()
                .map(iamgate::iam::directory::IamChange::PutBinding)
                .collect(),
        )
        .await
        .unwrap();
    let dir = gw.stop().await;

    // The new version starts on that store (same data directory, same database).
    let gw = gateway()
        .upstream(&up.url())
        .with_users()
        .data_dir(dir)
        .start()
        .await;
    let all = gw.running().directory.all_bindings();
    assert_eq!(all.len(), 5, "{all:?}");
    for b in &all {
        assert!(
            b.subjects
                .iter()
                .chain(&b.groups)
                .all(|s| iamgate::iam::Principal::parse(s).is_some()),
            "{b:?}"
        );
        assert!(b.resource.is_some(), "{b:?}");
    }
    let sa_key = iamgate::iam::Principal::service_account(&sa);
    let ids: Vec<&str> = all.iter().map(|b| b.binding_id.as_str()).collect();
    assert!(
        ids.contains(&format!("acme/{sa_key}/project/{P1}").as_str()),
        "{ids:?}"
    );
    assert!(ids.contains(&format!("acme/user:idp:alice/environment/{P1}:dev").as_str()));
    assert!(ids.contains(&format!("acme/group:idp:devs/project/{P1}").as_str()));
    assert!(ids.contains(&"console-viewer"));

    // Decisions intact: the service account (company developer, project maintainer), the user
    // and the group of the issuer, the console-level guest in any company.
    let sa_token = {
        // A fresh secret through the API would need an owner; the account's roles are what
        // matter, so mint a token for it directly.
        gw.running()
            .issuer
            .mint(&sa, &[], unix_now())
            .unwrap()
            .token
    };
    let path = format!("/api/backend/projects/{P1}/revisions");
    assert_eq!(gw.get_as(&path, &sa_token).await.status, 200);
    let r = gw
        .call(
            Method::POST,
            &format!("/api/deploy/projects/{P1}/trigger/pipeline/"),
            Some(&sa_token),
            &[("content-type", "application/json")],
            r#"{"environment":"dev"}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let rootish_token = gw
        .running()
        .issuer
        .mint(&rootish, &[], unix_now())
        .unwrap()
        .token;
    assert_eq!(
        gw.get_as("/api/backend/tenants/initech/rules", &rootish_token)
            .await
            .status,
        200
    );
    // The audit log holds the upgrade.
    let log = gw.running().accounts.store().audit_log(100).await.unwrap();
    assert!(log.iter().any(|e| e.action == "bindings.upgrade"));
    // A role edit through the API now replaces the upgraded binding instead of adding another.
    let (_own, own_token) = gw.company_owner("acme").await;
    let r = project_role_edit(
        &gw,
        &format!("/api/companies/acme/service-accounts/{sa}"),
        &own_token,
        P1,
        "guest",
    )
    .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let on_p1: Vec<_> = gw
        .running()
        .directory
        .bindings_naming(&sa_key, false)
        .into_iter()
        .filter(|b| b.resource.as_ref().unwrap().resource_type == "project")
        .collect();
    assert_eq!(on_p1.len(), 1, "{on_p1:?}");
    assert_eq!(on_p1[0].roles, ["guest"]);
}

#[tokio::test]
async fn a_project_is_recorded_from_the_consoles_answer_to_its_creation_only() {
    const P_CREATED: &str = "64b7e1a0c0ffee00000000c1";
    const P_GLOBEX: &str = "64b7e1a0c0ffee00000000c2";
    let up = TestUpstream::start().await;
    let gw = gateway().upstream(&up.url()).start().await;
    gw.project(P_GLOBEX, "globex", &["prod"]).await;
    let (_owner, owner_token) = gw.company_owner("acme").await;
    let (guest, guest_token) = gw.company_sa("acme").await;
    gw.bind(&guest, "guest", Some(("company", "acme"))).await;
    let dir = gw.running().directory.clone();
    let create = |token: String, body: Value| {
        let gw = &gw;
        async move { call(gw, Method::POST, "/api/backend/projects/", &token, body).await }
    };
    let audit = || async {
        gw.running()
            .accounts
            .store()
            .audit_log(100)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.action == "project.create")
            .count()
    };

    // The request alone records nothing: the Console refuses it (409), and the project named
    // in the request body stays unknown.
    up.answer("/api/backend/projects/", 409, json!({"message": "exists"}));
    let r = create(
        owner_token.clone(),
        json!({"tenantId": "acme", "projectId": P_CREATED, "name": "x"}),
    )
    .await;
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert!(dir.project(P_CREATED).is_none());

    // A caller not allowed to create projects never reaches the Console.
    let hits = up.hits();
    let r = create(
        guest_token,
        json!({"tenantId": "acme", "projectId": "slug", "name": "x"}),
    )
    .await;
    assert_refused(&r, "permission_denied");
    assert_eq!(up.hits(), hits);

    // The Console creates it: its answer, not the request, is recorded in the company the
    // creation was allowed in, with its environments, and handed on unchanged.
    let answer = json!({"_id": P_CREATED, "tenantId": "acme", "projectId": "new-slug",
        "name": "New", "environments": [{"envId": "dev", "label": "Dev"}]});
    up.answer("/api/backend/projects/", 200, answer.clone());
    let r = create(
        owner_token.clone(),
        json!({"tenantId": "acme", "projectId": "new-slug", "name": "New"}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.json(), answer);
    let p = dir.project(P_CREATED).expect("recorded from the answer");
    assert_eq!(
        (p.company_id.as_str(), p.environments.clone()),
        ("acme", vec!["dev".to_owned()])
    );
    assert_eq!(audit().await, 1);
    // ... and is usable at once: a role on it, then the environment.
    let r = call(
        &gw,
        Method::PATCH,
        &format!("/api/companies/acme/service-accounts/{guest}"),
        &owner_token,
        json!({"projectsRole": [{"projectId": P_CREATED, "role": "maintainer",
            "environmentsRole": [{"envId": "dev", "role": "maintainer"}]}]}),
    )
    .await;
    assert_eq!(r.status, 204, "{:?}", r.body);

    // An answer naming another company than the one the creation was allowed in, or a
    // project another company owns, records nothing (the answer still reaches the caller).
    for bad in [
        json!({"_id": "64b7e1a0c0ffee00000000c3", "tenantId": "globex", "environments": []}),
        json!({"_id": P_GLOBEX, "tenantId": "acme", "environments": []}),
        json!({"_id": "", "tenantId": "acme"}),
        json!({"_id": "../x", "tenantId": "acme"}),
        json!(["not", "a", "project"]),
    ] {
        up.answer("/api/backend/projects/", 201, bad.clone());
        // The projects themselves, not the directory's version: on PostgreSQL the gateway's
        // first resynchronisation may land at any moment and bump the version alone.
        let projects = || {
            ["acme", "globex"].map(|c| {
                dir.projects_of(c)
                    .iter()
                    .map(|p| (p.project_id.clone(), p.company_id.clone()))
                    .collect::<Vec<_>>()
            })
        };
        let before = projects();
        let r = create(
            owner_token.clone(),
            json!({"tenantId": "acme", "projectId": "slug", "name": "x"}),
        )
        .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        assert_eq!(r.json(), bad);
        assert_eq!(projects(), before, "{bad}");
    }
    assert!(dir.project("64b7e1a0c0ffee00000000c3").is_none());
    assert_eq!(dir.project(P_GLOBEX).unwrap().company_id, "globex");
    assert_eq!(audit().await, 1);
}

#[tokio::test]
async fn a_target_that_changes_between_decision_and_write_is_not_written() {
    use iamgate::proxy::management::{LocalRequest, handle, policy_facts};
    let gw = gateway().start().await;
    let (boot_id, boot_secret) = bootstrap(&gw);
    let admin = token(&gw, &boot_id, &boot_secret).await;
    let manage = ["console.root.serviceaccount.manage"];
    let narrow = root_account(&gw, &admin, "narrow", &manage).await;
    let target = root_account(&gw, &admin, "peer", &manage).await;
    let (narrow_id, target_id) = (
        narrow["clientId"].as_str().unwrap(),
        target["clientId"].as_str().unwrap(),
    );
    let m = iamgate::iam::manage::Manager::new(
        gw.running().accounts.clone(),
        gw.running().directory.clone(),
        0,
    );
    let params = iamgate::proxy::route::PathParams::from_iter([("clientId", target_id)]);
    // The policy decides on the peer's authority as it is now: equal to the caller's, allowed.
    let decided = policy_facts(&m, "root.secret.rotate", &params, None).unwrap();
    // Before the write, someone else makes the peer a super user (console level).
    gw.bind(target_id, "console-super-user", None).await;
    let caller = iamgate::authn::bearer::Caller {
        id: narrow_id.to_owned(),
        kind: iamgate::authn::bearer::CallerKind::ServiceAccount,
        principal: iamgate::iam::Principal::service_account(narrow_id).into(),
        groups: Vec::new().into(),
        group_principals: Vec::new().into(),
        permissions: manage.map(str::to_owned).to_vec().into(),
        account: None,
        issuer: None,
        issuer_name: None,
    };
    let snapshot = gw.running().policy.snapshot();
    let request = |decided| LocalRequest {
        caller: &caller,
        params: &params,
        query: &[],
        body: None,
        model: snapshot.role_model(),
        decided,
    };
    // The write finds another target than the one decided on, and refuses.
    let resp = handle(&m, "root.secret.rotate", request(&decided)).await;
    assert_eq!(resp.status(), 409);
    // The peer's secret is unchanged.
    token(&gw, target_id, target["clientSecret"].as_str().unwrap()).await;
    // Decided on the current state, the same request is written (the handler does not judge
    // authority itself; the policy does, on these facts).
    let now = policy_facts(&m, "root.secret.rotate", &params, None).unwrap();
    assert_ne!(now, decided);
    let resp = handle(&m, "root.secret.rotate", request(&now)).await;
    assert_eq!(resp.status(), 201);
    // Over the socket, the narrow account is refused the widened peer.
    let narrow_token = token(&gw, narrow_id, narrow["clientSecret"].as_str().unwrap()).await;
    let r = call(
        &gw,
        Method::POST,
        &format!("/api/service-accounts/{target_id}/secret"),
        &narrow_token,
        Value::Null,
    )
    .await;
    assert_refused(&r, "insufficient_authority");
}

#[tokio::test]
async fn ids_in_paths_are_held_to_the_rules_of_ids_in_bodies() {
    let gw = gateway().start().await;
    let (boot_id, boot_secret) = bootstrap(&gw);
    let admin = token(&gw, &boot_id, &boot_secret).await;
    let (_owner, owner_token) = gw.company_owner("acme").await;
    let long = "a".repeat(129);
    // Each id a body may not carry, in a path: a space, a separator the store uses, a colon
    // (the issuer separator), a non-ASCII letter, an over-long id.
    for (id, shown) in [
        ("a%20b", "a b"),
        ("a%2Fb", "a/b"),
        ("sa%3Ax", "sa:x"),
        ("%C3%BC", "ü"),
        (long.as_str(), long.as_str()),
    ] {
        let before = audit_len(&gw).await;
        for (method, path, token, body) in [
            (
                Method::POST,
                format!("/api/companies/{id}/service-accounts"),
                &admin,
                json!({"name": "x", "tokenEndpointAuthMethod": "client_secret_basic"}),
            ),
            (
                Method::PATCH,
                format!("/api/companies/acme/service-accounts/{id}"),
                &owner_token,
                json!({"role": "guest"}),
            ),
            (
                Method::DELETE,
                format!("/api/service-accounts/{boot_id}/keys/{id}"),
                &admin,
                Value::Null,
            ),
            (
                Method::PUT,
                format!("/api/iamgate/directory/projects/{id}"),
                &admin,
                json!({"companyId": "acme", "environments": []}),
            ),
        ] {
            let r = call(&gw, method.clone(), &path, token, body).await;
            assert_eq!(r.status, 400, "{method} {shown}: {:?}", r.body);
            assert!(
                r.json()["message"]
                    .as_str()
                    .unwrap()
                    .contains("[A-Za-z0-9-._~]"),
                "{method} {shown}: {:?}",
                r.body
            );
        }
        let after = audit_len(&gw).await;
        assert_eq!(after, before, "nothing was written for {shown}");
    }
}

#[tokio::test]
async fn a_deny_does_not_tell_an_outsider_which_projects_exist_or_who_owns_them() {
    const P_GLOBEX: &str = "64b7e1a0c0ffee00000000d1";
    const P_NONE: &str = "64b7e1a0c0ffee00000000d2";
    let up = TestUpstream::start().await;
    let answers = |gw: Gateway| async move {
        gw.project(P_GLOBEX, "globex", &["prod"]).await;
        let (owner, owner_token) = gw.company_owner("acme").await;
        let mut out = Vec::new();
        // A project of another company, and one that does not exist, named in a path and in
        // a role edit's body.
        for p in [P_GLOBEX, P_NONE] {
            let r = call(
                &gw,
                Method::GET,
                &format!("/api/backend/projects/{p}/"),
                &owner_token,
                Value::Null,
            )
            .await;
            out.push(r);
            let r = project_role_edit(
                &gw,
                &format!("/api/companies/acme/service-accounts/{owner}"),
                &owner_token,
                p,
                "developer",
            )
            .await;
            out.push(r);
        }
        (gw, out)
    };

    // By default the four answers are the same plain 403: the caller cannot tell a project
    // of another company from one that does not exist.
    let (gw, out) = answers(gateway().upstream(&up.url()).start().await).await;
    for r in &out {
        assert_eq!(r.status, 403, "{:?}", r.body);
        assert_eq!(r.json(), out[0].json(), "{:?}", r.body);
        let text = String::from_utf8_lossy(&r.body).to_string();
        for leak in ["unknown_resource", "resource_mismatch", "globex", P_GLOBEX] {
            assert!(!text.contains(leak), "{leak} in {text}");
        }
    }
    // The reason is kept where the operator looks: the decision log.
    let (boot_id, boot_secret) = bootstrap(&gw);
    let admin = token(&gw, &boot_id, &boot_secret).await;
    let recent = call(
        &gw,
        Method::GET,
        "/api/iamgate/decisions",
        &admin,
        Value::Null,
    )
    .await
    .json()
    .to_string();
    assert!(recent.contains("unknown_resource"), "{recent}");
    drop(gw);

    // An operator may choose to show reasons (a trusted, internal audience).
    let (_gw, out) = answers(
        gateway()
            .upstream(&up.url())
            .with("server:\n  expose_deny_reasons: true")
            .start()
            .await,
    )
    .await;
    let shown: Vec<(u16, String, String)> = out
        .iter()
        .map(|r| {
            let j = r.json();
            (
                r.status.as_u16(),
                j["reason"].as_str().unwrap_or_default().to_owned(),
                j["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    // Another company's project: in a path the policy refuses it (acme has no role there); in
    // a body it is named as another company's. An unknown one is 404, naming where.
    assert_eq!(shown[0].1, "permission_denied", "{shown:?}");
    assert_eq!(shown[1].1, "resource_mismatch", "{shown:?}");
    assert_eq!(shown[2].0, 404, "{shown:?}");
    assert_eq!(shown[2].1, "unknown_resource", "{shown:?}");
    assert!(
        shown[2].2.starts_with("path parameter projectId:"),
        "{shown:?}"
    );
    assert_eq!(shown[3].0, 404, "{shown:?}");
    assert!(
        shown[3].2.starts_with("projectsRole[0].projectId:"),
        "{shown:?}"
    );
}
