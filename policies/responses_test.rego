package iamgate.responses_test

import data.iamgate.responses
import rego.v1

binding(id, role, type, rid) := {
	"bindingId": id, "subjects": ["serviceaccount:u1"], "groups": [], "roles": [role], "permissions": [],
	"resource": {"resourceType": type, "resourceId": rid, "companyId": company(type, rid)},
}

company("company", rid) := rid

company(type, _) := "c1" if type != "company"

user(bindings) := {"id": "u1", "type": "serviceaccount", "principal": "serviceaccount:u1", "groups": [], "groupPrincipals": [], "permissions": [], "bindings": bindings}

project_list := [
	{"_id": "p1", "tenantId": "c1", "name": "one"},
	{"_id": "p2", "tenantId": "c1", "name": "two"},
	{"_id": "p3", "tenantId": "c2", "name": "three"},
]

test_project_list_keeps_only_viewable_projects if {
	got := responses.projects with input as {
		"user": user([binding("b1", "developer", "project", "p2")]),
		"route": {"id": "R2"},
		"response": {"body": project_list},
	}
	[p._id | some p in got] == ["p2"]
}

test_company_role_sees_every_project_of_its_company if {
	got := responses.projects with input as {
		"user": user([binding("b1", "reporter", "company", "c1")]),
		"route": {"id": "R2"},
		"response": {"body": project_list},
	}
	[p._id | some p in got] == ["p1", "p2"]
}

test_company_guest_sees_no_project if {
	got := responses.projects with input as {
		"user": user([binding("b1", "guest", "company", "c1")]),
		"route": {"id": "R2"},
		"response": {"body": project_list},
	}
	got == []
}

test_root_view_sees_everything if {
	got := responses.projects with input as {
		"user": object.union(user([]), {"permissions": ["console.root.view"]}),
		"route": {"id": "R2"},
		"response": {"body": project_list},
	}
	count(got) == 3
}

test_company_list_is_filtered if {
	got := responses.companies with input as {
		"user": user([binding("b1", "guest", "company", "c2")]),
		"route": {"id": "R1"},
		"response": {"body": [{"tenantId": "c1"}, {"tenantId": "c2"}]},
	}
	got == [{"tenantId": "c2"}]
}

test_project_environments_are_filtered if {
	got := responses.project_environments with input as {
		"user": user([binding("b1", "reporter", "environment", "p1:dev")]),
		"route": {"id": "P1"},
		"response": {"body": {"_id": "p1", "tenantId": "c1", "environments": [{"envId": "dev"}, {"envId": "prod"}]}},
	}
	got.environments == [{"envId": "dev"}]
	got._id == "p1"
}

test_unexpected_shapes_are_undefined if {
	not responses.projects with input as {"user": user([]), "route": {"id": "R2"}, "response": {"body": {"a": 1}}}
	not responses.project_environments with input as {"user": user([]), "route": {"id": "P1"}, "response": {"body": [1]}}
}
