//! Parsing a token request into what was asked and how the client tried to authenticate.
//!
//! Pure functions over headers and body bytes: no account lookups, no crypto. Everything a
//! malformed request can get wrong is rejected here, before any work an attacker could amplify.

use crate::error::OAuthError;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;

/// The only assertion type of RFC 7523 client authentication.
pub const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How the client authenticated.
#[derive(PartialEq, Eq)]
pub enum ClientAuth {
    /// `client_secret_basic`: id and secret, already form-urldecoded.
    Basic {
        /// Client id.
        client_id: String,
        /// Secret (never logged).
        secret: String,
    },
    /// `private_key_jwt`.
    Assertion {
        /// The compact JWT.
        assertion: String,
        /// Optional `client_id` parameter.
        client_id: Option<String>,
    },
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Basic { client_id, .. } => write!(f, "Basic({client_id:?}, ***)"),
            Self::Assertion { client_id, .. } => write!(f, "Assertion({client_id:?}, ***)"),
        }
    }
}

/// A well-formed client-credentials request.
#[derive(Debug)]
pub struct TokenRequest {
    /// Client authentication.
    pub auth: ClientAuth,
    /// The client id the request claims, before authentication (for rate limiting and logs).
    pub claimed_client_id: Option<String>,
}

/// Decoded form parameters; empty values count as absent (RFC 6749 §3.1).
#[derive(Debug, Default)]
struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    fn parse(body: &[u8]) -> Result<Self, OAuthError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (k, v) in form_urlencoded::parse(body) {
            if v.is_empty() {
                continue;
            }
            if pairs.iter().any(|(seen, _)| *seen == k) {
                return Err(OAuthError::invalid_request(format!(
                    "parameter {} is repeated",
                    printable(&k)
                )));
            }
            pairs.push((k.into_owned(), v.into_owned()));
        }
        Ok(Self { pairs })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn take(&mut self, name: &str) -> Option<String> {
        let i = self.pairs.iter().position(|(k, _)| k == name)?;
        Some(self.pairs.swap_remove(i).1)
    }
}

/// Keeps a parameter name safe to echo in an error description.
fn printable(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(40)
        .collect()
}

/// Decodes `Authorization: Basic …` into id and secret (RFC 6749 §2.3.1: base64, then split at
/// the first colon, then form-urldecode each part). Failures are `invalid_client` with the Basic
/// challenge, like a wrong secret.
fn parse_basic(value: &str) -> Result<(String, String), OAuthError> {
    let bad = |why: &'static str| OAuthError::invalid_client(why).with_basic_challenge();
    let encoded = value.trim();
    let raw = STANDARD
        .decode(encoded)
        .map_err(|_| bad("malformed Basic credentials: invalid base64"))?;
    let colon = raw
        .iter()
        .position(|&b| b == b':')
        .ok_or_else(|| bad("malformed Basic credentials: missing colon"))?;
    let (id, secret) = (&raw[..colon], &raw[colon + 1..]);
    let decode = |part: &[u8]| -> Result<String, OAuthError> {
        form_decode(part)
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| bad("malformed Basic credentials"))
    };
    let id = decode(id)?;
    let secret = decode(secret)?;
    if id.is_empty() {
        return Err(bad("malformed Basic credentials: empty client id"));
    }
    Ok((id, secret))
}

/// application/x-www-form-urlencoded decoding of one value: `+` is a space, `%XX` a byte.
/// `None` when a `%` is not followed by two hex digits.
fn form_decode(part: &[u8]) -> Option<Vec<u8>> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(part.len());
    let mut i = 0;
    while let Some(&b) = part.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = hex(*part.get(i + 1)?)?;
                let lo = hex(*part.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 2;
            }
            other => out.push(other),
        }
        i += 1;
    }
    Some(out)
}

