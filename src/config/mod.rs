//! Configuration: the first thing `iamgate serve` touches, before any socket opens.
//!
//! A YAML file is read into a serde model that rejects unknown fields, environment overrides are
//! applied on top, and [`RawConfig::validate`] turns the result into typed [`Settings`] while
//! collecting *every* problem, so an operator fixes a broken file in one round trip. Each section
//! has its own file (raw model, typed settings, and the `validate` of that section); this one
//! holds the top-level keys and puts the sections together. Sits below every other layer but
//! the shared types: the settings types are this module's own.

use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod authz;
mod console;
mod database;
pub mod external;
mod management;
mod oauth;
mod policy;
mod server;
mod signing;
mod telemetry;
mod upstream;

pub use authz::{AuthzSettings, RawAuthz};
pub use console::RawConsole;
pub use database::{DatabaseSettings, PgSslMode, PgTls, read_roots};
pub use external::RawExternalIssuer;
pub use management::{DirectorySync, RawDirectory, RawManagement};
pub use oauth::{OAuthSettings, RateLimitSettings, RawOAuth, RawRateLimit};
pub use policy::{CacheSettings, PolicySettings, RawPolicy, RawPolicyCache};
pub use server::{Cidr, RawServer, RawTls, ServerSettings, TlsSettings};
pub use signing::{KeyFileSettings, RawKeyFile, RawSigning, SigningSettings};
pub use telemetry::{OtlpSettings, RawTelemetry, TelemetrySettings};
pub use upstream::{IdentityHeaders, RawIdentityHeaders, RawUpstream, UpstreamSettings};

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
    /// A file holding `database_url` (a mounted secret); not with `database_url`.
    pub database_url_file: Option<PathBuf>,
    /// First-start bootstrap of a root service account.
    pub bootstrap: RawBootstrap,
    /// Token endpoint and access token settings.
    pub oauth: RawOAuth,
    /// Access-token signing keys.
    pub signing: RawSigning,
    /// Server-side pepper for client-secret hashes.
    pub secret_pepper: Option<Secret>,
    /// A file holding `secret_pepper` (a mounted secret); not with `secret_pepper`.
    pub secret_pepper_file: Option<PathBuf>,
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
    /// Decisions for an existing ingress.
    pub authz: RawAuthz,
    /// Distributed tracing.
    pub telemetry: RawTelemetry,
    /// The web console.
    pub console: RawConsole,
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

