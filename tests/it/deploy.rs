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
