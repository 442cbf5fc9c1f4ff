//! The management API through the real gateway: the documentation's root service
//! account requests, company service accounts with project and environment roles enforced on
//! proxied routes, the no-escalation rule, bad input that writes nothing, credential lifecycle,
//! identities, audit.

use crate::common;

use bytes::Bytes;
use common::upstream::TestUpstream;
use common::{Gateway, Resp, gateway};
use http::Method;
use serde_json::{Value, json};

const P1: &str = "64b7e1a0c0ffee0000000001";
const P2: &str = "64b7e1a0c0ffee0000000002";
const P3: &str = "64b7e1a0c0ffee0000000003";
const CLIENT_KEY: &str = "console-client-key-0123456789";

async fn setup() -> (Gateway, TestUpstream) {
    let up = TestUpstream::start().await;
    let gw = gateway()
        .upstream(&up.url())
        .with_users()
        .with(&format!(
            "management: {{client_keys: [{CLIENT_KEY}], secret_rotation_grace_secs: 60}}"
        ))
        .start()
        .await;
    gw.project(P1, "acme", &["dev", "prod"]).await;
    gw.project(P2, "acme", &["dev"]).await;
    gw.project(P3, "globex", &["dev"]).await;
    (gw, up)
}

async fn admin_token(gw: &Gateway) -> String {
    let file = gw.running().bootstrap_file.clone().unwrap();
    let creds: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    let r = gw
        .token_basic(
            creds["clientId"].as_str().unwrap(),
            creds["clientSecret"].as_str().unwrap(),
        )
        .await;
    assert_eq!(r.status, 200);
    r.json()["access_token"].as_str().unwrap().to_owned()
}

/// A management call the way the documentation writes it.
async fn manage(gw: &Gateway, method: Method, path: &str, token: &str, body: Value) -> Resp {
    let body = if body.is_null() {
        Bytes::new()
    } else {
        Bytes::from(body.to_string())
    };
    gw.call(
        method,
        path,
        Some(token),
        &[
            ("content-type", "application/json"),
            ("client-key", CLIENT_KEY),
        ],
        body,
    )
    .await
}

