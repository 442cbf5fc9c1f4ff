# iamgate authorization policy: the Console / Company / Project / Runtime Environment role
# inheritance. Owned by security teams: every rule here can be edited, and
# `iamgate policy test policies/` runs the tests in *_test.rego before a change goes live
# (the running gateway also refuses to load a policy whose tests fail).
#
# Input (see policies/README.md): input.request, input.user, input.resource, input.route, for
# role assignments input.grants, and for requests that act on an account input.target. Role data: data.roles (policies/roles.json). What each role
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
# microsecond: the common request (one that assigns no role and acts on no account) reads
# `route_allowed`, the request's resource (`here`), `applies` for the bindings on that resource
# and the pre-computed role table. Rule values used inside a loop are bound to a local first, so they are
# looked up once per decision rather than once per binding.
#
# Allow needs all three of: the route's permission at the resource (`route_allowed`), every grant
# within the caller's reach (`grants_allowed`, rule 4), and authority over the account or identity
# the request changes (`target_allowed`, rule 7). The branches before the last only name the
# reason of a deny.

default decision := {"allow": false, "reason": "permission_denied"}

decision := {"allow": true, "reason": "granted"} if {
	not input.grants
	not input.target
	route_allowed
} else := {"allow": false, "reason": "unknown_resource"} if {
	not resource_known
} else := {"allow": false, "reason": "permission_denied"} if {
	not route_allowed
} else := {"allow": false, "reason": "escalation"} if {
	not grants_allowed
} else := {"allow": false, "reason": "insufficient_authority"} if {
	not target_allowed
} else := {"allow": true, "reason": "granted"} if {
	route_allowed
	grants_allowed
	target_allowed
}

# A route names one permission at its resource, or a rule in package iamgate.rules.
#
# A binding grants the route when it sits on the requested resource or on one above it, in the
# company that owns it (scope match, rule 1), it applies to the caller (rule 3: `applies`) and one
# of its roles grants the route's permission at the binding's level (inheritance, rule 2:
# data.iamgate.tables.role_grants). The scope is matched before `applies` is called: a function
# call costs the RVM as much as the rest of the loop, so it runs only for bindings on the resource.
route_allowed if {
	p := input.route.permission
	on := here
	role_grants := data.iamgate.tables.role_grants
	some b in input.user.bindings
	level := b.resource.resourceType
	b.resource.resourceId == on[level]
	b.resource.companyId == on.company
	applies(b)
	some r in b.roles
	p in role_grants[r][level]
}

# The same for permissions held directly by a binding.
route_allowed if {
	p := input.route.permission
	on := here
	some b in input.user.bindings
	level := b.resource.resourceType
	b.resource.resourceId == on[level]
	b.resource.companyId == on.company
	applies(b)
	count(b.permissions) > 0
	p in held_grants(b.permissions, level)
}

# A console-level binding counts as a company-level binding in every company.
route_allowed if {
	p := input.route.permission
	is_string(here.company)
	role_grants := data.iamgate.tables.role_grants
	some b in input.user.bindings
	b.resource.resourceType == "console"
	applies(b)
	some r in b.roles
	p in role_grants[r].company
}

