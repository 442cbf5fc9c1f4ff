//! The command line as a curl user follows the documentation: `keys generate`, `admin
//! create-root-sa` (both methods) and `assertion`, against a real server.

use crate::common;

use common::*;
use serde_json::Value;

fn iamgate(args: &[&str], data_dir: &std::path::Path) -> (bool, String, String) {
    let mut cmd = common::cli(data_dir);
    cmd.args(args);
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn generated_key_created_account_and_cli_assertion_get_a_token() {
    let dir = tempfile::tempdir().unwrap();
    common::test_database(&dir).await;
    let data = dir.path().join("data");
    let key_file = dir.path().join("client.pem");

    let (ok, out, err) = iamgate(
        &["keys", "generate", "--out", key_file.to_str().unwrap()],
        &data,
    );
    assert!(ok, "{err}");
    let generated: Value = serde_json::from_str(&out).unwrap();
    let kid = generated["kid"].as_str().unwrap().to_owned();
    assert_eq!(generated["publicKeyJwk"]["kid"], kid.as_str());
    assert!(generated["publicKeyJwk"].get("d").is_none());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let pub_file = dir.path().join("client.pub.pem");
    std::fs::write(&pub_file, generated["publicKeyPem"].as_str().unwrap()).unwrap();

    let (ok, out, err) = iamgate(
        &[
            "admin",
            "create-root-sa",
            "--name",
            "deployer",
            "--permission",
            "console.root.view",
            "--auth-method",
            "private_key_jwt",
            "--public-key",
            pub_file.to_str().unwrap(),
        ],
        &data,
    );
    assert!(ok, "{err}");
    let jwt_account: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        jwt_account["kid"],
        kid.as_str(),
        "PEM key gets the same thumbprint kid"
    );
    assert!(jwt_account.get("clientSecret").is_none());

    let (ok, out, err) = iamgate(
        &[
            "admin",
            "create-root-sa",
            "--name",
            "ops",
            "--permission",
            "console.root.user.bind",
            "--permission",
            "console.root.user.manage",
        ],
        &data,
    );
    assert!(ok, "{err}");
    let secret_account: Value = serde_json::from_str(&out).unwrap();
    assert!(secret_account["clientIdIssuedAt"].is_i64());

    let (ok, _, err) = iamgate(
        &[
            "admin",
            "create-root-sa",
            "--name",
            "bad",
            "--permission",
            "console.company.view",
        ],
        &data,
    );
    assert!(!ok);
    assert!(err.contains("permissions"), "{err}");

    let gw = gateway().data_dir(dir).start().await;
    assert!(gw.running().bootstrap_file.is_none(), "store was not empty");

    let client_id = jwt_account["clientId"].as_str().unwrap();
    let assertion_for = |kid: &str| {
        iamgate(
            &[
                "assertion",
                "--client-id",
                client_id,
                "--key",
                key_file.to_str().unwrap(),
                "--kid",
                kid,
            ],
            &gw.data_path(),
        )
    };
    let (ok, assertion, err) = assertion_for(&kid);
    assert!(ok, "{err}");
    // A thumbprint kid starts with `-` one time in 64: a value, not an unknown option.
    let (ok, hyphen, err) = assertion_for("-4leading-hyphen");
    assert!(ok, "{err}");
    assert!(!hyphen.trim().is_empty());
    let form = format!(
        "{}&token_endpoint_auth_method=private_key_jwt",
        assertion_form(assertion.trim(), Some(client_id))
    );
    let r = gw.token(&[], &form).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let (_, claims) = verify_access_token(&gw, r.json()["access_token"].as_str().unwrap()).await;
    assert_eq!(
        claims["permissions"],
        serde_json::json!(["console.root.view"])
    );

    let r = gw
        .token_basic(
            secret_account["clientId"].as_str().unwrap(),
            secret_account["clientSecret"].as_str().unwrap(),
        )
        .await;
    assert_eq!(r.status, 200);
    let (_, claims) = verify_access_token(&gw, r.json()["access_token"].as_str().unwrap()).await;
    assert_eq!(
        claims["permissions"],
        serde_json::json!(["console.root.user.bind", "console.root.user.manage"])
    );
}

#[test]
fn bad_config_reports_every_problem_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.yaml");
    std::fs::write(&cfg, "listen: nope\noauth:\n  clock_skew_secs: 100000\n").unwrap();
    let (ok, _, err) = iamgate(&["serve", "--config", cfg.to_str().unwrap()], dir.path());
    assert!(!ok);
    assert!(
        err.contains("listen") && err.contains("clock_skew_secs"),
        "{err}"
    );
}
