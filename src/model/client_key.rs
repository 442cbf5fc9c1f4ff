//! Client public keys for `private_key_jwt`, parsed off the hot path when an account is created.
//!
//! A key arrives as a JWK object or as PEM text (SPKI `PUBLIC KEY` or PKCS#1 `RSA PUBLIC KEY`).
//! aws-lc-rs parses and checks it (modulus size, exponent); we keep `n`, `e` and a pre-built
//! `DecodingKey` so that the token endpoint verifies an assertion without parsing anything.

use crate::util::{b64url, b64url_decode, pem_decode, rsa_thumbprint};
use jsonwebtoken::DecodingKey;
use std::fmt;

/// Why a public key was refused. The message names what is wrong and is safe to show the caller.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// Neither a JWK object nor PEM.
    #[error("publicKey must be an RSA JWK object or a PEM public key")]
    Format,
    /// JWK member missing or of the wrong type.
    #[error("publicKey.{0} is missing or not a string")]
    Member(&'static str),
    /// `kty` other than RSA.
    #[error("publicKey.kty must be RSA")]
    Kty,
    /// `alg` other than RS256 / RSA256.
    #[error("publicKey.alg must be RS256")]
    Alg,
    /// `use` other than `sig`.
    #[error("publicKey.use must be sig")]
    Use,
    /// Private members present.
    #[error("publicKey must not contain private key members")]
    Private,
    /// Bad base64url in `n` or `e`.
    #[error("publicKey.{0} is not base64url")]
    Encoding(&'static str),
    /// Not a valid RSA key.
    #[error("publicKey is not a valid RSA public key")]
    Invalid,
    /// Under 2048 bits.
    #[error("publicKey must be an RSA key of at least 2048 bits")]
    TooSmall,
    /// `kid` unusable.
    #[error("publicKey.kid must be 1 to 128 URL-safe characters")]
    Kid,
}

/// A registered RSA verification key.
#[derive(Clone)]
pub struct ClientKey {
    /// Key id, unique within the account.
    pub kid: String,
    /// base64url modulus.
    pub n: String,
    /// base64url exponent.
    pub e: String,
    decoding: DecodingKey,
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl PartialEq for ClientKey {
    fn eq(&self, other: &Self) -> bool {
        self.kid == other.kid && self.n == other.n && self.e == other.e
    }
}

impl ClientKey {
    /// Parses the `publicKey` field: a JWK object, or a string holding PEM or JWK JSON.
    pub fn parse(value: &serde_json::Value) -> Result<Self, KeyError> {
        match value {
            serde_json::Value::Object(_) => Self::from_jwk(value),
            serde_json::Value::String(s) => {
                let t = s.trim_start();
                if t.starts_with('{') {
                    let v: serde_json::Value =
                        serde_json::from_str(t).map_err(|_| KeyError::Format)?;
                    Self::from_jwk(&v)
                } else {
                    Self::from_pem(s)
                }
            }
            _ => Err(KeyError::Format),
        }
    }

    /// Parses an RSA JWK (RFC 7517/7518).
    pub fn from_jwk(v: &serde_json::Value) -> Result<Self, KeyError> {
        let s = |m: &'static str| v.get(m).and_then(|x| x.as_str()).ok_or(KeyError::Member(m));
        let opt = |m: &'static str| -> Result<Option<&str>, KeyError> {
            match v.get(m) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(x)) => Ok(Some(x.as_str())),
                Some(_) => Err(KeyError::Member(m)),
            }
        };
        if s("kty")? != "RSA" {
            return Err(KeyError::Kty);
        }
        if ["d", "p", "q", "dp", "dq", "qi"]
            .iter()
            .any(|m| v.get(m).is_some())
        {
            return Err(KeyError::Private);
        }
        if let Some(alg) = opt("alg")? {
            // `RSA256` is the Console's legacy spelling of RS256.
            if alg != "RS256" && alg != "RSA256" {
                return Err(KeyError::Alg);
            }
        }
        if let Some(u) = opt("use")?
            && u != "sig"
        {
            return Err(KeyError::Use);
        }
        let n = b64url_decode(s("n")?).ok_or(KeyError::Encoding("n"))?;
        let e = b64url_decode(s("e")?).ok_or(KeyError::Encoding("e"))?;
        let kid = opt("kid")?.map(str::to_owned);
        Self::from_components(&n, &e, kid)
    }

    /// Parses a PEM public key (SPKI or PKCS#1).
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        let block = pem_decode(text).ok_or(KeyError::Format)?;
        if block.label != "PUBLIC KEY" && block.label != "RSA PUBLIC KEY" {
            return Err(KeyError::Format);
        }
        let key = aws_lc_rs::rsa::PublicKey::from_der(&block.der).map_err(|_| KeyError::Invalid)?;
        Self::from_components(
            key.modulus().big_endian_without_leading_zero(),
            key.exponent().big_endian_without_leading_zero(),
            None,
        )
    }

    fn from_components(n: &[u8], e: &[u8], kid: Option<String>) -> Result<Self, KeyError> {
        let n = strip_zeros(n);
        let e = strip_zeros(e);
        if n.len() < 256 {
            return Err(KeyError::TooSmall);
        }
        if n.len() > 1024 || e.is_empty() || e.len() > 8 {
            return Err(KeyError::Invalid);
        }
        // Let aws-lc check the key (odd modulus, sane exponent) by building its public key.
        let components = aws_lc_rs::rsa::PublicKeyComponents { n, e };
        let parsed: Result<aws_lc_rs::rsa::PublicEncryptingKey, _> = components.try_into();
        parsed.map_err(|_| KeyError::Invalid)?;
        let n_b64 = b64url(n);
        let e_b64 = b64url(e);
        let kid = match kid {
            Some(k) if super::safe_id(&k) => k,
            Some(_) => return Err(KeyError::Kid),
            None => rsa_thumbprint(&n_b64, &e_b64),
        };
        Self::from_stored(kid, n_b64, e_b64)
    }

    /// Rebuilds a key from stored members.
    pub fn from_stored(kid: String, n: String, e: String) -> Result<Self, KeyError> {
        let decoding = DecodingKey::from_rsa_components(&n, &e).map_err(|_| KeyError::Invalid)?;
        Ok(Self {
            kid,
            n,
            e,
            decoding,
        })
    }

    /// The pre-built verification key.
    pub fn decoding_key(&self) -> &DecodingKey {
        &self.decoding
    }

    /// The public JWK.
    pub fn to_jwk(&self) -> serde_json::Value {
        serde_json::json!({"kty":"RSA","kid":self.kid,"use":"sig","alg":"RS256","n":self.n,"e":self.e})
    }
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let i = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[i..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::SigningKey;

    fn sample() -> SigningKey {
        SigningKey::generate(None).unwrap()
    }

    #[test]
    fn jwk_and_pem_of_one_key_agree_and_kid_is_thumbprint() {
        let sk = sample();
        let mut jwk = sk.public_jwk();
        jwk.as_object_mut().unwrap().remove("kid");
        let a = ClientKey::parse(&jwk).unwrap();
        let b = ClientKey::parse(&serde_json::Value::String(sk.public_pem().unwrap())).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.kid, sk.kid());
    }

    #[test]
    fn legacy_alg_spelling_and_explicit_kid_are_accepted() {
        let sk = sample();
        let mut jwk = sk.public_jwk();
        jwk["alg"] = "RSA256".into();
        jwk["kid"] = "my-key-1".into();
        assert_eq!(ClientKey::parse(&jwk).unwrap().kid, "my-key-1");
    }

    #[test]
    fn bad_keys_are_refused_with_a_reason() {
        let sk = sample();
        let jwk = sk.public_jwk();
        let with = |k: &str, v: serde_json::Value| {
            let mut j = jwk.clone();
            j[k] = v;
            ClientKey::parse(&j).unwrap_err()
        };
        assert_eq!(with("kty", "EC".into()), KeyError::Kty);
        assert_eq!(with("alg", "HS256".into()), KeyError::Alg);
        assert_eq!(with("use", "enc".into()), KeyError::Use);
        assert_eq!(with("d", "AAAA".into()), KeyError::Private);
        assert_eq!(with("n", 5.into()), KeyError::Member("n"));
        assert_eq!(with("n", "AQAB".into()), KeyError::TooSmall);
        assert_eq!(with("n", "***".into()), KeyError::Encoding("n"));
        assert_eq!(with("kid", "../etc/passwd".into()), KeyError::Kid);
        assert_eq!(
            ClientKey::parse(&serde_json::json!(42)).unwrap_err(),
            KeyError::Format
        );
        assert_eq!(
            ClientKey::parse(&"hello".into()).unwrap_err(),
            KeyError::Format
        );
    }

    #[test]
    fn small_pem_keys_are_refused_in_both_encodings() {
        // One 1024-bit key (openssl genrsa 1024), as SPKI and as PKCS#1.
        let spki = "-----BEGIN PUBLIC KEY-----\nMIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDg9QTz1r13h2uxKaRSKWcRL9jF\no6AzbnqriGTNfEv8Ls4JaNgCouKAKhShf5lL7nOowFhcT7SKSCai5T7UNR7n4fiA\nUQeZ4i77qkgI0Ctpj+Laond7fCXLe5qfM1HYWi35U59+oUbtfBloZFWiE6SyWTL1\nISYE25HS2Yk37wUiZQIDAQAB\n-----END PUBLIC KEY-----\n";
        let pkcs1 = "-----BEGIN RSA PUBLIC KEY-----\nMIGJAoGBAOD1BPPWvXeHa7EppFIpZxEv2MWjoDNuequIZM18S/wuzglo2AKi4oAq\nFKF/mUvuc6jAWFxPtIpIJqLlPtQ1Hufh+IBRB5niLvuqSAjQK2mP4tqid3t8Jct7\nmp8zUdhaLflTn36hRu18GWhkVaITpLJZMvUhJgTbkdLZiTfvBSJlAgMBAAE=\n-----END RSA PUBLIC KEY-----\n";
        assert_eq!(ClientKey::from_pem(spki).unwrap_err(), KeyError::TooSmall);
        assert_eq!(ClientKey::from_pem(pkcs1).unwrap_err(), KeyError::TooSmall);
    }

    #[test]
    fn pkcs1_pem_of_a_2048_key_is_accepted() {
        let sk = sample();
        // Re-wrap the SPKI's inner RSAPublicKey as PKCS#1 via aws-lc's parsed public key.
        let spki = crate::util::pem_decode(&sk.public_pem().unwrap()).unwrap();
        let parsed = aws_lc_rs::rsa::PublicKey::from_der(&spki.der).unwrap();
        let pkcs1 = crate::util::pem_encode("RSA PUBLIC KEY", parsed.as_ref());
        assert_eq!(ClientKey::from_pem(&pkcs1).unwrap().kid, sk.kid());
    }
}