async fn token_for(gw: &Gateway, created: &Value) -> String {
    let r = gw
        .token_basic(
            created["clientId"].as_str().unwrap(),
            created["clientSecret"].as_str().unwrap(),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.json()["access_token"].as_str().unwrap().to_owned()
}

fn claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn the_documentations_root_service_account_requests_work_as_written() {
    let (gw, _up) = setup().await;
    let admin = admin_token(&gw).await;
    let r = manage(
        &gw,
        Method::POST,
        "/api/service-accounts",
        &admin,
        json!({
            "name": "Example Service Account",
            "permissions": ["console.root.user.bind", "console.root.user.manage"],
            "tokenEndpointAuthMethod": "client_secret_basic"
        }),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let created = r.json();
    let id = created["clientId"].as_str().unwrap().to_owned();
    assert!(created["clientSecret"].as_str().unwrap().len() >= 43);
    assert!(created["clientIdIssuedAt"].is_i64());

    // The new account gets a token holding exactly the permissions given.
    let token = token_for(&gw, &created).await;
    let mut perms: Vec<String> =
        serde_json::from_value(claims(&token)["permissions"].clone()).unwrap();
    perms.sort();
    assert_eq!(
        perms,
        ["console.root.user.bind", "console.root.user.manage"]
    );
    // It is listed, without any secret.
    let list = manage(
        &gw,
        Method::GET,
        "/api/service-accounts",
        &admin,
        Value::Null,
    )
    .await;
    assert_eq!(list.status, 200);
    let text = String::from_utf8_lossy(&list.body).to_string();
    assert!(text.contains(&id) && !text.contains(created["clientSecret"].as_str().unwrap()));
    // Lacking console.root.serviceaccount.manage, it cannot manage root accounts.
    let r = manage(
        &gw,
        Method::GET,
        "/api/service-accounts",
        &token,
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 403);

    // Without the Client-key header: 401, nothing done.
    let r = gw
        .call(
            Method::DELETE,
            &format!("/api/service-accounts/{id}"),
            Some(&admin),
            &[("content-type", "application/json")],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["message"], "missing or invalid Client-key header");

    let r = manage(
        &gw,
        Method::DELETE,
        &format!("/api/service-accounts/{id}"),
        &admin,
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    // Its token stops working at once, and it can no longer get one.
    let r = gw.get_as("/api/marketplace/categories", &token).await;
    assert_eq!(r.status, 401);
    let r = gw
        .token_basic(&id, created["clientSecret"].as_str().unwrap())
        .await;
    assert_eq!(r.status, 401);
    let r = manage(
        &gw,
        Method::DELETE,
        &format!("/api/service-accounts/{id}"),
        &admin,
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn a_company_owners_new_account_can_use_exactly_its_roles() {
    let (gw, up) = setup().await;
    let (owner, owner_token) = gw.company_owner("acme").await;
    let r = manage(
        &gw,
        Method::POST,
        "/api/companies/acme/service-accounts",
        &owner_token,
        json!({
            "name": "ci-deployer",
            "tokenEndpointAuthMethod": "client_secret_basic",
            "projectsRole": [
                {"projectId": P1, "role": "reporter",
                 "environmentsRole": [{"envId": "dev", "role": "maintainer"}]}
            ]
        }),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let created = r.json();
    assert_eq!(created["company"], "acme");
    let sa = token_for(&gw, &created).await;
    let ct = [("content-type", "application/json")];

    // Allowed: read P1, deploy to dev of P1.
    assert_eq!(
        gw.get_as(&format!("/api/backend/projects/{P1}/revisions"), &sa)
            .await
            .status,
        200
    );
    let r = gw
        .call(
            Method::POST,
            &format!("/api/deploy/projects/{P1}/trigger/pipeline/"),
            Some(&sa),
            &ct,
            r#"{"environment":"dev"}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let before = up.hits();
    // Refused: deploy to prod, change P1's configuration, read P2, anything of globex, company
    // settings, user management.
    let r = gw
        .call(
            Method::POST,
            &format!("/api/deploy/projects/{P1}/trigger/pipeline/"),
            Some(&sa),
            &ct,
            r#"{"environment":"prod"}"#,
        )
        .await;
    assert_eq!(r.status, 403);
    let r = gw
        .call(
            Method::POST,
            &format!("/api/backend/projects/{P1}/revisions/main/configuration"),
            Some(&sa),
            &ct,
            "{}",
        )
        .await;
    assert_eq!(r.status, 403);
    for path in [
        format!("/api/backend/projects/{P2}/revisions"),
        format!("/api/backend/projects/{P3}/revisions"),
        "/api/backend/tenants/acme/rules".to_owned(),
        "/api/tenants/acme/audit-logs".to_owned(),
    ] {
        assert_eq!(gw.get_as(&path, &sa).await.status, 403, "{path}");
    }
    assert_eq!(up.hits(), before);

    // Listed with its company roles; the identities view shows its project roles.
    let r = manage(
        &gw,
        Method::GET,
        "/api/companies/acme/service-accounts",
        &owner_token,
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 200);
    let row = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["clientId"] == created["clientId"])
        .cloned()
        .unwrap();
    assert_eq!(row["name"], "ci-deployer");
    assert_eq!(row["authMethod"], "client_secret_basic");
    assert_eq!(row["companyRoles"], json!([]));
    let r = manage(
        &gw,
        Method::GET,
        &format!("/api/companies/acme/identities?identityType=serviceAccount&projectIds={P1}"),
        &owner_token,
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let me = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["identityId"] == created["clientId"])
        .cloned()
        .unwrap();
    assert_eq!(me["identityType"], "serviceAccount");
    assert_eq!(me["projects"][0]["roles"], json!(["reporter"]));
    let dev = me["projects"][0]["environments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["envId"] == "dev")
        .cloned()
        .unwrap();
    assert_eq!(dev["roles"], json!(["maintainer"]));

    // PATCH: remove the environment role ("" removes), give a company role.
    let id = created["clientId"].as_str().unwrap();
    let r = manage(
        &gw,
        Method::PATCH,
        &format!("/api/companies/acme/service-accounts/{id}"),
        &owner_token,
        json!({"role": "guest", "projectsRole": [{"projectId": P1, "environmentsRole": [{"envId": "dev", "role": ""}]}]}),
    )
    .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let r = gw
        .call(
            Method::POST,
            &format!("/api/deploy/projects/{P1}/trigger/pipeline/"),
            Some(&sa),
            &ct,
            r#"{"environment":"dev"}"#,
        )
        .await;
    assert_eq!(r.status, 403, "the removed role no longer counts, at once");
    assert_eq!(
        gw.get_as("/api/backend/tenants/acme/rules", &sa)
            .await
            .status,
        200
    );

    // DELETE: the account and all its bindings are gone.
    let r = manage(
        &gw,
        Method::DELETE,
        &format!("/api/companies/acme/service-accounts/{id}"),
        &owner_token,
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 204);
    let left: Vec<_> = gw
        .running()
        .directory
        .all_bindings()
        .into_iter()
        .filter(|b| b.subjects.iter().any(|s| s == id))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(
        gw.get_as(&format!("/api/backend/projects/{P1}/revisions"), &sa)
            .await
            .status,
        401
    );

    // Every write left an audit record naming the actor, without secrets.
    let admin = admin_token(&gw).await;
    let r = manage(
        &gw,
        Method::GET,
        "/api/iamgate/audit-log",
        &admin,
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 200);
    let log = r.json();
    let actions: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions[..3],
        [
            "service-account.delete",
            "roles.update",
            "service-account.create"
        ]
    );
    // Those three are the owner's; the accounts the test set up went through the same write
    // path, audited with their own actor (`test`, `bootstrap`).
    assert!(
        log.as_array().unwrap()[..3]
            .iter()
            .all(|a| a["actor"] == owner.as_str())
    );
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .all(|a| [owner.as_str(), "test", "bootstrap"].contains(&a["actor"].as_str().unwrap()))
    );
    assert!(!String::from_utf8_lossy(&r.body).contains(created["clientSecret"].as_str().unwrap()));
}

#[tokio::test]
async fn escalation_attempts_are_refused() {
    let (gw, _up) = setup().await;
    let create = |role: &str| json!({"name": format!("x-{}", uuid::Uuid::new_v4()), "role": role, "tokenEndpointAuthMethod": "client_secret_basic"});

    // A developer creating an account with company-owner.
    let (dev, dev_token) = gw.company_sa("acme").await;
    gw.bind(&dev, "developer", Some(("company", "acme"))).await;
    let r = manage(
        &gw,
        Method::POST,
        "/api/companies/acme/service-accounts",
        &dev_token,
        create("company-owner"),
    )
    .await;
    assert_eq!(r.status, 403);

    // A maintainer granting project-admin on its project.
    let (mnt, mnt_token) = gw.company_sa("acme").await;
    gw.bind(&mnt, "maintainer", Some(("project", P1))).await;
    let r = manage(
        &gw,
        Method::PATCH,
        "/api/companies/acme/users/u-1",
        &mnt_token,
        json!({"projectsRole": [{"projectId": P1, "role": "project-admin"}]}),
    )
    .await;
    assert_eq!(r.status, 403);
    // A project admin may grant up to its own rank there, not above.
    let (padm, padm_token) = gw.company_sa("acme").await;
    gw.bind(&padm, "project-admin", Some(("project", P1))).await;
    let grant = |role: &str| json!({"projectsRole": [{"projectId": P1, "role": role}]});
    let r = manage(
        &gw,
        Method::PATCH,
        "/api/companies/acme/users/u-1",
        &padm_token,
        grant("maintainer"),
    )
    .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let r = manage(
        &gw,
        Method::PATCH,
        "/api/companies/acme/users/u-1",
        &padm_token,
        json!({"role": "company-owner"}),
    )
    .await;
    assert_eq!(r.status, 403);

    // A root account granting a root permission it lacks.
    let (_, root_token) = gw
        .root_sa(&["console.root.serviceaccount.manage", "console.root.view"])
        .await;
    let r = manage(
        &gw,
        Method::POST,
        "/api/service-accounts",
        &root_token,
        json!({"name": "wider", "permissions": ["console.root.user.bind"], "tokenEndpointAuthMethod": "client_secret_basic"}),
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["reason"], "escalation");
    let r = manage(
        &gw,
        Method::POST,
        "/api/service-accounts",
        &root_token,
        json!({"name": "narrower", "permissions": ["console.root.view"], "tokenEndpointAuthMethod": "client_secret_basic"}),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);

    // A company owner of acme touching globex.
    let (_own, own_token) = gw.company_owner("acme").await;
    let (victim, _) = gw.company_sa("globex").await;
    for (m, path, body) in [
        (
            Method::POST,
            "/api/companies/globex/service-accounts".to_owned(),
            create("guest"),
        ),
        (
            Method::PATCH,
            format!("/api/companies/globex/service-accounts/{victim}"),
            json!({"role": "guest"}),
        ),
        (
            Method::DELETE,
            format!("/api/companies/globex/service-accounts/{victim}"),
            Value::Null,
        ),
        (
            Method::GET,
            "/api/companies/globex/identities".to_owned(),
            Value::Null,
        ),
        (
            Method::POST,
            format!("/api/companies/globex/service-accounts/{victim}/secret"),
            Value::Null,
        ),
    ] {
        let r = manage(&gw, m.clone(), &path, &own_token, body).await;
        assert_eq!(r.status, 403, "{m} {path}");
    }
    // Through its own company path it cannot reach globex's account either.
    let r = manage(
        &gw,
        Method::DELETE,
        &format!("/api/companies/acme/service-accounts/{victim}"),
        &own_token,
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 404);
    // Naming a globex project under acme: refused.
    let r = manage(
        &gw,
        Method::POST,
        "/api/companies/acme/service-accounts",
        &own_token,
        json!({"name": "sneaky", "tokenEndpointAuthMethod": "client_secret_basic", "projectsRole": [{"projectId": P3, "role": "guest"}]}),
    )
    .await;
    assert_eq!(r.status, 403);
    assert!(gw.running().accounts.snapshot().get(&victim).is_some());
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_writes_nothing() {
    let (gw, _up) = setup().await;
    let (_own, own_token) = gw.company_owner("acme").await;
    let path = "/api/companies/acme/service-accounts";
    let base = |extra: Value| {
        let mut v = json!({"name": "robot", "tokenEndpointAuthMethod": "client_secret_basic"});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    };
    let accounts_before = gw.running().accounts.snapshot().len();
    let bindings_before = gw.running().directory.all_bindings().len();
    for (body, needle) in [
        (
            base(json!({"role": "wizard"})),
            "role: unknown role `wizard`",
        ),
        (base(json!({"role": ""})), "role: must name a role"),
        (
            base(json!({"projectsRole": [{"projectId": P1, "role": "company-owner"}]})),
            "projectsRole[0].role: role `company-owner` cannot be assigned at project level",
        ),
        (
            base(
                json!({"projectsRole": [{"projectId": P1, "environmentsRole": [{"envId": "dev", "role": "developer"}]}]}),
            ),
            "projectsRole[0].environmentsRole[0].role: role `developer` cannot be assigned at environment level",
        ),
        (base(json!({"colour": "blue"})), "colour: unknown field"),
        (base(json!({"name": 5})), "name: must be a string"),
        (
            base(json!({"projectsRole": {"projectId": P1}})),
            "projectsRole: must be an array",
        ),
        (
            base(json!({"projectsRole": [{"projectId": "../x", "role": "guest"}]})),
            "projectsRole[0].projectId: must be 1 to 128",
        ),
        (
            base(json!({"tokenEndpointAuthMethod": "none"})),
            "tokenEndpointAuthMethod: must be",
        ),
        (
            base(json!({"tokenEndpointAuthMethod": "private_key_jwt"})),
            "publicKey: required",
        ),
        (
            base(
                json!({"publicKey": {"kty": "RSA", "n": "AQAB", "e": "AQAB"}, "tokenEndpointAuthMethod": "private_key_jwt"}),
            ),
            "publicKey",
        ),
        (
            json!(["not", "an", "object"]),
            "body: must be a JSON object",
        ),
        (
            json!({"tokenEndpointAuthMethod": "client_secret_basic"}),
            "name: is required",
        ),
    ] {
        let r = manage(&gw, Method::POST, path, &own_token, body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {:?}", r.body);
        let msg = r.json()["message"].as_str().unwrap().to_owned();
        assert!(msg.contains(needle), "{body}: {msg}");
    }
    // Malformed JSON and oversized bodies.
    let r = gw
        .call(
            Method::POST,
            path,
            Some(&own_token),
            &[("client-key", CLIENT_KEY)],
            "{\"name\":",
        )
        .await;
    assert_eq!(r.status, 400);
    let huge =
        json!({"name": "x".repeat(2 << 20), "tokenEndpointAuthMethod": "client_secret_basic"});
    let r = manage(&gw, Method::POST, path, &own_token, huge).await;
    assert_eq!(r.status, 413);
    assert_eq!(
        gw.running().accounts.snapshot().len(),
        accounts_before,
        "nothing written"
    );
    assert_eq!(gw.running().directory.all_bindings().len(), bindings_before);

    // Duplicate names within a company: 409; the same name in another company is fine.
    let ok = manage(
        &gw,
        Method::POST,
        path,
        &own_token,
        base(json!({"role": "guest"})),
    )
    .await;
    assert_eq!(ok.status, 201, "{:?}", ok.body);
    let dup = manage(
        &gw,
        Method::POST,
        path,
        &own_token,
        base(json!({"role": "guest"})),
    )
    .await;
    assert_eq!(dup.status, 409);
    assert!(dup.json()["message"].as_str().unwrap().contains("robot"));
    // Unknown ids: 404.
    for (m, p) in [
        (
            Method::DELETE,
            "/api/companies/acme/service-accounts/no-such-client",
        ),
        (
            Method::PATCH,
            "/api/companies/acme/service-accounts/no-such-client",
        ),
        (
            Method::POST,
            "/api/companies/acme/service-accounts/no-such-client/secret",
        ),
    ] {
        let r = manage(&gw, m, p, &own_token, json!({"role": "guest"})).await;
        assert_eq!(r.status, 404, "{p}: {:?}", r.body);
    }
    // A failed PATCH writes nothing: one bad role among good ones.
    let id = ok.json()["clientId"].as_str().unwrap().to_owned();
    let before = gw.running().directory.all_bindings();
    let r = manage(
        &gw,
        Method::PATCH,
        &format!("{path}/{id}"),
        &own_token,
        json!({"role": "developer", "projectsRole": [{"projectId": P1, "role": "nonsense"}]}),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(gw.running().directory.all_bindings(), before);
}

#[tokio::test]
async fn credentials_rotate_without_downtime() {
    let (gw, _up) = setup().await;
    let (_own, own_token) = gw.company_owner("acme").await;
    // Secret rotation: the new secret works, the old one for the grace period (60 s here).
    let r = manage(
        &gw,
        Method::POST,
        "/api/companies/acme/service-accounts",
        &own_token,
        json!({"name": "rot", "role": "guest", "tokenEndpointAuthMethod": "client_secret_basic"}),
    )
    .await;
    let created = r.json();
    let id = created["clientId"].as_str().unwrap();
    let old = created["clientSecret"].as_str().unwrap();
    let r = manage(
        &gw,
        Method::POST,
        &format!("/api/companies/acme/service-accounts/{id}/secret"),
        &own_token,
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let new = r.json()["clientSecret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(gw.token_basic(id, &new).await.status, 200);
    assert_eq!(
        gw.token_basic(id, old).await.status,
        200,
        "old secret within grace"
    );

    // Keys of a private_key_jwt account: add a second, switch, remove the first.
    let k1 = common::TestKey::new("k1");
    let k2 = common::TestKey::new("k2");
    let r = manage(&gw, Method::POST, "/api/companies/acme/service-accounts", &own_token, json!({"name": "jwt", "role": "guest", "tokenEndpointAuthMethod": "private_key_jwt", "publicKey": k1.jwk()})).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.json()["kid"], "k1");
    let id = r.json()["clientId"].as_str().unwrap().to_owned();
    let keys = format!("/api/companies/acme/service-accounts/{id}/keys");
    let r = manage(
        &gw,
        Method::POST,
        &keys,
        &own_token,
        json!({"publicKey": k2.public_pem()}),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let kid2 = r.json()["kid"].as_str().unwrap().to_owned();
    let k2 = common::TestKey {
        pair: k2.pair,
        kid: kid2.clone(),
    };
    assert_eq!(gw.token_assertion(&k2.assertion(&id)).await.status, 200);
    assert_eq!(gw.token_assertion(&k1.assertion(&id)).await.status, 200);
    let r = manage(
        &gw,
        Method::DELETE,
        &format!("{keys}/k1"),
        &own_token,
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 204);
    assert_eq!(gw.token_assertion(&k1.assertion(&id)).await.status, 401);
    assert_eq!(gw.token_assertion(&k2.assertion(&id)).await.status, 200);
    // The last key stays.
    let r = manage(
        &gw,
        Method::DELETE,
        &format!("{keys}/{kid2}"),
        &own_token,
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 409);
    let r = manage(
        &gw,
        Method::POST,
        &keys,
        &own_token,
        json!({"publicKey": "not a key"}),
    )
    .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn user_and_group_roles_and_the_identities_listing() {
    let (gw, up) = setup().await;
    let (_own, own_token) = gw.company_owner("acme").await;
    let r = manage(
        &gw,
        Method::PATCH,
        "/api/companies/acme/users/alice",
        &own_token,
        json!({"role": "reporter"}),
    )
    .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    // An unknown project is refused with the plain 403 of any deny (the reason is in the decision
    // log), and nothing is recorded.
    let p9 = "64b7e1a0c0ffee0000000009";
    let edit = json!({"projectsRole": [{"projectId": p9, "role": "developer", "environmentsRole": [{"envId": "test", "role": "maintainer"}]}]});
    let r = manage(
        &gw,
        Method::PATCH,
        "/api/companies/acme/groups/devs",
        &own_token,
        edit.clone(),
    )
    .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(r.json()["reason"], "permission_denied");
    assert!(gw.running().directory.project(p9).is_none());
    // An environment the project does not list, likewise.
    gw.project(p9, "acme", &["dev"]).await;
    let r = manage(
        &gw,
        Method::PATCH,
        "/api/companies/acme/groups/devs",
        &own_token,
        edit.clone(),
    )
    .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(r.json()["reason"], "permission_denied");
    gw.project(p9, "acme", &["test"]).await;
    let r = manage(
        &gw,
        Method::PATCH,
        "/api/companies/acme/groups/devs",
        &own_token,
        edit,
    )
    .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert_eq!(up.hits(), 0, "role edits are served here");

    let list = |q: &str| {
        let q = q.to_owned();
        let gw = &gw;
        let t = own_token.clone();
        async move {
            manage(
                gw,
                Method::GET,
                &format!("/api/companies/acme/identities{q}"),
                &t,
                Value::Null,
            )
            .await
        }
    };
    let r = list("?identityType=user").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!([{"identityId": "alice", "name": "alice", "identityType": "user", "companyRoles": ["reporter"]}])
    );
    let r = list(&format!("?identityType=group&projectIds={p9}")).await;
    let devs = &r.json()[0];
    assert_eq!(devs["identityType"], "group");
    assert_eq!(devs["projects"][0]["roles"], json!(["developer"]));
    assert_eq!(
        devs["projects"][0]["environments"][0],
        json!({"envId": "test", "roles": ["maintainer"]})
    );
    // Both spellings of the service-account type; paging with x-total-pages.
    let a = list("?identityType=serviceaccount").await.json();
    let b = list("?identityType=serviceAccount").await.json();
    assert_eq!(a, b);
    assert_eq!(a.as_array().unwrap().len(), 1);
    let r = list("?per_page=1&page=2").await;
    assert_eq!(r.header("x-total-pages"), Some("3"));
    assert_eq!(r.json().as_array().unwrap().len(), 1);
    assert_eq!(list("?identityType=robot").await.status, 400);
    assert_eq!(list("?per_page=0").await.status, 400);

    // Removing a user drops its bindings in this company.
    let r = manage(
        &gw,
        Method::DELETE,
        "/api/companies/acme/users/alice",
        &own_token,
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 204);
    assert_eq!(list("?identityType=user").await.json(), json!([]));
}

#[tokio::test]
async fn projects_are_registered_explicitly() {
    let (gw, _up) = setup().await;
    let (_own, own_token) = gw.company_owner("acme").await;
    let p = "64b7e1a0c0ffee0000000010";
    let r = manage(
        &gw,
        Method::PUT,
        &format!("/api/iamgate/directory/projects/{p}"),
        &own_token,
        json!({"companyId": "acme", "environments": ["dev", "prod"]}),
    )
    .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert_eq!(
        gw.running().directory.project(p).unwrap().environments,
        ["dev", "prod"]
    );
    // Not into another company, and a known project does not move.
    let r = manage(
        &gw,
        Method::PUT,
        &format!("/api/iamgate/directory/projects/{p}"),
        &own_token,
        json!({"companyId": "globex"}),
    )
    .await;
    assert_eq!(r.status, 403);
    let (_g, g_token) = gw.company_owner("globex").await;
    let r = manage(
        &gw,
        Method::PUT,
        &format!("/api/iamgate/directory/projects/{p}"),
        &g_token,
        json!({"companyId": "globex"}),
    )
    .await;
    assert_eq!(r.status, 409);
}

#[tokio::test]
async fn the_directory_syncs_from_the_console() {
    let console = TestUpstream::start().await;
    console.answer(
        "/api/backend/projects/",
        200,
        json!([
            {"_id": P1, "tenantId": "acme", "name": "one", "environments": [{"envId": "dev"}, {"envId": "prod"}]},
            {"_id": P2, "tenantId": "globex", "environments": []},
        ]),
    );
    let gw = gateway()
        .with(&format!(
            "directory: {{sync_url: \"{}/api/backend/projects/\", sync_interval_secs: 1}}",
            console.url()
        ))
        .start()
        .await;
    let dir = gw.running().directory.clone();
    let deadline = std::time::Instant::now() + common::WAIT;
    common::wait_until(deadline, "sync", || dir.project(P2).is_some()).await;
    assert_eq!(dir.project(P1).unwrap().environments, ["dev", "prod"]);
    assert_eq!(dir.project(P2).unwrap().company_id, "globex");
    // The Console is authoritative: a moved project follows; a broken answer changes nothing.
    console.answer(
        "/api/backend/projects/",
        200,
        json!([{"_id": P2, "tenantId": "acme"}]),
    );
    common::wait_until(deadline, "resync", || {
        dir.project(P2).unwrap().company_id == "acme"
    })
    .await;
    console.answer("/api/backend/projects/", 200, json!({"broken": true}));
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(dir.project(P2).unwrap().company_id, "acme");
    assert!(dir.project(P1).is_some());
}
