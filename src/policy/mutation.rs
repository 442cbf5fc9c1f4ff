//! Mutation check of a policy's tests, for `iamgate policy mutants` and CI: every line of a rule
//! body in the policy's modules (test files excepted) is deleted in turn, and the gate a running
//! gateway applies ([`Snapshot::compile_tested`]: compile, run the tests, check the evaluators
//! agree) must refuse the result. A deletion the gate accepts is a hole in the tests, unless a
//! file of the policy lists it as equivalent with the reason it cannot change a decision.
//!
//! The list (`mutants-equivalent.txt` beside the policy) has one line per entry,
//! `<file> | <the deleted line, trimmed> | <why it is equivalent>`; `#` starts a comment. An
//! entry covers every line of that file with exactly that text.

use super::engine::Snapshot;
use super::source::{PolicySource, is_test_file};
use std::collections::HashMap;

/// The file of equivalent mutants, in the policy folder.
pub const EQUIVALENT_FILE: &str = "mutants-equivalent.txt";

/// One deleted line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mutant {
    /// The module's file name.
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    /// The deleted line, trimmed.
    pub text: String,
}

/// What the check found.
#[derive(Debug, Default)]
pub struct MutationReport {
    /// Deletions the gate refused.
    pub caught: Vec<Mutant>,
    /// Deletions the gate accepted that the list explains.
    pub equivalent: Vec<(Mutant, String)>,
    /// Deletions the gate accepted that nothing explains: holes in the tests.
    pub survived: Vec<Mutant>,
    /// List entries that matched no surviving deletion (stale, or the tests now catch them).
    pub unused: Vec<String>,
}

impl MutationReport {
    /// Whether every deletion was caught or explained.
    pub fn ok(&self) -> bool {
        self.survived.is_empty()
    }
}

/// Whether `line` sits in a rule body: indented, or a one-line rule (`head if expr`), and not a
/// comment, a blank line or a closing bracket alone.
fn is_body_line(line: &str) -> bool {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') || matches!(t, "}" | "]" | ")" | "})" | "}]") {
        return false;
    }
    let indented = line.starts_with([' ', '\t']);
    let one_line_rule = !indented && t.contains(" if ") && !t.ends_with('{');
    indented || one_line_rule
}

/// Every body line of `source`'s policy modules.
pub fn mutants(source: &PolicySource) -> Vec<Mutant> {
    let mut out = Vec::new();
    for (file, text) in &source.modules {
        if is_test_file(file) {
            continue;
        }
        for (i, line) in text.lines().enumerate() {
            if is_body_line(line) {
                out.push(Mutant {
                    file: file.clone(),
                    line: i + 1,
                    text: line.trim().to_owned(),
                });
            }
        }
    }
    out
}

/// `source` with the mutant's line deleted.
fn apply(source: &PolicySource, m: &Mutant) -> PolicySource {
    let mut files: Vec<(String, String)> =
        source.modules.iter().chain(&source.data).cloned().collect();
    for (name, text) in &mut files {
        if *name == m.file {
            *text = text
                .lines()
                .enumerate()
                .filter(|(i, _)| i + 1 != m.line)
                .map(|(_, l)| l)
                .collect::<Vec<_>>()
                .join("\n");
        }
    }
    PolicySource::from_files(&source.dir, files)
}

/// Parses the list of equivalent mutants: `(file, line text) -> reason`.
pub fn parse_equivalent(text: &str) -> Result<HashMap<(String, String), String>, String> {
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let parts: Vec<&str> = t.splitn(3, " | ").collect();
        match parts.as_slice() {
            [file, code, reason] if !reason.trim().is_empty() => {
                out.insert(
                    ((*file).trim().to_owned(), (*code).trim().to_owned()),
                    (*reason).trim().to_owned(),
                );
            }
            _ => {
                return Err(format!(
                    "{EQUIVALENT_FILE}:{}: expected `<file> | <line> | <reason>`",
                    i + 1
                ));
            }
        }
    }
    Ok(out)
}

/// Deletes every body line of `source` in turn (on `threads` threads) and judges each with the
/// gate; `equivalent` is the list's text, if there is one.
pub fn check(
    source: &PolicySource,
    equivalent: Option<&str>,
    threads: usize,
) -> Result<MutationReport, String> {
    let listed = parse_equivalent(equivalent.unwrap_or(""))?;
    let all = mutants(source);
    let threads = threads.max(1);
    let accepted: Vec<Vec<(Mutant, bool)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let mine: Vec<Mutant> = all.iter().skip(t).step_by(threads).cloned().collect();
                scope.spawn(move || {
                    mine.into_iter()
                        .map(|m| {
                            let refused = Snapshot::compile_tested(apply(source, &m)).is_err();
                            (m, refused)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let mut report = MutationReport::default();
    let mut used = std::collections::HashSet::new();
    let mut results: Vec<(Mutant, bool)> = accepted.into_iter().flatten().collect();
    results.sort_by(|a, b| (&a.0.file, a.0.line).cmp(&(&b.0.file, b.0.line)));
    for (m, refused) in results {
        if refused {
            report.caught.push(m);
            continue;
        }
        let key = (m.file.clone(), m.text.clone());
        match listed.get(&key) {
            Some(reason) => {
                used.insert(key);
                report.equivalent.push((m, reason.clone()));
            }
            None => report.survived.push(m),
        }
    }
    report.unused = listed
        .keys()
        .filter(|k| !used.contains(*k))
        .map(|(f, l)| format!("{f} | {l}"))
        .collect();
    report.unused.sort();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = "package iamgate.authz\n\nimport rego.v1\n\ndefault decision := {\"allow\": false, \"reason\": \"permission_denied\"}\n\ndecision := {\"allow\": true, \"reason\": \"granted\"} if {\n\tinput.user.id == \"admin\"\n\tinput.route.id == \"r\"\n}\n";
    const TESTS: &str = "package iamgate.authz_test\n\nimport rego.v1\n\nimport data.iamgate.authz\n\ntest_admin if {\n\tauthz.decision.allow with input as {\"user\": {\"id\": \"admin\"}, \"route\": {\"id\": \"r\"}}\n}\n";

    fn source() -> PolicySource {
        PolicySource::from_files(
            std::path::Path::new("."),
            vec![
                ("authz.rego".into(), POLICY.into()),
                ("authz_test.rego".into(), TESTS.into()),
            ],
        )
    }

    #[test]
    fn a_deletion_the_tests_miss_survives_unless_listed() {
        crate::policy::engine::set_decision_timeout(std::time::Duration::from_secs(2));
        let lines: Vec<String> = mutants(&source()).into_iter().map(|m| m.text).collect();
        assert_eq!(
            lines,
            ["input.user.id == \"admin\"", "input.route.id == \"r\""]
        );
        // Deleting either condition still allows the admin: no test denies anyone.
        let r = check(&source(), None, 2).unwrap();
        assert_eq!(r.survived.len(), 2, "{r:?}");
        assert!(!r.ok());
        let listed = "authz.rego | input.route.id == \"r\" | every caller of this test policy is on route r\nauthz.rego | gone | stale";
        let r = check(&source(), Some(listed), 1).unwrap();
        assert_eq!(r.survived.len(), 1);
        assert_eq!(r.equivalent.len(), 1);
        assert_eq!(r.unused, ["authz.rego | gone"]);
        assert!(parse_equivalent("authz.rego | no reason").is_err());
    }
}
