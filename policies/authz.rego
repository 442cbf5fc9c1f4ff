# iamgate authorization policy: the Console / Company / Project / Runtime Environment role
# inheritance (SPEC §3). Owned by security teams: every rule here can be edited, and
# `iamgate policy test policies/` runs the tests in *_test.rego before a change goes live
# (the running gateway also refuses to load a policy whose tests fail).
#
# Input (see policies/README.md): input.request, input.user, input.resource, input.route and,
# for role assignments, input.grants. Role data: data.roles (policies/roles.json).
#
# The gateway evaluates `decision` for every request; `explain` backs `iamgate policy eval
# --explain`.
package iamgate.authz

import rego.v1

# ---------------------------------------------------------------------------------------------
# Decision
# ---------------------------------------------------------------------------------------------

default decision := {"allow": false, "reason": "permission_denied"}

decision := {"allow": true, "reason": "granted"} if {
	route_allowed
	grants_allowed
} else := {"allow": false, "reason": "unknown_resource"} if {
	not resource_known
} else := {"allow": false, "reason": "escalation"} if {
	route_allowed
	not grants_allowed
}

# A route names one permission at its resource, or a rule in package iamgate.rules.
route_allowed if permitted(input.route.permission)

route_allowed if {
	name := input.route.rule
	data.iamgate.rules[name] == true
}

# ---------------------------------------------------------------------------------------------
# Which bindings apply to the caller (rule 3: all of them count, at every level)
# ---------------------------------------------------------------------------------------------

applies(b) if input.user.id in b.subjects

applies(b) if {
	some g in b.groups
	g in input.user.groups
}

applicable contains b if {
	some b in input.user.bindings
	applies(b)
}

# Permissions a binding carries: those of its roles plus its direct permissions.
binding_permissions(b) := {p | some r in b.roles; some p in data.roles[r].permissions} | {p | some p in b.permissions}

# ---------------------------------------------------------------------------------------------
# Scope match (rule 1)
# ---------------------------------------------------------------------------------------------

scope(p) := "company" if startswith(p, "console.company.")

scope(p) := "company" if startswith(p, "marketplace.company.")

scope(p) := "project" if startswith(p, "console.project.")

scope(p) := "environment" if startswith(p, "console.environment.")

scope(p) := "root" if startswith(p, "console.root.")

scope(p) := "root" if startswith(p, "marketplace.root.")

# grants: [permission, resourceType, resourceId] the caller holds, each counted only where its
# scope matches the binding's resource type.
grants contains [p, t, id] if {
	some b in applicable
	t := b.resource.resourceType
	id := b.resource.resourceId
	some p in binding_permissions(b)
	scope(p) == t
}

# A binding without a resource carrying a non-root role is a console-level role: it applies on
# every company ("*").
grants contains [p, "company", "*"] if {
	some b in applicable
	not b.resource
	some p in binding_permissions(b)
	scope(p) == "company"
}

# Root permissions: held directly by root service accounts, or through bindings without a
# resource (console-super-user). Never from a resource binding.
root_permissions contains p if {
	some p in input.user.permissions
	scope(p) == "root"
}

root_permissions contains p if {
	some b in applicable
	not b.resource
	some p in binding_permissions(b)
	scope(p) == "root"
}

# ---------------------------------------------------------------------------------------------
# Downward inheritance (rule 2)
# ---------------------------------------------------------------------------------------------

company_id := input.resource.companyId

project_id := input.resource.projectId

env_key := concat(":", [input.resource.projectId, input.resource.envId])

# The resource is resolved: project and environment checks need the owning company, which the
# gateway's directory sets only for known projects (rule 6: unknown project -> deny).
resource_known if {
	scope(input.route.permission) in {"company", "root"}
}

resource_known if {
	scope(input.route.permission) in {"project", "environment"}
	is_string(input.resource.companyId)
	is_string(input.resource.projectId)
}

resource_known if input.route.rule

on_company(p) if [p, "company", company_id] in grants

on_company(p) if [p, "company", "*"] in grants

permitted(p) if {
	scope(p) == "root"
	p in root_permissions
}

permitted(p) if {
	scope(p) == "company"
	is_string(company_id)
	on_company(p)
}

permitted(p) if {
	scope(p) == "project"
	resource_known
	[p, "project", project_id] in grants
}

permitted(p) if {
	scope(p) == "project"
	resource_known
	suffix := substring(p, count("console.project."), -1)
	on_company(concat("", ["console.company.project.", suffix]))
}

