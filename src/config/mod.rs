//! Configuration: the first thing `iamgate serve` touches, before any socket opens.
//!
//! A YAML file is read into a serde model that rejects unknown fields, environment overrides are
//! applied on top, and [`RawConfig::validate`] turns the result into typed [`Settings`] while
//! collecting *every* problem, so an operator fixes a broken file in one round trip.

use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub mod external;

#[cfg(test)]
mod tests;

/// Why a configuration could not be used. Lists every problem found, one per line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file named by `--config` or `IAMGATE_CONFIG`.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML did not match the model (syntax, unknown field, wrong type).
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// The model parsed but values are unusable.
    #[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

/// A secret value from config or the environment. Its `Debug` never prints the value.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself; call only where it is used, never to log.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The file model. Every section is optional; defaults work out of the box.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    /// Listen address, `host:port`. Default `127.0.0.1:8080`.
    pub listen: Option<String>,
    /// Public base URL of the gateway, used for the issuer and the metadata document.
    pub public_url: Option<String>,
    /// Directory for the SQLite file, generated keys and bootstrap credentials. Default `./data`.
    pub data_dir: Option<PathBuf>,
    /// `sqlite:PATH` or `postgres://…`. Default: `sqlite:<data_dir>/iamgate.db`.
    pub database_url: Option<Secret>,
    /// First-start bootstrap of a root service account.
    pub bootstrap: RawBootstrap,
    /// Token endpoint and access token settings.
    pub oauth: RawOAuth,
    /// Access-token signing keys.
    pub signing: RawSigning,
    /// Server-side pepper for client-secret hashes.
    pub secret_pepper: Option<Secret>,
    /// Seconds between flushes of coalesced `lastLogin` updates. Default 10.
    pub last_login_flush_secs: Option<u64>,
    /// Logging.
    pub log: RawLog,
    /// Policy engine.
    pub policy: RawPolicy,
    /// The upstream Console API that allowed requests are forwarded to.
    pub upstream: RawUpstream,
    /// Listener, TLS and request limits.
    pub server: RawServer,
    /// Route table file replacing the built-in one (`config/routes.yaml` format).
    pub routes_file: Option<PathBuf>,
    /// Issuers whose user tokens are accepted besides our own.
    pub external_issuers: Vec<RawExternalIssuer>,
    /// The management API.
    pub management: RawManagement,
    /// The project directory.
    pub directory: RawDirectory,
}

/// `directory:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDirectory {
    /// A Console endpoint answering `[{"_id","tenantId","environments":[{"envId"}]}]`, polled.
    pub sync_url: Option<String>,
    /// Bearer token sent to `sync_url`.
    pub sync_token: Option<Secret>,
    /// Seconds between syncs. Default 300.
    pub sync_interval_secs: Option<u64>,
}

/// `management:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawManagement {
    /// Accepted `Client-key` header values; when set, management requests must carry one.
    pub client_keys: Vec<Secret>,
    /// Seconds a rotated client secret keeps working. Default 0.
    pub secret_rotation_grace_secs: Option<u64>,
}

/// `upstream:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawUpstream {
    /// `http(s)://host:port[/prefix]`. Without it, proxied routes answer 503.
    pub url: Option<String>,
    /// Connect timeout, milliseconds. Default 2000.
    pub connect_timeout_ms: Option<u64>,
    /// Time to the upstream's response headers, milliseconds. Default 30000.
    pub response_timeout_ms: Option<u64>,
    /// Extra PEM CA certificates trusted for an https upstream (besides the Mozilla roots).
    pub ca_file: Option<PathBuf>,
    /// Forward the caller's `Authorization` header. Default false.
    pub forward_authorization: Option<bool>,
    /// Names of the trusted identity headers.
    pub identity_headers: RawIdentityHeaders,
}

/// `upstream.identity_headers:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawIdentityHeaders {
    /// Default `miauserid`.
    pub user_id: Option<String>,
    /// Default `miausergroups`.
    pub groups: Option<String>,
    /// Default `miauserproperties`.
    pub properties: Option<String>,
    /// Default `client-type`.
    pub client_type: Option<String>,
}

