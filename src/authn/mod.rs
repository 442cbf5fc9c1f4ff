//! Authentication: the OAuth 2.0 token endpoint (`POST /api/m2m/oauth/token`).
//!
//! First stage of the service-account path: a request is bounded and parsed ([`request`]),
//! rate-limited by source address and client id ([`ratelimit`]), authenticated against the
//! in-memory account snapshot with either a keyed secret hash or an RFC 7523 assertion
//! ([`assertion`], [`replay`]), and answered with an access token minted by [`crate::token`].
//! The database is never touched on this path.

pub mod assertion;
pub mod bearer;
pub mod external;
pub mod ratelimit;
pub mod replay;
pub mod request;

use crate::config::OAuthSettings;
use crate::error::{Body, OAuthError, json, no_store};
use crate::iam::{Credential, LastLogins, SecretHasher, ServiceAccount};
use crate::store::JtiOutcome;
use crate::store::snapshot::AccountSnapshot;
use crate::telemetry::metrics::{GrantLabels, Metrics};
use crate::token::Issuer;
use crate::util::unix_now;
use assertion::{Assertion, AssertionRules};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use jsonwebtoken::{Algorithm, DecodingKey};
use ratelimit::FailureLimiter;
use replay::{MemoryReplay, ReplayCheck};
use request::ClientAuth;
use std::net::IpAddr;
use std::sync::Arc;

/// The one message for every failure that depends on which accounts or keys exist.
const AUTH_FAILED: &str = "client authentication failed";

/// Everything the token endpoint needs, shared across requests.
pub struct TokenEndpoint {
    accounts: AccountSnapshot,
    hasher: Arc<SecretHasher>,
    issuer: Issuer,
    rules: AssertionRules,
    replay: MemoryReplay,
    /// The store's replay record, shared by every instance, when it keeps one.
    shared_replay: Option<Arc<dyn crate::store::Store>>,
    /// Unexpired `jti`s one client may hold in either record.
    replay_per_client: usize,
    /// Whether the shared store answered its last health check.
    store_healthy: Option<Arc<std::sync::atomic::AtomicBool>>,
    by_client: FailureLimiter,
    by_address: FailureLimiter,
    last_logins: LastLogins,
    max_body: usize,
    metrics: Arc<Metrics>,
    /// Verified against when the client or key is unknown, so that path costs an RSA verify too.
    dummy_key: DecodingKey,
}

impl std::fmt::Debug for TokenEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenEndpoint").finish_non_exhaustive()
    }
}

/// The accepted assertion audiences: configured ones, or `console-client-credentials`, the
/// issuer and the token endpoint URL.
pub fn default_audiences(issuer: &str, token_endpoint: &str) -> Vec<String> {
    vec![
        "console-client-credentials".to_owned(),
        issuer.to_owned(),
        token_endpoint.to_owned(),
    ]
}

impl TokenEndpoint {
    /// Builds the endpoint. `audiences` are the accepted assertion audiences.
    pub fn new(
        settings: &OAuthSettings,
        audiences: Vec<String>,
        accounts: AccountSnapshot,
        hasher: Arc<SecretHasher>,
        issuer: Issuer,
        last_logins: LastLogins,
        metrics: Arc<Metrics>,
    ) -> Result<Self, crate::token::TokenError> {
        let dummy_key = issuer.keys.current().active().verifying_key()?;
        let rl = &settings.rate_limit;
        let skew = i64::try_from(settings.clock_skew.as_secs()).unwrap_or(30);
        Ok(Self {
            accounts,
            hasher,
            issuer,
            rules: AssertionRules {
                audiences,
                skew,
                max_lifetime: i64::try_from(settings.max_assertion_lifetime.as_secs())
                    .unwrap_or(3600),
            },
            replay: MemoryReplay::new(settings.replay_cache_capacity, settings.replay_per_client),
            replay_per_client: settings.replay_per_client,
            shared_replay: None,
            store_healthy: None,
            by_client: FailureLimiter::new(rl.max_failures_per_client, rl.window, 100_000),
            by_address: FailureLimiter::new(rl.max_failures_per_address, rl.window, 100_000),
            last_logins,
            max_body: settings.max_request_bytes,
            metrics,
            dummy_key,
        })
    }

