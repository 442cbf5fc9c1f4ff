# Tests of the shipped policy. `iamgate policy test policies/` runs every test_* rule; the
# running gateway runs them too before it swaps in a changed policy.
package iamgate.authz_test

import rego.v1

import data.iamgate.authz

# --- fixtures ---------------------------------------------------------------------------------

sa(id) := concat("", ["serviceaccount:", id])

# A binding of service account `id`, made in company c1 (or in the company it names).
binding(id, roles, rtype, rid) := in_company(id, roles, rtype, rid, company_of(rtype, rid))

in_company(id, roles, rtype, rid, company) := {
	"bindingId": concat("-", ["b", id, rtype, rid]),
	"subjects": [sa(id)],
	"groups": [],
	"roles": roles,
	"permissions": [],
	"resource": {"resourceType": rtype, "resourceId": rid, "companyId": company},
}

company_of("company", rid) := rid

company_of(rtype, _) := "c1" if rtype != "company"

console_binding(id, roles) := {
	"bindingId": concat("-", ["c", id]),
	"subjects": [sa(id)],
	"groups": [],
	"roles": roles,
	"permissions": [],
	"resource": {"resourceType": "console"},
}

user(bindings) := {
	"id": "sa-1",
	"type": "serviceaccount",
	"principal": sa("sa-1"),
	"groups": ["team-a"],
	"groupPrincipals": ["group:corp:team-a"],
	"permissions": [],
	"bindings": bindings,
}

req(u, perm, company, project, env) := {
	"request": {"method": "GET", "path": "/x"},
	"user": u,
	"resource": {k: v | some k, v in {"companyId": company, "projectId": project, "envId": env}; v != ""},
	"route": {"id": "test", "permission": perm},
}

allowed(u, perm, company, project, env) if {
	authz.decision.allow with input as req(u, perm, company, project, env)
}

deploy := "console.environment.deploy.trigger"

# --- inheritance --------------------------------------------------------------------------------

test_company_developer_cannot_deploy if {
	u := user([binding("sa-1", ["developer"], "company", "c1")])
	not allowed(u, deploy, "c1", "p1", "dev")
	allowed(u, "console.project.configuration.update", "c1", "p1", "")
}

test_company_maintainer_deploys_everywhere_in_its_company_only if {
	u := user([binding("sa-1", ["maintainer"], "company", "c1")])
	allowed(u, deploy, "c1", "p1", "dev")
	allowed(u, deploy, "c1", "p2", "prod")
	not allowed(u, deploy, "c2", "p9", "dev")
}

test_project_maintainer_deploys_only_in_that_project if {
	u := user([binding("sa-1", ["maintainer"], "project", "p1")])
	allowed(u, deploy, "c1", "p1", "dev")
	allowed(u, deploy, "c1", "p1", "prod")
	not allowed(u, deploy, "c1", "p2", "dev")
	not allowed(u, "console.company.project.create", "c1", "", "")
}

test_environment_maintainer_deploys_only_in_that_environment if {
	u := user([binding("sa-1", ["maintainer"], "environment", "p1:dev")])
	allowed(u, deploy, "c1", "p1", "dev")
	not allowed(u, deploy, "c1", "p1", "prod")
	not allowed(u, deploy, "c1", "p2", "dev")
}

test_environment_reporter_sees_environment_but_cannot_change_configuration if {
	u := user([binding("sa-1", ["reporter"], "environment", "p1:dev")])
	allowed(u, "console.environment.view", "c1", "p1", "dev")
	not allowed(u, "console.project.configuration.update", "c1", "p1", "")
	not allowed(u, deploy, "c1", "p1", "dev")
}

test_company_guest_sees_no_project if {
	u := user([binding("sa-1", ["guest"], "company", "c1")])
	allowed(u, "console.company.view", "c1", "", "")
	not allowed(u, "console.project.view", "c1", "p1", "")
	not allowed(u, "console.environment.view", "c1", "p1", "dev")
}

test_project_guest_sees_that_project if {
	u := user([binding("sa-1", ["guest"], "project", "p1")])
	allowed(u, "console.project.view", "c1", "p1", "")
	not allowed(u, "console.project.view", "c1", "p2", "")
}

test_console_level_binding_applies_in_every_company if {
	u := user([console_binding("sa-1", ["maintainer"])])
	allowed(u, deploy, "c1", "p1", "dev")
	allowed(u, deploy, "c7", "p9", "prod")
	allowed(u, "console.company.view", "c3", "", "")
}

test_group_binding_applies_to_members_only if {
	b := {"bindingId": "g", "subjects": [], "groups": ["group:corp:team-a"], "roles": ["maintainer"], "permissions": [], "resource": {"resourceType": "project", "resourceId": "p1", "companyId": "c1"}}
	member := user([b])
	allowed(member, deploy, "c1", "p1", "dev")
	outsider := object.union(user([b]), {"groups": ["team-b"], "groupPrincipals": ["group:corp:team-b"]})
	not allowed(outsider, deploy, "c1", "p1", "dev")
}

test_binding_of_another_subject_does_not_apply if {
	u := user([binding("someone-else", ["company-owner"], "company", "c1")])
	not allowed(u, "console.company.view", "c1", "", "")
}

