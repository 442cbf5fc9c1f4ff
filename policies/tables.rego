# Tables derived from the policy and its data alone, never from a request. The gateway evaluates
# every rule of this package once when it loads a policy revision and gives decisions the result
# as data.iamgate.tables, so a decision looks a role up instead of re-deriving it; tests and
# `iamgate policy eval` evaluate the same rules directly. Rules here must not read `input`
# (loading a policy that does fails).
package iamgate.tables

import rego.v1

import data.iamgate.authz

# The binding levels below the console.
levels := ["company", "project", "environment"]

# role_grants[role][level]: the route permissions that `role`, bound at `level`, grants on the
# bound resource and on everything below it (authz.held_grants applies the inheritance table).
role_grants := {role: {level: authz.held_grants(def.permissions, level) | some level in levels} |
	some role, def in data.roles
}