/// `server:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    /// Serve HTTPS (HTTP/1.1 and HTTP/2 by ALPN) with this certificate and key.
    pub tls: Option<RawTls>,
    /// Requests handled at once; beyond it new requests get 503 at once. Default 4096.
    pub max_concurrent_requests: Option<usize>,
    /// Longest time from request to response headers, seconds. Default 60.
    pub request_timeout_secs: Option<u64>,
    /// Largest declared request body, bytes. Default 1 GiB.
    pub max_body_bytes: Option<u64>,
    /// Largest request body read for a decision (deploy trigger, role edits), bytes. Default 1 MiB.
    pub max_decision_body_bytes: Option<usize>,
    /// Largest upstream answer read by a response rule, bytes. Default 16 MiB.
    pub max_filtered_response_bytes: Option<usize>,
    /// Seconds in-flight requests get to finish on shutdown. Default 30.
    pub shutdown_grace_secs: Option<u64>,
}

/// `server.tls:` section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
}

/// One `external_issuers:` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExternalIssuer {
    /// Short name in principals (`user:<name>:<subject>`) and management API ids
    /// (`<name>:<subject>`). Default: the host of `issuer`.
    pub name: Option<String>,
    /// Exact `iss`.
    pub issuer: String,
    /// Required `aud`.
    pub audience: String,
    /// JWKS file.
    pub jwks_file: Option<PathBuf>,
    /// JWKS URL.
    pub jwks_url: Option<String>,
    /// Claim with the user id. Default `sub`.
    pub subject_claim: Option<String>,
    /// Claim with the groups. Default `groups`.
    pub groups_claim: Option<String>,
    /// Minimum seconds between JWKS refreshes on unknown kids. Default 30.
    pub refresh_min_secs: Option<u64>,
}

/// `policy:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPolicy {
    /// Policy folder. Default `./policies` when it exists, else the policy built into the binary.
    pub dir: Option<PathBuf>,
    /// Milliseconds between checks of the folder for changes. Default 500.
    pub reload_ms: Option<u64>,
    /// Time limit of one decision, milliseconds; over it the request is denied. Default 50.
    pub decision_timeout_ms: Option<u64>,
    /// `rvm` (default, regorus' register VM) or `interpreter`.
    pub evaluator: Option<String>,
    /// Decision cache.
    pub cache: RawPolicyCache,
}

/// `policy.cache:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPolicyCache {
    /// Default true.
    pub enabled: Option<bool>,
    /// Entries. Default 100000.
    pub capacity: Option<u64>,
    /// Seconds an entry lives. Default 60.
    pub ttl_secs: Option<u64>,
}

/// `bootstrap:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawBootstrap {
    /// Create `bootstrap-admin` on first start with an empty store. Default true.
    pub enabled: Option<bool>,
    /// Name of the bootstrap account. Default `bootstrap-admin`.
    pub name: Option<String>,
}

/// `oauth:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawOAuth {
    /// `iss` of access tokens. Default: the public URL.
    pub issuer: Option<String>,
    /// `aud` of access tokens. Default: the public URL.
    pub access_token_audience: Option<String>,
    /// Access token lifetime in seconds. Default 3600.
    pub access_token_lifetime_secs: Option<u64>,
    /// Accepted client-assertion audiences. Default: `console-client-credentials`, the issuer and
    /// the token endpoint URL.
    pub assertion_audiences: Option<Vec<String>>,
    /// Longest accepted assertion lifetime (`exp - now`), seconds, before skew. Default 3600.
    pub max_assertion_lifetime_secs: Option<u64>,
    /// Clock skew tolerated on `exp`, `nbf`, `iat`, seconds. Default 30.
    pub clock_skew_secs: Option<u64>,
    /// How many unexpired `(client_id, jti)` pairs are remembered. Default 100000.
    pub replay_cache_capacity: Option<usize>,
    /// Largest accepted token request body, bytes. Default 16384.
    pub max_request_bytes: Option<usize>,
    /// Brute-force protection.
    pub rate_limit: RawRateLimit,
}

/// `oauth.rate_limit:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRateLimit {
    /// Window length, seconds. Default 60.
    pub window_secs: Option<u64>,
    /// Failures per client id per window before 429. Default 20.
    pub max_failures_per_client: Option<u32>,
    /// Failures per source address per window before 429. Default 100.
    pub max_failures_per_address: Option<u32>,
}

