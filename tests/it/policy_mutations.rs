//! Mutation check of the policy tests: deleting any one inheritance rule from
//! `policies/authz.rego` must make at least one Rego test fail. Otherwise the tests would not
//! protect the rule a security team might break by accident.

use iamgate::policy::{PolicySource, testing};
use std::path::Path;

/// (rule, a string found only in the block or the line that implements it). A marker that ends
/// with a newline names a line (one entry of the inheritance table); otherwise it names the block
/// (text between blank lines) that holds it.
const RULES: &[(&str, &str)] = &[
    (
        "company -> project",
        "\"company\": \"console.company.project.\",\n",
    ),
    (
        "project -> environment",
        "\"project\": \"console.project.environment.\",\n",
    ),
    (
        "company -> environment",
        "\"company\": \"console.company.project.environment.\",\n",
    ),
    (
        "company grants",
        "\"console.company.\": {\"company\": \"console.company.\"},\n",
    ),
    ("project grants", "\"project\": \"console.project.\",\n"),
    (
        "environment grants",
        "\"environment\": \"console.environment.\",\n",
    ),
    // The general form; the form before it repeats it for bindings naming the caller as a
    // subject (a fast path, not a rule of its own), so deleting that one changes nothing.
    (
        "roles of a binding",
        "p in role_grants[r][level]\n\tapplies(b)",
    ),
    (
        "permissions held directly by a binding",
        "p in held_grants(b.permissions, level)",
    ),
    ("group bindings", "some g in b.groups"),
    ("console-level bindings", "p in role_grants[r].company"),
    (
        "root permissions of root accounts",
        "holds_root(p) if p in input.user.permissions",
    ),
    (
        "root view reach",
        "root_candidates contains \"console.root.view\" if endswith(perm, \".view\")",
    ),
    (
        "no escalation by rank",
        "effective_rank(input.resource.companyId, g.resourceId, \"\") >= data.roles[g.role].rank",
    ),
];

/// `text` without the line or block that `marker` identifies (exactly one must hold it).
fn without(rule: &str, text: &str, marker: &str) -> String {
    let (separator, marker) = match marker.strip_suffix('\n') {
        Some(line) => ("\n", line),
        None => ("\n\n", marker),
    };
    let parts: Vec<&str> = text.split(separator).collect();
    let hits: Vec<usize> = (0..parts.len())
        .filter(|i| parts[*i].contains(marker))
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "{rule}: marker must identify exactly one place"
    );
    parts
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != hits[0])
        .map(|(_, p)| *p)
        .collect::<Vec<_>>()
        .join(separator)
}

#[test]
fn deleting_any_inheritance_rule_fails_a_test() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let original = PolicySource::read(&dir).unwrap();
    assert!(testing::run(&original).unwrap().ok(), "baseline must pass");
    let authz = std::fs::read_to_string(dir.join("authz.rego")).unwrap();
    let mut survivors = Vec::new();
    for (rule, marker) in RULES {
        let mutated = without(rule, &authz, marker);
        let mut files: Vec<(String, String)> = original.modules.clone();
        for (name, text) in &mut files {
            if name == "authz.rego" {
                text.clone_from(&mutated);
            }
        }
        files.extend(original.data.clone());
        let source = PolicySource::from_files(&dir, files);
        let report = testing::run(&source).unwrap();
        println!(
            "{rule}: {} (e.g. {:?})",
            report.summary(),
            report.failed.first().map(|f| &f.name)
        );
        if report.ok() {
            survivors.push(*rule);
        }
    }
    assert!(
        survivors.is_empty(),
        "mutations no test caught: {survivors:?}"
    );
}
