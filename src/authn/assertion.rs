//! RFC 7523 client assertions: structure, header and claims checks (no account needed), then
//! signature verification against the one key the `kid` names.
//!
//! The split matters: everything in [`Assertion::parse`] is independent of which accounts exist,
//! so its precise error messages cannot be used to probe for client ids; everything after the
//! account lookup fails with one generic message.

use crate::util::b64url_decode;
use serde_json::Value;

/// Upper bound on an assertion's length; real ones are under 2 KiB.
pub const MAX_ASSERTION_LEN: usize = 8 * 1024;
/// Upper bound on a `jti`.
pub const MAX_JTI_LEN: usize = 256;

/// What the claims checks accept.
#[derive(Debug, Clone)]
pub struct AssertionRules {
    /// Accepted `aud` values (exact string match).
    pub audiences: Vec<String>,
    /// Tolerated clock skew, seconds.
    pub skew: i64,
    /// Longest accepted `exp - now`, seconds, before skew.
    pub max_lifetime: i64,
}

/// A structurally valid, not yet authenticated assertion.
#[derive(Debug)]
pub struct Assertion<'a> {
    /// `header.payload`, the signed bytes.
    pub signing_input: &'a str,
    /// The base64url signature.
    pub signature: &'a str,
    /// Header `kid`.
    pub kid: Option<String>,
    /// `iss` = `sub` = client id.
    pub client_id: String,
    /// `jti`.
    pub jti: String,
    /// `exp` as whole seconds (rounded up).
    pub exp: i64,
}

fn num(claims: &serde_json::Map<String, Value>, name: &str) -> Result<Option<f64>, String> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|f| f.is_finite())
            .map(Some)
            .ok_or_else(|| format!("{name} is not a valid NumericDate")),
        Some(_) => Err(format!("{name} must be a number")),
    }
}

fn string<'c>(
    claims: &'c serde_json::Map<String, Value>,
    name: &str,
) -> Result<Option<&'c str>, String> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{name} must be a string")),
    }
}

impl<'a> Assertion<'a> {
    /// Parses the compact JWS and checks header and claims at time `now`. The error is a
    /// description for `invalid_client`.
    pub fn parse(token: &'a str, rules: &AssertionRules, now: i64) -> Result<Self, String> {
        if token.len() > MAX_ASSERTION_LEN {
            return Err("client_assertion is too long".to_owned());
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("client_assertion must be a compact JWS with three segments".to_owned());
        };
        if h.is_empty() || p.is_empty() || s.is_empty() {
            return Err("client_assertion has an empty segment".to_owned());
        }
        let signing_input = &token[..h.len() + 1 + p.len()];

        let header: Value = b64url_decode(h)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or("client_assertion header is not base64url JSON")?;
        let header = header
            .as_object()
            .ok_or("client_assertion header is not an object")?;
        match header.get("alg") {
            Some(Value::String(a)) if a == "RS256" => {}
            _ => return Err("client_assertion alg must be RS256".to_owned()),
        }
        if header.contains_key("crit") {
            return Err("client_assertion uses unsupported critical extensions".to_owned());
        }
        match string(header, "typ")? {
            None => {}
            Some(t) => {
                let t = t.to_ascii_lowercase();
                let t = t.strip_prefix("application/").unwrap_or(&t);
                if t != "jwt" && t != "client-authentication+jwt" {
                    return Err(
                        "client_assertion typ must be JWT or client-authentication+jwt".to_owned(),
                    );
                }
            }
        }
        let kid = string(header, "kid")?.map(str::to_owned);

        let claims: Value = b64url_decode(p)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or("client_assertion payload is not base64url JSON")?;
        let claims = claims
            .as_object()
            .ok_or("client_assertion payload is not an object")?;

        let iss = string(claims, "iss")?.ok_or("iss is required")?;
        let sub = string(claims, "sub")?.ok_or("sub is required")?;
        if iss != sub {
            return Err("iss and sub must both be the client id".to_owned());
        }
        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => rules.audiences.iter().any(|x| x == a),
            Some(Value::Array(items)) => match items.as_slice() {
                [Value::String(a)] => rules.audiences.iter().any(|x| x == a),
                [_] => return Err("aud must be a string".to_owned()),
                _ => return Err("aud must name exactly one audience".to_owned()),
            },
            Some(_) => return Err("aud must be a string".to_owned()),
            None => return Err("aud is required".to_owned()),
        };
        if !aud_ok {
            return Err("aud does not name this authorization server".to_owned());
        }

        let now_f = now as f64;
        let skew = rules.skew as f64;
        let exp = num(claims, "exp")?.ok_or("exp is required")?;
        if exp + skew < now_f {
            return Err("client_assertion has expired".to_owned());
        }
        if exp - now_f > (rules.max_lifetime + rules.skew) as f64 {
            return Err("client_assertion exp is too far in the future".to_owned());
        }
        if let Some(nbf) = num(claims, "nbf")?
            && nbf > now_f + skew
        {
            return Err("client_assertion is not valid yet (nbf)".to_owned());
        }
        if let Some(iat) = num(claims, "iat")?
            && iat > now_f + skew
        {
            return Err("client_assertion iat is in the future".to_owned());
        }
        let jti = string(claims, "jti")?.ok_or("jti is required")?;
        if jti.is_empty() || jti.len() > MAX_JTI_LEN {
            return Err("jti must be 1 to 256 characters".to_owned());
        }
        Ok(Self {
            signing_input,
            signature: s,
            kid,
            client_id: iss.to_owned(),
            jti: jti.to_owned(),
            exp: exp.ceil() as i64,
        })
    }
}