/// `signing:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSigning {
    /// PEM key files. When empty, keys are generated and rotated under `<data_dir>/keys`.
    pub keys: Vec<RawKeyFile>,
    /// Seconds between checks of the generated key set for rotations. Default 5.
    pub reload_secs: Option<u64>,
}

/// One configured signing key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKeyFile {
    /// PKCS#8 or PKCS#1 RSA private key PEM.
    pub path: PathBuf,
    /// `active` (exactly one), `next` or `retired`.
    pub status: String,
    /// Key id; default the RFC 7638 thumbprint.
    pub kid: Option<String>,
}

/// `log:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    /// `json` (default) or `text`.
    pub format: Option<String>,
    /// A tracing filter, e.g. `info` or `iamgate=debug`. Default `info`.
    pub level: Option<String>,
}

/// Where accounts and keys persist.
#[derive(Debug, Clone)]
pub enum DatabaseSettings {
    /// Embedded SQLite file.
    Sqlite(PathBuf),
    /// PostgreSQL URL.
    Postgres(Secret),
}

/// Decision-cache settings.
#[derive(Debug, Clone, Copy)]
pub struct CacheSettings {
    /// Entries.
    pub capacity: u64,
    /// Time to live.
    pub ttl: Duration,
}

/// Names of the trusted identity headers (Console conventions by default).
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    /// The caller's id.
    pub user_id: http::HeaderName,
    /// Comma-separated groups.
    pub groups: http::HeaderName,
    /// JSON properties.
    pub properties: http::HeaderName,
    /// `serviceaccount` or `user`.
    pub client_type: http::HeaderName,
}

/// Validated, typed settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Listen address.
    pub listen: SocketAddr,
    /// Public base URL without trailing slash; `None` = derive from the bound address.
    pub public_url: Option<String>,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Database.
    pub database: DatabaseSettings,
    /// Bootstrap account on first start, with its name; `None` when disabled.
    pub bootstrap: Option<String>,
    /// Token endpoint settings.
    pub oauth: OAuthSettings,
    /// Signing keys.
    pub signing: SigningSettings,
    /// Pepper for client-secret HMACs; `None` = generated file in the data dir.
    pub secret_pepper: Option<Secret>,
    /// Interval of `lastLogin` flushes.
    pub last_login_flush: Duration,
    /// Log output is JSON.
    pub log_json: bool,
    /// Tracing filter.
    pub log_level: String,
    /// Policy engine.
    pub policy: PolicySettings,
    /// Upstream.
    pub upstream: UpstreamSettings,
    /// Server limits and TLS.
    pub server: ServerSettings,
    /// Route file; `None` = the built-in table.
    pub routes_file: Option<PathBuf>,
    /// External issuers.
    pub external_issuers: Vec<external::ExternalIssuerSettings>,
    /// Accepted `Client-key` values.
    pub client_keys: Vec<Secret>,
    /// Grace period of a rotated secret.
    pub secret_rotation_grace: Duration,
    /// Directory sync: URL, token, interval.
    pub directory_sync: Option<(http::Uri, Option<Secret>, Duration)>,
}

/// Upstream settings.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// Base URL; `None` = no upstream (proxied routes answer 503).
    pub url: Option<http::Uri>,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Response-header timeout.
    pub response_timeout: Duration,
    /// Extra CA file.
    pub ca_file: Option<PathBuf>,
    /// Forward `Authorization`.
    pub forward_authorization: bool,
    /// Identity header names.
    pub identity_headers: IdentityHeaders,
}

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// TLS certificate and key files.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Concurrency limit.
    pub max_concurrent_requests: usize,
    /// Request timeout.
    pub request_timeout: Duration,
    /// Declared body ceiling.
    pub max_body_bytes: u64,
    /// Decision body cap.
    pub max_decision_body_bytes: usize,
    /// Filtered response cap.
    pub max_filtered_response_bytes: usize,
    /// Shutdown grace.
    pub shutdown_grace: Duration,
}