route_allowed if {
	p := input.route.permission
	is_string(here.company)
	some b in input.user.bindings
	b.resource.resourceType == "console"
	applies(b)
	count(b.permissions) > 0
	p in held_grants(b.permissions, "company")
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

# The caller's bindings: those naming its principal among their subjects, or one of its groups'
# principals among their groups. A principal says the kind and the issuer
# (`serviceaccount:<id>`, `user:<issuer>:<id>`, `group:<issuer>:<name>`), so a user never gets a
# service account's roles, nor a user of another issuer. All of them count, individual and
# group, at every level: roles only add.
mine := [b |
	some b in input.user.bindings
	applies(b)
]

applies(b) if input.user.principal in b.subjects

applies(b) if {
	some g in b.groups
	g in input.user.groupPrincipals
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
	some b in mine
	b.resource.resourceType == "console"
	carries(b, p)
}

# ---------------------------------------------------------------------------------------------
# No escalation (rule 4) and authority over accounts (rule 7)
# ---------------------------------------------------------------------------------------------

# input.grants: [{"role", "resourceType", "resourceId", "companyId", "removes"}] for role
# assignments ("role": "" removes; `removes` lists the roles the identity holds there now, which
# the request replaces) and [{"permissions": [...]}] for root service accounts. Absent: nothing is
# being granted.
default grants_allowed := false

grants_allowed if not input.grants

grants_allowed if {
	is_array(input.grants)
	every g in input.grants {
		grant_ok(g)
	}
}

# input.target: the account or identity whose existence or credentials the request changes
# (delete, rotate a secret, add or remove a key, remove from a company), with its authority
# written as grants. The caller must be able to grant all of it: a narrower account can manage
# accounts of equal or lesser authority, never a broader one. Absent: no account is acted on.
default target_allowed := false

target_allowed if not input.target

target_allowed if {
	is_array(input.target.authority)
	every g in input.target.authority {
		grant_ok(g)
	}
}

# Assigning a role: only at a level where the role may be bound, only within the assigner's
# reach, and every role it replaces must be within reach too.
grant_ok(g) if {
	g.role != ""
	g.resourceType in data.roles[g.role].levels
	assigner_may_assign(g, g.role)
	may_remove_all(g)
}

# Removing a role: the roles removed must be within the assigner's reach.
grant_ok(g) if {
	g.role == ""
	may_remove_all(g)
}

# Root permissions: only those the caller holds itself.
grant_ok(g) if {
	is_array(g.permissions)
	every p in g.permissions {
		is_root(p)
		holds_root(p)
	}
}

may_remove_all(g) if {
	every r in object.get(g, "removes", []) {
		assigner_may_assign(g, r)
	}
}

# The assigner's effective rank where the grant applies, in the grant's own company (the
# directory's owner of the project), must reach the role's rank. Company owners rank highest
# among company roles, so they may assign any role in their company.
assigner_may_assign(_, _) if holds_root("console.root.user.bind")

assigner_may_assign(g, role) if {
	g.resourceType == "company"
	g.resourceId == g.companyId
	effective_rank(g.companyId, "", "") >= data.roles[role].rank
}

assigner_may_assign(g, role) if {
	g.resourceType == "project"
	effective_rank(g.companyId, g.resourceId, "") >= data.roles[role].rank
}

assigner_may_assign(g, role) if {
	g.resourceType == "environment"
	[pid, eid] := split(g.resourceId, ":")
	effective_rank(g.companyId, pid, eid) >= data.roles[role].rank
}

# The caller's highest role rank on a resource, counting roles bound above it.
ranks_on(c, p, e) := {data.roles[r].rank |
	some b in mine
	covers(b, c, p, e)
	some r in b.roles
	rank_counts(b, r)
}

covers(b, c, _, _) if {
	b.resource.resourceType == "company"
	b.resource.resourceId == c
}

covers(b, _, _, _) if b.resource.resourceType == "console"

covers(b, c, p, _) if {
	p != ""
	b.resource.resourceType == "project"
	b.resource.resourceId == p
	b.resource.companyId == c
}

covers(b, c, p, e) if {
	e != ""
	b.resource.resourceType == "environment"
	b.resource.resourceId == concat(":", [p, e])
	b.resource.companyId == c
}

# A console-level binding ranks only through roles that exist at company level.
rank_counts(b, _) if b.resource.resourceType != "console"

rank_counts(b, r) if {
	b.resource.resourceType == "console"
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
	"applicable_bindings": [b.bindingId | some b in mine],
	"granted_by": [{"bindingId": b.bindingId, "level": level, "via": via} |
		some b in mine
		level := b.resource.resourceType
		at := object.get({"console": "company"}, level, level)
		is_string(here[at])
		in_scope(b, level, at)
		some via in grants_via(b, at)
	],
	"root_permissions": [p | some p in data.root_permissions; holds_root(p)],
}

in_scope(_, "console", _) := true

in_scope(b, level, at) if {
	level != "console"
	b.resource.resourceId == here[at]
	b.resource.companyId == here.company
}

# What in binding b grants the route's permission at level `at`: its roles by name, and
# "permissions" for permissions it holds directly.
grants_via(b, at) := {r |
	some r in b.roles
	input.route.permission in data.iamgate.tables.role_grants[r][at]
} | {"permissions" | input.route.permission in held_grants(b.permissions, at)}

default resource_known_or_false := false

resource_known_or_false if resource_known
