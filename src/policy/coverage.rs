//! Which lines of a policy its tests evaluate: every `test_*` rule is run on regorus' interpreter
//! with coverage on, over the policy as written (the tables package included, evaluated as rules
//! rather than as precomputed data, so its lines count too). Used by `iamgate policy test
//! --coverage`; nothing on the request path.
//!
//! A line the tests cannot reach on purpose is exempted where it stands, with its reason: a
//! comment `# coverage-exempt: <reason>` on the line itself or on the line above. Exempted lines
//! are listed with their reasons and count as neither covered nor missed.

use super::PolicyError;
use super::source::{PolicySource, is_test_file, package_of};

/// The comment that exempts a line.
pub const EXEMPT_MARKER: &str = "# coverage-exempt:";

/// Coverage of one policy file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileCoverage {
    /// Its path in the policy folder.
    pub path: String,
    /// Lines evaluated by some test.
    pub covered: Vec<u32>,
    /// Lines of rule bodies (and values) no test evaluated.
    pub missed: Vec<u32>,
    /// Lines exempted, with their reasons.
    pub exempt: Vec<(u32, String)>,
}

impl FileCoverage {
    /// Covered lines as a share of the lines that count, in percent (100 when none count).
    pub fn percent(&self) -> f64 {
        percent(self.covered.len(), self.missed.len())
    }
}

/// Coverage of a policy folder.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Coverage {
    /// Every file that holds rules (test files left out), by path.
    pub files: Vec<FileCoverage>,
}

fn percent(covered: usize, missed: usize) -> f64 {
    let total = covered + missed;
    if total == 0 {
        100.0
    } else {
        // Line counts are far below 2^52: the conversion is exact.
        #[allow(clippy::cast_precision_loss)]
        let p = covered as f64 * 100.0 / total as f64;
        p
    }
}

impl Coverage {
    /// All files together, in percent.
    pub fn percent(&self) -> f64 {
        let covered = self.files.iter().map(|f| f.covered.len()).sum();
        let missed = self.files.iter().map(|f| f.missed.len()).sum();
        percent(covered, missed)
    }

    /// The report `iamgate policy test --coverage` prints: per file its share and every missed
    /// line as `file:line  code`, then the exemptions with their reasons, then the total.
    pub fn render(&self, source: &PolicySource) -> String {
        let mut out = String::new();
        for f in &self.files {
            out.push_str(&format!(
                "{:6.1}%  {}  ({} of {} lines)\n",
                f.percent(),
                f.path,
                f.covered.len(),
                f.covered.len() + f.missed.len()
            ));
        }
        let text_of = |path: &str| {
            source
                .modules
                .iter()
                .find(|(n, _)| n == path)
                .map(|(_, t)| t.as_str())
                .unwrap_or("")
        };
        for f in &self.files {
            let lines: Vec<&str> = text_of(&f.path).lines().collect();
            let code = |n: u32| {
                lines
                    .get(usize::try_from(n).unwrap_or(usize::MAX).wrapping_sub(1))
                    .map_or("", |l| l.trim())
            };
            for &n in &f.missed {
                out.push_str(&format!("not covered: {}:{n}  {}\n", f.path, code(n)));
            }
            for (n, reason) in &f.exempt {
                out.push_str(&format!("exempt:      {}:{n}  {reason}\n", f.path));
            }
        }
        out.push_str(&format!("coverage: {:.1}%\n", self.percent()));
        out
    }
}

/// The exemption reason for line `n` (1-based) of `text`, if the line or the one above carries
/// the marker.
fn exemption(lines: &[&str], n: u32) -> Option<String> {
    let at = usize::try_from(n).ok()?.checked_sub(1)?;
    let reason = |line: &str| {
        line.find(EXEMPT_MARKER)
            .map(|i| line[i + EXEMPT_MARKER.len()..].trim().to_owned())
    };
    lines.get(at).and_then(|l| reason(l)).or_else(|| {
        at.checked_sub(1).and_then(|p| lines.get(p)).and_then(|l| {
            // Only a comment line above exempts the next one.
            l.trim_start().starts_with('#').then(|| reason(l)).flatten()
        })
    })
}