/// Policy engine settings.
#[derive(Debug, Clone)]
pub struct PolicySettings {
    /// The configured folder; `None` = `./policies` if present, else the embedded policy.
    pub dir: Option<PathBuf>,
    /// Reload poll interval.
    pub reload: Duration,
    /// Per-decision time limit.
    pub decision_timeout: Duration,
    /// Decision cache; `None` = disabled.
    pub cache: Option<CacheSettings>,
    /// Evaluate with regorus' interpreter instead of its register VM.
    pub interpreter: bool,
}

/// Token endpoint settings.
#[derive(Debug, Clone)]
pub struct OAuthSettings {
    /// Access token `iss`; `None` = public URL.
    pub issuer: Option<String>,
    /// Access token `aud`; `None` = public URL.
    pub access_token_audience: Option<String>,
    /// Access token lifetime.
    pub access_token_lifetime: Duration,
    /// Accepted assertion audiences; `None` = the defaults.
    pub assertion_audiences: Option<Vec<String>>,
    /// Maximum `exp - now` of an assertion (skew is added on top).
    pub max_assertion_lifetime: Duration,
    /// Clock skew.
    pub clock_skew: Duration,
    /// Replay cache capacity.
    pub replay_cache_capacity: usize,
    /// Request body limit.
    pub max_request_bytes: usize,
    /// Rate limiting.
    pub rate_limit: RateLimitSettings,
}

/// Failure rate limiting.
#[derive(Debug, Clone)]
pub struct RateLimitSettings {
    /// Fixed window.
    pub window: Duration,
    /// Failures per client id per window.
    pub max_failures_per_client: u32,
    /// Failures per source address per window.
    pub max_failures_per_address: u32,
}

/// Signing key sources.
#[derive(Debug, Clone)]
pub struct SigningSettings {
    /// Configured PEM files; empty = managed key set in `<data_dir>/keys`.
    pub keys: Vec<KeyFileSettings>,
    /// Reload interval for the managed key set.
    pub reload: Duration,
}

/// A configured key file.
#[derive(Debug, Clone)]
pub struct KeyFileSettings {
    /// PEM path.
    pub path: PathBuf,
    /// Its role in the key set.
    pub status: crate::model::KeyStatus,
    /// Explicit kid.
    pub kid: Option<String>,
}

/// Reads `path` (if any) into the model; a missing explicit file is an error.
pub fn load_file(path: Option<&Path>) -> Result<RawConfig, ConfigError> {
    let Some(path) = path else {
        return Ok(RawConfig::default());
    };
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_yaml(&text).map_err(|message| ConfigError::Parse {
        path: path.to_owned(),
        message,
    })
}

/// Parses YAML text into the model. An empty document is the default config.
pub fn parse_yaml(text: &str) -> Result<RawConfig, String> {
    if text.trim().is_empty() {
        return Ok(RawConfig::default());
    }
    yaml_serde::from_str(text).map_err(|e| e.to_string())
}

/// Source of environment variables, injectable for tests.
pub trait Env {
    /// The variable's value, if set and non-empty.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl RawConfig {
    /// Applies `IAMGATE_*` overrides. Secrets may only come from here or the file.
    pub fn apply_env(&mut self, env: &dyn Env) {
        if let Some(v) = env.var("IAMGATE_LISTEN") {
            self.listen = Some(v);
        }
        if let Some(v) = env.var("IAMGATE_PUBLIC_URL") {
            self.public_url = Some(v);
        }
        if let Some(v) = env.var("IAMGATE_DATA_DIR") {
            self.data_dir = Some(PathBuf::from(v));
        }
        if let Some(v) = env.var("IAMGATE_DATABASE_URL") {
            self.database_url = Some(Secret(v));
        }
        if let Some(v) = env.var("IAMGATE_SECRET_PEPPER") {
            self.secret_pepper = Some(Secret(v));
        }
        if let Some(v) = env.var("IAMGATE_LOG_LEVEL") {
            self.log.level = Some(v);
        }
        if let Some(v) = env.var("IAMGATE_LOG_FORMAT") {
            self.log.format = Some(v);
        }
        if let Some(v) = env.var("IAMGATE_UPSTREAM") {
            self.upstream.url = Some(v);
        }
    }

