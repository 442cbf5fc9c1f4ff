//! Compiled policy snapshots and decisions, with a decision cache.
//!
//! The cache key holds every dimension a permission-route decision depends on (policy revision,
//! directory version, principal, subject, kind, issuer, groups, root permissions, method, route,
//! resource, grants, target), as
//! values rather than a hash, so two different requests can never share an entry. Routes that
//! name a custom rule are never cached: such a rule may read anything in the input.

use super::data::PolicyData;
pub use super::data::{RoleInfo, RoleModel};
use super::input::{DecisionInput, GrantInput, ResourceInput, TargetInput};
use super::source::{PolicySource, is_test_file, package_of};
use super::{PolicyError, testing};
use crate::telemetry::metrics::ShadowLabels;
use arc_swap::{ArcSwap, ArcSwapOption};
use prometheus_client::metrics::counter::Counter;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// The rule the gateway evaluates for every request.
pub const ENTRYPOINT: &str = "data.iamgate.authz.decision";
/// The rule behind `--explain`.
pub const EXPLAIN: &str = "data.iamgate.authz.explain";
/// The package whose rules are evaluated once per policy revision (they may read only data) and
/// handed to decisions as data at the same path.
pub const TABLES_PACKAGE: &str = "iamgate.tables";

/// A decision. `reason` is a stable id (`granted`, `permission_denied`, `unknown_resource`,
/// `escalation`, `policy_error`, …) safe to return to clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Allowed?
    pub allow: bool,
    /// Reason id.
    pub reason: Arc<str>,
    /// Policy revision that decided.
    pub revision: Arc<str>,
}

/// Upper bound on VM instructions per decision, a deterministic backstop to the time limit.
const MAX_INSTRUCTIONS: usize = 50_000_000;
/// Time allowed for evaluating the tables package when a policy is loaded.
const TABLES_TIME_LIMIT: Duration = Duration::from_secs(10);
/// Idle VMs kept per snapshot.
const VM_POOL: usize = 64;

/// A compiled policy and where it came from.
///
/// Decisions run on regorus' register VM (RVM), about five times faster than its tree-walking
/// interpreter on the shipped policy; a policy the RVM compiler cannot handle falls back to the
/// interpreter. Idle VMs are pooled: each run clears the VM's rule cache and registers first, so
/// nothing of one request is visible to the next.
pub struct Snapshot {
    compiled: regorus::CompiledPolicy,
    program: Option<Arc<regorus::rvm::Program>>,
    data: regorus::Value,
    vms: Mutex<Vec<regorus::rvm::RegoVM>>,
    revision: Arc<str>,
    source: Arc<PolicySource>,
    /// The interpreter with every module and data file, for response rules (they use `with`,
    /// which the RVM lacks) and `explain`.
    interpreter: regorus::Engine,
    /// The checked role model: each role's rank and levels, and the permissions that exist.
    model: PolicyData,
    /// The role model of `model`, shared with the management handlers.
    roles: Arc<super::data::RoleModel>,
    /// How many `test_*` rules passed at its gate (0 when compiled without one).
    tests_passed: usize,
    /// The response rules over arrays that are filtered item by item, by rule name.
    item_filters: std::collections::HashMap<String, super::item_filter::ItemFilter>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("revision", &self.revision)
            .finish()
    }
}

impl Snapshot {
    /// Compiles `source` (without its test files) for the decision entrypoint.
    pub fn compile(source: PolicySource) -> Result<Self, PolicyError> {
        let model = PolicyData::of_source(&source)?;
        let tables = materialize_tables(&source)?;
        Self::compile_with(source, model, tables.as_ref())
    }

