//! The shipped policy's own Rego tests (`policies/*_test.rego`), run through the same runner as
//! `iamgate policy test`, so `cargo test` fails when they do.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use iamgate::policy::{PolicySource, testing};
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
