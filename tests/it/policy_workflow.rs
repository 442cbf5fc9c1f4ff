//! The security team's workflow, end to end through the real binary: the tests' coverage of the
//! policy (a rule added without a test shows up by line), and a candidate policy replayed on the
//! decisions a running gateway recorded, reporting exactly the decisions the change would turn.

use crate::common::serve::spawn_in;
use crate::common::upstream::TestUpstream;
use http::Method;
use std::path::{Path, PathBuf};

/// A copy of the shipped policy folder in `into`.
fn copy_policies(into: &Path) -> PathBuf {
    let dir = into.join("policies");
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/policies")).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
        }
    }
    dir
}

fn iamgate(args: &[&str]) -> (i32, String) {
    crate::common::outcome(std::process::Command::new(env!("CARGO_BIN_EXE_iamgate")).args(args))
}

#[test]
fn coverage_names_every_line_no_test_reaches_and_can_gate_on_a_minimum() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_policies(tmp.path());
    let d = dir.to_str().unwrap();
    let (code, shipped) = iamgate(&["policy", "test", "--coverage", d]);
    assert_eq!(code, 0, "{shipped}");
    assert!(shipped.contains("coverage: 100.0%"), "{shipped}");

    // A rule added without a test: its body line is named.
    let authz = dir.join("authz.rego");
    let mut text = std::fs::read_to_string(&authz).unwrap();
    let line = text.lines().count() + 3;
    text.push_str("\nuntested_rule if {\n\tinput.request.method == \"TRACE\"\n}\n");
    std::fs::write(&authz, text).unwrap();
    let (code, out) = iamgate(&["policy", "test", "--coverage", d]);
    assert_eq!(code, 0, "coverage alone does not fail: {out}");
    assert!(
        out.contains(&format!(
            "not covered: authz.rego:{line}  input.request.method == \"TRACE\""
        )),
        "{out}"
    );
    let (code, out) = iamgate(&["policy", "test", "--min-coverage", "100", d]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("is below the required 100%"), "{out}");
}

/// Denies `route` to root accounts in the policy at `dir` (the bootstrap account's only way in).
fn deny_route_to_root(dir: &Path, route: &str) {
    let authz = dir.join("authz.rego");
    let text = std::fs::read_to_string(&authz).unwrap();
    let root_rule = "route_allowed if {\n\tsome p in root_candidates\n\tholds_root(p)\n}";
    assert!(text.contains(root_rule), "the policy's root rule moved");
    std::fs::write(
        &authz,
        text.replace(
            root_rule,
            &format!(
                "route_allowed if {{\n\tsome p in root_candidates\n\tholds_root(p)\n\tinput.route.id != \"{route}\"\n}}"
            ),
        ),
    )
    .unwrap();
}

#[tokio::test]
async fn replay_reports_exactly_the_decisions_a_policy_change_would_turn() {
    let tmp = tempfile::tempdir().unwrap();
    let live = copy_policies(tmp.path());
    let up = TestUpstream::start().await;
    let gw = spawn_in(
        tempfile::tempdir().unwrap(),
        &up.url(),
        "format: json, level: info, decision_inputs: true",
        &format!("policy: {{dir: \"{}\"}}\n", live.display()),
    );
    let token = gw.bootstrap_token().await;
    let bearer = format!("Bearer {token}");
    let turned = "/api/tenants/acme/marketplace/items/item1/versions";
    let kept = "/api/tenants/acme/audit-logs";
    for path in [turned, turned, turned, kept, kept] {
        let (status, body) = gw
            .send(Method::GET, path, &[("authorization", &bearer)], "")
            .await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    let decisions_in = |lines: &[String]| -> Vec<serde_json::Value> {
        lines
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["target"] == "iamgate::decision")
            .collect()
    };
    let lines = gw.log_until("five decisions", |l| decisions_in(l).len() >= 5);
    drop(gw);
    let decisions = decisions_in(&lines);
    assert_eq!(decisions.len(), 5, "{lines:#?}");
    let route = |path: &str| {
        decisions
            .iter()
            .find(|d| d["path"] == path)
            .and_then(|d| d["route"].as_str())
            .unwrap()
            .to_owned()
    };
    let (turned_route, kept_route) = (route(turned), route(kept));
    assert_ne!(turned_route, kept_route);
    for d in &decisions {
        assert!(d["input"].is_string(), "the input is kept: {d}");
        assert!(!d.to_string().contains(&token), "the token reached the log");
    }
    let log = tmp.path().join("decisions.log");
    // Other log lines (start-up, text) are ignored by the replay.
    std::fs::write(&log, format!("not json\n{}\n", lines.join("\n"))).unwrap();
    let log = log.to_str().unwrap();

    let (code, out) = iamgate(&[
        "policy",
        "replay",
        "--log",
        log,
        "--dir",
        live.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "an unchanged policy changes nothing: {out}");
    assert!(out.contains("5 replayed"), "{out}");
    assert!(out.contains("0 changed"), "{out}");

    let candidate_home = tempfile::tempdir().unwrap();
    let candidate = copy_policies(candidate_home.path());
    deny_route_to_root(&candidate, &turned_route);
    let c = candidate.to_str().unwrap();
    let (code, out) = iamgate(&["policy", "replay", "--log", log, "--dir", c]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "     3 revoke  {turned_route}: granted -> permission_denied"
        )),
        "{out}"
    );
    assert!(
        !out.contains(&kept_route),
        "only the turned route changes: {out}"
    );
    assert!(
        out.contains("3 changed (0 grant, 3 revoke, 0 reason)"),
        "{out}"
    );
    assert!(out.contains(&format!("e.g. GET {turned}")), "{out}");
    // Only a deny turning into an allow fails `--fail-on grant`.
    let (code, out) = iamgate(&[
        "policy",
        "replay",
        "--log",
        log,
        "--dir",
        c,
        "--fail-on",
        "grant",
    ]);
    assert_eq!(code, 0, "{out}");
    // `--fail-on outcome` fails on the revocations.
    let (code, out) = iamgate(&[
        "policy",
        "replay",
        "--log",
        log,
        "--dir",
        c,
        "--fail-on",
        "outcome",
    ]);
    assert_eq!(code, 1, "{out}");
}