    /// Checks every value and returns typed settings, or every problem at once.
    pub fn validate(self) -> Result<Settings, ConfigError> {
        let mut errs: Vec<String> = Vec::new();

        let listen_text = self.listen.unwrap_or_else(|| "127.0.0.1:8080".to_owned());
        let listen = listen_text.parse::<SocketAddr>().unwrap_or_else(|_| {
            errs.push(format!(
                "listen: `{listen_text}` is not an address like 127.0.0.1:8080"
            ));
            SocketAddr::from(([127, 0, 0, 1], 8080))
        });

        let public_url = self
            .public_url
            .map(|u| check_url("public_url", u.trim_end_matches('/'), &mut errs));

        let data_dir = self.data_dir.unwrap_or_else(|| PathBuf::from("./data"));
        if data_dir.as_os_str().is_empty() {
            errs.push("data_dir: must not be empty".to_owned());
        }

        let database = match self.database_url {
            None => DatabaseSettings::Sqlite(data_dir.join("iamgate.db")),
            Some(url) => {
                let u = url.expose();
                if let Some(path) = u.strip_prefix("sqlite://").or(u.strip_prefix("sqlite:")) {
                    if path.is_empty() {
                        errs.push("database_url: sqlite URL names no file".to_owned());
                    }
                    DatabaseSettings::Sqlite(PathBuf::from(path))
                } else if u.starts_with("postgres://") || u.starts_with("postgresql://") {
                    DatabaseSettings::Postgres(url)
                } else {
                    errs.push(
                        "database_url: must start with sqlite: or postgres:// (value not shown)"
                            .to_owned(),
                    );
                    DatabaseSettings::Sqlite(data_dir.join("iamgate.db"))
                }
            }
        };

        let bootstrap_name = self
            .bootstrap
            .name
            .unwrap_or_else(|| "bootstrap-admin".to_owned());
        if bootstrap_name.trim().is_empty() || bootstrap_name.len() > 200 {
            errs.push("bootstrap.name: must be 1 to 200 characters".to_owned());
        }
        let bootstrap = self
            .bootstrap
            .enabled
            .unwrap_or(true)
            .then_some(bootstrap_name);

        let o = self.oauth;
        let issuer = o
            .issuer
            .map(|u| check_url("oauth.issuer", u.trim_end_matches('/'), &mut errs));
        let access_token_audience = o.access_token_audience;
        if access_token_audience.as_deref() == Some("") {
            errs.push("oauth.access_token_audience: must not be empty".to_owned());
        }
        let lifetime = secs_in(
            "oauth.access_token_lifetime_secs",
            o.access_token_lifetime_secs,
            3600,
            60..=86_400,
            &mut errs,
        );
        if let Some(a) = &o.assertion_audiences
            && (a.is_empty() || a.iter().any(|s| s.is_empty()))
        {
            errs.push(
                "oauth.assertion_audiences: needs at least one non-empty audience".to_owned(),
            );
        }
        let max_assertion = secs_in(
            "oauth.max_assertion_lifetime_secs",
            o.max_assertion_lifetime_secs,
            3600,
            1..=86_400,
            &mut errs,
        );
        let skew = secs_in(
            "oauth.clock_skew_secs",
            o.clock_skew_secs,
            30,
            0..=600,
            &mut errs,
        );
        let replay_cache_capacity = o.replay_cache_capacity.unwrap_or(100_000);
        if !(1..=100_000_000).contains(&replay_cache_capacity) {
            errs.push("oauth.replay_cache_capacity: must be 1..=100000000".to_owned());
        }
        let max_request_bytes = o.max_request_bytes.unwrap_or(16 * 1024);
        if !(1024..=1024 * 1024).contains(&max_request_bytes) {
            errs.push("oauth.max_request_bytes: must be 1024..=1048576".to_owned());
        }
        let window = secs_in(
            "oauth.rate_limit.window_secs",
            o.rate_limit.window_secs,
            60,
            1..=86_400,
            &mut errs,
        );
        let per_client = o.rate_limit.max_failures_per_client.unwrap_or(20);
        let per_addr = o.rate_limit.max_failures_per_address.unwrap_or(100);
        if per_client == 0 || per_addr == 0 {
            errs.push("oauth.rate_limit: failure limits must be at least 1".to_owned());
        }

        let mut keys = Vec::new();
        let mut actives = 0;
        for (i, k) in self.signing.keys.into_iter().enumerate() {
            match k.status.parse::<crate::model::KeyStatus>() {
                Ok(status) => {
                    if status == crate::model::KeyStatus::Active {
                        actives += 1;
                    }
                    keys.push(KeyFileSettings {
                        path: k.path,
                        status,
                        kid: k.kid,
                    });
                }
                Err(()) => errs.push(format!(
                    "signing.keys[{i}].status: `{}` is not one of active, next, retired",
                    k.status
                )),
            }
        }
        if !keys.is_empty() && actives != 1 {
            errs.push(format!(
                "signing.keys: exactly one key must be active, found {actives}"
            ));
        }
        let reload = secs_in(
            "signing.reload_secs",
            self.signing.reload_secs,
            5,
            1..=3600,
            &mut errs,
        );

        if let Some(p) = &self.secret_pepper
            && p.expose().len() < 16
        {
            errs.push("secret_pepper: must be at least 16 characters".to_owned());
        }
        if matches!(database, DatabaseSettings::Postgres(_)) && self.secret_pepper.is_none() {
            // A generated pepper lives in one instance's data dir: secrets created on one
            // instance would fail on the others, and the shared key set could not be opened.
            errs.push(
                "secret_pepper: required with a postgres database_url (set the same value on every instance)"
                    .to_owned(),
            );
        }
        let flush = secs_in(
            "last_login_flush_secs",
            self.last_login_flush_secs,
            10,
            1..=3600,
            &mut errs,
        );

        let log_json = match self.log.format.as_deref() {
            None | Some("json") => true,
            Some("text") => false,
            Some(other) => {
                errs.push(format!("log.format: `{other}` is not json or text"));
                true
            }
        };
        let log_level = self.log.level.unwrap_or_else(|| "info".to_owned());
        if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
            errs.push(format!("log.level: `{log_level}` is not a tracing filter"));
        }

