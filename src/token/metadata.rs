//! The authorization server metadata document (RFC 8414), served at
//! `/.well-known/oauth-authorization-server` and `/.well-known/openid-configuration`. Built once
//! at start-up from the issuer and public URL; it changes only with the configuration.

use bytes::Bytes;

/// Path of the token endpoint.
pub const TOKEN_PATH: &str = "/api/m2m/oauth/token";
/// Path of the JWKS.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// Serialises the metadata document.
pub fn document(issuer: &str, public_url: &str) -> Bytes {
    let doc = serde_json::json!({
        "issuer": issuer,
        "token_endpoint": format!("{public_url}{TOKEN_PATH}"),
        "jwks_uri": format!("{public_url}{JWKS_PATH}"),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["none"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "subject_types_supported": ["public"],
        "scopes_supported": [],
    });
    Bytes::from(doc.to_string())
}