/// `log:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    /// `json` (default) or `text`.
    pub format: Option<String>,
    /// A tracing filter, e.g. `info` or `iamgate=debug`. Default `info`.
    pub level: Option<String>,
    /// Keep each decision's input document (credentials masked) in its decision-log record,
    /// for `iamgate policy replay`. Default false.
    pub decision_inputs: Option<bool>,
    /// The share of decisions (0.0 to 1.0) whose input is kept, with `decision_inputs`.
    /// Default 1.0.
    pub decision_sample: Option<f64>,
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
    /// The share of decisions whose input the decision log keeps (0: none).
    pub decision_inputs: f64,
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
    /// Decisions for an existing ingress.
    pub authz: AuthzSettings,
    /// Distributed tracing.
    pub telemetry: TelemetrySettings,
    /// The web console is served at `/console/`.
    pub console: bool,
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
        if let Some(v) = env.var("IAMGATE_DATABASE_URL_FILE") {
            self.database_url_file = Some(PathBuf::from(v));
        }
        if let Some(v) = env.var("IAMGATE_SECRET_PEPPER_FILE") {
            self.secret_pepper_file = Some(PathBuf::from(v));
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
        // The OpenTelemetry operator and most platforms name the collector and the service in
        // these standard variables.
        if let Some(v) = env.var("OTEL_EXPORTER_OTLP_ENDPOINT") {
            self.telemetry.otlp_endpoint = Some(v);
        }
        if let Some(v) = env.var("OTEL_SERVICE_NAME") {
            self.telemetry.service_name = Some(v);
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

        let database_url = secret_or_file(
            "database_url",
            self.database_url,
            self.database_url_file.as_deref(),
            &mut errs,
        );
        let secret_pepper = secret_or_file(
            "secret_pepper",
            self.secret_pepper,
            self.secret_pepper_file.as_deref(),
            &mut errs,
        );
        let database = match database_url {
            None => DatabaseSettings::Sqlite(data_dir.join("iamgate.db")),
            Some(url) => {
                let u = url.expose();
                if let Some(path) = u.strip_prefix("sqlite://").or(u.strip_prefix("sqlite:")) {
                    if path.is_empty() {
                        errs.push("database_url: sqlite URL names no file".to_owned());
                    }
                    DatabaseSettings::Sqlite(PathBuf::from(path))
                } else if u.starts_with("postgres://") || u.starts_with("postgresql://") {
                    database::postgres(&url, &mut errs)
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

        let oauth = self.oauth.validate(&mut errs);
        let skew = oauth.clock_skew;
        let signing = self.signing.validate(&mut errs);
        let policy = self.policy.validate(&mut errs);
        let upstream = self.upstream.validate(&mut errs);
        let server = self.server.validate(&mut errs);
        let external_issuers = external::validate_all(self.external_issuers, skew, &mut errs);
        let (client_keys, secret_rotation_grace) = self.management.validate(&mut errs);
        let directory_sync = self.directory.validate(&mut errs);
        let authz = self.authz.validate(&mut errs);
        let telemetry = self.telemetry.validate(&mut errs);
        let console = self.console.validate();

        if let Some(p) = &secret_pepper
            && p.expose().len() < MIN_SECRET_CHARS
        {
            errs.push(format!(
                "secret_pepper: must be at least {MIN_SECRET_CHARS} characters (128 bits of base64)"
            ));
        }
        if matches!(database, DatabaseSettings::Postgres { .. }) && secret_pepper.is_none() {
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
        let decision_sample = self.log.decision_sample.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&decision_sample) {
            errs.push(format!(
                "log.decision_sample: {decision_sample} is outside 0.0..=1.0"
            ));
        }
        let decision_inputs = if self.log.decision_inputs == Some(true) {
            decision_sample
        } else {
            0.0
        };
        let log_level = self.log.level.unwrap_or_else(|| "info".to_owned());
        if !is_log_filter(&log_level) {
            errs.push(format!("log.level: `{log_level}` is not a tracing filter"));
        }

        if !errs.is_empty() {
            return Err(ConfigError::Invalid(errs));
        }
        Ok(Settings {
            authz,
            telemetry,
            console,
            directory_sync,
            client_keys,
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
            oauth,
            signing,
            secret_pepper,
            last_login_flush: flush,
            log_json,
            log_level,
            decision_inputs,
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

/// Whether `level` is a tracing filter the logger can use. The filter parser of
/// tracing-subscriber 0.3 panics on some malformed directives (found by fuzzing the config
/// file): only printable ASCII is handed to it, and a panic counts as a refusal.
fn is_log_filter(level: &str) -> bool {
    level.bytes().all(|b| (0x20..0x7f).contains(&b))
        && std::panic::catch_unwind(|| tracing_subscriber::EnvFilter::try_new(level).is_ok())
            .unwrap_or(false)
}

/// The fewest characters a configured secret may have: 22 characters of base64 carry 128 bits.
pub const MIN_SECRET_CHARS: usize = 22;

/// The largest secret file read.
pub const MAX_SECRET_FILE: u64 = 64 * 1024;

/// A secret given inline or in a file (`<field>_file`, a mounted Kubernetes secret: one value,
/// surrounding whitespace ignored), never both.
pub(crate) fn secret_or_file(
    field: &str,
    inline: Option<Secret>,
    file: Option<&Path>,
    errs: &mut Vec<String>,
) -> Option<Secret> {
    match (inline, file) {
        (Some(_), Some(_)) => {
            errs.push(format!(
                "{field}: give either {field} or {field}_file, not both"
            ));
            None
        }
        (Some(v), None) => Some(v),
        (None, Some(path)) => match crate::util::read_bounded(path, MAX_SECRET_FILE)
            .and_then(|b| String::from_utf8(b).map_err(std::io::Error::other))
        {
            Ok(text) if !text.trim().is_empty() => Some(Secret(text.trim().to_owned())),
            Ok(_) => {
                errs.push(format!("{field}_file: {} is empty", path.display()));
                None
            }
            Err(e) => {
                errs.push(format!("{field}_file: cannot read {}: {e}", path.display()));
                None
            }
        },
        (None, None) => None,
    }
}

/// Checks a URL the gateway fetches trusted data from (signing keys, project ownership): https,
/// or plain http only to a loopback address (a sidecar), since anyone on the path could
/// otherwise rewrite what it returns.
pub(crate) fn check_fetch_url(field: &str, url: &str, errs: &mut Vec<String>) {
    check_url(field, url, errs);
    if let Some(rest) = url.strip_prefix("http://") {
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host = match host.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !loopback {
            errs.push(format!(
                "{field}: must be https (plain http only to a loopback address)"
            ));
        }
    }
}

pub(crate) fn check_url(field: &str, url: &str, errs: &mut Vec<String>) -> String {
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

pub(crate) fn secs_in(
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
