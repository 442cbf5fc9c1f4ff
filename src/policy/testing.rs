//! The Rego test runner regorus does not ship: every `test_*` rule of every package is evaluated
//! (with its `with` overrides, which regorus supports) and passes only when it is `true`. It is
//! the gate a policy passes before it decides anything: at start, at every hot reload, and in
//! `iamgate policy test`.
//!
//! The tests run on regorus' interpreter (the register VM has no `with`), while decisions run on
//! the VM. So that passing tests mean what production decides, [`run_collecting`] collects every
//! input the tests decided with, and the gate evaluates each on both evaluators and refuses a
//! policy they decide differently.

use super::PolicyError;
use super::source::PolicySource;

/// Time limit of one test rule.
pub const TEST_TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// One failed test.
#[derive(Debug, Clone)]
pub struct TestFailure {
    /// `data.<package>.<rule>`.
    pub name: String,
    /// `false`, `undefined` or the evaluation error.
    pub reason: String,
}

/// The outcome of a test run.
#[derive(Debug, Clone, Default)]
pub struct TestReport {
    /// Names of passed tests.
    pub passed: Vec<String>,
    /// Failed tests.
    pub failed: Vec<TestFailure>,
}

impl TestReport {
    /// Whether every test passed.
    pub fn ok(&self) -> bool {
        self.failed.is_empty()
    }

    /// `N passed, N failed`.
    pub fn summary(&self) -> String {
        format!("{} passed, {} failed", self.passed.len(), self.failed.len())
    }
}

/// Runs every test of `source`.
pub fn run(source: &PolicySource) -> Result<TestReport, PolicyError> {
    run_with(source, super::engine::materialize_tables(source)?.as_ref())
}

/// Runs every test of `source`, whose tables package evaluated to `tables`.
pub fn run_with(
    source: &PolicySource,
    tables: Option<&regorus::Value>,
) -> Result<TestReport, PolicyError> {
    run_collecting(source, tables).map(|(report, _)| report)
}

/// Runs every test of `source` once, and collects every input the tests evaluated
/// `data.iamgate.authz.decision` with (through `with input as ...` or otherwise), in order,
/// duplicates removed: the policy runs as written except that its `decision` rule is renamed
/// and wrapped by one that returns the same value and prints its input. The inputs are `None`
/// when no `decision` rule head can be found to wrap (the tests then run on the policy as is).
pub fn run_collecting(
    source: &PolicySource,
    tables: Option<&regorus::Value>,
) -> Result<(TestReport, Option<Vec<regorus::Value>>), PolicyError> {
    let wrapped = wrapped(source);
    let mut engine =
        super::engine::tabled_engine(wrapped.as_ref().unwrap_or(source), true, tables)?;
    // A test evaluates many decisions; give it far more than the per-decision limit, but still
    // a bound, so a runaway test cannot stall a reload forever.
    engine.set_execution_timer_config(super::engine::time_limit(TEST_TIME_LIMIT, 1));
    engine.set_gather_prints(wrapped.is_some());
    let mut report = TestReport::default();
    for (package, rule) in source.tests() {
        let name = format!("data.{package}.{rule}");
        match engine.eval_rule(name.clone()) {
            Ok(regorus::Value::Bool(true)) => report.passed.push(name),
            Ok(regorus::Value::Undefined) => report.failed.push(TestFailure {
                name,
                reason: "undefined (a condition did not hold)".to_owned(),
            }),
            Ok(other) => report.failed.push(TestFailure {
                name,
                reason: format!("evaluated to {other}"),
            }),
            Err(e) => report.failed.push(TestFailure {
                name,
                reason: format!("error: {e}"),
            }),
        }
    }
    if wrapped.is_none() {
        return Ok((report, None));
    }
    let prints = engine
        .take_prints()
        .map_err(|e| PolicyError::Tests(format!("collecting the tests' inputs: {e}")))?;
    let mut seen = std::collections::HashSet::new();
    let mut inputs = Vec::new();
    for p in prints {
        let Some(at) = p.find(MARKER) else { continue };
        let json = &p[at + MARKER.len()..];
        if seen.insert(json.to_owned())
            && let Ok(v) = regorus::Value::from_json_str(json)
        {
            inputs.push(v);
        }
    }
    Ok((report, Some(inputs)))
}

/// The rule the entrypoint is renamed to while the tests' inputs are collected.
const CAPTURED_RULE: &str = "__iamgate_decision";
/// What starts a collected input among the gathered prints.
const MARKER: &str = "__iamgate_input ";

/// `source` with its `decision` rule renamed and wrapped to print its input; `None` when
/// package iamgate.authz has no `decision` rule head.
fn wrapped(source: &PolicySource) -> Option<PolicySource> {
    let mut wrapped = source.clone();
    let mut renamed = 0usize;
    for (name, text) in &mut wrapped.modules {
        if super::source::is_test_file(name)
            || super::source::package_of(text) != Some("iamgate.authz")
        {
            continue;
        }
        let mut out = String::with_capacity(text.len() + 64);
        for line in text.split_inclusive('\n') {
            let (prefix, rest) = match line.strip_prefix("default ") {
                Some(rest) => ("default ", rest),
                None => ("", line),
            };
            let is_head = rest
                .strip_prefix("decision")
                .is_some_and(|after| after.starts_with([' ', ':', '=', '\t', '[']));
            if is_head {
                out.push_str(prefix);
                out.push_str(CAPTURED_RULE);
                out.push_str(&rest["decision".len()..]);
                renamed += 1;
            } else {
                out.push_str(line);
            }
        }
        *text = out;
    }
    if renamed == 0 {
        return None;
    }
    wrapped.modules.push((
        "__iamgate_capture.rego".to_owned(),
        format!(
            "package iamgate.authz\n\nimport rego.v1\n\ndecision := d if {{\n\td := {CAPTURED_RULE}\n\tprint(\"{}\", json.marshal(input))\n}}\n",
            MARKER.trim_end()
        ),
    ));
    Some(wrapped)
}
