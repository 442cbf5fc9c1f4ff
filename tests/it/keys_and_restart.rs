//! Durability and key rotation: a restart keeps accounts and signing keys, tokens issued before
//! it still verify, and a rotation (by the real `iamgate keys rotate` command) keeps the retired
//! key published while new tokens are signed with the promoted one. A revocation (by the real
//! `iamgate keys revoke`) takes a leaked key out at once: its tokens are refused within the
//! reload interval, cached verifications included.

use crate::common;

use common::*;
use std::time::{Duration, Instant};

// A fixed public URL: the issuer must not change with the ephemeral port across the restart.
const YAML: &str = "listen: 127.0.0.1:0\npublic_url: http://iamgate.test\nlog: {level: warn}\nsigning: {reload_secs: 1}\n";

async fn token(gw: &Gateway, id: &str, secret: &str) -> String {
    let r = gw.token_basic(id, secret).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.json()["access_token"].as_str().unwrap().to_owned()
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

#[tokio::test]
async fn restart_keeps_accounts_keys_and_tokens_and_rotation_keeps_old_tokens_valid() {
    let gw = gateway().yaml(YAML).start().await;
    assert!(
        gw.running().bootstrap_file.is_some(),
        "first start bootstraps"
    );
    let (id, secret) = gw.secret_client().await;
    let before = token(&gw, &id, &secret).await;
    let jwks_before = gw.jwks().await;
    let dir = gw.stop().await;

    let gw = gateway().yaml(YAML).data_dir(dir).start().await;
    assert!(gw.running().bootstrap_file.is_none(), "no second bootstrap");
    assert_eq!(gw.jwks().await, jwks_before, "same keys after restart");
    verify_access_token(&gw, &before).await;
    let after = token(&gw, &id, &secret).await;
    assert_eq!(kid_of(&after), kid_of(&before));

    // Rotate with the CLI while the server runs.
    common::run_ok(common::cli(&gw.data_path()).args(["keys", "rotate"]));

    let deadline = Instant::now() + Duration::from_secs(10);
    let rotated = loop {
        let t = token(&gw, &id, &secret).await;
        if kid_of(&t) != kid_of(&before) {
            break t;
        }
        assert!(
            Instant::now() < deadline,
            "server never picked up the rotation"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let jwks = gw.jwks().await;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids.len(), 3, "retired + active + new next: {kids:?}");
    assert!(
        kids.contains(&kid_of(&before).as_str()),
        "retired key still published"
    );
    // The promoted key was published as `next` before it signed anything.
    let was_published = jwks_before["keys"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["kid"] == kid_of(&rotated).as_str());
    assert!(was_published);
    verify_access_token(&gw, &before).await;
    verify_access_token(&gw, &rotated).await;
    gw.stop().await;
}

#[tokio::test]
async fn configured_pem_keys_are_used_as_given() {
    let dir = tempfile::tempdir().unwrap();
    let active = iamgate::token::SigningKey::generate(Some("cfg-active".into())).unwrap();
    let retired = iamgate::token::SigningKey::generate(Some("cfg-retired".into())).unwrap();
    std::fs::write(dir.path().join("a.pem"), active.to_pkcs8_pem().unwrap()).unwrap();
    std::fs::write(dir.path().join("r.pem"), retired.to_pkcs8_pem().unwrap()).unwrap();
    let yaml = format!(
        "listen: 127.0.0.1:0\nlog: {{level: warn}}\nsigning:\n  keys:\n    - {{path: {a}, status: active, kid: cfg-active}}\n    - {{path: {r}, status: retired, kid: cfg-retired}}\n",
        a = dir.path().join("a.pem").display(),
        r = dir.path().join("r.pem").display()
    );
    let gw = gateway().yaml(&yaml).start().await;
    let (id, secret) = gw.secret_client().await;
    let t = token(&gw, &id, &secret).await;
    assert_eq!(kid_of(&t), "cfg-active");
    let jwks = gw.jwks().await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    assert!(
        !gw.data_path().join("keys").exists(),
        "no managed keys when keys are configured"
    );
}

/// A token's answer at a route that needs a valid bearer token.
async fn audit_status(gw: &Gateway, token: &str) -> u16 {
    gw.get_as("/api/iamgate/audit-log", token)
        .await
        .status
        .as_u16()
}

#[tokio::test]
async fn a_revoked_key_s_tokens_are_refused_at_once_and_the_next_key_signs() {
    let gw = gateway().yaml(YAML).start().await;
    let creds: serde_json::Value = serde_json::from_slice(
        &std::fs::read(gw.running().bootstrap_file.clone().unwrap()).unwrap(),
    )
    .unwrap();
    let (id, secret) = (
        creds["clientId"].as_str().unwrap(),
        creds["clientSecret"].as_str().unwrap(),
    );
    let leaked = token(&gw, id, secret).await;
    let kid = kid_of(&leaked);
    // Used twice: the second answer comes from the verification cache.
    assert_eq!(audit_status(&gw, &leaked).await, 200);
    assert_eq!(audit_status(&gw, &leaked).await, 200);
    let next = gw.jwks().await["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .find(|k| *k != kid)
        .unwrap();

    let out = common::run_ok(common::cli(&gw.data_path()).args(["keys", "revoke", &kid]));
    let out: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(out["revoked"]["kid"], kid.as_str());
    assert_eq!(out["revoked"]["status"], "active");
    // Refused within the reload interval (1 s here), although its verification was cached.
    let started = Instant::now();
    while audit_status(&gw, &leaked).await != 401 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the revoked key's token still works"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("refused after {} ms", started.elapsed().as_millis());
    let jwks = gw.jwks().await;
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["kid"] != kid.as_str()),
        "the revoked key left the JWKS: {jwks}"
    );
    assert!(
        !gw.data_path()
            .join("keys")
            .join(format!("{kid}.pem"))
            .exists()
    );
    // The next key signs now; the audit log has the revocation.
    let fresh = token(&gw, id, secret).await;
    assert_eq!(kid_of(&fresh), next);
    let log = gw.get_as("/api/iamgate/audit-log", &fresh).await.json();
    let entry = log
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "signing-key.revoke")
        .expect("an audit record of the revocation");
    assert_eq!(entry["target"], kid.as_str());
    assert_eq!(entry["actor"], "cli");
    // Again: nothing to revoke, said so, nothing changed.
    let again = common::cli(&gw.data_path())
        .args(["keys", "revoke", &kid])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("is not in the managed key set"));
    assert_eq!(kid_of(&token(&gw, id, secret).await), next);
    gw.stop().await;
}

#[tokio::test]
async fn revoking_a_configured_pem_key_says_how() {
    let dir = tempfile::tempdir().unwrap();
    let key = iamgate::token::SigningKey::generate(Some("cfg-active".into())).unwrap();
    std::fs::write(dir.path().join("a.pem"), key.to_pkcs8_pem().unwrap()).unwrap();
    let config = dir.path().join("iamgate.yaml");
    std::fs::write(
        &config,
        format!(
            "signing:\n  keys: [{{path: {}, status: active, kid: cfg-active}}]\n",
            dir.path().join("a.pem").display()
        ),
    )
    .unwrap();
    let out = common::cli(&dir.path().join("data"))
        .args(["keys", "revoke", "cfg-active", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("remove its entry from signing.keys"), "{err}");
    assert!(
        dir.path().join("a.pem").exists(),
        "a configured file is never touched"
    );
}