permitted(p) if {
	scope(p) == "environment"
	resource_known
	is_string(input.resource.envId)
	[p, "environment", env_key] in grants
}

permitted(p) if {
	scope(p) == "environment"
	resource_known
	is_string(input.resource.envId)
	suffix := substring(p, count("console.environment."), -1)
	[concat("", ["console.project.environment.", suffix]), "project", project_id] in grants
}

permitted(p) if {
	scope(p) == "environment"
	resource_known
	is_string(input.resource.envId)
	suffix := substring(p, count("console.environment."), -1)
	on_company(concat("", ["console.company.project.environment.", suffix]))
}

# Root reach (rule 5): console.root.view grants every view permission everywhere;
# console.root.user.bind lets its holder manage identities and bindings in every company.
permitted(p) if {
	endswith(p, ".view")
	"console.root.view" in root_permissions
}

permitted(p) if {
	p in {"console.company.users.manage", "console.project.users.manage", "console.company.project.users.manage"}
	"console.root.user.bind" in root_permissions
}

# ---------------------------------------------------------------------------------------------
# No escalation (rule 4)
# ---------------------------------------------------------------------------------------------

# input.grants: [{"role", "resourceType", "resourceId"}] for role assignments and
# [{"permissions": [...]}] for root service accounts. Absent: nothing is being granted.
default grants_allowed := false

grants_allowed if not input.grants

grants_allowed if {
	is_array(input.grants)
	every g in input.grants {
		grant_ok(g)
	}
}

# A role may be assigned only at a level where it may be bound.
grant_ok(g) if {
	g.role == ""
	removal_ok
}

grant_ok(g) if {
	g.resourceType in data.roles[g.role].levels
	assigner_may_assign(g)
}

grant_ok(g) if {
	is_array(g.permissions)
	every p in g.permissions {
		scope(p) == "root"
		p in root_permissions
	}
}

removal_ok := true

assigner_may_assign(_) if "console.root.user.bind" in root_permissions

# Company owners may assign any role in their company.
assigner_may_assign(_) if effective_rank(company_id, "", "") >= data.roles["company-owner"].rank

assigner_may_assign(g) if {
	g.resourceType == "company"
	effective_rank(g.resourceId, "", "") >= data.roles[g.role].rank
}

assigner_may_assign(g) if {
	g.resourceType == "project"
	effective_rank(company_id, g.resourceId, "") >= data.roles[g.role].rank
}

assigner_may_assign(g) if {
	g.resourceType == "environment"
	[pid, eid] := split(g.resourceId, ":")
	effective_rank(company_id, pid, eid) >= data.roles[g.role].rank
}

# The caller's highest role rank on a resource, counting roles bound above it.
ranks_on(c, p, e) := {data.roles[r].rank |
	some b in applicable
	covers(b, c, p, e)
	some r in b.roles
	rank_counts(b, r)
}

covers(b, c, _, _) if {
	b.resource.resourceType == "company"
	b.resource.resourceId == c
}

covers(b, _, _, _) if not b.resource

covers(b, _, p, _) if {
	p != ""
	b.resource.resourceType == "project"
	b.resource.resourceId == p
}

covers(b, _, p, e) if {
	e != ""
	b.resource.resourceType == "environment"
	b.resource.resourceId == concat(":", [p, e])
}

# A console-level binding ranks only through roles that exist at company level.
rank_counts(b, _) if b.resource

rank_counts(b, r) if {
	not b.resource
	"company" in data.roles[r].levels
}

effective_rank(c, p, e) := max(ranks_on(c, p, e) | {0})

# ---------------------------------------------------------------------------------------------
# Explanation (for `iamgate policy eval --explain`; not evaluated per request)
# ---------------------------------------------------------------------------------------------

explain := {
	"decision": decision,
	"permission": input.route.permission,
	"resource": input.resource,
	"applicable_bindings": [b.bindingId | some b in applicable],
	"matching_grants": [g | some g in grants; g[0] in related_permissions],
	"root_permissions": root_permissions,
}

related_permissions contains input.route.permission

related_permissions contains concat("", ["console.company.project.", substring(input.route.permission, count("console.project."), -1)]) if {
	scope(input.route.permission) == "project"
}

related_permissions contains concat("", [prefix, substring(input.route.permission, count("console.environment."), -1)]) if {
	scope(input.route.permission) == "environment"
	some prefix in {"console.project.environment.", "console.company.project.environment."}
}
