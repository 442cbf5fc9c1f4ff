//! The shipped route table, route by route: every route of the Console inventory
//! (config/routes.yaml) is forwarded for a caller the policy allows, exactly as sent,
//! and refused for one it does not (403), for no token (401), and for a company owner of another
//! company.

use crate::common;

use common::gateway;
use common::upstream::TestUpstream;
use http::Method;
use serde_json::json;

const P1: &str = "64b7e1a0c0ffee0000000001";

#[derive(Clone, Copy, PartialEq, Debug)]
enum Who {
    /// A company owner of acme is allowed; nobody else.
    Owner,
    /// Only a root account with console.root.serviceaccount.manage.
    Root,
    /// Any valid token.
    Authenticated,
    /// No token needed.
    Public,
}

fn rows() -> Vec<(&'static str, Method, String, &'static str, Who)> {
    use Who::*;
    let p = P1;
    let mut v = vec![
        (
            "R1",
            Method::GET,
            "/api/backend/tenants/".to_owned(),
            "",
            Authenticated,
        ),
        (
            "R2",
            Method::GET,
            "/api/backend/projects/?tenantIds=acme".to_owned(),
            "",
            Authenticated,
        ),
        (
            "C1",
            Method::GET,
            "/api/tenants/acme/clusters/k8s-1".to_owned(),
            "",
            Owner,
        ),
        (
            "C2",
            Method::GET,
            "/api/backend/tenants/acme/providers/".to_owned(),
            "",
            Owner,
        ),
        (
            "C3",
            Method::POST,
            "/api/backend/tenants/acme/providers".to_owned(),
            "{}",
            Owner,
        ),
        (
            "C4",
            Method::PATCH,
            "/api/backend/tenants/acme/providers/gitlab".to_owned(),
            "{}",
            Owner,
        ),
        (
            "C5",
            Method::GET,
            "/api/backend/tenants/acme/rules".to_owned(),
            "",
            Owner,
        ),
        (
            "C6",
            Method::PATCH,
            "/api/backend/tenants/acme/rules".to_owned(),
            "{}",
            Owner,
        ),
        (
            "C7",
            Method::GET,
            "/api/backend/templates/?tenantId=acme".to_owned(),
            "",
            Owner,
        ),
        (
            "C8",
            Method::GET,
            "/api/backend/projects/draft?tenantId=acme&projectId=new".to_owned(),
            "",
            Owner,
        ),
        (
            "C9",
            Method::POST,
            "/api/backend/projects/".to_owned(),
            r#"{"tenantId":"acme","projectId":"new"}"#,
            Owner,
        ),
        (
            "C10",
            Method::GET,
            "/api/tenants/acme/audit-logs?from=1&to=2".to_owned(),
            "",
            Owner,
        ),
        (
            "I6",
            Method::POST,
            "/api/companies/acme/groups/g1/members".to_owned(),
            r#"{"emails":["a@b.c"]}"#,
            Owner,
        ),
        (
            "I7",
            Method::DELETE,
            "/api/companies/acme/groups/g1/members".to_owned(),
            r#"{"memberIds":["u1"]}"#,
            Owner,
        ),
        (
            "M1",
            Method::GET,
            "/api/marketplace/?tenantId=acme&page=1".to_owned(),
            "",
            Owner,
        ),
        (
            "M1.public",
            Method::GET,
            "/api/marketplace/?page=1".to_owned(),
            "",
            Authenticated,
        ),
        (
            "M2",
            Method::GET,
            "/api/tenants/acme/marketplace/items/item1/versions".to_owned(),
            "",
            Owner,
        ),
        (
            "M3",
            Method::GET,
            "/api/tenants/acme/marketplace/items/item1/versions/1.0.0".to_owned(),
            "",
            Owner,
        ),
        (
            "M4",
            Method::POST,
            "/api/tenants/acme/marketplace/items".to_owned(),
            "{}",
            Owner,
        ),
        (
            "M5",
            Method::DELETE,
            "/api/tenants/acme/marketplace/items/item1/versions/1.0.0".to_owned(),
            "",
            Owner,
        ),
        (
            "M6",
            Method::PATCH,
            "/api/tenants/acme/marketplace/items/item1/versions/1.0.0/metadata".to_owned(),
            "{}",
            Owner,
        ),
        (
            "M7",
            Method::POST,
            "/api/tenants/acme/marketplace/files".to_owned(),
            "file",
            Owner,
        ),
        (
            "M8",
            Method::GET,
            "/api/marketplace/item-type-definitions/?visibility=console,acme".to_owned(),
            "",
            Authenticated,
        ),
        (
            "M9",
            Method::GET,
            "/api/tenants/acme/marketplace/item-type-definitions/plugin/".to_owned(),
            "",
            Owner,
        ),
        (
            "M10",
            Method::PUT,
            "/api/tenants/acme/marketplace/item-type-definitions/".to_owned(),
            "{}",
            Owner,
        ),
        (
            "M11",
            Method::DELETE,
            "/api/tenants/acme/marketplace/item-type-definitions/plugin".to_owned(),
            "",
            Owner,
        ),
        (
            "X1",
            Method::GET,
            "/api/extensibility/tenants/acme/extensions?resolveDetails=true".to_owned(),
            "",
            Owner,
        ),
        (
            "X2",
            Method::GET,
            "/api/extensibility/tenants/acme/extensions/ext1".to_owned(),
            "",
            Owner,
        ),
        (
            "X3",
            Method::PUT,
            "/api/extensibility/tenants/acme/extensions".to_owned(),
            "{}",
            Owner,
        ),
        (
            "X4",
            Method::DELETE,
            "/api/extensibility/tenants/acme/extensions/ext1".to_owned(),
            "",
            Owner,
        ),
        (
            "X5.company",
            Method::POST,
            "/api/extensibility/tenants/acme/extensions/ext1/activation".to_owned(),
            r#"{"contextType":"company","contextId":"acme"}"#,
            Owner,
        ),
        (
            "X5.project",
            Method::POST,
            "/api/extensibility/tenants/acme/extensions/ext1/activation".to_owned(),
            r#"{"contextType":"project","contextId":"64b7e1a0c0ffee0000000001"}"#,
            Owner,
        ),
        (
            "X6",
            Method::DELETE,
            format!("/api/extensibility/tenants/acme/extensions/ext1/project/{p}/activation"),
            "",
            Owner,
        ),
        (
            "X7",
            Method::GET,
            format!("/api/extensibility/extensions?tenantId=acme&projectId={p}&environmentId=dev"),
            "",
            Owner,
        ),
        (
            "P1",
            Method::GET,
            format!("/api/backend/projects/{p}/"),
            "",
            Owner,
        ),
        (
            "P2.revisions",
            Method::GET,
            format!("/api/backend/projects/{p}/revisions"),
            "",
            Owner,
        ),
        (
            "P2.versions",
            Method::GET,
            format!("/api/backend/projects/{p}/versions"),
            "",
            Owner,
        ),
        (
            "P3",
            Method::POST,
            format!("/api/backend/projects/{p}/versions"),
            "{}",
            Owner,
        ),
        (
            "P4.revisions",
            Method::GET,
            format!("/api/backend/projects/{p}/revisions/feat%2Fx/configuration"),
            "",
            Owner,
        ),
        (
            "P4.versions",
            Method::GET,
            format!("/api/backend/projects/{p}/versions/v1/configuration"),
            "",
            Owner,
        ),
        (
            "P5",
            Method::POST,
            format!("/api/backend/projects/{p}/revisions/main/configuration"),
            "{}",
            Owner,
        ),
        (
            "P6",
            Method::GET,
            format!("/api/backend/projects/{p}/branches/main/configuration/"),
            "",
            Owner,
        ),
        (
            "P7",
            Method::POST,
            format!("/api/projects/{p}/configurations/from-raw"),
            "{}",
            Owner,
        ),
        (
            "P8",
            Method::GET,
            format!("/api/backend/projects/{p}/groups/team%2Fapps/subgroups?includeSelf=true"),
            "",
            Owner,
        ),
        (
            "P9",
            Method::POST,
            format!("/api/backend/projects/{p}/service"),
            "{}",
            Owner,
        ),
        (
            "P10",
            Method::PATCH,
            format!("/api/backend/projects/{p}/rules"),
            "{}",
            Owner,
        ),
        (
            "E1",
            Method::GET,
            format!("/api/projects/{p}/environments/dev/configuration"),
            "",
            Owner,
        ),
        (
            "E2",
            Method::POST,
            format!("/api/projects/{p}/environments/dev/configuration"),
            "{}",
            Owner,
        ),
        (
            "E4",
            Method::GET,
            format!("/api/projects/{p}/environments/dev/pods/logs?file=true&api-abc=app"),
            "",
            Owner,
        ),
        (
            "E5",
            Method::GET,
            format!(
                "/api/projects/{p}/environments/dev/pods/api-1/containers/app/logs?tailLines=10"
            ),
            "",
            Owner,
        ),
        (
            "E6",
            Method::GET,
            format!("/api/projects/{p}/environments/dev/resources/api/events"),
            "",
            Owner,
        ),
        (
            "E7",
            Method::POST,
            format!("/api/projects/{p}/environments/dev/jobs/"),
            r#"{"from":"cj","resourceName":"x"}"#,
            Owner,
        ),
        (
            "DP1",
            Method::POST,
            format!("/api/deploy/projects/{p}/trigger/pipeline/"),
            r#"{"environment":"dev","revision":"main"}"#,
            Owner,
        ),
        (
            "DP2",
            Method::GET,
            format!("/api/deploy/projects/{p}/pipelines/42/status/?environment=dev"),
            "",
            Owner,
        ),
        (
            "DP2.noenv",
            Method::GET,
            format!("/api/deploy/projects/{p}/pipelines/42/status/"),
            "",
            Owner,
        ),
        (
            "DP3",
            Method::GET,
            format!("/api/deploy/projects/{p}/deployment/?page=1&per_page=5&environment=dev"),
            "",
            Owner,
        ),
        (
            "DP4",
            Method::GET,
            format!("/api/deploy/projects/{p}/compare/raw?fromEnvironment=dev&toRef=main"),
            "",
            Owner,
        ),
        (
            "DP5",
            Method::POST,
            format!("/api/deploy/webhooks/projects/{p}/pipelines/triggers/t1/status/"),
            r#"{"status":"success"}"#,
            Owner,
        ),
        (
            "version",
            Method::GET,
            "/api/version".to_owned(),
            "",
            Public,
        ),
        (
            "login-providers",
            Method::GET,
            "/api/apps/console/providers/".to_owned(),
            "",
            Public,
        ),
        (
            "authorize",
            Method::GET,
            "/api/authorize?appId=console&providerId=x".to_owned(),
            "",
            Public,
        ),
        (
            "oauth-token",
            Method::POST,
            "/api/oauth/token".to_owned(),
            r#"{"code":"c","state":"s"}"#,
            Public,
        ),
        (
            "refresh-token",
            Method::POST,
            "/api/refreshtoken".to_owned(),
            "{}",
            Public,
        ),
        (
            "refresh-token.camel",
            Method::POST,
            "/api/refreshToken".to_owned(),
            "{}",
            Public,
        ),
        (
            "userinfo",
            Method::GET,
            "/api/userinfo".to_owned(),
            "",
            Authenticated,
        ),
        (
            "feature-toggles",
            Method::GET,
            format!("/api/feature-toggles?projectId={p}&featureToggleIds=a,b"),
            "",
            Authenticated,
        ),
        (
            "marketplace-categories",
            Method::GET,
            "/api/marketplace/categories".to_owned(),
            "",
            Authenticated,
        ),
        (
            "marketplace-crds",
            Method::GET,
            "/api/marketplace/custom-resource-definitions".to_owned(),
            "",
            Authenticated,
        ),
    ];
    // Service accounts and every role binding are served by iamgate (tests/it/management.rs);
    // listing and adding users and groups stay with the Console.
    for kind in ["users", "groups"] {
        v.push((
            "I2",
            Method::GET,
            format!("/api/companies/acme/{kind}"),
            "",
            Owner,
        ));
        v.push((
            "I3",
            Method::POST,
            format!("/api/companies/acme/{kind}"),
            r#"{"name":"n","role":"developer"}"#,
            Owner,
        ));
    }
    for kind in ["pods", "deployments", "cronjobs", "jobs", "services"] {
        v.push((
            "E3",
            Method::GET,
            format!("/api/projects/{p}/environments/dev/{kind}/describe/"),
            "",
            Owner,
        ));
    }
    v
}

