//! Deployment and operations: one writer per SQLite database, and `iamgate config check` as an
//! operator's CI or an init container runs it.

use crate::common;

use common::gateway;

#[tokio::test]
async fn a_second_server_on_one_sqlite_database_is_refused() {
    let shared = tempfile::tempdir().unwrap();
    let db = format!(
        "database_url: \"sqlite:{}\"",
        shared.path().join("iamgate.db").display()
    );
    let first = gateway().with(&db).start().await;
    let e = common::start_error(&format!("listen: 127.0.0.1:0\n{db}\n")).await;
    assert!(
        e.contains("another iamgate serve is running on") && e.contains("postgres database_url"),
        "{e}"
    );
    // The lock goes with the process that held it.
    first.stop().await;
    let again = gateway().with(&db).start().await;
    assert_eq!(again.get("/-/healthz").await.status, 200);
}

fn config_check(dir: &std::path::Path, yaml: &str) -> (bool, String) {
    let file = dir.join("iamgate.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_iamgate"))
        .args(["config", "check", "--config"])
        .arg(&file)
        .env_remove("IAMGATE_CONFIG")
        .env_remove("IAMGATE_DATABASE_URL")
        .env_remove("IAMGATE_SECRET_PEPPER")
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn config_check_passes_a_good_configuration_and_lists_every_problem_of_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let policies = concat!(env!("CARGO_MANIFEST_DIR"), "/policies");
    let good = format!(
        "listen: 127.0.0.1:8080\ndata_dir: {}\npolicy: {{dir: {policies}}}\n",
        dir.path().join("data").display()
    );
    let (ok, out) = config_check(dir.path(), &good);
    assert!(ok, "{out}");
    assert!(out.contains("valid"), "{out}");

    // Several configuration problems at once.
    let (ok, out) = config_check(
        dir.path(),
        "listen: nowhere\nserver: {trusted_proxies: [10.0.0.0/99]}\nauthz: {response_rules: maybe}\n",
    );
    assert!(!ok);
    for part in [
        "listen",
        "server.trusted_proxies[0]",
        "authz.response_rules",
    ] {
        assert!(out.contains(part), "{part} missing from: {out}");
    }

    // A valid configuration whose route file names a permission the policy lacks, and whose
    // TLS files do not exist.
    let routes = dir.path().join("routes.yaml");
    std::fs::write(
        &routes,
        "routes:\n  - {id: mine, method: GET, path: \"/x/{companyId}\", permission: console.company.nothing, company: \"path:companyId\"}\n",
    )
    .unwrap();
    let (ok, out) = config_check(
        dir.path(),
        &format!(
            "{good}routes_file: {}\nserver: {{tls: {{cert_file: /nonexistent/cert.pem, key_file: /nonexistent/key.pem}}}}\n",
            routes.display()
        ),
    );
    assert!(!ok);
    for part in ["route mine names `console.company.nothing`", "server.tls"] {
        assert!(out.contains(part), "{part} missing from: {out}");
    }
}

#[tokio::test]
async fn with_an_admin_listener_the_operational_endpoints_leave_the_public_one() {
    let gw = gateway()
        .with("server: {admin_listen: \"127.0.0.1:0\"}")
        .start()
        .await;
    let admin = gw.running().admin_addr.unwrap();
    gw.get("/.well-known/jwks.json").await;
    for path in ["/-/healthz", "/-/ready", "/-/metrics"] {
        // On the public listener they are paths like any other: unknown routes.
        assert_eq!(gw.get(path).await.status, 404, "{path}");
        let r = gw.request_at(admin, http::Method::GET, path).await;
        assert_eq!(r.status, 200, "{path}");
        let r = gw.request_at(admin, http::Method::POST, path).await;
        assert_eq!(r.status, 405, "{path}");
    }
    let metrics = gw.request_at(admin, http::Method::GET, "/-/metrics").await;
    assert!(String::from_utf8_lossy(&metrics.body).contains("iamgate_requests_total"));
    // Nothing else is served there: not the token endpoint, not the proxied path.
    for path in [
        "/api/m2m/oauth/token",
        "/.well-known/jwks.json",
        "/api/version",
    ] {
        assert_eq!(
            gw.request_at(admin, http::Method::GET, path).await.status,
            404
        );
    }
    // Without admin_listen they stay on the public listener.
    let plain = gateway().start().await;
    assert_eq!(plain.get("/-/metrics").await.status, 200);
    assert!(plain.running().admin_addr.is_none());
}

fn manifest(name: &str) -> serde_json::Value {
    let path = format!("{}/deploy/kubernetes/{name}", env!("CARGO_MANIFEST_DIR"));
    yaml_serde::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

#[test]
fn the_policies_configmap_is_the_policy_folder() {
    let map = manifest("postgres/policies.yaml");
    let data = map["data"].as_object().unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".rego") || n.ends_with(".json"))
        .collect();
    files.sort();
    let mut keys: Vec<String> = data.keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, files, "stale: run deploy/kubernetes/policies.sh");
    for f in files {
        assert_eq!(
            data[&f].as_str().unwrap(),
            std::fs::read_to_string(dir.join(&f)).unwrap(),
            "{f} is stale: run deploy/kubernetes/policies.sh"
        );
    }
}

