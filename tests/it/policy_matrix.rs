//! The whole permission matrix of the Console's roles and the inheritance cases, through the real
//! compiled policy. The expected answers come from the role tables reproduced below and the
//! inheritance rule, not from `policies/roles.json`, so a wrong data file fails here.

use iamgate::iam::{Binding, BindingResource};
use iamgate::policy::input::{BindingSet, GrantInput, ResourceInput, RouteInput, UserInput};
use iamgate::policy::{DecisionInput, PolicySource, Snapshot};
use std::path::Path;

/// The role tables: permission, then one cell per role (G R D M PA CO / G R D M PA / R M).
const COMPANY: &str = "
console.company.view | x | x | x | x | x | x
console.company.providers.view | x | x | x | x | x | x
console.company.cluster.view | x | x | x | x | x | x
marketplace.company.resources.view | x | x | x | x | x | x
console.company.project.view |  | x | x | x | x | x
console.company.project.environment.view |  | x | x | x | x | x
console.company.project.service.repository.create |  |  | x | x | x | x
console.company.project.configuration.update |  |  | x | x | x | x
console.company.project.environment.deploy.trigger |  |  |  | x | x | x
console.company.project.environment.k8s.pod.delete |  |  |  | x | x | x
console.company.project.environment.k8s.job.delete |  |  |  | x | x | x
console.company.project.environment.k8s.job.create |  |  |  | x | x | x
console.company.project.secreted_variables.manage |  |  |  |  | x | x
console.company.project.environment.dashboard.manage |  |  |  |  | x | x
console.company.project.details.update |  |  |  |  | x | x
console.company.project.users.manage |  |  |  |  | x | x
console.company.project.delete |  |  |  |  | x | x
console.company.project.configuration.version.delete |  |  |  |  | x | x
console.company.configuration.views.manage |  |  |  |  | x | x
marketplace.company.resources.manage |  |  |  |  | x | x
console.company.details.update |  |  |  |  |  | x
console.company.project.create |  |  |  |  |  | x
console.company.users.manage |  |  |  |  |  | x
console.company.delete |  |  |  |  |  | x
console.company.providers.manage |  |  |  |  |  | x
console.company.cluster.manage |  |  |  |  |  | x
console.company.templates.manage |  |  |  |  |  | x";

const PROJECT: &str = "
console.project.view | x | x | x | x | x
console.project.environment.view |  | x | x | x | x
console.project.service.repository.create |  |  | x | x | x
console.project.configuration.update |  |  | x | x | x
console.project.environment.deploy.trigger |  |  |  | x | x
console.project.environment.k8s.pod.delete |  |  |  | x | x
console.project.environment.k8s.job.delete |  |  |  | x | x
console.project.environment.k8s.job.create |  |  |  | x | x
console.project.details.update |  |  |  |  | x
console.project.configuration.version.delete |  |  |  |  | x
console.project.secreted_variables.manage |  |  |  |  | x
console.project.environment.dashboard.manage |  |  |  |  | x
console.project.users.manage |  |  |  |  | x";

const ENVIRONMENT: &str = "
console.environment.view | x | x
console.environment.deploy.trigger |  | x
console.environment.k8s.pod.delete |  | x
console.environment.k8s.job.delete |  | x
console.environment.k8s.job.create |  | x";

const ROOT: &[&str] = &[
    "console.root.company.create",
    "console.root.company.delete",
    "console.root.project.create",
    "console.root.project.details.update",
    "console.root.project.delete",
    "console.root.view",
    "console.root.user.bind",
    "console.root.user.manage",
    "console.root.serviceaccount.manage",
    "console.root.templates.manage",
    "console.root.features.manage",
    "marketplace.root.manage",
];

const ROLES: &[&str] = &[
    "guest",
    "reporter",
    "developer",
    "maintainer",
    "project-admin",
    "company-owner",
];

