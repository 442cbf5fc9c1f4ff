use super::*;
use std::collections::HashMap;

struct MapEnv(HashMap<&'static str, &'static str>);
impl Env for MapEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).map(|s| (*s).to_owned())
    }
}

#[test]
fn empty_config_gives_working_defaults() {
    let s = parse_yaml("").unwrap().validate().unwrap();
    assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(s.data_dir, PathBuf::from("./data"));
    assert!(matches!(s.database, DatabaseSettings::Sqlite(ref p) if p.ends_with("iamgate.db")));
    assert_eq!(s.bootstrap.as_deref(), Some("bootstrap-admin"));
    assert_eq!(s.oauth.access_token_lifetime, Duration::from_secs(3600));
    assert_eq!(s.oauth.clock_skew, Duration::from_secs(30));
}

#[test]
fn unknown_fields_are_rejected_with_their_name() {
    let err = parse_yaml("oauth:\n  issuerr: x\n").unwrap_err();
    assert!(err.contains("issuerr"), "{err}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let raw = parse_yaml(
        "listen: nope\noauth:\n  clock_skew_secs: 9999\n  issuer: ftp://x\nsigning:\n  keys:\n    - {path: a.pem, status: sideways}\nlog:\n  format: xml\npolicy:\n  evaluator: jit\n  reload_ms: 1\n",
    )
    .unwrap();
    let ConfigError::Invalid(errs) = raw.validate().unwrap_err() else {
        panic!("expected Invalid")
    };
    let all = errs.join("\n");
    for needle in [
        "listen",
        "clock_skew_secs",
        "oauth.issuer",
        "signing.keys[0].status",
        "log.format",
        "policy.evaluator",
        "policy.reload_ms",
    ] {
        assert!(all.contains(needle), "missing {needle} in {all}");
    }
}

#[test]
fn environment_overrides_file_and_secrets_stay_hidden() {
    let mut raw = parse_yaml("listen: 127.0.0.1:1\n").unwrap();
    raw.apply_env(&MapEnv(HashMap::from([
        ("IAMGATE_LISTEN", "127.0.0.1:9999"),
        ("IAMGATE_DATA_DIR", "/tmp/x"),
        ("IAMGATE_SECRET_PEPPER", "a-very-long-pepper-value"),
    ])));
    let s = raw.validate().unwrap();
    assert_eq!(s.listen.port(), 9999);
    assert_eq!(s.data_dir, PathBuf::from("/tmp/x"));
    let dbg = format!("{s:?}");
    assert!(!dbg.contains("a-very-long-pepper-value"), "{dbg}");
}

#[test]
fn database_url_schemes() {
    let raw = RawConfig {
        database_url: Some(Secret::new("mysql://u:hunter2@x/db")),
        ..Default::default()
    };
    let err = raw.validate().unwrap_err().to_string();
    assert!(err.contains("database_url"));
    assert!(!err.contains("hunter2"), "secret leaked: {err}");
    let raw = RawConfig {
        database_url: Some(Secret::new("sqlite:/tmp/a.db")),
        ..Default::default()
    };
    let s = raw.validate().unwrap();
    assert!(matches!(s.database, DatabaseSettings::Sqlite(ref p) if p == Path::new("/tmp/a.db")));
    // Several instances share a database: each must be given the same pepper.
    let raw = RawConfig {
        database_url: Some(Secret::new("postgres://u:hunter2@db/iamgate")),
        ..Default::default()
    };
    let err = raw.validate().unwrap_err().to_string();
    assert!(
        err.contains("secret_pepper: required with a postgres"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "secret leaked: {err}");
    let raw = RawConfig {
        database_url: Some(Secret::new("postgres://u:hunter2@db/iamgate")),
        secret_pepper: Some(Secret::new("a-very-long-pepper-value")),
        ..Default::default()
    };
    assert!(matches!(
        raw.validate().unwrap().database,
        DatabaseSettings::Postgres { .. }
    ));
}

#[test]
fn exactly_one_active_signing_key() {
    let raw = parse_yaml("signing:\n  keys:\n    - {path: a.pem, status: next}\n").unwrap();
    let err = raw.validate().unwrap_err().to_string();
    assert!(err.contains("exactly one key must be active"), "{err}");
}

#[test]
fn a_log_filter_the_filter_parser_panics_on_is_refused_not_a_crash() {
    // Found by fuzzing the config file (fuzz/, bench/fuzz.sh).
    let text = String::from_utf8_lossy(include_bytes!(
        "../../tests/fixtures/fuzz/config_file-log-level-panic.yaml"
    ))
    .into_owned();
    if let Ok(raw) = parse_yaml(&text) {
        let _ = raw.validate();
    }
    let err = parse_yaml("log: {level: \"info,x[{a=\u{ba}[}]\"}")
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
    assert!(err.contains("log.level"), "{err}");
}

#[test]
fn connection_workers_default_to_one_per_core_and_zero_means_the_shared_runtime() {
    let s = parse_yaml("").unwrap().validate().unwrap();
    assert_eq!(
        s.server.workers,
        Some(crate::util::workers::per_core()),
        "one per core by default"
    );
    assert!(s.server.workers.is_some_and(|n| n >= 1));
    let s = parse_yaml("server: {workers: 0}")
        .unwrap()
        .validate()
        .unwrap();
    assert_eq!(s.server.workers, None);
    let s = parse_yaml("server: {workers: 3}")
        .unwrap()
        .validate()
        .unwrap();
    assert_eq!(s.server.workers, Some(3));
    let err = parse_yaml("server: {workers: 5000}")
        .unwrap()
        .validate()
        .unwrap_err();
    assert!(err.to_string().contains("server.workers"), "{err}");
    let err = parse_yaml("server: {workers: -1}").unwrap_err();
    assert!(err.contains("workers"), "{err}");
}