    /// Compiles `source` with its tables package already evaluated.
    fn compile_with(
        source: PolicySource,
        model: PolicyData,
        tables: Option<&regorus::Value>,
    ) -> Result<Self, PolicyError> {
        let mut engine = tabled_engine(&source, false, tables)?;
        let interpreter = engine.clone();
        let item_filters = super::item_filter::read(
            &interpreter
                .clone()
                .eval_rule(super::item_filter::ITEM_FILTERS.to_owned())
                .unwrap_or(regorus::Value::Undefined),
        )?;
        let data = engine.get_data();
        let roles = Arc::new(model.model.clone());
        let entry: regorus::Rc<str> = ENTRYPOINT.into();
        let compiled = engine
            .compile_with_entrypoint(&entry)
            .map_err(|e| PolicyError::Compile(e.to_string()))?;
        let program = match regorus::languages::rego::compiler::Compiler::compile_from_policy(
            &compiled,
            &[ENTRYPOINT],
        ) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(error = %e, "policy uses features the RVM does not compile; using the interpreter");
                None
            }
        };
        Ok(Self {
            compiled,
            program,
            data,
            vms: Mutex::new(Vec::new()),
            revision: Arc::from(source.revision.as_str()),
            source: Arc::new(source),
            interpreter,
            model,
            roles,
            tests_passed: 0,
            item_filters,
        })
    }

    /// Compiles and runs the policy's tests; `Err` when there are none, when any fails, when
    /// the policy data is inconsistent, or when the register VM decides any input the tests
    /// decided otherwise than the interpreter the tests ran on.
    pub fn compile_tested(source: PolicySource) -> Result<Self, PolicyError> {
        Self::gate(source).1
    }

    /// [`Snapshot::compile_tested`], also returning the tests' report when they ran (for
    /// `iamgate policy test`, which prints it).
    pub fn gate(source: PolicySource) -> (Option<testing::TestReport>, Result<Self, PolicyError>) {
        // The data is checked first: an inconsistent role model is named as such, not as the
        // test failures it causes.
        let model = match PolicyData::of_source(&source) {
            Ok(m) => m,
            Err(e) => return (None, Err(e)),
        };
        // The tables are evaluated once, for the tests and for the compiled policy.
        let tables = match materialize_tables(&source) {
            Ok(t) => t,
            Err(e) => return (None, Err(e)),
        };
        let (report, inputs) = match testing::run_collecting(&source, tables.as_ref()) {
            Ok(r) => r,
            Err(e) => return (None, Err(e)),
        };
        let passed = report.passed.len();
        let result = Self::check_report(&report)
            .and_then(|()| Self::agreeing(source, model, tables.as_ref(), inputs))
            .map(|mut s| {
                s.tests_passed = passed;
                s
            });
        (Some(report), result)
    }

    fn check_report(report: &testing::TestReport) -> Result<(), PolicyError> {
        if report.passed.is_empty() && report.failed.is_empty() {
            return Err(PolicyError::Tests(
                "the policy has no test_* rule: a policy goes live only with tests (add *_test.rego files)"
                    .to_owned(),
            ));
        }
        if !report.ok() {
            let names: Vec<String> = report
                .failed
                .iter()
                .map(|f| format!("{} ({})", f.name, f.reason))
                .collect();
            return Err(PolicyError::Tests(format!(
                "{}: {}",
                report.summary(),
                names.join("; ")
            )));
        }
        Ok(())
    }

    /// Compiles the policy and decides every input the tests used on both evaluators.
    fn agreeing(
        source: PolicySource,
        model: PolicyData,
        tables: Option<&regorus::Value>,
        inputs: Option<Vec<regorus::Value>>,
    ) -> Result<Self, PolicyError> {
        let inputs = inputs.ok_or_else(|| {
            PolicyError::Tests(
                "cannot check the tests against the production evaluator: no `decision` rule head in package iamgate.authz"
                    .to_owned(),
            )
        })?;
        let snapshot = Self::compile_with(source, model, tables)?;
        if let Some(program) = &snapshot.program {
            let mut differ = Vec::new();
            for input in &inputs {
                let vm = snapshot.evaluate_value(input.clone(), Some(program));
                let tree = snapshot.evaluate_value(input.clone(), None);
                if (vm.allow, &vm.reason) != (tree.allow, &tree.reason) {
                    differ.push(format!(
                        "{} (vm: {} {}, interpreter: {} {})",
                        input
                            .to_json_str()
                            .ok()
                            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                            .map(|v| v.to_string())
                            .unwrap_or_default(),
                        vm.allow,
                        vm.reason,
                        tree.allow,
                        tree.reason
                    ));
                }
            }
            if let Some(first) = differ.first() {
                return Err(PolicyError::Tests(format!(
                    "the production evaluator (RVM) decides {} of the {} inputs the tests used otherwise than the interpreter the tests ran on; first: {first}",
                    differ.len(),
                    inputs.len()
                )));
            }
        }
        Ok(snapshot)
    }

    /// Evaluates with the interpreter only (the RVM program is dropped). The policy's `test_*`
    /// rules run on the interpreter, because the RVM does not support `with`; this mode gives
    /// decisions exactly the semantics the tests checked, at about four times the cost.
    pub fn interpreter_only(mut self) -> Self {
        self.program = None;
        self
    }

    /// The role model of the policy data (roles, root permissions), for validating
    /// assignments.
    pub fn role_model(&self) -> &Arc<super::data::RoleModel> {
        &self.roles
    }

    /// Checks that every permission the deployment names (`(who, permission)`, the route
    /// table's) exists in this policy's data.
    pub fn check_named(&self, named: &[(String, String)]) -> Result<(), PolicyError> {
        self.model.check_named(named)
    }

    /// Whether decisions run on the RVM.
    pub fn uses_rvm(&self) -> bool {
        self.program.is_some()
    }

    /// The revision (content hash).
    pub fn revision(&self) -> &Arc<str> {
        &self.revision
    }

    /// How many `test_*` rules passed at the gate that put it in service.
    pub fn tests_passed(&self) -> usize {
        self.tests_passed
    }

    /// The source it was compiled from.
    pub fn source(&self) -> &PolicySource {
        &self.source
    }

    /// The item filter the policy declares for the response rule `rule`, if any.
    pub fn item_filter(&self, rule: &str) -> Option<&super::item_filter::ItemFilter> {
        self.item_filters.get(rule)
    }

    /// Evaluates the decision for `input`. Errors and timeouts deny.
    pub fn decide(&self, input: &DecisionInput) -> Decision {
        self.evaluate(input, self.program.as_ref())
    }

    /// Decides with regorus' tree-walking interpreter instead of the RVM: the alternative the
    /// benchmarks compare against, and what a policy the RVM cannot compile runs on.
    pub fn decide_interpreted(&self, input: &DecisionInput) -> Decision {
        self.evaluate(input, None)
    }

    /// One evaluation on the RVM `program`, or on the interpreter when there is none.
    fn evaluate(
        &self,
        input: &DecisionInput,
        program: Option<&Arc<regorus::rvm::Program>>,
    ) -> Decision {
        match input.to_value() {
            Ok(v) => self.evaluate_value(v, program),
            Err(_) => self.deny("policy_error"),
        }
    }

    /// A deny of this revision for `reason`.
    fn deny(&self, reason: &str) -> Decision {
        Decision {
            allow: false,
            reason: Arc::from(reason),
            revision: self.revision.clone(),
        }
    }

    /// One evaluation of an input value.
    fn evaluate_value(
        &self,
        value: regorus::Value,
        program: Option<&Arc<regorus::rvm::Program>>,
    ) -> Decision {
        let result = match program {
            Some(program) => self.run_vm(program, value),
            None => self
                .compiled
                .eval_with_input(value)
                .map_err(|e| e.to_string()),
        };
        match result {
            Ok(v) => interpret(&v, &self.revision),
            Err(msg) => {
                let reason = if msg.contains("time") && msg.contains("limit") {
                    "policy_timeout"
                } else {
                    "policy_error"
                };
                tracing::warn!(revision = %self.revision, error = %msg, "policy evaluation failed; denying");
                self.deny(reason)
            }
        }
    }

    fn run_vm(
        &self,
        program: &Arc<regorus::rvm::Program>,
        input: regorus::Value,
    ) -> Result<regorus::Value, String> {
        let pooled = self.vms.lock().ok().and_then(|mut p| p.pop());
        let mut vm = match pooled {
            Some(vm) => vm,
            None => {
                let mut vm = regorus::rvm::RegoVM::new_with_policy(self.compiled.clone());
                vm.load_program(program.clone());
                vm.set_data(self.data.clone()).map_err(|e| e.to_string())?;
                vm.set_max_instructions(MAX_INSTRUCTIONS);
                vm
            }
        };
        vm.set_input(input);
        let result = vm
            .execute_entry_point_by_name(ENTRYPOINT)
            .map_err(|e| e.to_string());
        vm.set_input(regorus::Value::Undefined);
        // A VM whose run failed is dropped rather than reused.
        if let (true, Ok(mut pool)) = (result.is_ok(), self.vms.lock())
            && pool.len() < VM_POOL
        {
            pool.push(vm);
        }
        result
    }

    /// Evaluates the response rule `data.iamgate.responses.<rule>` over an upstream answer:
    /// `input` plus `input.response.body`, within a time limit that grows with the answer
    /// ([`response_budget`]). The rule's value is the body the caller gets; an undefined rule,
    /// an error or a timeout is an error (the caller fails closed).
    pub fn respond(
        &self,
        rule: &str,
        input: &DecisionInput,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, PolicyError> {
        let fail = |e: String| PolicyError::Compile(format!("response rule {rule}: {e}"));
        let budget = response_budget(&body);
        let mut value = input.to_value().map_err(|e| fail(e.to_string()))?;
        let response = regorus::Value::from(serde_json::json!({ "body": body }));
        value
            .as_object_mut()
            .map_err(|e| fail(e.to_string()))?
            .insert(regorus::Value::from("response"), response);
        let mut engine = self.interpreter.clone();
        engine.set_execution_timer_config(time_limit(budget, 4096));
        engine.set_input(value);
        let out = engine
            .eval_rule(format!("data.iamgate.responses.{rule}"))
            .map_err(|e| fail(e.to_string()))?;
        if out == regorus::Value::Undefined {
            return Err(fail("undefined".to_owned()));
        }
        let text = out.to_json_str().map_err(|e| fail(e.to_string()))?;
        serde_json::from_str(&text).map_err(|e| fail(e.to_string()))
    }

    /// Evaluates the `explain` rule (with tests excluded) for `input`.
    pub fn explain(&self, input: &DecisionInput) -> Result<serde_json::Value, PolicyError> {
        let mut engine = self.interpreter.clone();
        engine.set_input(
            input
                .to_value()
                .map_err(|e| PolicyError::Load(e.to_string()))?,
        );
        let v = engine
            .eval_rule(EXPLAIN.to_owned())
            .map_err(|e| PolicyError::Compile(e.to_string()))?;
        serde_json::from_str(
            &v.to_json_str()
                .map_err(|e| PolicyError::Compile(e.to_string()))?,
        )
        .map_err(|e| PolicyError::Compile(e.to_string()))
    }
}

