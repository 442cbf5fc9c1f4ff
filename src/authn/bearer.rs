//! Bearer authentication for proxied and management requests (RFC 6750), the stage before route
//! matching and the policy.
//!
//! The token must be ours (verified by [`AccessTokenVerifier`], signature work cached) and its
//! account must still exist in the live snapshot: a deleted account's token stops working at
//! once, whatever its signature says. Only the `Authorization` header is accepted; a token in the
//! query or form body is refused, and more than one transport is a malformed request.

use super::external::ExternalIssuer;
use crate::error::{ApiError, Body};
use crate::iam::{Owner, Principal, ServiceAccount};
use crate::store::snapshot::AccountSnapshot;
use crate::token::verifier::{AccessTokenVerifier, VerifyError};
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use std::sync::Arc;

/// A bearer authentication failure, answered per RFC 6750 §3.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BearerError {
    /// No credentials: 401 with a bare challenge.
    #[error("authentication required")]
    Missing,
    /// Malformed request (two transports, two headers, token in the URL): 400.
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    /// Bad, expired or revoked token: 401 `invalid_token`.
    #[error("invalid token: {0}")]
    InvalidToken(String),
}

impl BearerError {
    /// The response, with `WWW-Authenticate`. The description never echoes the token.
    pub fn into_response(self) -> Response<Body> {
        let (status, challenge, message) = match &self {
            Self::Missing => (
                StatusCode::UNAUTHORIZED,
                "Bearer realm=\"iamgate\"".to_owned(),
                "authentication required".to_owned(),
            ),
            Self::InvalidRequest(why) => (
                StatusCode::BAD_REQUEST,
                format!(
                    "Bearer realm=\"iamgate\", error=\"invalid_request\", error_description=\"{why}\""
                ),
                (*why).to_owned(),
            ),
            Self::InvalidToken(_) => (
                StatusCode::UNAUTHORIZED,
                "Bearer realm=\"iamgate\", error=\"invalid_token\"".to_owned(),
                "invalid or expired token".to_owned(),
            ),
        };
        let mut resp = ApiError::new(status, message).into_response();
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        resp
    }
}

/// What kind of identity made the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerKind {
    /// A service account holding one of our access tokens.
    ServiceAccount,
    /// A user of a trusted external issuer.
    User,
}

impl CallerKind {
    /// `serviceaccount` or `user`, as in the policy input and the `client-type` header.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ServiceAccount => "serviceaccount",
            Self::User => "user",
        }
    }
}

/// Who made the request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Client id or user id.
    pub id: String,
    /// Service account or user.
    pub kind: CallerKind,
    /// The principal key bindings name it by (`serviceaccount:<id>`, `user:<issuer>:<id>`).
    pub principal: Arc<str>,
    /// Groups (users of external issuers), as the issuer names them.
    pub groups: Arc<[String]>,
    /// The groups' principal keys (`group:<issuer>:<name>`).
    pub group_principals: Arc<[String]>,
    /// Root permissions held directly (root service accounts), as of this request's snapshot.
    pub permissions: Arc<[String]>,
    /// The service account, for service-account callers.
    pub account: Option<Arc<ServiceAccount>>,
    /// The issuer that vouched for a user.
    pub issuer: Option<String>,
    /// That issuer's configured name.
    pub issuer_name: Option<Arc<str>>,
}

impl Caller {
    /// The caller's company, for company service accounts.
    pub fn company(&self) -> Option<&str> {
        match self.account.as_deref().map(|a| &a.owner) {
            Some(Owner::Company(c)) => Some(c),
            _ => None,
        }
    }

    /// Properties handed to the policy and upstream (`miauserproperties`).
    pub fn properties(&self) -> serde_json::Value {
        serde_json::to_value(self.property_fields())
            .unwrap_or_else(|_| serde_json::Value::Object(serde_json::Map::new()))
    }

    /// [`properties`](Self::properties) as JSON text, written straight from the caller's fields:
    /// the `miauserproperties` header of every proxied request, without building a map first.
    pub fn properties_json(&self) -> String {
        serde_json::to_string(&self.property_fields()).unwrap_or_else(|_| "{}".to_owned())
    }

    fn property_fields(&self) -> Properties<'_> {
        Properties {
            company_id: self.company(),
            issuer: self.issuer.as_deref(),
            name: self.account.as_deref().map(|a| a.name.as_str()),
        }
    }
}

/// The caller's properties, one definition for the policy value and the header text. Fields in
/// the order of `serde_json::Map` (sorted keys), so both print the same.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Properties<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    company_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    issuer: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
}

