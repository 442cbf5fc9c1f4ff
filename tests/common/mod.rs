//! Test harness: starts the real gateway on `127.0.0.1:0` with a temporary data directory and
//! talks to it over real sockets. Every network wait is bounded.
#![allow(
    dead_code,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

pub mod otlp;
pub mod serve;
pub mod upstream;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_SHA256, RsaEncoding, RsaKeyPair};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use iamgate::config::{RawConfig, parse_yaml};
use iamgate::iam::{AuthMethod, Created, NewAccount, Owner};
use iamgate::server::Running;
use iamgate::util::{b64url, unix_now};
use serde_json::{Value, json};
use std::time::Duration;
use tempfile::TempDir;

pub const WAIT: Duration = Duration::from_secs(10);

/// Serves `handle` (HTTP/1.1 and h2c) on a fresh loopback port until the runtime ends: the
/// accept loop of every real server the tests stand up.
pub async fn serve_loopback<F, Fut, B>(handle: F) -> std::net::SocketAddr
where
    F: Fn(Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = http::Response<B>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let handle = handle.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let answer = handle(req);
                    async move { Ok::<_, std::convert::Infallible>(answer.await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// Builder for a test gateway.
pub struct GatewayBuilder {
    yaml: String,
    dir: Option<TempDir>,
    users: bool,
}

/// The external issuer [`GatewayBuilder::with_users`] configures, named `idp`.
pub const TEST_ISSUER: &str = "https://idp.example.test";

pub fn gateway() -> GatewayBuilder {
    GatewayBuilder {
        // Generous failure limits so that tests which fail on purpose do not trip the limiter;
        // the rate-limit test sets its own.
        yaml: "listen: 127.0.0.1:0\nlog: {level: warn, format: text}\noauth:\n  rate_limit: {max_failures_per_client: 10000, max_failures_per_address: 10000}\n".to_owned(),
        dir: None,
        users: false,
    }
}

impl GatewayBuilder {
    /// Replaces the YAML (keep `listen: 127.0.0.1:0`).
    pub fn yaml(mut self, yaml: &str) -> Self {
        self.yaml = yaml.to_owned();
        self
    }

    /// Appends YAML to the configuration.
    pub fn with(mut self, yaml: &str) -> Self {
        self.yaml.push_str(yaml);
        self.yaml.push('\n');
        self
    }

    /// Forwards to `url`, with a 1.5 s response timeout.
    pub fn upstream(self, url: &str) -> Self {
        self.with(&format!(
            "upstream:\n  url: {url}\n  response_timeout_ms: 1500\n  connect_timeout_ms: 500"
        ))
    }

    /// Trusts an external issuer named `idp` ([`TEST_ISSUER`], audience `console`, a JWKS file in
    /// the data directory), so users and groups can be bound: they belong to an issuer.
    pub fn with_users(mut self) -> Self {
        self.users = true;
        self
    }

    /// Reuses a data directory (restart tests).
    pub fn data_dir(mut self, dir: TempDir) -> Self {
        self.dir = Some(dir);
        self
    }

    pub async fn start(self) -> Gateway {
        // The per-decision limit is wall-clock and process-wide (first setting wins). Under CI
        // load a thread can be descheduled past the 50 ms default, and a decision cut short is a
        // (fail-closed) deny; the limit itself is tested in the policy tests.
        iamgate::policy::engine::set_decision_timeout(Duration::from_secs(2));
        let dir = self.dir.unwrap_or_else(|| tempfile::tempdir().unwrap());
        let mut yaml = self.yaml;
        if self.users {
            let file = dir.path().join("idp-jwks.json");
            let jwks = json!({"keys": [TestKey::new("idp-1").jwk()]});
            std::fs::write(&file, jwks.to_string()).unwrap();
            yaml.push_str(&format!(
                "external_issuers:\n  - {{name: idp, issuer: \"{TEST_ISSUER}\", audience: console, jwks_file: {}}}\n",
                file.display()
            ));
        }
        let mut raw: RawConfig = parse_yaml(&yaml).unwrap();
        raw.data_dir = Some(dir.path().join("data"));
        if raw.database_url.is_none()
            && let Some(url) = test_database(&dir).await
        {
            raw.database_url = Some(iamgate::config::Secret::new(url));
        }
        if raw.secret_pepper.is_none()
            && raw.secret_pepper_file.is_none()
            && raw
                .database_url
                .as_ref()
                .is_some_and(|u| u.expose().starts_with("postgres"))
        {
            raw.secret_pepper = Some(iamgate::config::Secret::new(TEST_PEPPER));
        }
        let settings = raw.validate().unwrap();
        let running = tokio::time::timeout(WAIT, iamgate::server::start(settings))
            .await
            .expect("server start timed out")
            .expect("server start failed");
        let base = format!("http://{}", running.addr);
        Gateway {
            running: Some(running),
            dir: Some(dir),
            base,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }
}

/// With `IAMGATE_TEST_DATABASE_URL` set (an admin URL of a throwaway PostgreSQL, see
/// `.ci/postgres.sh`), every test gateway gets a fresh database of its own; a restart test that
/// reuses its data directory gets the same database again. Without it, SQLite.
/// The pepper test gateways on PostgreSQL get when their config sets none.
pub const TEST_PEPPER: &str = "test-pepper-0123456789abcdef";

pub async fn test_database(dir: &TempDir) -> Option<String> {
    let admin = std::env::var("IAMGATE_TEST_DATABASE_URL").ok()?;
    let marker = dir.path().join("test-database");
    if let Ok(name) = std::fs::read_to_string(&marker) {
        return Some(replace_db(&admin, &name));
    }
    let name = format!("iamgate_test_{}", uuid::Uuid::new_v4().simple());
    let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
        .await
        .expect("test database server");
    tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    std::fs::write(&marker, &name).unwrap();
    Some(replace_db(&admin, &name))
}

/// The `iamgate` binary working on a test gateway's data directory and, on PostgreSQL, on its
/// database with the test pepper, so that the CLI writes where the gateway reads.
pub fn cli(data_dir: &std::path::Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_iamgate"));
    cmd.env("IAMGATE_DATA_DIR", data_dir)
        .env_remove("IAMGATE_CONFIG")
        .env_remove("IAMGATE_DATABASE_URL")
        .env_remove("IAMGATE_SECRET_PEPPER");
    if let Some(url) = data_dir.parent().and_then(existing_test_database) {
        cmd.env("IAMGATE_DATABASE_URL", url)
            .env("IAMGATE_SECRET_PEPPER", TEST_PEPPER);
    }
    cmd
}

/// Runs a command to completion, failing the test (with its stderr) unless it succeeded;
/// returns its trimmed stdout.
/// Runs `cmd`; its exit code (-1 when killed) and its stdout and stderr together.
pub fn outcome(cmd: &mut std::process::Command) -> (i32, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

pub fn run_ok(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{:?} failed: {}",
        cmd.get_program(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The database `test_database` created for the directory `dir`, if any.
pub fn existing_test_database(dir: &std::path::Path) -> Option<String> {
    let admin = std::env::var("IAMGATE_TEST_DATABASE_URL").ok()?;
    let name = std::fs::read_to_string(dir.join("test-database")).ok()?;
    Some(replace_db(&admin, &name))
}

fn replace_db(url: &str, name: &str) -> String {
    let base = url.rsplit_once('/').map_or(url, |(b, _)| b);
    format!("{base}/{name}")
}

pub struct Gateway {
    pub running: Option<Running>,
    pub dir: Option<TempDir>,
    pub base: String,
    pub client: Client<HttpConnector, Full<Bytes>>,
}

#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// Asserts an OAuth error with `status` and `error` code and returns the body.
    pub fn oauth_error(&self, status: u16, code: &str) -> Value {
        self.oauth_error_for("", status, code)
    }

    /// [`Resp::oauth_error`], naming the case in the failure message.
    pub fn oauth_error_for(&self, case: &str, status: u16, code: &str) -> Value {
        let body: Value = serde_json::from_slice(&self.body).unwrap_or_else(|_| {
            panic!(
                "{case}: {} {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        });
        assert_eq!(self.status.as_u16(), status, "{case}: body: {body}");
        assert_eq!(body["error"], code, "{case}: body: {body}");
        assert_eq!(body["statusCode"], status);
        assert!(body["error_description"].is_string());
        assert_eq!(self.header("cache-control"), Some("no-store"));
        body
    }
}

impl Gateway {
    pub fn running(&self) -> &Running {
        self.running.as_ref().unwrap()
    }

    pub fn data_path(&self) -> std::path::PathBuf {
        self.dir.as_ref().unwrap().path().join("data")
    }

    /// [`Gateway::request`] from the local address `source` (127.0.0.2 is a second loopback
    /// source), on a connection of its own.
    pub async fn request_from(
        &self,
        source: std::net::IpAddr,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Resp {
        let mut connector = HttpConnector::new();
        connector.set_local_address(Some(source));
        let client = Client::builder(TokioExecutor::new()).build(connector);
        self.send(&client, &self.base, method, path, headers, body.into())
            .await
    }

    /// A request to another listener of this gateway (`server.admin_listen`, say).
    pub async fn request_at(&self, addr: std::net::SocketAddr, method: Method, path: &str) -> Resp {
        let base = format!("http://{addr}");
        self.send(&self.client, &base, method, path, &[], Bytes::new())
            .await
    }

    /// A token request with HTTP Basic credentials from the local address `source`.
    pub async fn token_basic_from(
        &self,
        source: &str,
        id: &str,
        secret: &str,
        headers: &[(&str, &str)],
    ) -> Resp {
        let auth = format!("Basic {}", base64_std(&format!("{id}:{secret}")));
        let mut h = vec![
            ("content-type", "application/x-www-form-urlencoded"),
            ("authorization", auth.as_str()),
        ];
        h.extend_from_slice(headers);
        self.request_from(
            source.parse().unwrap(),
            Method::POST,
            "/api/m2m/oauth/token",
            &h,
            "grant_type=client_credentials",
        )
        .await
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Resp {
        self.send(&self.client, &self.base, method, path, headers, body.into())
            .await
    }

    async fn send(
        &self,
        client: &Client<HttpConnector, Full<Bytes>>,
        base: &str,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Resp {
        let mut b = Request::builder()
            .method(method)
            .uri(format!("{base}{path}"));
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(Full::new(body)).unwrap();
        let resp = tokio::time::timeout(WAIT, client.request(req))
            .await
            .expect("request timed out")
            .expect("request failed");
        let (parts, body) = resp.into_parts();
        let body = tokio::time::timeout(WAIT, body.collect())
            .await
            .expect("body timed out")
            .expect("body failed")
            .to_bytes();
        Resp {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.request(Method::GET, path, &[], Bytes::new()).await
    }

    /// POSTs a form body to the token endpoint with extra headers.
    pub async fn token(&self, headers: &[(&str, &str)], form: &str) -> Resp {
        let mut h = vec![("content-type", "application/x-www-form-urlencoded")];
        h.extend_from_slice(headers);
        self.request(Method::POST, "/api/m2m/oauth/token", &h, form.to_owned())
            .await
    }

    pub async fn token_basic(&self, id: &str, secret: &str) -> Resp {
        let auth = format!("Basic {}", base64_std(&format!("{id}:{secret}")));
        self.token(&[("authorization", &auth)], "grant_type=client_credentials")
            .await
    }

    pub async fn token_assertion(&self, assertion: &str) -> Resp {
        self.token(&[], &assertion_form(assertion, None)).await
    }

    pub async fn create(
        &self,
        method: AuthMethod,
        public_key: Option<Value>,
        permissions: &[&str],
    ) -> Created {
        self.create_account(NewAccount {
            name: format!("test-{}", uuid::Uuid::new_v4()),
            owner: Owner::Root,
            method,
            public_key,
            permissions: permissions.iter().map(|s| s.to_string()).collect(),
        })
        .await
        .unwrap()
    }

    /// Creates an account through the management write path (audited, actor `test`).
    pub async fn create_account(
        &self,
        new: NewAccount,
    ) -> Result<Created, iamgate::iam::manage::ManageError> {
        let running = self.running();
        running
            .manager
            .create_account(
                "test",
                new,
                &iamgate::iam::manage::RoleRequest::default(),
                running.policy.snapshot().role_model(),
                unix_now(),
                None,
            )
            .await
    }

    /// Deletes an account through the management write path.
    pub async fn delete_account(&self, client_id: &str) {
        let running = self.running();
        let scope = match running
            .accounts
            .snapshot()
            .get(client_id)
            .map(|a| a.owner.clone())
        {
            Some(Owner::Company(c)) => iamgate::iam::manage::Scope::Company(c),
            _ => iamgate::iam::manage::Scope::Root,
        };
        running
            .manager
            .delete_account("test", &scope, client_id, unix_now(), None)
            .await
            .unwrap();
    }

    pub async fn secret_client(&self) -> (String, String) {
        let c = self
            .create(AuthMethod::ClientSecretBasic, None, &["console.root.view"])
            .await;
        (c.client_id, c.client_secret.unwrap().expose().to_owned())
    }

    pub async fn jwt_client(&self, key: &TestKey) -> String {
        self.create(AuthMethod::PrivateKeyJwt, Some(key.jwk()), &[])
            .await
            .client_id
    }

    /// A company service account with a client secret, and an access token for it.
    /// A service account of `company` holding `company-owner` there: (client id, token).
    pub async fn company_owner(&self, company: &str) -> (String, String) {
        let (id, token) = self.company_sa(company).await;
        self.bind(&id, "company-owner", Some(("company", company)))
            .await;
        (id, token)
    }

    pub async fn company_sa(&self, company: &str) -> (String, String) {
        let c = self
            .create_account(NewAccount {
                name: format!("sa-{}", uuid::Uuid::new_v4()),
                owner: Owner::Company(company.to_owned()),
                method: AuthMethod::ClientSecretBasic,
                public_key: None,
                permissions: vec![],
            })
            .await
            .unwrap();
        let secret = c.client_secret.unwrap().expose().to_owned();
        let r = self.token_basic(&c.client_id, &secret).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let token = r.json()["access_token"].as_str().unwrap().to_owned();
        (c.client_id, token)
    }

    /// A root service account holding `permissions`, and an access token for it.
    pub async fn root_sa(&self, permissions: &[&str]) -> (String, String) {
        let c = self
            .create(AuthMethod::ClientSecretBasic, None, permissions)
            .await;
        let secret = c.client_secret.unwrap().expose().to_owned();
        let r = self.token_basic(&c.client_id, &secret).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        (
            c.client_id,
            r.json()["access_token"].as_str().unwrap().to_owned(),
        )
    }

    /// Binds `role` to `subject` (a client id, or a principal key such as `user:idp:bob`) at
    /// `resource_type`/`resource_id` (`None`: console level), in the company that owns it now.
    pub async fn bind(&self, subject: &str, role: &str, resource: Option<(&str, &str)>) {
        let subject = if subject.contains(':') {
            subject.to_owned()
        } else {
            iamgate::iam::Principal::service_account(subject)
        };
        let resource = match resource {
            None => iamgate::iam::BindingResource::console(),
            Some((t, id)) => {
                let project = id.split(':').next().unwrap_or(id);
                let company = match t {
                    "company" => id.to_owned(),
                    _ => self
                        .running()
                        .directory
                        .project(project)
                        .map(|p| p.company_id.clone())
                        // An unknown project: a binding that can match nothing until it is.
                        .unwrap_or_default(),
                };
                iamgate::iam::BindingResource::scoped(t, id, &company)
            }
        };
        self.bind_binding(iamgate::iam::Binding {
            binding_id: uuid::Uuid::new_v4().to_string(),
            subjects: vec![subject],
            groups: vec![],
            roles: vec![role.to_owned()],
            permissions: vec![],
            resource: Some(resource),
        })
        .await;
    }

    pub async fn bind_binding(&self, b: iamgate::iam::Binding) {
        self.running()
            .directory
            .apply(vec![iamgate::iam::directory::IamChange::PutBinding(b)])
            .await
            .unwrap();
    }

    /// Records a project of `company` with `envs` in the directory.
    pub async fn project(&self, project: &str, company: &str, envs: &[&str]) {
        self.running()
            .directory
            .apply(vec![iamgate::iam::directory::IamChange::PutProject(
                iamgate::iam::directory::Project {
                    project_id: project.to_owned(),
                    company_id: company.to_owned(),
                    environments: envs.iter().map(|e| e.to_string()).collect(),
                },
            )])
            .await
            .unwrap();
    }

    /// `GET path` with a bearer token.
    pub async fn get_as(&self, path: &str, token: &str) -> Resp {
        self.call(Method::GET, path, Some(token), &[], Bytes::new())
            .await
    }

    /// A request with a bearer token (when given) and extra headers.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Resp {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut h: Vec<(&str, &str)> = headers.to_vec();
        if let Some(a) = &auth {
            h.push(("authorization", a));
        }
        self.request(method, path, &h, body).await
    }

    pub async fn stop(mut self) -> TempDir {
        if let Some(r) = self.running.take() {
            r.shutdown(Duration::from_secs(5)).await;
        }
        self.dir.take().unwrap()
    }

    /// The JWKS as served.
    pub async fn jwks(&self) -> Value {
        let r = self.get("/.well-known/jwks.json").await;
        assert_eq!(r.status, 200);
        r.json()
    }
}

/// Writes `bytes` to `w` every `every`, at most `times` times, until a write fails; when it
/// failed, if it did. A socket the gateway really closed answers writes with a reset, so this
/// tells a closed socket from one still open (lingering) after the stream ended.
pub async fn write_until_refused(
    w: &mut (impl tokio::io::AsyncWrite + Unpin),
    bytes: &[u8],
    every: Duration,
    times: usize,
) -> Option<std::time::Instant> {
    use tokio::io::AsyncWriteExt;
    for _ in 0..times {
        if w.write_all(bytes).await.is_err() {
            return Some(std::time::Instant::now());
        }
        tokio::time::sleep(every).await;
    }
    None
}

/// Starts a server with `yaml` (plus a temporary data dir) and returns its start-up error.
/// Polls `cond` every 20 ms until it holds; fails the test, naming `what`, once `deadline`
/// passes.
pub async fn wait_until(deadline: std::time::Instant, what: &str, mut cond: impl FnMut() -> bool) {
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The configuration's validation error for `yaml` (every problem, one per line).
pub fn config_error(yaml: &str) -> String {
    let mut raw = parse_yaml(yaml).unwrap();
    raw.data_dir = Some(std::env::temp_dir().join("iamgate-config-error"));
    match raw.validate() {
        Ok(_) => panic!("the configuration was accepted"),
        Err(e) => e.to_string(),
    }
}

pub async fn start_error(yaml: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut raw = parse_yaml(yaml).unwrap();
    raw.data_dir = Some(dir.path().join("data"));
    match iamgate::server::start(raw.validate().unwrap()).await {
        Ok(_) => panic!("start-up succeeded"),
        Err(e) => e.to_string(),
    }
}

pub fn base64_std(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

pub fn assertion_form(assertion: &str, client_id: Option<&str>) -> String {
    let mut f = form_urlencoded::Serializer::new(String::new());
    f.append_pair("grant_type", "client_credentials");
    f.append_pair(
        "client_assertion_type",
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
    );
    f.append_pair("client_assertion", assertion);
    if let Some(c) = client_id {
        f.append_pair("client_id", c);
    }
    f.finish()
}

/// A client's RSA key, able to sign assertions with any header and algorithm.
pub struct TestKey {
    pub pair: RsaKeyPair,
    pub kid: String,
}

impl TestKey {
    pub fn new(kid: &str) -> Self {
        Self {
            pair: RsaKeyPair::generate(KeySize::Rsa2048).unwrap(),
            kid: kid.to_owned(),
        }
    }

    pub fn jwk(&self) -> Value {
        let p = self.pair.public_key();
        json!({
            "kty": "RSA", "kid": self.kid, "alg": "RS256", "use": "sig",
            "n": b64url(p.modulus().big_endian_without_leading_zero()),
            "e": b64url(p.exponent().big_endian_without_leading_zero()),
        })
    }

    pub fn public_pem(&self) -> String {
        use aws_lc_rs::encoding::AsDer;
        iamgate::util::pem_encode(
            "PUBLIC KEY",
            self.pair.public_key().as_der().unwrap().as_ref(),
        )
    }

    /// Signs `header` and `claims` as given with `alg` padding.
    pub fn sign_raw(
        &self,
        header: &Value,
        claims: &Value,
        alg: &'static dyn RsaEncoding,
    ) -> String {
        let input = format!(
            "{}.{}",
            b64url(serde_json::to_vec(header).unwrap()),
            b64url(serde_json::to_vec(claims).unwrap())
        );
        let mut sig = vec![0; self.pair.public_modulus_len()];
        self.pair
            .sign(alg, &SystemRandom::new(), input.as_bytes(), &mut sig)
            .unwrap();
        format!("{input}.{}", b64url(sig))
    }

    pub fn header(&self) -> Value {
        json!({"alg": "RS256", "typ": "JWT", "kid": self.kid})
    }

    pub fn sign(&self, claims: &Value) -> String {
        self.sign_raw(&self.header(), claims, &RSA_PKCS1_SHA256)
    }

    /// A valid assertion for `client_id`.
    pub fn assertion(&self, client_id: &str) -> String {
        self.sign(&claims(client_id))
    }
}

/// Valid assertion claims for `client_id`, with a fresh jti.
pub fn claims(client_id: &str) -> Value {
    let now = unix_now();
    json!({
        "iss": client_id, "sub": client_id, "aud": "console-client-credentials",
        "jti": uuid::Uuid::new_v4().to_string(), "iat": now, "exp": now + 300,
    })
}

/// Verifies an access token against the gateway's JWKS and returns header and claims.
pub async fn verify_access_token(gw: &Gateway, token: &str) -> (jsonwebtoken::Header, Value) {
    let header = jsonwebtoken::decode_header(token).unwrap();
    let jwks = gw.jwks().await;
    let kid = header.kid.clone().unwrap();
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .expect("kid in JWKS");
    let key = jsonwebtoken::DecodingKey::from_rsa_components(
        jwk["n"].as_str().unwrap(),
        jwk["e"].as_str().unwrap(),
    )
    .unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_issuer(&[gw.running().public_url.as_str()]);
    v.set_audience(&[gw.running().public_url.as_str()]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let data = jsonwebtoken::decode::<Value>(token, &key, &v).expect("token verifies against JWKS");
    (header, data.claims)
}

/// A service account `sa-1` holding `role` on company `c1`, triggering a deploy to `p1:dev`.
pub fn deploy_input(role: &str) -> iamgate::policy::DecisionInput {
    use iamgate::iam::{Binding, BindingResource};
    use iamgate::policy::input::{BindingSet, RequestInput, ResourceInput, RouteInput, UserInput};
    iamgate::policy::DecisionInput {
        request: RequestInput {
            method: "POST".into(),
            path: "/api/deploy/projects/p1/trigger/pipeline/".into(),
            ..Default::default()
        },
        user: UserInput {
            id: "sa-1".into(),
            kind: "serviceaccount".into(),
            principal: "serviceaccount:sa-1".into(),
            bindings: BindingSet::new(vec![Binding {
                binding_id: "b".into(),
                subjects: vec!["serviceaccount:sa-1".into()],
                groups: vec![],
                roles: vec![role.into()],
                permissions: vec![],
                resource: Some(BindingResource::scoped("company", "c1", "c1")),
            }]),
            ..Default::default()
        },
        resource: ResourceInput {
            company_id: Some("c1".into()),
            project_id: Some("p1".into()),
            env_id: Some("dev".into()),
        },
        route: RouteInput {
            id: "deploy".into(),
            permission: Some("console.environment.deploy.trigger".into()),
            rule: None,
        },
        grants: None,
        target: None,
    }
}

/// A log writer for a test's own subscriber: what the code under test logged, kept in memory.
#[derive(Clone, Default)]
pub struct LogBuf(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl LogBuf {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl std::io::Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuf {
    type Writer = LogBuf;
    fn make_writer(&'a self) -> LogBuf {
        self.clone()
    }
}
