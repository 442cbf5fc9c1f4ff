//! The shipped example configuration parses and validates: documentation that cannot drift.

#[test]
fn example_config_is_valid() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/iamgate.example.yaml"
    ))
    .unwrap();
    let settings = iamgate::config::parse_yaml(&text)
        .unwrap()
        .validate()
        .unwrap();
    assert_eq!(settings.listen.to_string(), "127.0.0.1:8080");
}

#[test]
fn ingress_example_config_is_valid() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/iamgate-ingress.yaml"
    ))
    .unwrap();
    let settings = iamgate::config::parse_yaml(&text)
        .unwrap()
        .validate()
        .unwrap();
    assert!(settings.authz.enabled && !settings.authz.skip_response_rules);
    assert_eq!(
        settings.server.ext_authz_grpc_listen.map(|a| a.port()),
        Some(9191)
    );
    assert!(!settings.server.trusted_proxies.is_empty());
}
