# Response rules: what a caller may see of a list the upstream returns.
#
# A route with `response: NAME` in the route table has its upstream JSON answer (2xx only)
# replaced by data.iamgate.responses[NAME], evaluated with the request's input plus
# input.response.body. Each rule keeps a row only when the authorization policy would allow the
# matching view permission on that row's resource, so the two can never disagree.
#
# Lists (an array answer) are filtered item by item: `item_filters` names, for a rule, the
# permission each item is checked for and the item fields that hold its company, project and
# environment ids. The gateway keeps an item when the authorization decision for that resource
# allows it: the same decision a request for it gets, on the compiled policy, with the time limit
# of one decision per item, and the list streams out as it is decided, so a company with
# thousands of projects gets them all. The rule of the same name states that filter in Rego
# (`filtered`), for the tests below and for any evaluator that runs this package as a whole.
#
# Other rules (an object answer, or an array rule without an entry here) run on regorus'
# interpreter (they use `with`), once per filtered response, within a time limit that grows with
# the answer's length. A rule that is undefined (an answer of an unexpected shape) makes the
# gateway refuse the answer (502) rather than pass it through.
package iamgate.responses

import data.iamgate.authz
import rego.v1

item_filters := {
	# R1 GET /api/backend/tenants/: the companies the caller may view.
	"companies": {"permission": "console.company.view", "fields": {"companyId": "tenantId"}},
	# R2 GET /api/backend/projects/: the projects the caller may view.
	"projects": {"permission": "console.project.view", "fields": {"companyId": "tenantId", "projectId": "_id"}},
}

companies := filtered(item_filters.companies)

projects := filtered(item_filters.projects)

# The items of the answer whose resource (the filter's fields that hold strings) the caller
# may access with the filter's permission.
filtered(f) := [item |
	some item in input.response.body
	allowed(f.permission, {key: item[field] | some key, field in f.fields; is_string(item[field])})
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