/// `(permission, roles holding it)` of one table whose columns are `roles`.
fn parse(table: &str, roles: &[&str]) -> Vec<(String, Vec<String>)> {
    table
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let holders = roles
                .iter()
                .zip(&cells[1..])
                .filter(|(_, c)| **c == "x")
                .map(|(r, _)| (*r).to_owned())
                .collect();
            (cells[0].to_owned(), holders)
        })
        .collect()
}

struct Spec {
    company: Vec<(String, Vec<String>)>,
    project: Vec<(String, Vec<String>)>,
    environment: Vec<(String, Vec<String>)>,
}

impl Spec {
    fn load() -> Self {
        Self {
            company: parse(COMPANY, ROLES),
            project: parse(PROJECT, &ROLES[..5]),
            environment: parse(ENVIRONMENT, &["reporter", "maintainer"]),
        }
    }
    fn holds(table: &[(String, Vec<String>)], perm: &str, role: &str) -> bool {
        table
            .iter()
            .any(|(p, rs)| p == perm && rs.iter().any(|r| r == role))
    }
    fn all_permissions(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .company
            .iter()
            .chain(&self.project)
            .chain(&self.environment)
            .map(|(p, _)| p.clone())
            .collect();
        v.extend(
            [
                "console.project.delete",
                "console.environment.dashboard.manage",
            ]
            .map(String::from),
        );
        v.extend(ROOT.iter().map(|s| s.to_string()));
        v
    }
    /// Scope match and inheritance: does `role` bound at `level` grant `perm` checked at the bound resource?
    fn expected(&self, role: &str, level: &str, perm: &str) -> bool {
        let suffix = |prefix: &str| perm.strip_prefix(prefix).map(str::to_owned);
        match level {
            "company" => {
                if perm.starts_with("console.company.") || perm.starts_with("marketplace.company.")
                {
                    Self::holds(&self.company, perm, role)
                } else if let Some(x) = suffix("console.project.") {
                    Self::holds(&self.company, &format!("console.company.project.{x}"), role)
                } else if let Some(x) = suffix("console.environment.") {
                    Self::holds(
                        &self.company,
                        &format!("console.company.project.environment.{x}"),
                        role,
                    )
                } else {
                    false
                }
            }
            "project" => {
                if perm.starts_with("console.project.") {
                    Self::holds(&self.project, perm, role)
                } else if let Some(x) = suffix("console.environment.") {
                    Self::holds(
                        &self.project,
                        &format!("console.project.environment.{x}"),
                        role,
                    )
                } else {
                    false
                }
            }
            "environment" => {
                perm.starts_with("console.environment.")
                    && Self::holds(&self.environment, perm, role)
            }
            _ => unreachable!(),
        }
    }
}

fn policy() -> Snapshot {
    iamgate::policy::engine::set_decision_timeout(std::time::Duration::from_millis(200));
    Snapshot::compile(
        PolicySource::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap(),
    )
    .unwrap()
}

fn bound(roles: &[&str], level: Option<(&str, &str)>) -> Binding {
    Binding {
        binding_id: "b".into(),
        subjects: vec!["serviceaccount:sa-1".into()],
        groups: vec![],
        roles: roles.iter().map(|s| s.to_string()).collect(),
        permissions: vec![],
        // Made in c1, or in the company it is bound on.
        resource: Some(match level {
            None => BindingResource::console(),
            Some(("company", id)) => BindingResource::scoped("company", id, id),
            Some((t, id)) => BindingResource::scoped(t, id, "c1"),
        }),
    }
}