/// An engine with the modules (tests when `with_tests`) and data of `source`, where the tables
/// package is replaced by `tables`, its value as data ([`materialize_tables`]): decisions, tests,
/// `explain` and response rules all read the same tables, computed once.
pub fn tabled_engine(
    source: &PolicySource,
    with_tests: bool,
    tables: Option<&regorus::Value>,
) -> Result<regorus::Engine, PolicyError> {
    let mut engine = source.engine_with(|name, text| {
        (with_tests || !is_test_file(name)) && package_of(text) != Some(TABLES_PACKAGE)
    })?;
    if let Some(tables) = tables {
        engine
            .add_data(tables.clone())
            .map_err(|e| PolicyError::Compile(format!("{TABLES_PACKAGE}: {e}")))?;
    }
    Ok(engine)
}

/// Evaluates the rules of package `iamgate.tables` (when the policy has one) and returns them as
/// a data document `{"iamgate": {"tables": …}}`. Those rules must not read `input`: a decision
/// would see the value computed without one, while the tests would see their own input.
pub fn materialize_tables(source: &PolicySource) -> Result<Option<regorus::Value>, PolicyError> {
    let fail = |e: String| PolicyError::Compile(format!("{TABLES_PACKAGE}: {e}"));
    let mut any = false;
    for (name, text) in &source.modules {
        if is_test_file(name) || package_of(text) != Some(TABLES_PACKAGE) {
            continue;
        }
        any = true;
        if reads_input(text) {
            return Err(fail(format!(
                "{name} reads input; rules of this package are evaluated once, without a request"
            )));
        }
    }
    if !any {
        return Ok(None);
    }
    // Only a policy with a tables package pays for parsing it with everything it may call.
    let mut engine = source.engine(false)?;
    // Built once per revision, off the request path: the per-decision limit does not apply.
    engine.set_execution_timer_config(time_limit(TABLES_TIME_LIMIT, 4096));
    let path = format!("data.{TABLES_PACKAGE}");
    let results = engine
        .eval_query(path.clone(), false)
        .map_err(|e| fail(e.to_string()))?;
    let value = results
        .result
        .into_iter()
        .next()
        .and_then(|r| r.expressions.into_iter().next())
        .map(|e| e.value)
        .ok_or_else(|| fail("undefined".to_owned()))?;
    let mut doc = regorus::Value::new_object();
    let mut cursor = &mut doc;
    for segment in TABLES_PACKAGE.split('.') {
        let map = cursor.as_object_mut().map_err(|e| fail(e.to_string()))?;
        map.insert(regorus::Value::from(segment), regorus::Value::new_object());
        cursor = map
            .get_mut(&regorus::Value::from(segment))
            .ok_or_else(|| fail("path".to_owned()))?;
    }
    *cursor = value;
    Ok(Some(doc))
}