        let reload_ms = self.policy.reload_ms.unwrap_or(500);
        if !(50..=60_000).contains(&reload_ms) {
            errs.push(format!(
                "policy.reload_ms: {reload_ms} is outside 50..=60000"
            ));
        }
        let timeout_ms = self.policy.decision_timeout_ms.unwrap_or(50);
        if !(1..=10_000).contains(&timeout_ms) {
            errs.push(format!(
                "policy.decision_timeout_ms: {timeout_ms} is outside 1..=10000"
            ));
        }
        let cache_capacity = self.policy.cache.capacity.unwrap_or(100_000);
        if cache_capacity == 0 {
            errs.push(
                "policy.cache.capacity: must be at least 1 (or set enabled: false)".to_owned(),
            );
        }
        let cache_ttl = secs_in(
            "policy.cache.ttl_secs",
            self.policy.cache.ttl_secs,
            60,
            1..=86_400,
            &mut errs,
        );
        let interpreter = match self.policy.evaluator.as_deref() {
            None | Some("rvm") => false,
            Some("interpreter") => true,
            Some(other) => {
                errs.push(format!(
                    "policy.evaluator: `{other}` is not rvm or interpreter"
                ));
                false
            }
        };
        let policy = PolicySettings {
            interpreter,
            dir: self.policy.dir,
            reload: Duration::from_millis(reload_ms),
            decision_timeout: Duration::from_millis(timeout_ms),
            cache: self
                .policy
                .cache
                .enabled
                .unwrap_or(true)
                .then_some(CacheSettings {
                    capacity: cache_capacity,
                    ttl: cache_ttl,
                }),
        };

