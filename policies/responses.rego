# Response rules: what a caller may see of a list the upstream returns.
#
# A route with `response: NAME` in the route table has its upstream JSON answer (2xx only)
# replaced by data.iamgate.responses[NAME], evaluated with the request's input plus
# input.response.body. Each rule keeps a row only when the authorization policy would allow the
# matching view permission on that row's resource, so the two can never disagree.
#
# These rules run on regorus' interpreter (they use `with`), once per filtered response. A rule
# that is undefined (an answer of an unexpected shape) makes the gateway refuse the answer (502)
# rather than pass it through.
package iamgate.responses

import data.iamgate.authz
import rego.v1

# R1 GET /api/backend/tenants/: the companies the caller may view.
companies := [c |
	some c in input.response.body
	allowed("console.company.view", {"companyId": c.tenantId})
] if is_array(input.response.body)

# R2 GET /api/backend/projects/: the projects the caller may view.
projects := [p |
	some p in input.response.body
	allowed("console.project.view", {"companyId": p.tenantId, "projectId": p._id})
] if is_array(input.response.body)

# P1 GET /api/backend/projects/{projectId}: the project, with only the environments the
# caller may view.
project_environments := object.union(input.response.body, {"environments": [e |
	some e in object.get(input.response.body, "environments", [])
	allowed("console.environment.view", {
		"companyId": input.response.body.tenantId,
		"projectId": input.response.body._id,
		"envId": e.envId,
	})
]}) if is_object(input.response.body)

allowed(permission, resource) if {
	authz.decision.allow with input.route as {"id": input.route.id, "permission": permission}
		with input.resource as resource
}
