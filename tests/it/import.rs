//! `iamgate import rond`: the Console's Rönd collections, as exported, become bindings that
//! decide through the proxy. Fixtures are written here in that format (Mongo export fields
//! included); trash is skipped; a bad document aborts with its position and writes nothing; a
//! second run changes nothing.

use crate::common::upstream::TestUpstream;
use crate::common::{TEST_ISSUER, TestKey, cli, gateway};
use iamgate::util::unix_now;
use serde_json::{Value, json};

const P1: &str = "64b7e1a0c0ffee00000000a1";

fn user_token(key: &TestKey, sub: &str, groups: &[&str]) -> String {
    key.sign(&json!({
        "iss": TEST_ISSUER, "aud": "console", "sub": sub, "groups": groups,
        "iat": unix_now(), "exp": unix_now() + 600,
    }))
}

const ROLES: &str = r#"[
  {"_id": {"$oid": "65a000000000000000000001"}, "roleId": "developer", "name": "Developer", "permissions": ["console.project.view"], "__STATE__": "PUBLIC"},
  {"_id": {"$oid": "65a000000000000000000002"}, "roleId": "tenant-admin", "name": "Old admin", "permissions": []},
  {"roleId": "reporter", "name": "Reporter", "permissions": []},
  {"_id": {"$oid": "65a000000000000000000003"}, "roleId": "retired", "name": "Retired", "permissions": [], "__STATE__": "TRASH"}
]"#;

fn bindings(sa: &str) -> String {
    [
        json!({"_id": {"$oid": "65b000000000000000000001"}, "bindingId": "b-alice", "subjects": ["alice"], "roles": ["developer"],
               "resource": {"resourceType": "project", "resourceId": P1}, "__STATE__": "PUBLIC"}),
        json!({"bindingId": "b-ops", "groups": ["ops"], "roles": ["tenant-admin"],
               "resource": {"resourceType": "company", "resourceId": "acme"}}),
        json!({"bindingId": "b-sa", "subjects": [sa], "roles": ["reporter"],
               "resource": {"resourceType": "environment", "resourceId": format!("{P1}:dev")}}),
        json!({"bindingId": "b-trash", "subjects": ["mallory"], "roles": ["developer"],
               "resource": {"resourceType": "project", "resourceId": P1}, "__STATE__": "TRASH"}),
    ]
    .iter()
    .map(Value::to_string)
    .collect::<Vec<_>>()
    .join("\n")
}

/// Runs `iamgate import rond` on the data in `dir`; exit code and output.
fn import(dir: &std::path::Path, bindings_file: &std::path::Path, extra: &[&str]) -> (i32, String) {
    let cfg = dir.join("import.yaml");
    let jwks = dir.join("idp-jwks.json");
    if !jwks.exists() {
        std::fs::write(
            &jwks,
            json!({"keys": [TestKey::new("idp-1").jwk()]}).to_string(),
        )
        .unwrap();
    }
    std::fs::write(
        &cfg,
        format!(
            "external_issuers:\n  - {{name: idp, issuer: \"{TEST_ISSUER}\", audience: console, jwks_file: {}}}\n",
            dir.join("idp-jwks.json").display()
        ),
    )
    .unwrap();
    let roles = dir.join("roles.json");
    std::fs::write(&roles, ROLES).unwrap();
    crate::common::outcome(
        cli(&dir.join("data"))
            .args(["import", "rond", "--roles"])
            .arg(&roles)
            .arg("--bindings")
            .arg(bindings_file)
            .args(["--role-map", "tenant-admin=company-owner", "--config"])
            .arg(&cfg)
            .args(extra),
    )
}

fn counts(out: &str) -> (usize, usize, u64, u64) {
    let v: Value = serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"));
    (
        v["added"].as_array().unwrap().len(),
        v["changed"].as_array().unwrap().len(),
        v["unchanged"].as_u64().unwrap(),
        v["skipped"].as_u64().unwrap(),
    )
}