/// The bearer token of a request as the client sent it, or why there is none. Its bytes are
/// not checked for being text here: a token that is not never verifies (the verifier checks on
/// a cache miss), which spares every request a pass over the ~900 bytes.
pub fn extract<'h>(headers: &'h HeaderMap, query: Option<&str>) -> Result<&'h [u8], BearerError> {
    let in_query = query
        .is_some_and(|q| form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "access_token"));
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(BearerError::InvalidRequest(
            "more than one Authorization header",
        ));
    }
    match (first, in_query) {
        (Some(_), true) => Err(BearerError::InvalidRequest("more than one token transport")),
        (None, true) => Err(BearerError::InvalidRequest(
            "tokens are accepted in the Authorization header only",
        )),
        (None, false) => Err(BearerError::Missing),
        (Some(v), false) => {
            let v = v.as_bytes().trim_ascii();
            let space = v
                .iter()
                .position(|&b| b == b' ')
                .ok_or(BearerError::Missing)?;
            let (scheme, token) = (v.get(..space), v.get(space + 1..));
            if !scheme.is_some_and(|s| s.eq_ignore_ascii_case(b"bearer")) {
                return Err(BearerError::Missing);
            }
            let token = token.unwrap_or_default().trim_ascii();
            if token.is_empty() {
                return Err(BearerError::InvalidToken("empty token".to_owned()));
            }
            Ok(token)
        }
    }
}

/// Authenticates requests with our access tokens, or those of trusted external issuers.
#[derive(Debug, Clone)]
pub struct BearerAuth {
    verifier: Arc<AccessTokenVerifier>,
    accounts: AccountSnapshot,
    externals: Arc<[Arc<ExternalIssuer>]>,
}

impl BearerAuth {
    /// A bearer authenticator over `verifier` and the live `accounts`.
    pub fn new(verifier: Arc<AccessTokenVerifier>, accounts: AccountSnapshot) -> Self {
        Self {
            verifier,
            accounts,
            externals: Arc::from(Vec::new()),
        }
    }

    /// Also accepts tokens of these issuers (chosen by the token's `iss`).
    pub fn with_external(mut self, issuers: Vec<Arc<ExternalIssuer>>) -> Self {
        self.externals = Arc::from(issuers);
        self
    }