fn input(
    bindings: Vec<Binding>,
    perm: &str,
    company: &str,
    project: &str,
    env: &str,
) -> DecisionInput {
    let opt = |s: &str| (!s.is_empty()).then(|| std::sync::Arc::from(s));
    DecisionInput {
        user: UserInput {
            id: "sa-1".into(),
            kind: "serviceaccount".into(),
            principal: "serviceaccount:sa-1".into(),
            groups: vec!["team-a".into()].into(),
            group_principals: vec!["group:corp:team-a".into()].into(),
            bindings: BindingSet::new(bindings),
            ..Default::default()
        },
        resource: ResourceInput {
            company_id: opt(company),
            project_id: opt(project),
            env_id: opt(env),
        },
        route: RouteInput {
            id: "r".into(),
            permission: Some(perm.into()),
            rule: None,
        },
        ..Default::default()
    }
}

/// Where a permission is checked: the resource the binding is on, or below it.
fn resource_for(perm: &str) -> (&'static str, &'static str, &'static str) {
    if perm.starts_with("console.project.") {
        ("c1", "p1", "")
    } else if perm.starts_with("console.environment.") {
        ("c1", "p1", "dev")
    } else if perm.starts_with("console.root.") || perm.starts_with("marketplace.root.") {
        ("", "", "")
    } else {
        ("c1", "", "")
    }
}

