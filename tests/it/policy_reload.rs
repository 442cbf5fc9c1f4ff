//! The policy at runtime: a running gateway keeps deciding with its policy when a broken or
//! failing-test change is written, picks up a good change within 2 seconds without a restart,
//! and a policy that errors or runs too long denies.

use crate::common;

use common::*;
use iamgate::policy::{PolicySource, Snapshot};
use std::path::Path;
use std::time::{Duration, Instant};

/// A gateway configuration serving the policy folder `dir`, polled every 100 ms.
fn reload_yaml(dir: &Path) -> String {
    format!(
        "listen: 127.0.0.1:0\nlog: {{level: error}}\npolicy: {{dir: {}, reload_ms: 100}}\n",
        dir.display()
    )
}

fn copy_policies(to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[tokio::test]
async fn broken_changes_keep_the_running_policy_and_good_ones_apply_within_two_seconds() {
    let pol = tempfile::tempdir().unwrap();
    copy_policies(pol.path());
    let yaml = reload_yaml(pol.path());
    let gw = gateway().yaml(&yaml).start().await;
    let engine = gw.running().policy.clone();
    let stats = gw.running().policy_stats.clone();
    let input = deploy_input("maintainer");
    let original = engine.revision();
    assert!(engine.decide(&input, 1).allow);

    // 1. A syntax error.
    let authz = pol.path().join("authz.rego");
    let good = std::fs::read_to_string(&authz).unwrap();
    put(&authz, format!("{good}\nthis is not rego {{{{\n"));
    wait_for(
        || last_error(&stats).contains("compile"),
        "syntax error rejected",
    )
    .await;
    assert_eq!(engine.revision(), original);
    assert!(
        engine.decide(&input, 2).allow,
        "running policy still decides"
    );
    assert!(last_error(&stats).contains("compile"));

    // 2. Compiles, but breaks inheritance: its own tests catch it and it is refused.
    let no_company_env = good.replace(
        "\t\t\"company\": \"console.company.project.environment.\",\n",
        "",
    );
    assert!(no_company_env != good, "mutation must apply");
    put(&authz, &no_company_env);
    wait_for(
        || last_error(&stats).contains("tests failed"),
        "failing tests rejected",
    )
    .await;
    assert_eq!(engine.revision(), original);
    assert!(engine.decide(&input, 3).allow);
    assert!(last_error(&stats).contains("tests failed"));

    // 2b. The tests removed: a policy without tests never goes live.
    put(&authz, &good);
    let tests = pol.path().join("authz_test.rego");
    let responses_tests = pol.path().join("responses_test.rego");
    let (kept, kept_responses) = (
        std::fs::read(&tests).unwrap(),
        std::fs::read(&responses_tests).unwrap(),
    );
    std::fs::remove_file(&tests).unwrap();
    std::fs::remove_file(&responses_tests).unwrap();
    wait_for(
        || last_error(&stats).contains("no test_* rule"),
        "untested policy rejected",
    )
    .await;
    assert_eq!(engine.revision(), original);
    assert!(
        last_error(&stats).contains("no test_* rule"),
        "{}",
        last_error(&stats)
    );
    put(&tests, &kept);
    put(&responses_tests, &kept_responses);

    // 2c. Passes its tests on the interpreter, but the production evaluator decides one of the
    // tests' inputs otherwise (binding an undefined value fails a body only on the interpreter).
    let divergence_test = pol.path().join("diverge_test.rego");
    put(&divergence_test, DIVERGE_TEST);
    put(&authz, diverging(&good));
    wait_for(
        || last_error(&stats).contains("production evaluator"),
        "diverging policy rejected",
    )
    .await;
    assert_eq!(engine.revision(), original);
    assert!(
        last_error(&stats).contains("production evaluator"),
        "{}",
        last_error(&stats)
    );
    std::fs::remove_file(&divergence_test).unwrap();

    // 3. A good change (the original plus a rule) applies within 2 s.
    let written = Instant::now();
    put(&authz, format!("{good}\nrevision_marker := 2\n"));
    while engine.revision() == original {
        assert!(
            written.elapsed() < Duration::from_secs(2),
            "good policy not applied within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("good policy applied after {:?}", written.elapsed());
    assert!(engine.decide(&input, 4).allow);
    assert_eq!(stats.applied.get(), 1);
    assert!(stats.last_error.lock().unwrap().is_none());
    let metrics = String::from_utf8(gw.get("/-/metrics").await.body.to_vec()).unwrap();
    assert!(
        metrics.contains(r#"iamgate_policy_reloads_total{result="rejected"} 4"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"iamgate_policy_reloads_total{result="applied"} 1"#),
        "{metrics}"
    );
    gw.stop().await;
}

/// A test that passes on the interpreter: an input the diverging rule must not allow.
const DIVERGE_TEST: &str = "package iamgate.diverge_test\n\nimport rego.v1\n\nimport data.iamgate.authz\n\ntest_diverge_denied if {\n\tnot authz.decision.allow with input as {\"route\": {\"id\": \"diverge\"}}\n}\n";

/// `good` with a route rule that binds an undefined value: the interpreter fails its body, the
/// RVM (regorus 0.14.1) does not, so the two decide the test's input differently.
fn diverging(good: &str) -> String {
    let out = good.replace(
        "route_allowed if {\n\tname := input.route.rule",
        "route_allowed if {\n\tinput.route.id == \"diverge\"\n\tx := input.missing\n}\n\nroute_allowed if {\n\tname := input.route.rule",
    );
    assert_ne!(out, good, "mutation must apply");
    out
}

#[tokio::test]
async fn a_policy_without_tests_or_whose_evaluators_disagree_does_not_start() {
    let pol = tempfile::tempdir().unwrap();
    copy_policies(pol.path());
    std::fs::remove_file(pol.path().join("authz_test.rego")).unwrap();
    std::fs::remove_file(pol.path().join("responses_test.rego")).unwrap();
    let yaml = format!(
        "listen: 127.0.0.1:0\nlog: {{level: error}}\npolicy: {{dir: {}}}\n",
        pol.path().display()
    );
    let e = start_error(&yaml).await;
    assert!(e.contains("no test_* rule"), "{e}");

    copy_policies(pol.path());
    let authz = pol.path().join("authz.rego");
    let good = std::fs::read_to_string(&authz).unwrap();
    std::fs::write(&authz, diverging(&good)).unwrap();
    std::fs::write(pol.path().join("diverge_test.rego"), DIVERGE_TEST).unwrap();
    let e = start_error(&yaml).await;
    assert!(e.contains("production evaluator"), "{e}");
}

/// Writes `contents` to `path` whole, as a deployment swaps a file in (a temporary file renamed
/// over it): the watcher never reads a half-written policy.
fn put(path: &Path, contents: impl AsRef<[u8]>) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn last_error(stats: &iamgate::policy::reload::ReloadStats) -> String {
    stats.last_error.lock().unwrap().clone().unwrap_or_default()
}

async fn wait_for(cond: impl FnMut() -> bool, what: &str) {
    wait_until(Instant::now() + Duration::from_secs(5), what, cond).await;
}

fn custom(rego: &str) -> Snapshot {
    let source =
        PolicySource::from_files(Path::new("<test>"), vec![("p.rego".into(), rego.into())]);
    Snapshot::compile(source).unwrap()
}

#[tokio::test]
async fn erroring_long_running_and_malformed_policies_deny() {
    iamgate::policy::engine::set_decision_timeout(Duration::from_millis(50));
    let input = deploy_input("maintainer");

    // Evaluation errors (conflicting values of one complete rule, a failing builtin, a division
    // by zero) never allow, whatever the rule that errored would have said.
    for body in [
        "decision := {\"allow\": true} if input.route.id\ndecision := {\"allow\": false} if input.route.id",
        "decision := {\"allow\": true, \"reason\": \"x\"} if to_number(\"not a number\") > 0",
        "decision := {\"allow\": 1 / 0 == 1}",
        "default decision := {\"allow\": false}\ndecision := {\"allow\": true} if { x := {\"a\": 1}; x.b.c.d == 1 }",
    ] {
        let d = custom(&format!("package iamgate.authz\nimport rego.v1\n{body}\n")).decide(&input);
        assert!(!d.allow, "{body}");
        assert!(
            matches!(&*d.reason, "policy_error" | "permission_denied"),
            "{body}: {}",
            d.reason
        );
    }

    // A decision that would allow, after far more work than the time limit allows.
    let slow = custom(
        "package iamgate.authz\nimport rego.v1\ndecision := {\"allow\": true} if { count([1 | some x in numbers.range(1, 5000); some y in numbers.range(1, 5000); x != y]) > 0 }\n",
    );
    let started = Instant::now();
    let d = slow.decide(&input);
    assert!(!d.allow, "timeout must deny");
    assert_eq!(&*d.reason, "policy_timeout");
    assert!(started.elapsed() < Duration::from_secs(5));

    // Not a proper decision object.
    for body in [
        "decision := true",
        "decision := {\"allow\": \"yes\"}",
        "decision := {\"allow\": 1}",
    ] {
        let d = custom(&format!("package iamgate.authz\nimport rego.v1\n{body}\n")).decide(&input);
        assert!(!d.allow, "{body}");
    }

    // No decision rule at all: refused when loading, so it can never serve.
    let source = PolicySource::from_files(
        Path::new("<test>"),
        vec![(
            "p.rego".into(),
            "package iamgate.authz\nimport rego.v1\nother := 1\n".into(),
        )],
    );
    assert!(Snapshot::compile(source).is_err());
}

/// `roles.json` of the shipped policy, changed by `edit`.
fn edited_roles(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("roles.json");
    let mut data: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut data);
    std::fs::write(&path, serde_json::to_vec_pretty(&data).unwrap()).unwrap();
}

/// Removes `permission` from the data's list and from every role.
fn without_permission(data: &mut serde_json::Value, permission: &str) {
    let drop = |list: &mut serde_json::Value| {
        list.as_array_mut().unwrap().retain(|p| p != permission);
    };
    drop(&mut data["permissions"]);
    for role in data["roles"].as_object_mut().unwrap().values_mut() {
        drop(&mut role["permissions"]);
    }
}

#[tokio::test]
async fn policy_data_naming_unknown_permissions_is_refused_at_start_reload_and_test() {
    let pol = tempfile::tempdir().unwrap();
    let yaml = reload_yaml(pol.path());
    let policy_test = |routes: Option<&Path>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_iamgate"));
        cmd.args(["policy", "test"]).arg(pol.path());
        if let Some(r) = routes {
            cmd.arg("--routes").arg(r);
        }
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };

    // A role naming a misspelt permission (it would grant nothing, silently).
    copy_policies(pol.path());
    edited_roles(pol.path(), |d| {
        d["roles"]["guest"]["permissions"]
            .as_array_mut()
            .unwrap()
            .push("console.project.veiw".into());
        d["roles"]["reporter"]["rank"] = "high".into();
        d["roles"]["developer"]["levels"] = serde_json::json!(["tenant"]);
    });
    let e = start_error(&yaml).await;
    for part in [
        "policy data is inconsistent",
        "roles.guest.permissions names `console.project.veiw`, which is not in data.permissions",
        "roles.reporter.rank: must be a whole number",
        "roles.developer.levels: `tenant` is not a level",
    ] {
        assert!(e.contains(part), "{part} missing from: {e}");
    }
    let (ok, out) = policy_test(None);
    assert!(!ok && out.contains("console.project.veiw"), "{out}");

    // A permission the route table names, gone from the policy (it would deny everyone).
    copy_policies(pol.path());
    edited_roles(pol.path(), |d| {
        without_permission(d, "console.company.cluster.view")
    });
    let e = start_error(&yaml).await;
    assert!(
        e.contains(
            "route C1 names `console.company.cluster.view`, which is not in data.permissions"
        ),
        "{e}"
    );
    let (ok, out) = policy_test(None);
    assert!(!ok && out.contains("route C1 names"), "{out}");
    // `policy test --routes` checks the table the deployment will serve.
    let routes = pol.path().join("routes.yaml");
    std::fs::write(
        &routes,
        "routes:\n  - {id: mine, method: GET, path: \"/x/{companyId}\", permission: console.company.view, company: \"path:companyId\"}\n",
    )
    .unwrap();
    let (ok, out) = policy_test(Some(&routes));
    assert!(ok, "{out}");
    std::fs::remove_file(&routes).unwrap();

    // At reload: a running gateway refuses the same changes and keeps deciding.
    copy_policies(pol.path());
    let gw = gateway().yaml(&yaml).start().await;
    let engine = gw.running().policy.clone();
    let stats = gw.running().policy_stats.clone();
    let original = engine.revision();
    edited_roles(pol.path(), |d| {
        without_permission(d, "console.company.providers.view")
    });
    wait_for(|| stats.rejected.get() >= 1, "route permission gone").await;
    assert!(
        last_error(&stats).contains("route C2 names `console.company.providers.view`"),
        "{}",
        last_error(&stats)
    );
    copy_policies(pol.path());
    edited_roles(pol.path(), |d| {
        d["root_permissions"]
            .as_array_mut()
            .unwrap()
            .push("console.root.everything".into());
    });
    wait_for(|| stats.rejected.get() >= 2, "unknown root permission").await;
    assert!(
        last_error(&stats).contains("root_permissions names `console.root.everything`"),
        "{}",
        last_error(&stats)
    );
    assert_eq!(engine.revision(), original);
    assert!(engine.decide(&deploy_input("maintainer"), 1).allow);
    gw.stop().await;
}

/// Lays `files` out the way the kubelet mounts a ConfigMap: the files in a timestamped hidden
/// folder, `..data` a symlink to it, and each name a symlink through `..data`. Called again, it
/// swaps `..data` atomically to a new folder and removes the old one, as the kubelet does.
fn kubelet_mount(dir: &Path, generation: u32, files: &[(String, String)]) {
    use std::os::unix::fs::symlink;
    let real = format!("..2026_12_01_00_00_0{generation}.000000001");
    std::fs::create_dir_all(dir.join(&real)).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(&real).join(name), text).unwrap();
    }
    let old = std::fs::read_link(dir.join("..data")).ok();
    symlink(&real, dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    for (name, _) in files {
        if std::fs::symlink_metadata(dir.join(name)).is_err() {
            symlink(format!("..data/{name}"), dir.join(name)).unwrap();
        }
    }
    if let Some(old) = old {
        std::fs::remove_dir_all(dir.join(old)).unwrap();
    }
}

#[tokio::test]
async fn a_kubelet_style_configmap_swap_goes_live_and_a_failing_one_does_not() {
    let shipped: Vec<(String, String)> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"))
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().unwrap().is_file())
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read_to_string(e.path()).unwrap(),
                )
            })
            .collect();
    let with_authz = |f: &dyn Fn(&str) -> String| -> Vec<(String, String)> {
        shipped
            .iter()
            .map(|(n, t)| (n.clone(), if n == "authz.rego" { f(t) } else { t.clone() }))
            .collect()
    };
    let pol = tempfile::tempdir().unwrap();
    kubelet_mount(pol.path(), 1, &shipped);
    let yaml = reload_yaml(pol.path());
    let gw = gateway().yaml(&yaml).start().await;
    let engine = gw.running().policy.clone();
    let stats = gw.running().policy_stats.clone();
    let original = engine.revision();
    assert!(engine.decide(&deploy_input("maintainer"), 1).allow);

    // A new revision (one more comment) swapped in goes live.
    kubelet_mount(
        pol.path(),
        2,
        &with_authz(&|t| format!("{t}\n# revision two\n")),
    );
    wait_for(|| stats.applied.get() >= 1, "swapped policy applied").await;
    let second = engine.revision();
    assert_ne!(second, original);
    // One whose tests fail is refused: the running policy stays.
    let failing = |t: &str| {
        t.replace(
            "\t\t\"company\": \"console.company.project.environment.\",\n",
            "",
        )
    };
    assert_ne!(
        failing(&shipped.iter().find(|(n, _)| n == "authz.rego").unwrap().1),
        shipped.iter().find(|(n, _)| n == "authz.rego").unwrap().1,
        "mutation must apply"
    );
    kubelet_mount(pol.path(), 3, &with_authz(&failing));
    wait_for(|| stats.rejected.get() >= 1, "failing swap rejected").await;
    assert_eq!(engine.revision(), second);
    assert!(engine.decide(&deploy_input("maintainer"), 2).allow);
}