#[tokio::test]
async fn the_consoles_rond_bindings_decide_through_the_proxy_after_import() {
    let up = TestUpstream::start().await;
    let gw = gateway().upstream(&up.url()).start().await;
    gw.project(P1, "acme", &["dev"]).await;
    let (sa, _) = gw.company_sa("acme").await;
    let dir = gw.stop().await;
    let idp = TestKey::new("idp-1");
    let jwks = dir.path().join("idp-jwks.json");
    std::fs::write(&jwks, json!({"keys": [idp.jwk()]}).to_string()).unwrap();
    let file = dir.path().join("bindings.jsonl");
    std::fs::write(&file, bindings(&sa)).unwrap();

    // A dry run writes nothing: a second dry run would still add everything.
    for _ in 0..2 {
        let (code, out) = import(dir.path(), &file, &["--dry-run"]);
        assert_eq!(code, 0, "{out}");
        assert_eq!(counts(&out), (3, 0, 0, 1), "{out}");
    }
    let (code, out) = import(dir.path(), &file, &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(counts(&out), (3, 0, 0, 1), "{out}");
    // Again: nothing changes.
    let (code, out) = import(dir.path(), &file, &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(counts(&out), (0, 0, 3, 1), "{out}");

    // A bad document aborts the import with its position and field; the good one before it
    // is not written either.
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        [
            json!({"bindingId": "b-new", "subjects": ["carol"], "roles": ["developer"],
                   "resource": {"resourceType": "project", "resourceId": P1}}),
            json!({"bindingId": "b-bad", "subjects": ["dave"], "roles": ["developer"],
                   "resource": {"resourceType": "console", "resourceId": "x"}}),
        ]
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n"),
    )
    .unwrap();
    let (code, out) = import(dir.path(), &bad, &[]);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("document 2: resource.resourceType: must be company, project or environment"),
        "{out}"
    );
    let only_good = dir.path().join("good.jsonl");
    std::fs::write(
        &only_good,
        std::fs::read_to_string(&bad)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let (code, out) = import(dir.path(), &only_good, &["--dry-run"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        counts(&out).0,
        1,
        "b-new was not written by the aborted import: {out}"
    );

    // The imported bindings decide through the proxy.
    let gw = gateway()
        .upstream(&up.url())
        .with(&format!(
            "external_issuers:\n  - {{name: idp, issuer: \"{TEST_ISSUER}\", audience: console, jwks_file: {}}}",
            jwks.display()
        ))
        .data_dir(dir)
        .start()
        .await;
    let project_route = format!("/api/backend/projects/{P1}/revisions");
    assert_eq!(
        gw.get_as(&project_route, &user_token(&idp, "alice", &[]))
            .await
            .status,
        200
    );
    assert_eq!(
        gw.get_as(
            "/api/tenants/acme/audit-logs",
            &user_token(&idp, "bob", &["ops"])
        )
        .await
        .status,
        200,
        "a group bound under a mapped role"
    );
    assert_eq!(
        gw.get_as(
            "/api/tenants/acme/audit-logs",
            &user_token(&idp, "alice", &[])
        )
        .await
        .status,
        403
    );
    assert_eq!(
        gw.get_as(&project_route, &user_token(&idp, "mallory", &[]))
            .await
            .status,
        403,
        "a trashed binding grants nothing"
    );
    let b = gw.running().directory.binding("b-sa").unwrap();
    assert_eq!(b.subjects, vec![format!("serviceaccount:{sa}")]);
    assert_eq!(
        b.resource.unwrap().company_id.as_deref(),
        Some("acme"),
        "an environment binding names the project's company"
    );
    let alice = gw.running().directory.binding("b-alice").unwrap();
    assert_eq!(alice.subjects, vec!["user:idp:alice".to_owned()]);
}

#[tokio::test]
async fn every_kind_of_bad_document_is_refused_with_its_field() {
    let gw = gateway().start().await;
    gw.project(P1, "acme", &["dev"]).await;
    let dir = gw.stop().await;
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"subjects": ["a"], "roles": ["developer"], "resource": {"resourceType": "company", "resourceId": "acme"}}),
            "bindingId: missing",
        ),
        (
            json!({"bindingId": "x", "subjects": ["a"], "roles": ["nope"], "resource": {"resourceType": "company", "resourceId": "acme"}}),
            "roles: `nope` is not a role of the roles file",
        ),
        (
            json!({"bindingId": "x", "subjects": ["a"], "roles": ["retired"], "resource": {"resourceType": "company", "resourceId": "acme"}}),
            "roles: `retired` is not a role of the roles file",
        ),
        (
            json!({"bindingId": "x", "subjects": ["a"], "roles": ["developer"]}),
            "resource: missing",
        ),
        (
            json!({"bindingId": "x", "subjects": ["a"], "roles": ["developer"], "resource": {"resourceType": "project", "resourceId": "unknown-project"}}),
            "project `unknown-project` is unknown",
        ),
        (
            json!({"bindingId": "x", "subjects": ["a"], "roles": ["developer"], "resource": {"resourceType": "environment", "resourceId": P1}}),
            "an environment is named <projectId>:<envId>",
        ),
        (
            json!({"bindingId": "x", "roles": ["developer"], "resource": {"resourceType": "company", "resourceId": "acme"}}),
            "applies to nobody",
        ),
        (
            json!({"bindingId": "x", "subjects": ["a"], "resource": {"resourceType": "company", "resourceId": "acme"}}),
            "grants nothing",
        ),
        (
            json!({"bindingId": "x", "subjects": "a", "roles": ["developer"], "resource": {"resourceType": "company", "resourceId": "acme"}}),
            "subjects: not an array",
        ),
        (
            json!({"bindingId": "x", "subjects": ["a"], "permissions": ["console.root.view"], "resource": {"resourceType": "company", "resourceId": "acme"}}),
            "is a root permission",
        ),
        (
            json!({"bindingId": "x", "subjects": ["a"], "permissions": ["made.up"], "resource": {"resourceType": "company", "resourceId": "acme"}}),
            "is not a permission of iamgate's policy",
        ),
        (
            json!({"bindingId": "x", "subjects": ["a"], "roles": ["developer"], "resource": {"resourceType": "company", "resourceId": "acme"}, "__STATE__": 1}),
            "__STATE__: not a string",
        ),
        (json!("a string"), "-: not a JSON object"),
    ];
    for (i, (doc, want)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("case{i}.jsonl"));
        std::fs::write(&file, format!("\n{doc}\n")).unwrap();
        let (code, out) = import(dir.path(), &file, &[]);
        assert_ne!(code, 0, "case {i} was accepted: {out}");
        assert!(out.contains("document 2"), "case {i}: {out}");
        assert!(out.contains(want), "case {i}: want `{want}` in {out}");
    }
    let dup = dir.path().join("dup.json");
    let one = json!({"bindingId": "x", "subjects": ["a"], "roles": ["developer"], "resource": {"resourceType": "company", "resourceId": "acme"}});
    std::fs::write(&dup, json!([one, one]).to_string()).unwrap();
    let (code, out) = import(dir.path(), &dup, &[]);
    assert_ne!(code, 0);
    assert!(
        out.contains("document 2: bindingId: `x` appears twice"),
        "{out}"
    );
    let garbage = dir.path().join("garbage.json");
    std::fs::write(&garbage, "[{").unwrap();
    let (code, out) = import(dir.path(), &garbage, &[]);
    assert_ne!(code, 0);
    assert!(out.contains("not a JSON array"), "{out}");
}