    /// Records assertion `jti`s in `store` (shared by every instance) instead of in memory, and
    /// answers 503 while `healthy` is false: with the shared database down, this instance
    /// cannot know about revocations made elsewhere, so it issues no token.
    pub fn with_shared_store(
        mut self,
        store: Arc<dyn crate::store::Store>,
        healthy: Arc<std::sync::atomic::AtomicBool>,
    ) -> Self {
        self.shared_replay = Some(store);
        self.store_healthy = Some(healthy);
        self
    }

    /// Handles one token request from `peer`.
    pub async fn handle<B>(&self, req: Request<B>, peer: IpAddr) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Send,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let started = std::time::Instant::now();
        let mut method = "none";
        let result = self.process(req, peer, &mut method).await;
        let outcome = match &result {
            Ok(_) => "issued",
            Err(e) if e.status == StatusCode::TOO_MANY_REQUESTS => "rate_limited",
            Err(e) => e.code.as_str(),
        };
        self.metrics
            .token_requests
            .get_or_create(&GrantLabels { method, outcome })
            .inc();
        self.metrics
            .token_latency
            .observe(started.elapsed().as_secs_f64());
        result.unwrap_or_else(OAuthError::into_response)
    }

    async fn process<B>(
        &self,
        req: Request<B>,
        peer: IpAddr,
        method_used: &mut &'static str,
    ) -> Result<Response<Body>, OAuthError>
    where
        B: hyper::body::Body<Data = Bytes> + Send,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        if req.method() != Method::POST {
            return Err(OAuthError::method_not_allowed());
        }
        if self
            .store_healthy
            .as_ref()
            .is_some_and(|h| !h.load(std::sync::atomic::Ordering::Relaxed))
        {
            return Err(OAuthError::unavailable(
                "the account store is unavailable; retry shortly",
            ));
        }
        let (parts, body) = req.into_parts();
        let declared = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_body as u64) {
            return Err(OAuthError::too_large());
        }
        let body = Limited::new(body, self.max_body)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    OAuthError::too_large()
                } else {
                    OAuthError::invalid_request("could not read the request body")
                }
            })?
            .to_bytes();

        let addr_key = ratelimit::address_key(peer);
        if let Some(wait) = self.by_address.blocked(&addr_key).await {
            return Err(OAuthError::too_many(wait));
        }
        let treq = request::parse(&parts.headers, parts.uri.query(), &body)?;
        let now = unix_now();
        let (method, result): (&'static str, _) = match treq.auth {
            ClientAuth::Basic { client_id, secret } => (
                "client_secret_basic",
                self.authenticate_basic(&client_id, &secret, &addr_key)
                    .await,
            ),
            ClientAuth::Assertion {
                assertion,
                client_id,
            } => (
                "private_key_jwt",
                self.authenticate_assertion(&assertion, client_id.as_deref(), now, &addr_key)
                    .await,
            ),
        };
        *method_used = method;
        match result {
            Ok(account) => {
                let minted = self
                    .issuer
                    .mint(&account.client_id, &account.permissions, now)
                    .map_err(|e| {
                        tracing::error!(error = %e, "token signing failed");
                        OAuthError::server_error()
                    })?;
                self.last_logins.note(&account.client_id, now);
                tracing::debug!(client_id = %account.client_id, method, "token issued");
                let body = serde_json::json!({
                    "access_token": minted.token,
                    "token_type": "Bearer",
                    "expires_in": minted.expires_in,
                });
                let mut resp = json(StatusCode::OK, body.to_string());
                no_store(resp.headers_mut());
                Ok(resp)
            }
            Err((e, client)) => {
                if e.status == StatusCode::UNAUTHORIZED {
                    self.by_address.fail(&addr_key).await;
                    if let Some(c) = client.as_deref().or(treq.claimed_client_id.as_deref()) {
                        self.by_client
                            .fail(&ratelimit::client_key(c, &addr_key))
                            .await;
                    }
                }
                tracing::info!(
                    client_id = client.as_deref().or(treq.claimed_client_id.as_deref()).unwrap_or("-"),
                    method,
                    %peer,
                    status = e.status.as_u16(),
                    error = e.code.as_str(),
                    reason = %e.description,
                    "token request refused"
                );
                Err(e)
            }
        }
    }

    async fn client_gate(&self, client_id: &str, addr_key: &str) -> Result<(), OAuthError> {
        match self
            .by_client
            .blocked(&ratelimit::client_key(client_id, addr_key))
            .await
        {
            Some(wait) => Err(OAuthError::too_many(wait)),
            None => Ok(()),
        }
    }

    async fn authenticate_basic(
        &self,
        client_id: &str,
        secret: &str,
        addr_key: &str,
    ) -> Result<Arc<ServiceAccount>, (OAuthError, Option<String>)> {
        let fail = |e: OAuthError| (e, Some(client_id.to_owned()));
        self.client_gate(client_id, addr_key).await.map_err(fail)?;
        let account = self.accounts.get(client_id);
        let stored = account.as_deref().and_then(|a| match &a.credential {
            Credential::Secret(h) => Some(h),
            Credential::Keys(_) => None,
        });
        // A secret replaced by a rotation is accepted until its grace period ends.
        let now = unix_now();
        let retired = account.as_deref().and_then(|a| {
            a.retired_secret
                .as_ref()
                .filter(|(_, until)| *until > now)
                .map(|(h, _)| h)
        });
        // Always two HMACs and two constant-time compares, whatever the account state.
        let current_ok = self.hasher.verify(secret.as_bytes(), stored);
        let retired_ok = self.hasher.verify(secret.as_bytes(), retired);
        if (current_ok | retired_ok)
            && let Some(a) = account
        {
            return Ok(a);
        }
        Err(fail(
            OAuthError::invalid_client(AUTH_FAILED).with_basic_challenge(),
        ))
    }

    async fn authenticate_assertion(
        &self,
        token: &str,
        client_param: Option<&str>,
        now: i64,
        addr_key: &str,
    ) -> Result<Arc<ServiceAccount>, (OAuthError, Option<String>)> {
        let param = client_param.map(str::to_owned);
        let a = Assertion::parse(token, &self.rules, now)
            .map_err(|d| (OAuthError::invalid_client(d), param.clone()))?;
        let fail = |e: OAuthError| (e, Some(a.client_id.clone()));
        if client_param.is_some_and(|c| c != a.client_id) {
            return Err(fail(OAuthError::invalid_client(
                "client_id does not match the assertion's iss and sub",
            )));
        }
        self.client_gate(&a.client_id, addr_key)
            .await
            .map_err(fail)?;
        let account = self.accounts.get(&a.client_id);
        let key = account.as_deref().and_then(|acc| match &acc.credential {
            Credential::Keys(keys) => match &a.kid {
                // The kid selects exactly one key; other keys are never tried.
                Some(kid) => keys.iter().find(|k| &k.kid == kid),
                None if keys.len() == 1 => keys.first(),
                None => None,
            },
            Credential::Secret(_) => None,
        });
        let verifying = key.map_or(&self.dummy_key, |k| k.decoding_key());
        let valid = jsonwebtoken::crypto::verify(
            a.signature,
            a.signing_input.as_bytes(),
            verifying,
            Algorithm::RS256,
        )
        .unwrap_or(false);
        let account = match (valid, key.is_some(), account) {
            (true, true, Some(acc)) => acc,
            _ => return Err(fail(OAuthError::invalid_client(AUTH_FAILED))),
        };
        // Recorded only now: an assertion that fails any other check cannot burn a jti.
        let until = a.exp.saturating_add(self.rules.skew);
        let check = match &self.shared_replay {
            Some(store) => match store
                .record_jti(
                    a.client_id.clone(),
                    a.jti.clone(),
                    until,
                    now,
                    self.replay_per_client,
                )
                .await
            {
                Ok(JtiOutcome::Fresh) => ReplayCheck::Fresh,
                Ok(JtiOutcome::Replayed) => ReplayCheck::Replayed,
                Ok(JtiOutcome::ClientFull) => ReplayCheck::ClientFull,
                Err(e) => {
                    // Fail closed: without the shared record a replay could not be detected.
                    tracing::warn!(error = %e, "replay record unavailable");
                    return Err(fail(OAuthError::unavailable(
                        "the replay record is unavailable; retry shortly",
                    )));
                }
            },
            None => self
                .replay
                .check_and_record(&a.client_id, &a.jti, until, now),
        };
        match check {
            ReplayCheck::Fresh => Ok(account),
            ReplayCheck::Replayed => Err(fail(OAuthError::invalid_client(
                "client_assertion jti has already been used",
            ))),
            ReplayCheck::Full => Err(fail(OAuthError::unavailable(
                "assertion replay record is full; retry shortly",
            ))),
            ReplayCheck::ClientFull => Err(fail(OAuthError::too_many_assertions())),
        }
    }
}