/// `text` with its `import data.…` aliases written out in full (`authz.decision` becomes
/// `data.iamgate.authz.decision`), the import lines left blank so every line keeps its number.
/// regorus resolves an alias by evaluating the whole package it names, which would mark every
/// rule of that package as reached; a full reference evaluates only the rule it names.
fn dealias(text: &str) -> String {
    let mut aliases: Vec<(String, String)> = Vec::new();
    let mut lines: Vec<String> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix("import data.") {
            let mut words = rest.split_whitespace();
            let path = format!("data.{}", words.next().unwrap_or(""));
            let alias = match (words.next(), words.next()) {
                (Some("as"), Some(a)) => a.to_owned(),
                _ => path.rsplit('.').next().unwrap_or("").to_owned(),
            };
            if !alias.is_empty() {
                aliases.push((alias, path));
                lines.push(String::new());
                continue;
            }
        }
        lines.push(line.to_owned());
    }
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.';
    let mut out = String::with_capacity(text.len() + 256);
    for line in lines {
        let mut l = line;
        for (alias, path) in &aliases {
            let needle = format!("{alias}.");
            let mut done = String::with_capacity(l.len());
            let mut rest = l.as_str();
            while let Some(at) = rest.find(&needle) {
                let before = rest[..at].chars().next_back();
                done.push_str(&rest[..at]);
                if before.is_some_and(word) {
                    done.push_str(&needle);
                } else {
                    done.push_str(path);
                    done.push('.');
                }
                rest = &rest[at + needle.len()..];
            }
            done.push_str(rest);
            l = done;
        }
        out.push_str(&l);
        out.push('\n');
    }
    out
}