        let up = self.upstream;
        let upstream_url = up.url.as_deref().and_then(|u| {
            let u = u.trim_end_matches('/');
            check_url("upstream.url", u, &mut errs);
            u.parse::<http::Uri>()
                .map_err(|e| errs.push(format!("upstream.url: {e}")))
                .ok()
        });
        let mut header_name = |field: &str, v: Option<String>, default: &'static str| match v {
            None => http::HeaderName::from_static(default),
            Some(n) => http::HeaderName::from_bytes(n.as_bytes()).unwrap_or_else(|_| {
                errs.push(format!(
                    "upstream.identity_headers.{field}: `{n}` is not a header name"
                ));
                http::HeaderName::from_static(default)
            }),
        };
        let ih = up.identity_headers;
        let identity_headers = IdentityHeaders {
            user_id: header_name("user_id", ih.user_id, "miauserid"),
            groups: header_name("groups", ih.groups, "miausergroups"),
            properties: header_name("properties", ih.properties, "miauserproperties"),
            client_type: header_name("client_type", ih.client_type, "client-type"),
        };
        let connect_ms = up.connect_timeout_ms.unwrap_or(2000);
        let response_ms = up.response_timeout_ms.unwrap_or(30_000);
        for (field, v) in [
            ("upstream.connect_timeout_ms", connect_ms),
            ("upstream.response_timeout_ms", response_ms),
        ] {
            if !(1..=600_000).contains(&v) {
                errs.push(format!("{field}: {v} is outside 1..=600000"));
            }
        }
        let upstream = UpstreamSettings {
            url: upstream_url,
            connect_timeout: Duration::from_millis(connect_ms),
            response_timeout: Duration::from_millis(response_ms),
            ca_file: up.ca_file,
            forward_authorization: up.forward_authorization.unwrap_or(false),
            identity_headers,
        };

        let sv = self.server;
        let max_concurrent_requests = sv.max_concurrent_requests.unwrap_or(4096);
        if !(1..=1_000_000).contains(&max_concurrent_requests) {
            errs.push("server.max_concurrent_requests: must be 1..=1000000".to_owned());
        }
        let request_timeout = secs_in(
            "server.request_timeout_secs",
            sv.request_timeout_secs,
            60,
            1..=3600,
            &mut errs,
        );
        let shutdown_grace = secs_in(
            "server.shutdown_grace_secs",
            sv.shutdown_grace_secs,
            30,
            0..=3600,
            &mut errs,
        );
        let max_body_bytes = sv.max_body_bytes.unwrap_or(1 << 30);
        if max_body_bytes < 1024 {
            errs.push("server.max_body_bytes: must be at least 1024".to_owned());
        }
        let max_decision_body_bytes = sv.max_decision_body_bytes.unwrap_or(1 << 20);
        if !(1024..=64 << 20).contains(&max_decision_body_bytes) {
            errs.push("server.max_decision_body_bytes: must be 1024..=67108864".to_owned());
        }
        let max_filtered_response_bytes = sv.max_filtered_response_bytes.unwrap_or(16 << 20);
        if !(1024..=256 << 20).contains(&max_filtered_response_bytes) {
            errs.push("server.max_filtered_response_bytes: must be 1024..=268435456".to_owned());
        }
        let server = ServerSettings {
            tls: sv.tls.map(|t| (t.cert_file, t.key_file)),
            max_concurrent_requests,
            request_timeout,
            max_body_bytes,
            max_decision_body_bytes,
            max_filtered_response_bytes,
            shutdown_grace,
        };

        let mut external_issuers = Vec::new();
        let mut issuer_names = std::collections::HashSet::new();
        for (i, e) in self.external_issuers.into_iter().enumerate() {
            let at = format!("external_issuers[{i}]");
            if e.issuer.is_empty() || e.audience.is_empty() {
                errs.push(format!("{at}: issuer and audience must not be empty"));
            }
            // The name is part of every stored principal of this issuer's users and groups: it
            // must be unambiguous, and two issuers must never share one.
            let name = e
                .name
                .clone()
                .unwrap_or_else(|| external::default_issuer_name(&e.issuer));
            if !external::valid_issuer_name(&name) {
                errs.push(format!(
                    "{at}.name: `{name}` must be 1 to 64 characters of [A-Za-z0-9-._~]{}",
                    if e.name.is_none() {
                        " (derived from the issuer's host; set name)"
                    } else {
                        ""
                    }
                ));
            } else if !issuer_names.insert(name.clone()) {
                errs.push(format!(
                    "{at}.name: `{name}` is already the name of another issuer; give each a distinct name"
                ));
            }
            let jwks = match (e.jwks_file, e.jwks_url) {
                (Some(f), None) => Some(external::JwksSource::File(f)),
                (None, Some(u)) => {
                    check_url(&format!("{at}.jwks_url"), &u, &mut errs);
                    u.parse::<http::Uri>()
                        .map_err(|err| errs.push(format!("{at}.jwks_url: {err}")))
                        .ok()
                        .map(external::JwksSource::Url)
                }
                _ => {
                    errs.push(format!("{at}: give exactly one of jwks_file and jwks_url"));
                    None
                }
            };
            let refresh_min = secs_in(
                &format!("{at}.refresh_min_secs"),
                e.refresh_min_secs,
                30,
                0..=86_400,
                &mut errs,
            );
            if let Some(jwks) = jwks {
                external_issuers.push(external::ExternalIssuerSettings {
                    name,
                    issuer: e.issuer,
                    audience: e.audience,
                    jwks,
                    subject_claim: e.subject_claim.unwrap_or_else(|| "sub".to_owned()),
                    groups_claim: e.groups_claim.unwrap_or_else(|| "groups".to_owned()),
                    refresh_min,
                    skew,
                });
            }
        }

        if self
            .management
            .client_keys
            .iter()
            .any(|k| k.expose().len() < 8)
        {
            errs.push("management.client_keys: each key needs at least 8 characters".to_owned());
        }
        let secret_rotation_grace = secs_in(
            "management.secret_rotation_grace_secs",
            self.management.secret_rotation_grace_secs,
            0,
            0..=30 * 86_400,
            &mut errs,
        );

        let sync_every = secs_in(
            "directory.sync_interval_secs",
            self.directory.sync_interval_secs,
            300,
            1..=86_400,
            &mut errs,
        );
        let directory_sync = self.directory.sync_url.as_deref().and_then(|u| {
            check_url("directory.sync_url", u, &mut errs);
            u.parse::<http::Uri>()
                .map_err(|e| errs.push(format!("directory.sync_url: {e}")))
                .ok()
                .map(|u| (u, self.directory.sync_token.clone(), sync_every))
        });

        if !errs.is_empty() {
            return Err(ConfigError::Invalid(errs));
        }
        Ok(Settings {
            directory_sync,
            client_keys: self.management.client_keys,
            secret_rotation_grace,
            upstream,
            server,
            routes_file: self.routes_file,
            external_issuers,
            listen,
            public_url,
            data_dir,
            database,
            bootstrap,
            oauth: OAuthSettings {
                issuer,
                access_token_audience,
                access_token_lifetime: lifetime,
                assertion_audiences: o.assertion_audiences,
                max_assertion_lifetime: max_assertion,
                clock_skew: skew,
                replay_cache_capacity,
                max_request_bytes,
                rate_limit: RateLimitSettings {
                    window,
                    max_failures_per_client: per_client,
                    max_failures_per_address: per_addr,
                },
            },
            signing: SigningSettings { keys, reload },
            secret_pepper: self.secret_pepper,
            last_login_flush: flush,
            log_json,
            log_level,
            policy,
        })
    }
}

impl Settings {
    /// Loads the file (explicit path, else `IAMGATE_CONFIG`), applies the environment, validates.
    pub fn load(path: Option<&Path>, env: &dyn Env) -> Result<Settings, ConfigError> {
        let from_env = env.var("IAMGATE_CONFIG").map(PathBuf::from);
        let path = path.map(Path::to_path_buf).or(from_env);
        let mut raw = load_file(path.as_deref())?;
        raw.apply_env(env);
        raw.validate()
    }
}

fn check_url(field: &str, url: &str, errs: &mut Vec<String>) -> String {
    let ok = (url.starts_with("http://") || url.starts_with("https://"))
        && !url.contains(['?', '#', ' '])
        && url.len() > "https://".len();
    if !ok {
        errs.push(format!(
            "{field}: `{url}` must be an http(s) URL without query or fragment"
        ));
    }
    url.to_owned()
}

fn secs_in(
    field: &str,
    value: Option<u64>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
    errs: &mut Vec<String>,
) -> Duration {
    let v = value.unwrap_or(default);
    if !range.contains(&v) {
        errs.push(format!(
            "{field}: {v} is outside {}..={}",
            range.start(),
            range.end()
        ));
    }
    Duration::from_secs(v)
}
