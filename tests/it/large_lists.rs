//! Response rules over large lists, in a real `iamgate serve` process with its default time
//! limits: a company with 10,000 projects in the Console's project list gets its own projects,
//! all of them and nothing else, instead of a 502.

use crate::common;

use common::serve::spawn_in;
use common::upstream::TestUpstream;
use http::Method;
use serde_json::{Value, json};

/// `n` projects, every other one acme's, the rest globex's.
fn projects(n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| {
                json!({
                    "_id": format!("{i:024x}"),
                    "projectId": format!("project-{i}"),
                    "tenantId": if i % 2 == 0 { "acme" } else { "globex" },
                    "name": format!("Project {i}"),
                    "environments": [{"envId": "dev"}, {"envId": "prod"}],
                })
            })
            .collect(),
    )
}

#[tokio::test]
async fn ten_thousand_projects_are_filtered_within_the_budget() {
    const N: usize = 10_000;
    let up = TestUpstream::start().await;
    up.answer("/api/backend/projects/", 200, projects(N));
    let gw = spawn_in(
        tempfile::tempdir().unwrap(),
        &up.url(),
        "format: json, level: info",
        "",
    );
    let admin = gw.bootstrap_token().await;
    let (status, body) = gw
        .send(
            Method::POST,
            "/api/companies/acme/service-accounts",
            &[
                ("authorization", &format!("Bearer {admin}")),
                ("content-type", "application/json"),
            ],
            r#"{"name": "lister", "role": "company-owner", "tokenEndpointAuthMethod": "client_secret_basic"}"#,
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let created: Value = serde_json::from_str(&body).unwrap();
    let token = gw
        .token(
            created["clientId"].as_str().unwrap(),
            created["clientSecret"].as_str().unwrap(),
        )
        .await;

    let started = std::time::Instant::now();
    let (status, body) = gw
        .send(
            Method::GET,
            "/api/backend/projects/",
            &[("authorization", &format!("Bearer {token}"))],
            "",
        )
        .await;
    println!(
        "{N} projects filtered in {} ms",
        started.elapsed().as_millis()
    );
    assert_eq!(status, 200, "{}", &body[..body.len().min(300)]);
    let list: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(list.len(), N / 2);
    assert!(list.iter().all(|p| p["tenantId"] == "acme"));
    // In the upstream's order, each item whole.
    let expected: Vec<Value> = projects(N)
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["tenantId"] == "acme")
        .cloned()
        .collect();
    assert_eq!(list, expected);
}

/// Slices join into one JSON array whatever the list's length: none, one item short of a
/// slice, several slices; items of other companies and of unexpected shapes are left out.
#[tokio::test]
async fn lists_of_every_length_come_back_whole_and_filtered() {
    let up = TestUpstream::start().await;
    let gw = common::gateway().upstream(&up.url()).start().await;
    let (_, token) = gw.company_owner("acme").await;
    for n in [0, 1, 255, 256, 257, 600] {
        let mut sent = projects(n).as_array().unwrap().clone();
        sent.push(json!("not a project"));
        sent.push(json!({"_id": 7, "tenantId": "globex"}));
        up.answer("/api/backend/projects/", 200, Value::Array(sent.clone()));
        let r = gw.get_as("/api/backend/projects/", &token).await;
        assert_eq!(r.status, 200, "{n}");
        let want: Vec<Value> = sent
            .into_iter()
            .filter(|p| p["tenantId"] == "acme")
            .collect();
        assert_eq!(r.json(), Value::Array(want), "{n}");
    }
}