#[test]
fn records_without_their_input_are_counted_and_skipped_never_guessed() {
    let tmp = tempfile::tempdir().unwrap();
    let live = copy_policies(tmp.path());
    let log = tmp.path().join("old.log");
    std::fs::write(
        &log,
        concat!(
            r#"{"target":"iamgate::decision","route":"r","allow":true,"reason":"granted","path":"/x"}"#,
            "\n",
            r#"{"target":"iamgate::decision","route":"r","allow":"yes"}"#,
            "\n",
            r#"{"target":"iamgate::decision","route":"r","allow":true,"reason":"granted","input":"{not json"}"#,
            "\n",
            r#"{"target":"iamgate::request","message":"other"}"#,
            "\n"
        ),
    )
    .unwrap();
    let (code, out) = iamgate(&[
        "policy",
        "replay",
        "--log",
        log.to_str().unwrap(),
        "--dir",
        live.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(
            "3 decision records: 0 replayed, 1 without their input (skipped), 2 unreadable"
        ),
        "{out}"
    );
    assert!(
        out.contains("unreadable record at line 2: no allow"),
        "{out}"
    );
    assert!(out.contains("unreadable record at line 3: input:"), "{out}");
}

#[tokio::test]
async fn a_shadow_policy_that_disagrees_never_changes_an_answer_and_is_counted() {
    let (live_home, shadow_home) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (live, shadow) = (
        copy_policies(live_home.path()),
        copy_policies(shadow_home.path()),
    );
    let up = TestUpstream::start().await;
    let gw = crate::common::gateway()
        .upstream(&up.url())
        .with(&format!(
            "policy: {{dir: \"{}\", shadow_dir: \"{}\", reload_ms: 100}}",
            live.display(),
            shadow.display()
        ))
        .start()
        .await;
    let (_, token) = gw.root_sa(&["console.root.view"]).await;
    let metrics = || async { String::from_utf8(gw.get("/-/metrics").await.body.to_vec()).unwrap() };
    let turned = "/api/tenants/acme/marketplace/items/item1/versions";
    let kept = "/api/marketplace/categories";
    assert_eq!(gw.get_as(turned, &token).await.status, 200);
    // The route id of the turned path, as the request metrics name it.
    let text = metrics().await;
    let route = text
        .lines()
        .find(|l| l.starts_with("iamgate_requests_total{") && l.contains("status=\"2xx\""))
        .and_then(|l| l.split("route=\"").nth(1))
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("no request metric: {text}"))
        .to_owned();
    assert_eq!(gw.get_as(kept, &token).await.status, 200);
    assert!(
        !metrics()
            .await
            .contains("iamgate_shadow_disagreements_total{"),
        "the same policy never disagrees"
    );

    // The shadow now denies the turned route; the live answers stay.
    deny_route_to_root(&shadow, &route);
    let policy = &gw.running().policy;
    let deadline = std::time::Instant::now() + crate::common::WAIT;
    while policy.shadow_revision() == Some(policy.revision()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the shadow folder was not reloaded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let hits = up.hits();
    for path in [turned, turned, turned, kept] {
        assert_eq!(gw.get_as(path, &token).await.status, 200, "{path}");
    }
    assert_eq!(
        up.hits(),
        hits + 4,
        "the live policy answered every request"
    );
    let want = format!(
        "iamgate_shadow_disagreements_total{{route=\"{route}\",live=\"allow\",shadow=\"deny\"}} 3"
    );
    loop {
        let text = metrics().await;
        if text.contains(&want) {
            assert_eq!(
                text.matches("iamgate_shadow_disagreements_total{").count(),
                1,
                "only the turned route disagrees: {text}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{want} not in {text}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_policy_endpoints_show_the_live_policy_recent_decisions_and_decide_inputs() {
    let up = TestUpstream::start().await;
    let gw = crate::common::gateway().upstream(&up.url()).start().await;
    let (_, root) = gw.root_sa(&["console.root.view"]).await;
    let (_, owner) = gw.company_sa("acme").await;
    let status = gw.get_as("/api/iamgate/policy", &root).await;
    assert_eq!(status.status, 200);
    let st = status.json();
    assert_eq!(st["revision"], gw.running().policy.revision().as_ref());
    assert!(st["testsPassed"].as_u64().unwrap() > 0, "{st}");
    assert_eq!(gw.get_as("/api/iamgate/policy", &owner).await.status, 403);
    assert_eq!(
        gw.get_as("/api/iamgate/decisions", &owner).await.status,
        403
    );

    // A denial is among the recent decisions, with its input; eval decides it again.
    assert_eq!(
        gw.get_as("/api/tenants/globex/marketplace/items/i1/versions", &owner)
            .await
            .status,
        403
    );
    let recent = gw.get_as("/api/iamgate/decisions", &root).await.json();
    let denial = recent
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["allow"] == false && d["hasInput"] == true)
        .unwrap_or_else(|| panic!("{recent}"))
        .clone();
    assert!(
        denial.get("input").is_none(),
        "the list carries no input documents"
    );
    let eval = |body: serde_json::Value| {
        let root = root.clone();
        let gw = &gw;
        async move {
            gw.request(
                Method::POST,
                "/api/iamgate/policy/eval",
                &[
                    ("authorization", &format!("Bearer {root}")),
                    ("content-type", "application/json"),
                ],
                body.to_string(),
            )
            .await
        }
    };
    let r = eval(serde_json::json!({"decisionId": denial["id"]})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let v = r.json();
    assert_eq!(v["allow"], false);
    assert_eq!(v["reason"], denial["reason"]);
    assert!(v["explain"].is_object(), "{v}");
    assert!(
        !v["input"]["request"]["headers"]
            .to_string()
            .contains(&owner)
    );
    let mut input = v["input"].clone();
    input["user"]["permissions"] = serde_json::json!(["console.root.view"]);
    let r = eval(serde_json::json!({ "input": input })).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["allow"], true, "a root viewer may");
    for (body, status) in [
        (serde_json::json!({}), 400),
        (serde_json::json!({"decisionId": 999_999}), 404),
        (serde_json::json!({"decisionId": "x"}), 400),
        (
            serde_json::json!({"input": {"nope": 1}, "decisionId": 1}),
            400,
        ),
        (serde_json::json!({"input": 5}), 400),
    ] {
        assert_eq!(eval(body.clone()).await.status, status, "{body}");
    }
}

#[tokio::test]
async fn assignable_roles_are_what_the_policy_lets_the_caller_grant() {
    let gw = crate::common::gateway().start().await;
    gw.project("64b7e1a0c0ffee00000000d1", "acme", &["dev"])
        .await;
    let role_of = |role: &'static str| {
        let gw = &gw;
        async move {
            let (id, token) = gw.company_sa("acme").await;
            gw.bind(&id, role, Some(("company", "acme"))).await;
            token
        }
    };
    let owner = role_of("company-owner").await;
    let reporter = role_of("reporter").await;
    let r = gw
        .get_as("/api/companies/acme/assignable-roles", &owner)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let company: Vec<String> = serde_json::from_value(r.json()["company"].clone()).unwrap();
    assert!(company.contains(&"company-owner".to_owned()), "{company:?}");
    assert!(company.contains(&"developer".to_owned()), "{company:?}");
    let r = gw
        .get_as("/api/companies/acme/assignable-roles", &reporter)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["company"],
        serde_json::json!([]),
        "a reporter assigns nothing"
    );
    let r = gw
        .get_as(
            "/api/companies/acme/assignable-roles?projectId=64b7e1a0c0ffee00000000d1",
            &owner,
        )
        .await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert!(!v["project"].as_array().unwrap().is_empty(), "{v}");
    assert!(v["environment:dev"].is_array(), "{v}");
    assert!(
        !v["project"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("company-owner")),
        "a company role is not offered on a project: {v}"
    );
    // A project of another company is not this company's to ask about.
    gw.project("64b7e1a0c0ffee00000000d2", "globex", &[]).await;
    let r = gw
        .get_as(
            "/api/companies/acme/assignable-roles?projectId=64b7e1a0c0ffee00000000d2",
            &owner,
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        gw.get_as("/api/companies/globex/assignable-roles", &owner)
            .await
            .status,
        403
    );
}
