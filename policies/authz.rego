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
# One pass over the caller's bindings: each binding's slot (where it sits) selects the
# permissions that would grant the route there; only those are looked up in its roles.
route_allowed if {
	some b in input.user.bindings
	slot := concat("/", [object.get(b, ["resource", "resourceType"], "*"), object.get(b, ["resource", "resourceId"], "")])
	some p in wanted[slot]
	carries(b, p)
	applies(b)
}

# Root permissions held directly by a root service account.
route_allowed if {
	some p in root_candidates
	p in input.user.permissions
}

route_allowed if {
	name := input.route.rule
	data.iamgate.rules[name] == true
}

# ---------------------------------------------------------------------------------------------
# Bindings: which apply (rule 3), what they carry, where they sit
# ---------------------------------------------------------------------------------------------

# A binding applies to the caller through its subjects or through a shared group. All applicable
# bindings count, individual and group, at every level: roles only add.
applies(b) if input.user.id in b.subjects

applies(b) if {
	some g in b.groups
	g in input.user.groups
}

# b carries permission p through one of its roles or directly.
carries(b, p) if {
	some r in b.roles
	p in data.roles[r].permissions
}

carries(b, p) if p in b.permissions

# ---------------------------------------------------------------------------------------------
# Scope match (rule 1) and downward inheritance (rule 2)
# ---------------------------------------------------------------------------------------------
#
# `wanted` maps each slot a binding can sit at ("company/<id>", "project/<id>",
# "environment/<project>:<env>", "*/" for no resource) to the permissions that grant the route's
# permission there. Each level is asked only for permissions of its own scope, which is rule 1:
# console.company.* and marketplace.company.* on companies, console.project.* on projects,
# console.environment.* on environments, root permissions on bindings without a resource.

perm := input.route.permission

is_root(p) if startswith(p, "console.root.")

is_root(p) if startswith(p, "marketplace.root.")

is_company(p) if startswith(p, "console.company.")

is_company(p) if startswith(p, "marketplace.company.")

env_key := concat(":", [input.resource.projectId, input.resource.envId])

# Classification of the route's permission by scope, evaluated once per decision.
perm_is_company if startswith(perm, "console.company.")

perm_is_company if startswith(perm, "marketplace.company.")

perm_is_root if startswith(perm, "console.root.")

perm_is_root if startswith(perm, "marketplace.root.")

# The resource is resolved: project and environment checks need the owning company, which the
# gateway's directory sets only for known projects (rule 6: unknown project -> deny).
resource_known if perm_is_company

resource_known if perm_is_root

resource_known if {
	is_string(input.resource.companyId)
	is_string(input.resource.projectId)
}

resource_known if input.route.rule

project_check if {
	startswith(perm, "console.project.")
	resource_known
}

environment_check if {
	startswith(perm, "console.environment.")
	resource_known
	is_string(input.resource.envId)
}

# Company-scoped permissions that grant the route's permission.
company_level contains perm if perm_is_company

# company -> project: console.company.project.X on the company grants console.project.X.
company_level contains concat("", ["console.company.project.", substring(perm, 16, -1)]) if project_check

# company -> environment: console.company.project.environment.X grants console.environment.X.
company_level contains concat("", ["console.company.project.environment.", substring(perm, 20, -1)]) if environment_check

# Project-scoped permissions on the project that grant the route's permission.
project_level contains perm if project_check

# project -> environment: console.project.environment.X on the project grants console.environment.X.
project_level contains concat("", ["console.project.environment.", substring(perm, 20, -1)]) if environment_check

environment_level contains perm if environment_check

# Bindings without a resource: console-level roles and root permissions.
console_level contains p if some p in root_candidates

# A binding without a resource carrying a non-root role is a console-level role: it applies on
# every company.
console_level contains p if some p in company_level

# wanted[slot]: the permissions that grant the route's permission to a binding at that slot.
wanted[concat("/", ["company", input.resource.companyId])] := company_level

wanted[concat("/", ["project", input.resource.projectId])] := project_level if resource_known

wanted[concat("/", ["environment", env_key])] := environment_level if environment_check

wanted[console_slot] := console_level

console_slot := "*/"

root_candidates contains perm if perm_is_root

# Root reach (rule 5): console.root.view grants every view permission everywhere;
# console.root.user.bind lets its holder manage identities and bindings in every company.
root_candidates contains "console.root.view" if endswith(perm, ".view")

root_candidates contains "console.root.user.bind" if {
	perm in {"console.company.users.manage", "console.project.users.manage", "console.company.project.users.manage"}
}

# Root permissions the caller holds (used for grants of root permissions and by explain).
holds_root(p) if p in input.user.permissions

holds_root(p) if {
	some b in input.user.bindings
	not b.resource
	carries(b, p)
	applies(b)
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
		is_root(p)
		holds_root(p)
	}
}

removal_ok := true

assigner_may_assign(_) if holds_root("console.root.user.bind")

# Company owners may assign any role in their company.
assigner_may_assign(_) if effective_rank(input.resource.companyId, "", "") >= data.roles["company-owner"].rank

assigner_may_assign(g) if {
	g.resourceType == "company"
	effective_rank(g.resourceId, "", "") >= data.roles[g.role].rank
}

assigner_may_assign(g) if {
	g.resourceType == "project"
	effective_rank(input.resource.companyId, g.resourceId, "") >= data.roles[g.role].rank
}

assigner_may_assign(g) if {
	g.resourceType == "environment"
	[pid, eid] := split(g.resourceId, ":")
	effective_rank(input.resource.companyId, pid, eid) >= data.roles[g.role].rank
}

# The caller's highest role rank on a resource, counting roles bound above it.
ranks_on(c, p, e) := {data.roles[r].rank |
	some b in input.user.bindings
	covers(b, c, p, e)
	applies(b)
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
	"resource_known": resource_known_or_false,
	"applicable_bindings": [b.bindingId | some b in input.user.bindings; applies(b)],
	"wanted": wanted,
	"granted_by": [{"bindingId": b.bindingId, "permission": p, "slot": slot} |
		some b in input.user.bindings
		slot := concat("/", [object.get(b, ["resource", "resourceType"], "*"), object.get(b, ["resource", "resourceId"], "")])
		some p in wanted[slot]
		carries(b, p)
		applies(b)
	],
	"root_permissions": [p | some p in data.root_permissions; holds_root(p)],
}

default resource_known_or_false := false

resource_known_or_false if resource_known
