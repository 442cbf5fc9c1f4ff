//! The decision log: one structured record per policy decision (target `iamgate::decision`),
//! with subject, route, method, path, resource, permission, outcome, reason, policy revision and
//! whether the cache answered; with `log.decision_inputs`, the input document too (for
//! `iamgate policy replay`). The policy engine fills a [`DecisionRecord`] after each decision;
//! this module only writes it. Credentials never reach it: the record's own fields hold none,
//! and the input document's credential headers are masked before the policy ever sees them.

/// What is logged of one decision.
#[derive(Debug, Clone, Copy)]
pub struct DecisionRecord<'a> {
    /// The caller's id.
    pub subject: &'a str,
    /// `serviceaccount` or `user`.
    pub subject_type: &'a str,
    /// HTTP method.
    pub method: &'a str,
    /// Request path.
    pub path: &'a str,
    /// Route id.
    pub route: &'a str,
    /// The permission checked, or "".
    pub permission: &'a str,
    /// The custom rule checked, or "".
    pub rule: &'a str,
    /// Company, project and environment the check was made at ("" where none).
    pub company: &'a str,
    /// See `company`.
    pub project: &'a str,
    /// See `company`.
    pub environment: &'a str,
    /// The outcome.
    pub allow: bool,
    /// The reason id.
    pub reason: &'a str,
    /// The policy revision that decided.
    pub revision: &'a str,
    /// Whether the decision cache answered.
    pub cached: bool,
    /// The input document as JSON (credentials masked), when `log.decision_inputs` keeps it.
    pub input: Option<&'a str>,
}

/// Emits the record of one decision.
pub fn record(r: &DecisionRecord<'_>) {
    tracing::info!(
        target: "iamgate::decision",
        subject = r.subject,
        subject_type = r.subject_type,
        method = r.method,
        path = r.path,
        route = r.route,
        permission = r.permission,
        rule = r.rule,
        company = r.company,
        project = r.project,
        environment = r.environment,
        allow = r.allow,
        reason = r.reason,
        revision = r.revision,
        cached = r.cached,
        input = r.input,
        "decision"
    );
}
