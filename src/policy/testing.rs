//! The Rego test runner regorus does not ship: every `test_*` rule of every package is evaluated
//! (with its `with` overrides, which regorus supports) and passes only when it is `true`.

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
    let mut engine = super::engine::tabled_engine(source, true, tables)?;
    // A test evaluates many decisions; give it far more than the per-decision limit, but still
    // a bound, so a runaway test cannot stall a reload forever.
    engine.set_execution_timer_config(super::engine::time_limit(TEST_TIME_LIMIT, 1));
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
    Ok(report)
}
