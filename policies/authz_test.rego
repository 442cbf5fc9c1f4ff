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

test_a_binding_without_resource_grants_nothing if {
	b := object.remove(console_binding("sa-1", ["company-owner"]), ["resource"])
	u := object.union(user([b]), {"permissions": []})
	not allowed(u, "console.company.view", "c1", "", "")
	not allowed(u, deploy, "c1", "p1", "dev")
	not allowed(u, "console.root.view", "", "", "")
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

test_bindings_of_others_grant_nothing_in_any_form if {
	direct := object.union(binding("someone-else", [], "project", "p1"), {"permissions": ["console.project.view"]})
	not allowed(user([direct]), "console.project.view", "c1", "p1", "")
	console := console_binding("someone-else", ["company-owner"])
	not allowed(user([console]), "console.company.view", "c1", "", "")
	console_direct := object.union(console_binding("someone-else", []), {"permissions": ["console.company.view"]})
	not allowed(user([console_direct]), "console.company.view", "c1", "", "")
	# The same bindings, made for the caller, do grant: only the subject differs.
	allowed(user([object.union(direct, {"subjects": [sa("sa-1")]})]), "console.project.view", "c1", "p1", "")
	allowed(user([object.union(console, {"subjects": [sa("sa-1")]})]), "console.company.view", "c1", "", "")
	allowed(user([object.union(console_direct, {"subjects": [sa("sa-1")]})]), "console.company.view", "c1", "", "")
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

# --- company-scoped bindings, direct permissions, console level ---------------------------------

test_a_binding_made_in_another_company_never_matches_its_project if {
	# Made in c2 on p1, which the directory now gives to c1 (a moved or squatted project).
	stale := in_company("sa-1", ["maintainer"], "project", "p1", "c2")
	not allowed(user([stale]), deploy, "c1", "p1", "dev")
	direct := object.union(in_company("sa-1", [], "project", "p1", "c2"), {"permissions": ["console.project.view"]})
	not allowed(user([direct]), "console.project.view", "c1", "p1", "")
}

test_a_binding_matches_its_own_level_only if {
	# A project binding whose id happens to equal the company id grants nothing in the company.
	odd := in_company("sa-1", ["maintainer"], "project", "c1", "c1")
	not allowed(user([odd]), "console.company.view", "c1", "", "")
	odd_direct := object.union(in_company("sa-1", [], "project", "c1", "c1"), {"permissions": ["console.company.view"]})
	not allowed(user([odd_direct]), "console.company.view", "c1", "", "")
}

test_direct_permissions_grant_what_they_name_where_they_are_bound if {
	b := object.union(binding("sa-1", [], "project", "p1"), {"permissions": ["console.project.view"]})
	allowed(user([b]), "console.project.view", "c1", "p1", "")
	not allowed(user([b]), "console.project.view", "c1", "p2", "")
	not allowed(user([b]), "console.project.configuration.update", "c1", "p1", "")
}

test_console_level_binding_grants_only_what_its_roles_grant if {
	guest := user([console_binding("sa-1", ["guest"])])
	allowed(guest, "console.company.view", "c1", "", "")
	not allowed(guest, deploy, "c1", "p1", "dev")
	not allowed(guest, "console.project.view", "c1", "p1", "")
	# Without a company to count in, a console-level role grants nothing.
	not allowed(user([console_binding("sa-1", ["company-owner"])]), "console.company.view", "", "", "")
}

test_console_level_direct_permissions if {
	b := object.union(console_binding("sa-1", []), {"permissions": ["console.company.view"]})
	allowed(user([b]), "console.company.view", "c5", "", "")
	not allowed(user([b]), "console.company.details.update", "c5", "", "")
	not allowed(user([b]), "console.company.view", "", "", "")
	# Direct permissions of a company binding stay in that company.
	elsewhere := object.union(binding("sa-1", [], "company", "c2"), {"permissions": ["console.company.view"]})
	not allowed(user([elsewhere]), "console.company.view", "c1", "", "")
}

test_console_level_roots_come_from_roles_or_permissions_that_carry_them if {
	not allowed(user([console_binding("sa-1", ["maintainer"])]), "console.root.serviceaccount.manage", "", "", "")
	direct := object.union(console_binding("sa-1", []), {"permissions": ["console.root.view"]})
	allowed(user([direct]), "console.root.view", "", "", "")
	allowed(user([direct]), "console.project.view", "c1", "p1", "")
	# A company binding carrying a root permission holds nothing at root.
	company := object.union(binding("sa-1", [], "company", "c1"), {"permissions": ["console.root.view"]})
	not allowed(user([company]), "console.root.view", "", "", "")
}

test_marketplace_permissions_inherit_and_count_at_root if {
	u := user([binding("sa-1", ["guest"], "company", "c1")])
	allowed(u, "marketplace.company.resources.view", "c1", "", "")
	not allowed(u, "marketplace.company.resources.view", "c2", "", "")
	m := object.union(user([]), {"permissions": ["marketplace.root.manage"]})
	allowed(m, "marketplace.root.manage", "", "", "")
}

test_custom_rules_decide_routes_that_name_them if {
	u := user([])
	on := {"request": {"method": "GET", "path": "/x"}, "user": u, "resource": {}}
	authz.decision.allow with input as object.union(on, {"route": {"id": "t", "rule": "yes"}})
		with data.iamgate.rules as {"yes": true, "no": false}
	not authz.decision.allow with input as object.union(on, {"route": {"id": "t", "rule": "no"}})
		with data.iamgate.rules as {"yes": true, "no": false}
}

test_environment_permission_needs_the_environment if {
	u := user([binding("sa-1", ["maintainer"], "project", "p1")])
	d := authz.decision with input as req(u, deploy, "c1", "p1", "")
	not d.allow
	d.reason == "unknown_resource"
	# A project permission ignores an environment named beside it.
	allowed(u, "console.project.configuration.update", "c1", "p1", "dev")
}

test_project_permission_needs_the_project if {
	u := user([binding("sa-1", ["maintainer"], "company", "c1")])
	d := authz.decision with input as req(u, "console.project.view", "c1", "", "")
	not d.allow
	d.reason == "unknown_resource"
}

test_root_user_bind_reaches_user_management_only if {
	u := object.union(user([]), {"permissions": ["console.root.user.bind"]})
	allowed(u, "console.company.users.manage", "c9", "", "")
	allowed(u, "console.project.users.manage", "c9", "p9", "")
	not allowed(u, "console.company.details.update", "c9", "", "")
}

# --- no escalation: ranks at each level, removals --------------------------------------------

grant(role, rtype, rid) := {"role": role, "resourceType": rtype, "resourceId": rid, "companyId": "c1"}

with_grants(u, gs) := object.union(req(u, "console.company.users.manage", "c1", "", ""), {"grants": gs})

grants_ok(u, gs) if authz.decision.allow with input as with_grants(u, gs)

# A caller holding company user management in c1 directly (ranking nothing there), with `bindings`.
manager(bindings) := user(array.concat(bindings, [object.union(binding("sa-1", [], "company", "c1"), {"permissions": ["console.company.users.manage"]})]))

test_company_rank_bounds_company_grants if {
	u := manager([binding("sa-1", ["developer"], "company", "c1")])
	grants_ok(u, [grant("developer", "company", "c1")])
	not grants_ok(u, [grant("maintainer", "company", "c1")])
	# Another company's rank does not count here.
	other := manager([binding("sa-1", ["company-owner"], "company", "c2")])
	not grants_ok(other, [grant("guest", "company", "c1")])
	# A company grant names its company.
	not grants_ok(u, [object.union(grant("guest", "company", "c2"), {"companyId": "c1"})])
}

test_project_rank_bounds_project_grants_in_that_project_only if {
	u := manager([binding("sa-1", ["maintainer"], "project", "p1")])
	grants_ok(u, [grant("maintainer", "project", "p1")])
	not grants_ok(u, [grant("project-admin", "project", "p1")])
	not grants_ok(u, [grant("guest", "project", "p2")])
	# A project binding made in another company ranks nothing here.
	stale := manager([in_company("sa-1", ["project-admin"], "project", "p1", "c2")])
	not grants_ok(stale, [grant("guest", "project", "p1")])
	# Company roles rank on every project of the company.
	c := manager([binding("sa-1", ["maintainer"], "company", "c1")])
	grants_ok(c, [grant("maintainer", "project", "p7")])
	not grants_ok(c, [grant("project-admin", "project", "p7")])
}

test_environment_rank_bounds_environment_grants if {
	u := manager([binding("sa-1", ["maintainer"], "environment", "p1:dev")])
	grants_ok(u, [grant("maintainer", "environment", "p1:dev")])
	not grants_ok(u, [grant("maintainer", "environment", "p1:prod")])
	not grants_ok(u, [grant("maintainer", "environment", "p2:dev")])
	stale := manager([in_company("sa-1", ["maintainer"], "environment", "p1:dev", "c2")])
	not grants_ok(stale, [grant("reporter", "environment", "p1:dev")])
	# A project role ranks on its environments.
	p := manager([binding("sa-1", ["maintainer"], "project", "p1")])
	grants_ok(p, [grant("maintainer", "environment", "p1:dev")])
	not grants_ok(p, [grant("maintainer", "environment", "p2:dev")])
}

test_console_level_roles_rank_only_at_company_level if {
	u := manager([console_binding("sa-1", ["maintainer"])])
	grants_ok(u, [grant("maintainer", "project", "p1")])
	not grants_ok(u, [grant("project-admin", "project", "p1")])
	# A role that exists only at root ranks nothing in companies, however high its rank.
	roles := object.union(data.roles, {"root-viewer": {"rank": 900, "levels": ["root"], "permissions": ["console.root.view"]}})
	s := manager([console_binding("sa-1", ["root-viewer"])])
	not authz.decision.allow with input as with_grants(s, [grant("guest", "company", "c1")]) with data.roles as roles
}

test_removals_and_replacements_need_rank_over_what_is_removed if {
	u := manager([binding("sa-1", ["maintainer"], "project", "p1")])
	# Removing a role the assigner could have granted.
	grants_ok(u, [object.union(grant("", "project", "p1"), {"removes": ["developer"]})])
	# Removing or replacing a higher role: refused.
	not grants_ok(u, [object.union(grant("", "project", "p1"), {"removes": ["project-admin"]})])
	not grants_ok(u, [object.union(grant("guest", "project", "p1"), {"removes": ["project-admin"]})])
	grants_ok(u, [object.union(grant("guest", "project", "p1"), {"removes": ["maintainer"]})])
	# Removing nothing is fine.
	grants_ok(u, [grant("", "project", "p1")])
	d := authz.decision with input as with_grants(u, [object.union(grant("", "project", "p1"), {"removes": ["project-admin"]})])
	d.reason == "escalation"
}

test_grants_must_be_a_list_of_valid_grants if {
	u := manager([binding("sa-1", ["company-owner"], "company", "c1")])
	not authz.decision.allow with input as object.union(req(u, "console.company.users.manage", "c1", "", ""), {"grants": {"role": "guest"}})
	not grants_ok(u, [{"permissions": "console.root.view"}])
	# A root permission grant names root permissions only.
	r := object.union(u, {"permissions": ["console.root.view"]})
	not grants_ok(r, [{"permissions": ["console.company.view"]}])
}

# --- authority over accounts (rule 7) -----------------------------------------------------------

root_target(perms) := {"principal": "serviceaccount:t", "authority": [{"permissions": perms}]}

acting_on(u, perm, company, target) := object.union(req(u, perm, company, "", ""), {"target": target})

acts(u, perm, company, target) if authz.decision.allow with input as acting_on(u, perm, company, target)

test_a_root_account_manages_only_accounts_within_its_authority if {
	narrow := object.union(user([]), {"permissions": ["console.root.serviceaccount.manage"]})
	manage := "console.root.serviceaccount.manage"
	acts(narrow, manage, "", root_target([]))
	acts(narrow, manage, "", root_target(["console.root.serviceaccount.manage"]))
	not acts(narrow, manage, "", root_target(["console.root.serviceaccount.manage", "console.root.view"]))
	d := authz.decision with input as acting_on(narrow, manage, "", root_target(["console.root.user.bind"]))
	not d.allow
	d.reason == "insufficient_authority"
	# Not a list of grants: refused.
	not acts(narrow, manage, "", {"principal": "serviceaccount:t", "authority": {"permissions": []}})
	# The route's permission is still required.
	not acts(object.union(user([]), {"permissions": []}), manage, "", root_target([]))
}

test_a_company_account_manages_only_identities_it_outranks_or_equals if {
	owner := manager([binding("sa-1", ["company-owner"], "company", "c1")])
	peer := {"principal": "serviceaccount:t", "authority": [grant("company-owner", "company", "c1")]}
	acts(owner, "console.company.users.manage", "c1", peer)
	dev := manager([binding("sa-1", ["developer"], "company", "c1")])
	not acts(dev, "console.company.users.manage", "c1", peer)
	lesser := {"principal": "user:corp:x", "authority": [grant("developer", "project", "p1")]}
	acts(dev, "console.company.users.manage", "c1", lesser)
	# A console-level role of the target: only root user binding with its root permissions.
	console := {"principal": "serviceaccount:t", "authority": [{"role": "console-super-user", "resourceType": "console"}]}
	not acts(owner, "console.company.users.manage", "c1", console)
}

test_explain_names_the_bindings_that_grant if {
	b := binding("sa-1", ["maintainer"], "project", "p1")
	c := console_binding("sa-1", ["guest"])
	other := binding("someone", ["maintainer"], "project", "p1")
	e := authz.explain with input as req(user([b, c, other]), "console.project.view", "c1", "p1", "")
	e.decision.allow
	e.permission == "console.project.view"
	e.resource == {"companyId": "c1", "projectId": "p1"}
	e.resource_known
	e.applicable_bindings == [b.bindingId, c.bindingId]
	e.granted_by == [{"bindingId": b.bindingId, "level": "project", "via": "maintainer"}]
	e.root_permissions == []
	d := object.union(binding("sa-1", [], "project", "p2"), {"permissions": ["console.project.view"]})
	e2 := authz.explain with input as req(user([d]), "console.project.view", "c1", "p2", "")
	e2.granted_by == [{"bindingId": d.bindingId, "level": "project", "via": "permissions"}]
	e3 := authz.explain with input as req(object.union(user([]), {"permissions": ["console.root.view"]}), deploy, "c1", "p9", "")
	not e3.resource_known
	e3.root_permissions == ["console.root.view"]
	e4 := authz.explain with input as req(user([c]), "console.company.view", "c1", "", "")
	e4.granted_by == [{"bindingId": c.bindingId, "level": "console", "via": "guest"}]
}

test_reasons_name_what_failed if {
	guest := user([binding("sa-1", ["guest"], "company", "c1")])
	# Resolved resources, no permission: permission_denied, for every kind of permission.
	d1 := authz.decision with input as req(guest, deploy, "c1", "p1", "dev")
	d1.reason == "permission_denied"
	d2 := authz.decision with input as req(user([]), "marketplace.company.resources.view", "c1", "", "")
	d2.reason == "permission_denied"
	on := {"request": {"method": "GET", "path": "/x"}, "user": guest, "resource": {}}
	d3 := authz.decision with input as object.union(on, {"route": {"id": "t", "rule": "no"}})
		with data.iamgate.rules as {"no": false}
	d3.reason == "permission_denied"
}

test_an_environment_permission_is_never_granted_on_the_company_alone if {
	u := user([binding("sa-1", ["maintainer"], "company", "c1")])
	not allowed(u, deploy, "c1", "", "")
	not allowed(u, "console.environment.view", "c1", "", "dev")
}

test_root_permission_grants_name_root_permissions_only if {
	# Holding console.company.view through a console-level role is not a root permission.
	u := object.union(user([console_binding("sa-1", ["maintainer"])]), {"permissions": ["console.root.serviceaccount.manage"]})
	base := req(u, "console.root.serviceaccount.manage", "", "", "")
	not authz.decision.allow with input as object.union(base, {"grants": [{"permissions": ["console.company.view"]}]})
}

test_only_company_bindings_rank_at_company_level if {
	# A project binding whose id equals the company id ranks nothing at company level.
	u := manager([in_company("sa-1", ["project-admin"], "project", "c1", "c1")])
	not grants_ok(u, [grant("guest", "company", "c1")])
}

test_explain_leaves_out_bindings_elsewhere if {
	here_b := binding("sa-1", ["maintainer"], "project", "p1")
	elsewhere := binding("sa-1", ["maintainer"], "project", "p2")
	stale := in_company("sa-1", ["maintainer"], "project", "p1", "c2")
	e := authz.explain with input as req(user([here_b, elsewhere, stale]), "console.project.view", "c1", "p1", "")
	e.granted_by == [{"bindingId": here_b.bindingId, "level": "project", "via": "maintainer"}]
}