#[tokio::test]
async fn every_route_is_forwarded_when_allowed_and_refused_otherwise() {
    let up = TestUpstream::start().await;
    up.answer("/api/backend/projects/", 200, json!([]));
    up.answer("/api/backend/tenants/", 200, json!([]));
    up.answer(
        &format!("/api/backend/projects/{P1}/"),
        200,
        json!({"_id": P1, "tenantId": "acme", "environments": []}),
    );
    let gw = gateway().upstream(&up.url()).start().await;
    gw.project(P1, "acme", &["dev", "prod"]).await;
    let (_owner, owner_token) = gw.company_owner("acme").await;
    let (_other, other_token) = gw.company_owner("globex").await;
    let (_, nobody) = gw.company_sa("acme").await;
    let (_, root) = gw.root_sa(&["console.root.serviceaccount.manage"]).await;
    let json_ct = [("content-type", "application/json")];

    let rows = rows();
    assert!(rows.len() >= 70, "{}", rows.len());
    for (id, method, path, body, who) in rows {
        let allowed_token = match who {
            Who::Root => Some(root.as_str()),
            Who::Owner => Some(owner_token.as_str()),
            Who::Authenticated => Some(nobody.as_str()),
            Who::Public => None,
        };
        let before = up.hits();
        let r = gw
            .call(
                method.clone(),
                &path,
                allowed_token,
                &json_ct,
                body.to_owned(),
            )
            .await;
        assert_eq!(r.status, 200, "{id} {method} {path}: {:?}", r.body);
        assert_eq!(up.hits(), before + 1, "{id}: forwarded once");
        let seen = up.last().unwrap();
        assert_eq!(seen.uri, path, "{id}: forwarded exactly as sent");
        assert_eq!(seen.method, method.as_str());
        assert_eq!(seen.body_len, body.len(), "{id}: body forwarded unchanged");

        if who == Who::Public {
            continue;
        }
        let r = gw
            .call(method.clone(), &path, None, &json_ct, body.to_owned())
            .await;
        assert_eq!(r.status, 401, "{id} without a token");
        if who == Who::Authenticated {
            continue;
        }
        for (caller, token) in [("nobody", &nobody), ("globex owner", &other_token)] {
            let r = gw
                .call(
                    method.clone(),
                    &path,
                    Some(token),
                    &json_ct,
                    body.to_owned(),
                )
                .await;
            assert_eq!(
                r.status, 403,
                "{id} {method} {path} as {caller}: {:?}",
                r.body
            );
        }
        if who == Who::Root {
            let r = gw
                .call(
                    method.clone(),
                    &path,
                    Some(&owner_token),
                    &json_ct,
                    body.to_owned(),
                )
                .await;
            assert_eq!(
                r.status, 403,
                "{id}: company owners hold no root permission"
            );
        }
        assert_eq!(
            up.hits(),
            before + 1,
            "{id}: refusals never reach the upstream"
        );
    }
}