/// A regorus time limit that reads the clock every `every` work units.
pub(crate) fn time_limit(
    limit: Duration,
    every: u32,
) -> regorus::utils::limits::ExecutionTimerConfig {
    regorus::utils::limits::ExecutionTimerConfig {
        limit,
        check_interval: std::num::NonZeroU32::new(every).unwrap_or(std::num::NonZeroU32::MIN),
    }
}

/// Whether Rego source mentions `input` outside comments and string literals.
fn reads_input(text: &str) -> bool {
    text.lines().any(|line| {
        let mut code = String::with_capacity(line.len());
        let mut in_string = false;
        let mut escaped = false;
        for c in line.chars() {
            if in_string {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    in_string = false;
                }
                code.push(' ');
                continue;
            }
            match c {
                '#' => break,
                '"' => {
                    in_string = true;
                    code.push(' ');
                }
                _ => code.push(c),
            }
        }
        code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .any(|word| word == "input")
    })
}

/// Reads `{"allow": bool, "reason": string}`; anything else is a deny.
fn interpret(v: &regorus::Value, revision: &Arc<str>) -> Decision {
    static KEYS: std::sync::LazyLock<[regorus::Value; 2]> = std::sync::LazyLock::new(|| {
        [
            regorus::Value::from("allow"),
            regorus::Value::from("reason"),
        ]
    });
    let field = |key: &regorus::Value| match v {
        regorus::Value::Object(o) => o.get(key),
        _ => None,
    };
    let allow = matches!(field(&KEYS[0]), Some(regorus::Value::Bool(true)));
    // The policy's own string, shared rather than copied.
    let reason: Arc<str> = match field(&KEYS[1]) {
        Some(regorus::Value::String(s)) => s.clone(),
        _ if allow => Arc::from("granted"),
        _ => Arc::from("permission_denied"),
    };
    Decision {
        allow,
        reason,
        revision: revision.clone(),
    }
}

#[derive(Debug, Clone, Eq)]
struct CacheKey {
    revision: Arc<str>,
    directory_version: u64,
    /// The principal says the kind and the issuer: two issuers' users with one subject, or a
    /// user and a service account with one id, never share an entry.
    principal: Arc<str>,
    subject: Arc<str>,
    kind: Arc<str>,
    issuer: Option<Arc<str>>,
    groups: Arc<[String]>,
    group_principals: Arc<[String]>,
    permissions: Arc<[String]>,
    method: Arc<str>,
    route: Arc<str>,
    permission: Arc<str>,
    resource: ResourceInput,
    grants: Option<Vec<GrantInput>>,
    target: Option<TargetInput>,
}