#[tokio::test]
async fn iamgate_runs_on_the_configmaps_config_and_answers_every_probe_the_manifests_name() {
    let config = manifest("postgres/config.yaml");
    let yaml = config["data"]["iamgate.yaml"].as_str().unwrap().to_owned();
    let raw: serde_json::Value = yaml_serde::from_str(&yaml).unwrap();
    let deployment = manifest("postgres/deployment.yaml");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let ports: std::collections::HashMap<&str, u64> = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap(),
                p["containerPort"].as_u64().unwrap(),
            )
        })
        .collect();
    let mounts: std::collections::HashMap<&str, &str> = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap(),
                m["mountPath"].as_str().unwrap(),
            )
        })
        .collect();
    let port_of = |addr: &serde_json::Value| -> u64 {
        addr.as_str()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    // The ports, files and timings the manifests name are the ones the configuration uses.
    assert_eq!(port_of(&raw["listen"]), ports["http"]);
    assert_eq!(port_of(&raw["server"]["admin_listen"]), ports["ops"]);
    assert_eq!(
        container["args"][1].as_str().unwrap(),
        format!("{}/iamgate.yaml", mounts["config"])
    );
    assert_eq!(raw["policy"]["dir"], mounts["policies"]);
    assert_eq!(raw["data_dir"], mounts["data"]);
    for key in ["database_url_file", "secret_pepper_file"] {
        assert!(
            raw[key].as_str().unwrap().starts_with(mounts["secrets"]),
            "{key}"
        );
    }
    let pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .unwrap();
    let grace = raw["server"]["shutdown_grace_secs"].as_u64().unwrap();
    assert!(
        pre_stop + grace < pod["terminationGracePeriodSeconds"].as_u64().unwrap(),
        "preStop + shutdown_grace_secs must fit in terminationGracePeriodSeconds"
    );
    for (file, port) in [
        ("postgres/service.yaml", "http"),
        ("postgres/service-ops.yaml", "ops"),
    ] {
        assert_eq!(manifest(file)["spec"]["ports"][0]["targetPort"], port);
    }

    // Run it on that configuration, with what the volumes would hold: the policies ConfigMap's
    // files, a pepper file; listeners on free loopback ports; the test's database.
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    for (name, text) in manifest("postgres/policies.yaml")["data"]
        .as_object()
        .unwrap()
    {
        std::fs::write(policies.join(name), text.as_str().unwrap()).unwrap();
    }
    let pepper = dir.path().join("pepper");
    std::fs::write(&pepper, common::TEST_PEPPER).unwrap();
    let mut run = raw.clone();
    run["listen"] = "127.0.0.1:0".into();
    run["server"]["admin_listen"] = "127.0.0.1:0".into();
    run["policy"]["dir"] = policies.display().to_string().into();
    run["secret_pepper_file"] = pepper.display().to_string().into();
    run.as_object_mut().unwrap().remove("database_url_file");
    let gw = gateway()
        .yaml(&serde_json::to_string(&run).unwrap())
        .start()
        .await;
    let listener = |port: &str| match port {
        "http" => gw.running().addr,
        "ops" => gw.running().admin_addr.unwrap(),
        other => panic!("a probe names port {other}"),
    };
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        let get = &container[probe]["httpGet"];
        let (path, port) = (get["path"].as_str().unwrap(), get["port"].as_str().unwrap());
        let r = gw.request_at(listener(port), http::Method::GET, path).await;
        assert_eq!(r.status, 200, "{probe} {path} on {port}");
    }
}

#[tokio::test]
async fn a_changed_route_file_goes_live_and_a_broken_one_keeps_the_table_in_service() {
    let up = common::upstream::TestUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.yaml");
    let table = |extra: &str| {
        format!(
            "routes:\n  - {{id: version, method: GET, path: /api/version, access: public}}\n{extra}"
        )
    };
    std::fs::write(&file, table("")).unwrap();
    let gw = gateway()
        .upstream(&up.url())
        .with(&format!(
            "routes_file: {}\npolicy: {{reload_ms: 100}}",
            file.display()
        ))
        .start()
        .await;
    assert_eq!(gw.get("/api/version").await.status, 200);
    assert_eq!(gw.get("/api/extra").await.status, 404);
    std::fs::write(
        &file,
        table("  - {id: extra, method: GET, path: /api/extra, access: public}\n"),
    )
    .unwrap();
    let deadline = std::time::Instant::now() + common::WAIT;
    while gw.get("/api/extra").await.status != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the new route never went live"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Broken files: not YAML, and a route naming a permission the policy lacks. Neither goes
    // live; the table in service keeps answering.
    for broken in [
        "routes: [{{{".to_owned(),
        table(
            "  - {id: nope, method: GET, path: \"/api/nope/{x}\", permission: console.nothing.at.all, company: \"path:x\"}\n",
        ),
    ] {
        std::fs::write(&file, broken).unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
        assert_eq!(gw.get("/api/extra").await.status, 200);
        assert_eq!(gw.get("/api/nope").await.status, 404);
    }
}