/// Parses and structurally validates a token request. `query` is the raw URL query, if any.
pub fn parse(
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
) -> Result<TokenRequest, OAuthError> {
    if query.is_some_and(|q| !q.is_empty()) {
        // Credentials in the URL end up in logs and caches (RFC 6749 §2.3.1, §3.2).
        return Err(OAuthError::invalid_request(
            "parameters must be sent in the request body, not the URL",
        ));
    }
    let ct = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(OAuthError::invalid_request(
            "content type must be application/x-www-form-urlencoded",
        ));
    }
    let mut params = Params::parse(body)?;

    let mut authz = headers.get_all(http::header::AUTHORIZATION).iter();
    let basic = match (authz.next(), authz.next()) {
        (None, _) => None,
        (Some(_), Some(_)) => {
            return Err(OAuthError::invalid_request(
                "more than one Authorization header",
            ));
        }
        (Some(v), None) => {
            let v = v.to_str().map_err(|_| {
                OAuthError::invalid_client("malformed Authorization header").with_basic_challenge()
            })?;
            let (scheme, rest) = v.trim_start().split_once(' ').unwrap_or((v, ""));
            if !scheme.eq_ignore_ascii_case("basic") {
                return Err(OAuthError::invalid_client(
                    "unsupported authorization scheme; use Basic or a client assertion",
                )
                .with_basic_challenge());
            }
            Some(rest.to_owned())
        }
    };

    let has_assertion =
        params.get("client_assertion").is_some() || params.get("client_assertion_type").is_some();
    let has_body_secret = params.get("client_secret").is_some();
    let methods =
        usize::from(basic.is_some()) + usize::from(has_assertion) + usize::from(has_body_secret);
    if methods > 1 {
        return Err(OAuthError::invalid_request(
            "more than one client authentication method in one request",
        ));
    }

    match params.get("grant_type") {
        None => return Err(OAuthError::invalid_request("grant_type is required")),
        Some("client_credentials") => {}
        Some(_) => return Err(OAuthError::unsupported_grant_type()),
    }

    if let Some(m) = params.get("token_endpoint_auth_method") {
        // Legacy Console clients send it; it must agree with what they actually did.
        let used = if basic.is_some() {
            "client_secret_basic"
        } else {
            "private_key_jwt"
        };
        if m != used {
            return Err(OAuthError::invalid_request(
                "token_endpoint_auth_method does not match the authentication used",
            ));
        }
    }

    if let Some(b) = basic {
        let (client_id, secret) = parse_basic(&b)?;
        if params.get("client_id").is_some_and(|c| c != client_id) {
            return Err(OAuthError::invalid_request(
                "client_id does not match the Basic credentials",
            ));
        }
        return Ok(TokenRequest {
            claimed_client_id: Some(client_id.clone()),
            auth: ClientAuth::Basic { client_id, secret },
        });
    }
    if has_body_secret {
        return Err(OAuthError::invalid_client(
            "client_secret in the request body is not supported; use HTTP Basic",
        ));
    }
    if has_assertion {
        match params.get("client_assertion_type") {
            Some(JWT_BEARER_ASSERTION) => {}
            Some(_) => {
                return Err(OAuthError::invalid_request(
                    "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ));
            }
            None => {
                return Err(OAuthError::invalid_request(
                    "client_assertion_type is required",
                ));
            }
        }
        let assertion = params
            .take("client_assertion")
            .ok_or_else(|| OAuthError::invalid_request("client_assertion is required"))?;
        let client_id = params.take("client_id");
        return Ok(TokenRequest {
            claimed_client_id: client_id.clone(),
            auth: ClientAuth::Assertion {
                assertion,
                client_id,
            },
        });
    }
    Err(OAuthError::invalid_client(
        "client authentication is required",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::OAuthCode;

    fn form_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        h
    }

    fn basic(v: &str) -> HeaderMap {
        let mut h = form_headers();
        h.insert(http::header::AUTHORIZATION, v.parse().unwrap());
        h
    }

    fn code(r: Result<TokenRequest, OAuthError>) -> OAuthCode {
        r.unwrap_err().code
    }

    #[test]
    fn basic_credentials_are_form_urldecoded() {
        let raw = STANDARD.encode("my%20id:s%2Bcr+t");
        let r = parse(
            &basic(&format!("basic {raw}")),
            None,
            b"grant_type=client_credentials",
        )
        .unwrap();
        assert_eq!(
            r.auth,
            ClientAuth::Basic {
                client_id: "my id".into(),
                secret: "s+cr t".into()
            }
        );
    }

    #[test]
    fn form_decode_handles_reserved_and_rejects_bad_escapes() {
        assert_eq!(form_decode(b"a&b=c%3A+d").unwrap(), b"a&b=c: d");
        assert!(form_decode(b"%zz").is_none());
        assert!(form_decode(b"%4").is_none());
    }

    #[test]
    fn secret_with_colon_splits_at_first_colon() {
        let raw = STANDARD.encode("id:a:b");
        let r = parse(
            &basic(&format!("Basic {raw}")),
            None,
            b"grant_type=client_credentials",
        )
        .unwrap();
        assert_eq!(
            r.auth,
            ClientAuth::Basic {
                client_id: "id".into(),
                secret: "a:b".into()
            }
        );
    }

    #[test]
    fn structural_errors() {
        let g = b"grant_type=client_credentials";
        assert_eq!(
            code(parse(&form_headers(), None, b"grant_type=password")),
            OAuthCode::UnsupportedGrantType
        );
        assert_eq!(
            code(parse(&form_headers(), None, b"")),
            OAuthCode::InvalidRequest
        );
        assert_eq!(
            code(parse(
                &form_headers(),
                None,
                b"grant_type=client_credentials&grant_type=client_credentials"
            )),
            OAuthCode::InvalidRequest
        );
        assert_eq!(
            code(parse(&form_headers(), Some("client_secret=x"), g)),
            OAuthCode::InvalidRequest
        );
        assert_eq!(
            code(parse(&HeaderMap::new(), None, g)),
            OAuthCode::InvalidRequest
        );
        assert_eq!(
            code(parse(&form_headers(), None, g)),
            OAuthCode::InvalidClient
        );
        assert_eq!(
            code(parse(
                &form_headers(),
                None,
                b"grant_type=client_credentials&client_id=a&client_secret=b"
            )),
            OAuthCode::InvalidClient
        );
        assert_eq!(
            code(parse(&basic("Basic !!!"), None, g)),
            OAuthCode::InvalidClient
        );
        assert_eq!(
            code(parse(
                &basic(&format!("Basic {}", STANDARD.encode("nocolon"))),
                None,
                g
            )),
            OAuthCode::InvalidClient
        );
        let both = format!(
            "grant_type=client_credentials&client_assertion_type={JWT_BEARER_ASSERTION}&client_assertion=a.b.c"
        );
        assert_eq!(
            code(parse(
                &basic(&format!("Basic {}", STANDARD.encode("a:b"))),
                None,
                both.as_bytes()
            )),
            OAuthCode::InvalidRequest
        );
        assert_eq!(
            code(parse(
                &form_headers(),
                None,
                b"grant_type=client_credentials&client_assertion_type=urn:x&client_assertion=a.b.c"
            )),
            OAuthCode::InvalidRequest
        );
        assert_eq!(
            code(parse(
                &form_headers(),
                None,
                format!(
                    "grant_type=client_credentials&client_assertion_type={JWT_BEARER_ASSERTION}"
                )
                .as_bytes()
            )),
            OAuthCode::InvalidRequest
        );
    }

    #[test]
    fn empty_values_are_absent_and_unknown_params_ignored() {
        let body = format!(
            "grant_type=client_credentials&scope=&foo=bar&client_assertion_type={JWT_BEARER_ASSERTION}&client_assertion=a.b.c&client_id="
        );
        let r = parse(&form_headers(), None, body.as_bytes()).unwrap();
        assert_eq!(
            r.auth,
            ClientAuth::Assertion {
                assertion: "a.b.c".into(),
                client_id: None
            }
        );
    }

    #[test]
    fn debug_never_shows_credentials() {
        let a = ClientAuth::Basic {
            client_id: "id".into(),
            secret: "hunter2".into(),
        };
        assert!(!format!("{a:?}").contains("hunter2"));
    }
}