/// Hashes the fields that tell one request's key from another's; equality still compares every
/// field, so two keys that hash alike but differ are two entries. The rest follow from these
/// (the subject, kind and issuer are in the principal) or change only with the directory version
/// or the policy revision (groups, permissions, grants; the cache is emptied on a new revision),
/// and hashing all fifteen cost more than the rest of the cached decision.
impl std::hash::Hash for CacheKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.directory_version);
        let r = &self.resource;
        for s in [&self.principal, &self.route, &self.permission] {
            s.hash(state);
        }
        for id in [&r.company_id, &r.project_id, &r.env_id] {
            id.hash(state);
        }
    }
}

/// Whether two shared values are equal, by pointer first: a hit's key and the entry's share most
/// of their fields (the revision, the principal, the route's names, an account's permission
/// list), and `Arc`'s own equality compares the contents even then (every string of a root
/// account's permissions, on every request).
fn same<T: ?Sized + PartialEq>(a: &Arc<T>, b: &Arc<T>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

/// [`same`] for optional values.
fn same_opt<T: ?Sized + PartialEq>(a: &Option<Arc<T>>, b: &Option<Arc<T>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => same(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// Every field compared (the derived equality's meaning), each shared one by pointer first. The
/// destructuring names every field, so a field added to the key cannot be left out here.
impl PartialEq for CacheKey {
    fn eq(&self, o: &Self) -> bool {
        let Self {
            revision,
            directory_version,
            principal,
            subject,
            kind,
            issuer,
            groups,
            group_principals,
            permissions,
            method,
            route,
            permission,
            resource:
                ResourceInput {
                    company_id,
                    project_id,
                    env_id,
                },
            grants,
            target,
        } = self;
        let r = &o.resource;
        // The fields that most often differ between two keys in one bucket come first.
        *directory_version == o.directory_version
            && same(principal, &o.principal)
            && same(route, &o.route)
            && same(permission, &o.permission)
            && same_opt(company_id, &r.company_id)
            && same_opt(project_id, &r.project_id)
            && same_opt(env_id, &r.env_id)
            && same(revision, &o.revision)
            && same(subject, &o.subject)
            && same(kind, &o.kind)
            && same_opt(issuer, &o.issuer)
            && same(groups, &o.groups)
            && same(group_principals, &o.group_principals)
            && same(permissions, &o.permissions)
            && same(method, &o.method)
            && *grants == o.grants
            && *target == o.target
    }
}

pub use crate::config::CacheSettings;

/// Writes the decision log record of one decision, with its input document when `keep` (the
/// input as the policy saw it, credentials already masked).
fn log_decision(input: &DecisionInput, d: &Decision, cached: bool, keep: bool) {
    let r = &input.resource;
    let kept = keep.then(|| serde_json::to_string(input).ok()).flatten();
    crate::telemetry::decision_log::record(&crate::telemetry::decision_log::DecisionRecord {
        subject: &input.user.id,
        subject_type: &input.user.kind,
        method: &input.request.method,
        path: &input.request.path,
        route: &input.route.id,
        permission: input.route.permission.as_deref().unwrap_or(""),
        rule: input.route.rule.as_deref().unwrap_or(""),
        company: r.company_id.as_deref().unwrap_or(""),
        project: r.project_id.as_deref().unwrap_or(""),
        environment: r.env_id.as_deref().unwrap_or(""),
        allow: d.allow,
        reason: &d.reason,
        revision: &d.revision,
        cached,
        input: kept.as_deref(),
    });
}

/// Decisions kept for the console's policy page: the last ones made, newest last.
const RECENT: usize = 100;

/// One recent decision.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecentDecision {
    /// Its number in this process, for asking for it again.
    pub id: u64,
    /// When, Unix seconds.
    pub at: i64,
    /// Who asked.
    pub subject: Arc<str>,
    /// The route.
    pub route: Arc<str>,
    /// The method.
    pub method: Arc<str>,
    /// The path.
    pub path: Arc<str>,
    /// The outcome.
    pub allow: bool,
    /// Its reason.
    pub reason: Arc<str>,
    /// The revision that decided.
    pub revision: Arc<str>,
    /// Whether the cache answered.
    pub cached: bool,
    /// Whether the input is kept (a cache hit's is not, unless the decision log keeps it).
    pub has_input: bool,
    /// The whole input the policy decided on, credentials masked.
    #[serde(skip)]
    pub input: Option<DecisionInput>,
}

/// Which decisions keep their input in the log (`log.decision_inputs`, `log.decision_sample`):
/// a share of them, spread evenly over the decisions (a golden-ratio sequence over a counter,
/// so no random source on the request path).
#[derive(Debug)]
struct InputSample {
    share: f64,
    seen: std::sync::atomic::AtomicU64,
}

impl InputSample {
    fn next(&self) -> bool {
        if self.share >= 1.0 {
            return true;
        }
        let n = self.seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // The top 53 bits of n times the golden ratio are a low-discrepancy sequence in [0, 1).
        #[allow(clippy::cast_precision_loss)]
        let at = (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64 / (1u64 << 53) as f64;
        at < self.share
    }
}

/// Keys hold request-chosen strings, so the hasher is seeded per process; foldhash's quality
/// variant hashes a key several times faster than the default SipHash.
type DecisionCache = crate::util::ttl_cache::TtlCache<CacheKey, (bool, Arc<str>)>;

/// The live policy: the current snapshot and a decision cache.
pub struct PolicyEngine {
    current: ArcSwap<Snapshot>,
    /// Permissions the deployment names outside the policy (the route table's): a changed
    /// policy that lacks any of them is refused like one whose tests fail.
    named: ArcSwap<Vec<(String, String)>>,
    cache: Option<DecisionCache>,
    interpreter: bool,
    inputs: Option<InputSample>,
    /// A candidate decided beside the live policy and never enforced (`policy.shadow_dir`).
    shadow: ArcSwapOption<Snapshot>,
    /// Where the shadow's disagreements are counted.
    disagreements: Option<prometheus_client::metrics::family::Family<ShadowLabels, Counter>>,
    /// The last decisions, best effort: a decision that finds the ring busy is not recorded,
    /// so no request ever waits for it.
    recent: Mutex<std::collections::VecDeque<RecentDecision>>,
    recent_id: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("revision", &self.revision())
            .finish()
    }
}

/// The per-decision time limit in force (set once per process).
static TIMER: OnceLock<Duration> = OnceLock::new();

/// Sets the per-decision time limit for every compiled policy in the process (first call wins).
pub fn set_decision_timeout(limit: Duration) {
    TIMER.get_or_init(|| {
        // Reading the clock on every work unit would cost more than the work itself; every
        // 4096 units keeps the overshoot well under a millisecond.
        regorus::utils::limits::set_fallback_execution_timer_config(Some(time_limit(limit, 4096)));
        limit
    });
}

/// What a response rule evaluated as a whole may take for each item of the answer, on top of
/// the limit of one decision: it decides about one item each.
const RESPONSE_ITEM_BUDGET: Duration = Duration::from_millis(1);
/// The most a response rule evaluated as a whole may take, however long the answer.
const RESPONSE_MAX_BUDGET: Duration = Duration::from_secs(10);

/// The time a response rule over `body` may take: the decision limit, plus
/// [`RESPONSE_ITEM_BUDGET`] per item of the answer (a top-level array's, or the arrays an
/// object holds at its top level), at most [`RESPONSE_MAX_BUDGET`].
fn response_budget(body: &serde_json::Value) -> Duration {
    let items = match body {
        serde_json::Value::Array(a) => a.len(),
        serde_json::Value::Object(o) => o
            .values()
            .filter_map(serde_json::Value::as_array)
            .map(Vec::len)
            .sum(),
        _ => 0,
    };
    let base = TIMER.get().copied().unwrap_or(Duration::from_millis(50));
    let per_items = RESPONSE_ITEM_BUDGET.saturating_mul(u32::try_from(items).unwrap_or(u32::MAX));
    base.saturating_add(per_items).min(RESPONSE_MAX_BUDGET)
}

impl PolicyEngine {
    /// An engine serving `snapshot`, with an optional decision cache; `interpreter` forces the
    /// interpreter for this and every later snapshot.
    pub fn new(snapshot: Snapshot, cache: Option<CacheSettings>, interpreter: bool) -> Self {
        let snapshot = if interpreter {
            snapshot.interpreter_only()
        } else {
            snapshot
        };
        Self {
            interpreter,
            current: ArcSwap::from_pointee(snapshot),
            named: ArcSwap::from_pointee(Vec::new()),
            cache: cache.map(|c| DecisionCache::new(c.capacity, c.ttl)),
            inputs: None,
            shadow: ArcSwapOption::empty(),
            disagreements: None,
            recent: Mutex::new(std::collections::VecDeque::with_capacity(RECENT)),
            recent_id: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The recent decisions, newest first.
    pub fn recent_decisions(&self) -> Vec<RecentDecision> {
        self.recent
            .lock()
            .map(|r| r.iter().rev().cloned().collect())
            .unwrap_or_default()
    }

    /// Logs and keeps a refusal the gateway made before asking the policy (a project the
    /// directory does not know, or one another company owns) under the live revision, so the
    /// decision log holds every deny a client got.
    pub fn record_refusal(&self, input: &DecisionInput, reason: &str) {
        let d = Decision {
            allow: false,
            reason: Arc::from(reason),
            revision: self.snapshot().revision().clone(),
        };
        log_decision(input, &d, false, false);
        self.remember(input, &d, false, false);
    }

    /// Keeps `d` among the recent decisions, with `input` when it is `whole` (a cache hit's
    /// input is built only as far as the cache key needs).
    fn remember(&self, input: &DecisionInput, d: &Decision, cached: bool, whole: bool) {
        let Ok(mut ring) = self.recent.try_lock() else {
            return;
        };
        if ring.len() == RECENT {
            ring.pop_front();
        }
        ring.push_back(RecentDecision {
            id: self
                .recent_id
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            at: crate::util::unix_now(),
            subject: input.user.id.clone(),
            route: input.route.id.clone(),
            method: input.request.method.clone(),
            path: input.request.path.clone(),
            allow: d.allow,
            reason: d.reason.clone(),
            revision: d.revision.clone(),
            cached,
            has_input: whole,
            input: whole.then(|| input.clone()),
        });
    }

    /// Decides every request with `shadow` too, after the live decision and off the response's
    /// path, counting each disagreement in `disagreements` and logging it; never enforced.
    pub fn with_shadow(
        self,
        shadow: Snapshot,
        disagreements: prometheus_client::metrics::family::Family<ShadowLabels, Counter>,
    ) -> Self {
        self.shadow
            .store(Some(Arc::new(self.for_evaluator(shadow))));
        Self {
            disagreements: Some(disagreements),
            ..self
        }
    }

    /// Replaces the shadow policy (a shadow folder changed and passed the gate).
    pub fn swap_shadow(&self, shadow: Snapshot) {
        self.shadow
            .store(Some(Arc::new(self.for_evaluator(shadow))));
    }

    /// The shadow policy's revision, when there is one.
    pub fn shadow_revision(&self) -> Option<Arc<str>> {
        self.shadow.load().as_ref().map(|s| s.revision.clone())
    }

    fn for_evaluator(&self, snapshot: Snapshot) -> Snapshot {
        if self.interpreter {
            snapshot.interpreter_only()
        } else {
            snapshot
        }
    }

    /// Decides the whole `input` with the shadow policy on another task and reports a
    /// disagreement with `live`. The live answer is already decided: the shadow never delays it.
    fn shadow_decide(&self, input: &DecisionInput, live: &Decision) {
        let (Some(shadow), Some(counter)) = (self.shadow.load_full(), &self.disagreements) else {
            return;
        };
        let (input, counter, live) = (input.clone(), counter.clone(), live.clone());
        tokio::spawn(async move {
            let d = shadow.decide(&input);
            if d.allow == live.allow {
                return;
            }
            let outcome = |allow: bool| if allow { "allow" } else { "deny" };
            counter
                .get_or_create(&ShadowLabels {
                    route: input.route.id.to_string(),
                    live: outcome(live.allow),
                    shadow: outcome(d.allow),
                })
                .inc();
            tracing::info!(
                target: "iamgate::shadow",
                subject = &*input.user.id,
                method = &*input.request.method,
                path = &*input.request.path,
                route = &*input.route.id,
                live_allow = live.allow,
                live_reason = &*live.reason,
                live_revision = &*live.revision,
                shadow_allow = d.allow,
                shadow_reason = &*d.reason,
                shadow_revision = &*d.revision,
                "shadow policy disagrees"
            );
        });
    }

    /// Keeps the input document of `share` (0 to 1) of the decisions in their log records, for
    /// `iamgate policy replay`.
    pub fn with_decision_inputs(mut self, share: f64) -> Self {
        self.inputs = (share > 0.0).then(|| InputSample {
            share,
            seen: std::sync::atomic::AtomicU64::new(0),
        });
        self
    }

    /// Whether this decision's record keeps its input.
    fn keeps_input(&self) -> bool {
        self.inputs.as_ref().is_some_and(InputSample::next)
    }

    /// The snapshot in service.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// The revision in service.
    pub fn revision(&self) -> Arc<str> {
        self.current.load().revision.clone()
    }

    /// Records the permissions the deployment names (`(who, permission)`), after checking that
    /// the policy in service has every one; every later snapshot is checked against them too.
    pub fn require_permissions(&self, named: Vec<(String, String)>) -> Result<(), PolicyError> {
        self.current.load().check_named(&named)?;
        self.named.store(Arc::new(named));
        Ok(())
    }

    /// Checks a snapshot about to be swapped in against the permissions the deployment names.
    pub fn check_named(&self, snapshot: &Snapshot) -> Result<(), PolicyError> {
        snapshot.check_named(&self.named.load())
    }

    /// Puts a new snapshot in service and drops cached decisions of the old one.
    pub fn swap(&self, snapshot: Snapshot) {
        self.current.store(Arc::new(self.for_evaluator(snapshot)));
        if let Some(c) = &self.cache {
            c.invalidate_all();
        }
    }

    /// Decides `input`, through the cache for permission routes, and writes the decision log
    /// record. `directory_version` changes whenever accounts, bindings or the directory change.
    pub fn decide(&self, input: &DecisionInput, directory_version: u64) -> Decision {
        let snapshot = self.current.load_full();
        let d = match self.cached(&snapshot, input, directory_version) {
            Ok(d) => {
                log_decision(input, &d, true, self.keeps_input());
                self.remember(input, &d, true, false);
                d
            }
            Err(key) => self.fresh(&snapshot, input, key),
        };
        self.shadow_decide(input, &d);
        d
    }

    /// As [`decide`](Self::decide) for an input whose request details (everything outside the
    /// cache key: path parameters, query, headers, bindings, properties) are not filled in yet:
    /// `fill` completes it only when the policy must actually run. A cached decision never reads
    /// them, and building them cost more than the cache lookup.
    pub fn decide_filling(
        &self,
        input: &mut DecisionInput,
        directory_version: u64,
        fill: impl FnOnce(&mut DecisionInput),
    ) -> Decision {
        if self.disagreements.is_some() && self.shadow.load().is_some() {
            // The shadow decides the whole input: build it now.
            fill(input);
            return self.decide(input, directory_version);
        }
        let snapshot = self.current.load_full();
        match self.cached(&snapshot, input, directory_version) {
            Ok(d) => {
                // A kept input must be the whole document the policy would read.
                let keep = self.keeps_input();
                if keep {
                    fill(input);
                }
                log_decision(input, &d, true, keep);
                self.remember(input, &d, true, keep);
                d
            }
            Err(key) => {
                fill(input);
                self.fresh(&snapshot, input, key)
            }
        }
    }

    /// The cached decision for `input` (not logged yet), or the key a fresh one is to be cached under
    /// (`None`: not cacheable, as for rule routes or without a cache).
    // The key handed back on a miss goes into the cache as it is; boxing it would cost an
    // allocation per miss and gain nothing on a hit, which returns the small `Ok`.
    #[allow(clippy::result_large_err)]
    fn cached(
        &self,
        snapshot: &Snapshot,
        input: &DecisionInput,
        directory_version: u64,
    ) -> Result<Decision, Option<CacheKey>> {
        let (Some(cache), Some(permission), None) =
            (&self.cache, &input.route.permission, &input.route.rule)
        else {
            return Err(None);
        };
        let key = CacheKey {
            revision: snapshot.revision.clone(),
            directory_version,
            principal: input.user.principal.clone(),
            subject: input.user.id.clone(),
            kind: input.user.kind.clone(),
            issuer: input.user.issuer.clone(),
            groups: input.user.groups.clone(),
            group_principals: input.user.group_principals.clone(),
            permissions: input.user.permissions.clone(),
            method: input.request.method.clone(),
            route: input.route.id.clone(),
            permission: permission.clone(),
            resource: input.resource.clone(),
            grants: input.grants.clone(),
            target: input.target.clone(),
        };
        match cache.get(&key) {
            Some((allow, reason)) => Ok(Decision {
                allow,
                reason,
                revision: snapshot.revision.clone(),
            }),
            None => Err(Some(key)),
        }
    }

    /// Runs the policy on `input` (logged) and caches the outcome under `key`.
    fn fresh(&self, snapshot: &Snapshot, input: &DecisionInput, key: Option<CacheKey>) -> Decision {
        let d = snapshot.decide(input);
        log_decision(input, &d, false, self.keeps_input());
        self.remember(input, &d, false, true);
        // Errors are not cached: a transient timeout must not stick.
        if let (Some(cache), Some(key)) = (&self.cache, key)
            && !matches!(&*d.reason, "policy_error" | "policy_timeout")
        {
            cache.insert(key, (d.allow, d.reason.clone()));
        }
        d
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_response_rule_gets_time_for_every_item_of_the_answer() {
        use serde_json::json;
        let base = TIMER.get().copied().unwrap_or(Duration::from_millis(50));
        let list = |n: usize| serde_json::Value::Array(vec![json!({}); n]);
        assert_eq!(response_budget(&json!({"name": "x"})), base);
        assert_eq!(
            response_budget(&list(200)),
            base + Duration::from_millis(200)
        );
        // An object's lists count (a project's environments).
        assert_eq!(
            response_budget(&json!({"environments": list(30), "tags": list(2), "n": 1})),
            base + Duration::from_millis(32)
        );
        assert_eq!(response_budget(&list(1_000_000)), RESPONSE_MAX_BUDGET);
    }
    use super::*;

    #[test]
    fn the_input_sample_keeps_the_configured_share_spread_evenly() {
        let sample = |share| InputSample {
            share,
            seen: std::sync::atomic::AtomicU64::new(0),
        };
        let all = sample(1.0);
        assert!((0..100).all(|_| all.next()));
        let quarter = sample(0.25);
        let kept: Vec<bool> = (0..1000).map(|_| quarter.next()).collect();
        let n = kept.iter().filter(|k| **k).count();
        assert!((240..=260).contains(&n), "{n} of 1000");
        // Evenly: every window of 100 decisions keeps about a quarter.
        for w in kept.chunks(100) {
            let k = w.iter().filter(|k| **k).count();
            assert!((20..=30).contains(&k), "{k} of 100");
        }
        let none = sample(0.0);
        assert!((0..100).all(|_| !none.next()));
    }
}