test_lower_levels_widen_never_narrow if {
	u := user([
		binding("sa-1", ["guest"], "company", "c1"),
		binding("sa-1", ["maintainer"], "environment", "p1:dev"),
	])
	allowed(u, deploy, "c1", "p1", "dev")
	allowed(u, "console.company.view", "c1", "", "")
	not allowed(u, deploy, "c1", "p1", "prod")
}

test_scope_match_ignores_permissions_of_other_levels if {
	# company-owner bound on a project (not a valid level) grants no project permissions,
	# because its permissions are all company-scoped.
	u := user([binding("sa-1", ["company-owner"], "project", "p1")])
	not allowed(u, "console.project.view", "c1", "p1", "")
	not allowed(u, "console.company.view", "c1", "", "")
}

test_root_permissions_count_only_at_root if {
	b := {"bindingId": "r", "subjects": [sa("sa-1")], "groups": [], "roles": [], "permissions": ["console.root.company.create"], "resource": {"resourceType": "company", "resourceId": "c1", "companyId": "c1"}}
	not allowed(user([b]), "console.root.company.create", "", "", "")
	direct := object.union(user([]), {"permissions": ["console.root.company.create"]})
	allowed(direct, "console.root.company.create", "", "", "")
	super := user([console_binding("sa-1", ["console-super-user"])])
	allowed(super, "console.root.serviceaccount.manage", "", "", "")
}

test_root_view_sees_everything_but_changes_nothing if {
	u := object.union(user([]), {"permissions": ["console.root.view"]})
	allowed(u, "console.environment.view", "c1", "p1", "dev")
	allowed(u, "console.company.view", "c9", "", "")
	not allowed(u, deploy, "c1", "p1", "dev")
}

test_unknown_project_is_denied if {
	u := user([binding("sa-1", ["maintainer"], "project", "p1")])
	d := authz.decision with input as req(u, deploy, "", "p1", "dev")
	not d.allow
	d.reason == "unknown_resource"
}

test_project_delete_only_through_company_permission if {
	pa := user([binding("sa-1", ["project-admin"], "project", "p1")])
	not allowed(pa, "console.project.delete", "c1", "p1", "")
	cpa := user([binding("sa-1", ["project-admin"], "company", "c1")])
	allowed(cpa, "console.project.delete", "c1", "p1", "")
}

test_unknown_route_permission_and_missing_route_deny if {
	u := user([binding("sa-1", ["company-owner"], "company", "c1")])
	not allowed(u, "console.nonsense.thing", "c1", "", "")
	not authz.decision.allow with input as {"user": u, "resource": {"companyId": "c1"}}
}

# --- no escalation ------------------------------------------------------------------------------

grant_req(u, role, rtype, rid) := object.union(
	req(u, "console.company.users.manage", "c1", "", ""),
	{"grants": [{"role": role, "resourceType": rtype, "resourceId": rid, "companyId": "c1"}]},
)

project_grant_req(u, role, rid) := object.union(
	req(u, "console.project.users.manage", "c1", "p1", ""),
	{"grants": [{"role": role, "resourceType": "project", "resourceId": rid, "companyId": "c1"}]},
)

test_maintainer_cannot_grant_project_admin if {
	# A project-level maintainer holds no users.manage; give it explicitly to isolate the rank rule.
	b := object.union(binding("sa-1", ["maintainer"], "project", "p1"), {"permissions": ["console.project.users.manage"]})
	u := user([b])
	d := authz.decision with input as project_grant_req(u, "project-admin", "p1")
	not d.allow
	d.reason == "escalation"
	authz.decision.allow with input as project_grant_req(u, "maintainer", "p1")
	authz.decision.allow with input as project_grant_req(u, "developer", "p1")
}

test_company_owner_can_grant_any_role_in_its_company if {
	u := user([binding("sa-1", ["company-owner"], "company", "c1")])
	authz.decision.allow with input as grant_req(u, "company-owner", "company", "c1")
	authz.decision.allow with input as grant_req(u, "project-admin", "project", "p1")
	authz.decision.allow with input as grant_req(u, "maintainer", "environment", "p1:dev")
}

test_role_not_allowed_at_level_is_refused if {
	u := user([binding("sa-1", ["company-owner"], "company", "c1")])
	not authz.decision.allow with input as grant_req(u, "developer", "environment", "p1:dev")
	not authz.decision.allow with input as grant_req(u, "company-owner", "project", "p1")
	not authz.decision.allow with input as grant_req(u, "no-such-role", "company", "c1")
}

test_root_user_bind_manages_every_company if {
	u := object.union(user([]), {"permissions": ["console.root.user.bind"]})
	authz.decision.allow with input as grant_req(u, "company-owner", "company", "c1")
}

test_root_permissions_granted_only_if_held if {
	u := object.union(user([]), {"permissions": ["console.root.serviceaccount.manage", "console.root.view"]})
	base := req(u, "console.root.serviceaccount.manage", "", "", "")
	authz.decision.allow with input as object.union(base, {"grants": [{"permissions": ["console.root.view"]}]})
	not authz.decision.allow with input as object.union(base, {"grants": [{"permissions": ["console.root.company.delete"]}]})
}
