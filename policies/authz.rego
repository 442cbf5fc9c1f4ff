# iamgate authorization policy: the Console / Company / Project / Runtime Environment role
# inheritance (SPEC §3). Owned by security teams: every rule here can be edited, and
# `iamgate policy test policies/` runs the tests in *_test.rego before a change goes live
# (the running gateway also refuses to load a policy whose tests fail).
#
# Input (see policies/README.md): input.request, input.user, input.resource, input.route and,
# for role assignments, input.grants. Role data: data.roles (policies/roles.json). What each role
# grants at each level is derived from both in tables.rego, once per policy revision.
#
# The gateway evaluates `decision` for every request; `explain` backs `iamgate policy eval
# --explain`.
package iamgate.authz

import rego.v1

# ---------------------------------------------------------------------------------------------
# Decision
# ---------------------------------------------------------------------------------------------
#
# Written for the gateway's hot path, where every rule a decision touches costs about a
# microsecond: the common request (one that assigns no role) reads `route_allowed`, the
# request's resource (`here`) and the pre-computed role table. Rule values used inside a loop are
# bound to a local first, so they are looked up once per decision rather than once per binding.

default decision := {"allow": false, "reason": "permission_denied"}

decision := {"allow": true, "reason": "granted"} if {
	not input.grants
	route_allowed
} else := {"allow": true, "reason": "granted"} if {
	route_allowed
	grants_allowed
} else := {"allow": false, "reason": "unknown_resource"} if {
	not resource_known
} else := {"allow": false, "reason": "escalation"} if {
	route_allowed
	not grants_allowed
}

# A route names one permission at its resource, or a rule in package iamgate.rules.
#
# A binding grants the route when it sits on the requested resource or on one above it (scope
# match, rule 1), one of its roles grants the route's permission at the binding's level
# (inheritance, rule 2: data.iamgate.tables.role_grants) and it applies to the caller (rule 3).
#
# This first form covers a binding that names the caller among its subjects, the common case of
# an account's own binding, without a call of `applies` (each call costs about a microsecond).
route_allowed if {
	p := input.route.permission
	on := here
	role_grants := data.iamgate.tables.role_grants
	some b in input.user.bindings
	level := b.resource.resourceType
	b.resource.resourceId == on[level]
	some r in b.roles
	p in role_grants[r][level]
	input.user.id in b.subjects
}

# The general form, which also covers bindings that apply through a group.
route_allowed if {
	p := input.route.permission
	on := here
	role_grants := data.iamgate.tables.role_grants
	some b in input.user.bindings
	level := b.resource.resourceType
	b.resource.resourceId == on[level]
	some r in b.roles
	p in role_grants[r][level]
	applies(b)
}

# The same for permissions held directly by a binding.
route_allowed if {
	p := input.route.permission
	on := here
	some b in input.user.bindings
	level := b.resource.resourceType
	b.resource.resourceId == on[level]
	count(b.permissions) > 0
	p in held_grants(b.permissions, level)
	applies(b)
}

# A binding without a resource is a console-level binding: it counts as a company-level binding
# in every company.
route_allowed if {
	p := input.route.permission
	is_string(here.company)
	role_grants := data.iamgate.tables.role_grants
	some b in input.user.bindings
	not b.resource
	some r in b.roles
	p in role_grants[r].company
	applies(b)
}

route_allowed if {
	p := input.route.permission
	is_string(here.company)
	some b in input.user.bindings
	not b.resource
	count(b.permissions) > 0
	p in held_grants(b.permissions, "company")
	applies(b)
}

# Root permissions, held by a root service account or through a console-level binding.
route_allowed if {
	some p in root_candidates
	holds_root(p)
}

route_allowed if {
	name := input.route.rule
	data.iamgate.rules[name] == true
}

# ---------------------------------------------------------------------------------------------
# Bindings: which apply (rule 3), what they carry
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

# For a route permission starting with the prefix on the left, the permission that grants it to
# a binding at each level is that level's prefix followed by the same rest. Each level is asked
# only for permissions of its own scope (rule 1); a level missing from an entry grants nothing.
inheritance := {
	"console.company.": {"company": "console.company."},
	"marketplace.company.": {"company": "marketplace.company."},
	"console.project.": {
		# company -> project: console.company.project.X on the company grants console.project.X.
		"company": "console.company.project.",
		"project": "console.project.",
	},
	"console.environment.": {
		# company -> environment: console.company.project.environment.X grants console.environment.X.
		"company": "console.company.project.environment.",
		# project -> environment: console.project.environment.X on the project.
		"project": "console.project.environment.",
		"environment": "console.environment.",
	},
}

# held_grants(held, level): the route permissions that the permissions `held`, held by a binding
# at `level`, grant on the binding's resource and on everything below it.
held_grants(held, level) := {concat("", [prefix, substring(q, count(level_prefix), -1)]) |
	some q in held
	some prefix, by_level in inheritance
	level_prefix := by_level[level]
	startswith(q, level_prefix)
}

# The request's resource at each level a binding can sit on ("<project>:<env>" for environments),
# or null where there is none, so that no binding matches there. A project or environment
# permission is checked only on a resolved resource: the owning company (which the gateway's
# directory sets only for a known project) and the project, plus the environment for an
# environment permission (rule 6: unknown project -> deny; `resource_known` says the same for the
# decision's reason).
default here := {"company": null, "project": null, "environment": null}

here := {"company": r.companyId, "project": r.projectId, "environment": concat(":", [r.projectId, r.envId])} if {
	r := input.resource
	r.companyId
	r.projectId
	r.envId
} else := {"company": r.companyId, "project": r.projectId, "environment": null} if {
	r := input.resource
	r.companyId
	r.projectId
	not startswith(input.route.permission, "console.environment.")
} else := {"company": input.resource.companyId, "project": null, "environment": null} if {
	input.resource.companyId
	not startswith(input.route.permission, "console.project.")
	not startswith(input.route.permission, "console.environment.")
}

perm := input.route.permission

is_root(p) if startswith(p, "console.root.")

is_root(p) if startswith(p, "marketplace.root.")

# The resource is resolved: project and environment checks need the owning company, which the
# gateway's directory sets only for known projects, and an environment permission needs the
# environment.
resource_known if {
	is_string(input.resource.companyId)
	is_string(input.resource.projectId)
	env_named
}

resource_known if startswith(perm, "console.company.")

resource_known if startswith(perm, "marketplace.company.")

resource_known if is_root(perm)

resource_known if input.route.rule

env_named if not startswith(perm, "console.environment.")

env_named if is_string(input.resource.envId)

root_candidates contains perm if is_root(perm)

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
	"granted_by": [{"bindingId": b.bindingId, "level": level, "via": via} |
		some b in input.user.bindings
		applies(b)
		level := object.get(b, ["resource", "resourceType"], "console")
		at := object.get({"console": "company"}, level, level)
		is_string(here[at])
		object.get(b, ["resource", "resourceId"], here[at]) == here[at]
		some via in grants_via(b, at)
	],
	"root_permissions": [p | some p in data.root_permissions; holds_root(p)],
}

# What in binding b grants the route's permission at level `at`: its roles by name, and
# "permissions" for permissions it holds directly.
grants_via(b, at) := {r |
	some r in b.roles
	input.route.permission in data.iamgate.tables.role_grants[r][at]
} | {"permissions" | input.route.permission in held_grants(b.permissions, at)}

default resource_known_or_false := false

resource_known_or_false if resource_known
