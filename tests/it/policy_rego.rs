//! The shipped policy's own Rego tests (`policies/*_test.rego`), run through the same runner as
//! `iamgate policy test`, so `cargo test` fails when they do.

use iamgate::policy::{DecisionInput, PolicySource, Snapshot, testing};
use std::path::Path;

#[test]
fn shipped_rego_tests_pass() {
    let source =
        PolicySource::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap();
    let report = testing::run(&source).unwrap();
    for f in &report.failed {
        eprintln!("FAIL {}: {}", f.name, f.reason);
    }
    assert!(report.ok(), "{}", report.summary());
    assert!(report.passed.len() >= 20, "{}", report.summary());
}

fn source(files: &[(&str, &str)]) -> PolicySource {
    PolicySource::from_files(
        Path::new("<test>"),
        files
            .iter()
            .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
            .collect(),
    )
}

const USES_TABLE: &str = r#"package iamgate.authz
import rego.v1
default decision := {"allow": false, "reason": "permission_denied"}
decision := {"allow": true, "reason": "granted"} if {
    data.iamgate.tables.doubled[input.route.permission] == 2 * count(data.items)
}
"#;

#[test]
fn the_tables_package_is_evaluated_once_and_decisions_read_it_as_data() {
    // "input" inside a comment or a string does not count as reading the input.
    let tables = r#"package iamgate.tables
import rego.v1
# Not about the "input" document: "input" only appears in this comment and the string below.
label := "input"
doubled[k] := 2 * count(data.items) if some k in data.items
"#;
    let s = Snapshot::compile(source(&[
        ("authz.rego", USES_TABLE),
        ("tables.rego", tables),
        ("items.json", r#"{"items": ["a", "b", "c"]}"#),
    ]))
    .unwrap();
    assert!(s.uses_rvm());
    let mut input = DecisionInput::default();
    input.route.permission = Some("b".into());
    let on_rvm = s.decide(&input);
    assert!(on_rvm.allow, "{on_rvm:?}");
    assert!(s.decide_interpreted(&input).allow);
    input.route.permission = Some("z".into());
    assert!(!s.decide(&input).allow);
    assert!(!s.decide_interpreted(&input).allow);
}

#[test]
fn a_tables_package_that_reads_input_is_refused() {
    let tables =
        "package iamgate.tables\nimport rego.v1\ndoubled[k] := 2 if k := input.route.permission\n";
    let err = Snapshot::compile(source(&[
        ("authz.rego", USES_TABLE),
        ("tables.rego", tables),
        ("items.json", r#"{"items": []}"#),
    ]))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("tables.rego reads input"),
        "unexpected error: {err}"
    );
}

#[test]
fn a_policy_without_a_tables_package_compiles_as_before() {
    let authz = "package iamgate.authz\nimport rego.v1\ndecision := {\"allow\": true, \"reason\": \"granted\"} if input.route.permission == \"x\"\n";
    let s = Snapshot::compile(source(&[("authz.rego", authz)])).unwrap();
    let mut input = DecisionInput::default();
    input.route.permission = Some("x".into());
    assert!(s.decide(&input).allow);
}