    /// Authenticates a request by its headers and query at time `now`.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
        now: i64,
    ) -> Result<Caller, BearerError> {
        let token = extract(headers, query)?;
        if !self.externals.is_empty()
            && let Ok(token) = std::str::from_utf8(token)
            && let Some(iss) = super::external::peek_issuer(token)
            && let Some(ext) = self.externals.iter().find(|e| e.issuer() == iss)
        {
            // Boxed: a JWKS fetch's state would otherwise sit in every request's future.
            let user = Box::pin(ext.verify(token))
                .await
                .map_err(|e| BearerError::InvalidToken(e.to_string()))?;
            let principal = Principal::User {
                issuer: user.issuer_name.clone(),
                id: user.id.clone(),
            };
            let group_principals: Vec<String> = user
                .groups
                .iter()
                .map(|g| {
                    Principal::Group {
                        issuer: user.issuer_name.clone(),
                        name: g.clone(),
                    }
                    .key()
                })
                .collect();
            return Ok(Caller {
                id: user.id,
                kind: CallerKind::User,
                principal: principal.key().into(),
                groups: user.groups.into(),
                group_principals: group_principals.into(),
                // Shared empty list: no allocation.
                permissions: Arc::default(),
                account: None,
                issuer: Some(user.issuer),
                issuer_name: Some(user.issuer_name.into()),
            });
        }
        let verified = self
            .verifier
            .verify(token, now)
            .await
            .map_err(|e: VerifyError| BearerError::InvalidToken(e.to_string()))?;
        // Checked on every request, never cached: deletion takes effect at once.
        let account = self
            .accounts
            .get(&verified.client_id)
            .filter(|a| a.client_id == verified.sub)
            .ok_or_else(|| BearerError::InvalidToken("account no longer exists".to_owned()))?;
        Ok(Caller {
            id: account.client_id.clone(),
            kind: CallerKind::ServiceAccount,
            // The account was found under the token's client id: its principal is the token's.
            principal: verified.principal.clone(),
            groups: Arc::default(),
            group_principals: Arc::default(),
            permissions: account.permissions.clone(),
            account: Some(account),
            issuer: None,
            issuer_name: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_text_is_the_properties_value_printed() {
        let company = |owner: Owner| Caller {
            id: "sa-1".into(),
            kind: CallerKind::ServiceAccount,
            principal: "serviceaccount:sa-1".into(),
            groups: vec![].into(),
            group_principals: vec![].into(),
            issuer_name: None,
            permissions: vec![].into(),
            account: Some(Arc::new(ServiceAccount {
                owner,
                name: "name with \"quotes\" and ü".into(),
                ..account("sa-1")
            })),
            issuer: None,
        };
        let user = Caller {
            id: "u-1".into(),
            kind: CallerKind::User,
            principal: "user:idp:u-1".into(),
            groups: vec!["g".into()].into(),
            group_principals: vec!["group:idp:g".into()].into(),
            issuer_name: Some("idp".into()),
            permissions: vec![].into(),
            account: None,
            issuer: Some("https://idp.example".into()),
        };
        let nobody = Caller {
            issuer: None,
            ..user.clone()
        };
        for c in [
            company(Owner::Company("acme".into())),
            company(Owner::Root),
            user,
            nobody,
        ] {
            assert_eq!(c.properties_json(), c.properties().to_string());
        }
    }
    use crate::iam::{Credential, SecretHasher};
    use crate::token::{Issuer, KeyRing, KeySet, KeyStatus, SigningKey};
    use crate::util::unix_now;
    use std::time::Duration;

    fn account(id: &str) -> ServiceAccount {
        ServiceAccount {
            client_id: id.to_owned(),
            name: id.to_owned(),
            owner: Owner::Company("acme".into()),
            credential: Credential::Secret(SecretHasher::new(b"pepper-pepper-pepper").hash("x")),
            permissions: vec![].into(),
            created_at: 0,
            last_login: None,
            retired_secret: None,
        }
    }

    fn setup() -> (Issuer, BearerAuth, AccountSnapshot) {
        let key = Arc::new(SigningKey::generate(None).unwrap());
        let ring = KeyRing::new(KeySet::new(vec![(KeyStatus::Active, key)]).unwrap());
        let issuer = Issuer {
            issuer: Arc::from("https://gw"),
            audience: Arc::from("https://gw"),
            lifetime_secs: 3600,
            keys: ring.clone(),
        };
        let verifier = Arc::new(AccessTokenVerifier::new(
            ring,
            "https://gw",
            "https://gw",
            Duration::from_secs(30),
            1 << 20,
        ));
        let snapshot = AccountSnapshot::new(vec![account("sa-1")]);
        (
            issuer,
            BearerAuth::new(verifier, snapshot.clone()),
            snapshot,
        )
    }

    fn with_auth(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, v.parse().unwrap());
        h
    }

    #[tokio::test]
    async fn valid_token_authenticates_until_the_account_is_deleted() {
        let (issuer, auth, snapshot) = setup();
        let now = unix_now();
        let t = issuer.mint("sa-1", &[], now).unwrap().token;
        let caller = auth
            .authenticate(&with_auth(&format!("bearer {t}")), None, now)
            .await
            .unwrap();
        assert_eq!(caller.id, "sa-1");
        assert_eq!(caller.company(), Some("acme"));
        assert_eq!(&*caller.principal, "serviceaccount:sa-1");
        // A cache hit hands out the same principal.
        let again = auth
            .authenticate(&with_auth(&format!("Bearer {t}")), None, now)
            .await
            .unwrap();
        assert_eq!(&*again.principal, "serviceaccount:sa-1");
        snapshot.apply("sa-1", None);
        let err = auth
            .authenticate(&with_auth(&format!("Bearer {t}")), None, now)
            .await
            .unwrap_err();
        assert!(
            matches!(err, BearerError::InvalidToken(_)),
            "cached signature, deleted account: refused"
        );
    }

    #[tokio::test]
    async fn transports_and_schemes() {
        let (issuer, auth, _) = setup();
        let now = unix_now();
        let t = issuer.mint("sa-1", &[], now).unwrap().token;
        assert_eq!(
            auth.authenticate(&HeaderMap::new(), None, now)
                .await
                .unwrap_err(),
            BearerError::Missing
        );
        assert_eq!(
            auth.authenticate(&with_auth("Basic abc"), None, now)
                .await
                .unwrap_err(),
            BearerError::Missing
        );
        assert!(matches!(
            auth.authenticate(&HeaderMap::new(), Some(&format!("access_token={t}")), now)
                .await
                .unwrap_err(),
            BearerError::InvalidRequest(_)
        ));
        assert!(matches!(
            auth.authenticate(
                &with_auth(&format!("Bearer {t}")),
                Some("access_token=x"),
                now
            )
            .await
            .unwrap_err(),
            BearerError::InvalidRequest(_)
        ));
        let mut two = with_auth(&format!("Bearer {t}"));
        two.append(
            header::AUTHORIZATION,
            format!("Bearer {t}").parse().unwrap(),
        );
        assert!(matches!(
            auth.authenticate(&two, None, now).await.unwrap_err(),
            BearerError::InvalidRequest(_)
        ));
        assert!(matches!(
            auth.authenticate(&with_auth("Bearer not.a.token"), None, now)
                .await
                .unwrap_err(),
            BearerError::InvalidToken(_)
        ));
    }

    #[test]
    fn responses_follow_rfc6750() {
        let r = BearerError::Missing.into_response();
        assert_eq!(r.status(), 401);
        assert_eq!(
            r.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"iamgate\""
        );
        let r = BearerError::InvalidToken("expired".into()).into_response();
        assert_eq!(r.status(), 401);
        assert!(
            r.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .contains("error=\"invalid_token\"")
        );
        let r = BearerError::InvalidRequest("two").into_response();
        assert_eq!(r.status(), 400);
    }
}