/// Runs every test of `source` with coverage on and reports, per non-test file, the lines the
/// tests evaluated and those they did not. A test that fails still counts for what it reached;
/// whether tests pass is the test run's business.
pub fn measure(source: &PolicySource) -> Result<Coverage, PolicyError> {
    use super::engine::{TABLES_PACKAGE, materialize_tables, tabled_engine, time_limit};
    // The tests run as the gate runs them: the tables package as the data it evaluates to. Its
    // own lines are covered by that one evaluation, as the gateway makes it.
    let tables = materialize_tables(source)?;
    let mut direct = source.clone();
    for (_, text) in &mut direct.modules {
        *text = dealias(text);
    }
    let mut engine = tabled_engine(&direct, true, tables.as_ref())?;
    engine.set_execution_timer_config(time_limit(super::testing::TEST_TIME_LIMIT, 1));
    engine.set_enable_coverage(true);
    for (package, rule) in source.tests() {
        // Outcomes are the test run's; coverage wants only what was evaluated.
        let _ = engine.eval_rule(format!("data.{package}.{rule}"));
    }
    let fail = |e: String| PolicyError::Tests(format!("coverage: {e}"));
    let mut report = engine
        .get_coverage_report()
        .map_err(|e| fail(e.to_string()))?;
    if tables.is_some() {
        let mut t = direct.engine(false)?;
        t.set_execution_timer_config(time_limit(super::testing::TEST_TIME_LIMIT, 1));
        t.set_enable_coverage(true);
        t.eval_query(format!("data.{TABLES_PACKAGE}"), false)
            .map_err(|e| fail(e.to_string()))?;
        let in_tables = |path: &str| {
            source
                .modules
                .iter()
                .any(|(n, text)| n == path && package_of(text) == Some(TABLES_PACKAGE))
        };
        report.files.extend(
            t.get_coverage_report()
                .map_err(|e| fail(e.to_string()))?
                .files
                .into_iter()
                .filter(|f| in_tables(&f.path)),
        );
    }
    let mut files = Vec::new();
    for file in report.files {
        if is_test_file(&file.path) {
            continue;
        }
        let lines: Vec<&str> = file.code.lines().collect();
        let mut f = FileCoverage {
            path: file.path.clone(),
            ..FileCoverage::default()
        };
        for n in file.covered {
            f.covered.push(n);
        }
        for n in file.not_covered {
            match exemption(&lines, n) {
                Some(reason) => f.exempt.push((n, reason)),
                None => f.missed.push(n),
            }
        }
        files.push(f);
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Coverage { files })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(files: &[(&str, &str)]) -> PolicySource {
        PolicySource {
            dir: std::path::PathBuf::from("mem"),
            modules: files
                .iter()
                .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
                .collect(),
            data: Vec::new(),
            revision: "test".to_owned(),
        }
    }

    const POLICY: &str = "package p\n\nimport rego.v1\n\nallow if {\n\tinput.x == 1\n}\n\ndeny if {\n\tinput.y == 2\n}\n\nodd if {\n\t# coverage-exempt: kept for old clients\n\tinput.z == 3\n}\n";

    #[test]
    fn a_rule_no_test_reaches_is_reported_by_line_and_an_exempt_one_with_its_reason() {
        let s = source(&[
            ("p.rego", POLICY),
            (
                "p_test.rego",
                "package p_test\n\nimport rego.v1\n\ntest_allow if {\n\tdata.p.allow with input as {\"x\": 1}\n}\n",
            ),
        ]);
        let c = measure(&s).unwrap();
        assert_eq!(c.files.len(), 1, "{c:?}");
        let f = &c.files[0];
        assert_eq!(f.path, "p.rego");
        assert!(f.covered.contains(&6), "{f:?}");
        assert!(f.missed.contains(&10), "the untested deny body: {f:?}");
        assert!(!f.missed.contains(&15), "{f:?}");
        assert_eq!(
            f.exempt,
            vec![(15, "kept for old clients".to_owned())],
            "{f:?}"
        );
        let text = c.render(&s);
        assert!(
            text.contains("not covered: p.rego:10  input.y == 2"),
            "{text}"
        );
        assert!(
            text.contains("exempt:      p.rego:15  kept for old clients"),
            "{text}"
        );
        assert!(c.percent() < 100.0);
    }

    #[test]
    fn an_imported_package_counts_only_the_rules_the_tests_reach() {
        let s = source(&[
            ("p.rego", POLICY),
            (
                "p_test.rego",
                "package p_test\n\nimport rego.v1\nimport data.p\nimport data.p as other\n\ntest_allow if {\n\tp.allow with input as {\"x\": 1}\n\tnot other.deny with input as {\"x\": 1}\n}\n",
            ),
        ]);
        let c = measure(&s).unwrap();
        let f = &c.files[0];
        assert!(f.covered.contains(&6), "{f:?}");
        assert!(
            f.covered.contains(&10),
            "deny is reached through its alias: {f:?}"
        );
        assert!(f.missed.is_empty(), "{f:?}");
        assert_eq!(
            dealias("import data.a.b\nimport data.c as d\nx := b.y + d.z + nob.q\n"),
            "\n\nx := data.a.b.y + data.c.z + nob.q\n"
        );
    }

    #[test]
    fn full_coverage_is_one_hundred_percent() {
        let s = source(&[
            (
                "q.rego",
                "package q\n\nimport rego.v1\n\nallow if {\n\tinput.x == 1\n}\n",
            ),
            (
                "q_test.rego",
                "package q_test\n\nimport rego.v1\n\ntest_allow if {\n\tdata.q.allow with input as {\"x\": 1}\n}\n",
            ),
        ]);
        let c = measure(&s).unwrap();
        assert!((c.percent() - 100.0).abs() < f64::EPSILON, "{c:?}");
    }
}