/// One snapshot decides all ~1000 cases in turn, allows and denies interleaved, so pooled VMs are
/// reused across different inputs: any state leaking from one decision into the next shows here.
#[test]
fn every_role_every_permission_every_level() {
    let spec = Spec::load();
    let policy = policy();
    let levels = [
        ("company", "c1"),
        ("project", "p1"),
        ("environment", "p1:dev"),
    ];
    assert!(
        policy.uses_rvm(),
        "the shipped policy must compile for the RVM"
    );
    let mut checked = 0;
    let mut wrong = Vec::new();
    for role in ROLES {
        for (level, id) in levels {
            for perm in spec.all_permissions() {
                let (c, p, e) = resource_for(&perm);
                let i = input(vec![bound(&[role], Some((level, id)))], &perm, c, p, e);
                let d = policy.decide(&i);
                // The RVM decides in production; the interpreter is what the Rego tests ran on.
                assert_eq!(
                    d,
                    policy.decide_interpreted(&i),
                    "RVM and interpreter disagree: {role} on {level}: {perm}"
                );
                let want = spec.expected(role, level, &perm);
                if d.allow != want {
                    wrong.push(format!(
                        "{role} on {level}: {perm} -> {} (want {want})",
                        d.allow
                    ));
                }
                checked += 1;
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {checked} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert_eq!(checked, 6 * 3 * spec.all_permissions().len());
}

#[test]
fn console_super_user_holds_every_root_permission_and_nothing_else_by_role() {
    let policy = policy();
    for perm in ROOT {
        let d = policy.decide(&input(
            vec![bound(&["console-super-user"], None)],
            perm,
            "",
            "",
            "",
        ));
        assert!(d.allow, "{perm}");
    }
    let d = policy.decide(&input(
        vec![bound(&["console-super-user"], None)],
        "console.company.delete",
        "c1",
        "",
        "",
    ));
    assert!(!d.allow, "root role grants no company permission");
}

#[test]
fn inheritance_cases() {
    let p = policy();
    let deploy = "console.environment.deploy.trigger";
    let allow = |b: Vec<Binding>, perm: &str, c: &str, pr: &str, e: &str| {
        p.decide(&input(b, perm, c, pr, e)).allow
    };
    // company developer cannot deploy
    assert!(!allow(
        vec![bound(&["developer"], Some(("company", "c1")))],
        deploy,
        "c1",
        "p1",
        "dev"
    ));
    // company maintainer deploys in every environment of every project of its company, nowhere else
    let cm = || vec![bound(&["maintainer"], Some(("company", "c1")))];
    assert!(allow(cm(), deploy, "c1", "p1", "dev") && allow(cm(), deploy, "c1", "p2", "prod"));
    assert!(!allow(cm(), deploy, "c2", "p3", "dev"));
    // project maintainer deploys only in that project
    let pm = || vec![bound(&["maintainer"], Some(("project", "p1")))];
    assert!(allow(pm(), deploy, "c1", "p1", "prod") && !allow(pm(), deploy, "c1", "p2", "prod"));
    // environment maintainer only in that environment
    let em = || vec![bound(&["maintainer"], Some(("environment", "p1:dev")))];
    assert!(allow(em(), deploy, "c1", "p1", "dev") && !allow(em(), deploy, "c1", "p1", "prod"));
    // environment reporter sees that environment but cannot change the project configuration
    let er = || vec![bound(&["reporter"], Some(("environment", "p1:dev")))];
    assert!(allow(er(), "console.environment.view", "c1", "p1", "dev"));
    assert!(!allow(
        er(),
        "console.project.configuration.update",
        "c1",
        "p1",
        ""
    ));
    // company guest sees no project
    assert!(!allow(
        vec![bound(&["guest"], Some(("company", "c1")))],
        "console.project.view",
        "c1",
        "p1",
        ""
    ));
    // a console-level binding applies in every company
    for c in ["c1", "c2", "c3"] {
        assert!(allow(
            vec![bound(&["maintainer"], None)],
            deploy,
            c,
            "px",
            "dev"
        ));
    }
    // a group binding applies to its members only
    let mut g = bound(&["maintainer"], Some(("project", "p1")));
    g.subjects.clear();
    g.groups = vec!["group:corp:team-a".into()];
    assert!(allow(vec![g.clone()], deploy, "c1", "p1", "dev"));
    g.groups = vec!["group:corp:team-b".into()];
    assert!(!allow(vec![g], deploy, "c1", "p1", "dev"));
    // root permissions count only at root
    let mut rb = bound(&[], Some(("company", "c1")));
    rb.permissions = vec!["console.root.company.create".into()];
    assert!(!allow(vec![rb], "console.root.company.create", "", "", ""));
    // unknown project -> deny with its reason
    let d = p.decide(&input(pm(), deploy, "", "p1", "dev"));
    assert!(!d.allow);
    assert_eq!(&*d.reason, "unknown_resource");
}

fn grant(role: &str, t: &str, id: &str) -> GrantInput {
    GrantInput {
        role: Some(role.into()),
        resource_type: Some(t.into()),
        resource_id: Some(id.into()),
        company_id: Some("c1".into()),
        removes: None,
        permissions: None,
    }
}

#[test]
fn no_escalation() {
    let p = policy();
    // A project-admin (holds console.project.users.manage) may assign up to project-admin there.
    let pa = vec![bound(&["project-admin"], Some(("project", "p1")))];
    let mut i = input(pa, "console.project.users.manage", "c1", "p1", "");
    i.grants = Some(vec![grant("project-admin", "project", "p1")]);
    assert!(p.decide(&i).allow);
    i.grants = Some(vec![grant("company-owner", "company", "c1")]);
    let d = p.decide(&i);
    assert!(!d.allow, "project-admin cannot make a company owner");
    // A maintainer with users.manage cannot grant project-admin.
    let mut m = bound(&["maintainer"], Some(("project", "p1")));
    m.permissions = vec!["console.project.users.manage".into()];
    let mut i = input(vec![m], "console.project.users.manage", "c1", "p1", "");
    i.grants = Some(vec![grant("project-admin", "project", "p1")]);
    let d = p.decide(&i);
    assert!(!d.allow);
    assert_eq!(&*d.reason, "escalation");
    // Company owners can grant any role in their company, at any valid level.
    let co = vec![bound(&["company-owner"], Some(("company", "c1")))];
    let mut i = input(co, "console.company.users.manage", "c1", "", "");
    i.grants = Some(vec![
        grant("company-owner", "company", "c1"),
        grant("project-admin", "project", "p1"),
        grant("maintainer", "environment", "p1:dev"),
    ]);
    assert!(p.decide(&i).allow);
    // ...but not a role at a level where it may not be bound.
    i.grants = Some(vec![grant("developer", "environment", "p1:dev")]);
    assert!(!p.decide(&i).allow);
}
