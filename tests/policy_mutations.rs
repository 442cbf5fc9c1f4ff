//! Mutation check of the policy tests: deleting any one inheritance rule from
//! `policies/authz.rego` must make at least one Rego test fail. Otherwise the tests would not
//! protect the rule a security team might break by accident.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use iamgate::policy::{PolicySource, testing};
use std::path::Path;

/// (rule, a string found only in the block that implements it)
const RULES: &[(&str, &str)] = &[
    (
        "company -> project",
        "company_level contains concat(\"\", [\"console.company.project.\", substring(perm, 16, -1)]) if project_check",
    ),
    (
        "project -> environment",
        "project_level contains concat(\"\", [\"console.project.environment.\"",
    ),
    (
        "company -> environment",
        "company_level contains concat(\"\", [\"console.company.project.environment.\"",
    ),
    ("group bindings", "some g in b.groups"),
    (
        "console-level bindings",
        "console_level contains p if some p in company_level",
    ),
    (
        "company bindings",
        "wanted[concat(\"/\", [\"company\", input.resource.companyId])] := company_level",
    ),
    (
        "direct project grants",
        "project_level contains perm if project_check",
    ),
    (
        "environment grants",
        "environment_level contains perm if environment_check",
    ),
    (
        "root permissions of root accounts",
        "p in input.user.permissions\n}",
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

#[test]
fn deleting_any_inheritance_rule_fails_a_test() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let original = PolicySource::read(&dir).unwrap();
    assert!(testing::run(&original).unwrap().ok(), "baseline must pass");
    let authz = std::fs::read_to_string(dir.join("authz.rego")).unwrap();
    let mut survivors = Vec::new();
    for (rule, marker) in RULES {
        // Blocks are separated by blank lines; drop the one block holding the marker.
        let blocks: Vec<&str> = authz.split("\n\n").collect();
        let hits: Vec<usize> = (0..blocks.len())
            .filter(|i| blocks[*i].contains(marker))
            .collect();
        assert_eq!(
            hits.len(),
            1,
            "{rule}: marker must identify exactly one block"
        );
        let mutated: Vec<&str> = blocks
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != hits[0])
            .map(|(_, b)| *b)
            .collect();
        let mut files: Vec<(String, String)> = original.modules.clone();
        for (name, text) in &mut files {
            if name == "authz.rego" {
                *text = mutated.join("\n\n");
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
