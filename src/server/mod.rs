//! The composition root: builds every component from [`Settings`] in dependency order, starts
//! the background tasks each layer provides (login flusher, key reloader, policy reloader,
//! change follower, directory sync), and serves the tower stack ([`stack`]) on the listener
//! (`listen`).
//!
//! [`start`] is what both `iamgate serve` and the integration tests call, so the tests exercise
//! exactly the production wiring on a real socket.

mod linger;
mod listen;
mod routes;
pub mod stack;
mod tls;
mod watchdog;

use crate::authn::{TokenEndpoint, default_audiences};
use crate::config::Settings;
use crate::iam::{Accounts, LastLogins, SecretHasher};
use crate::token::keyset::{KeyHome, ManagedKeys, load_configured};
use crate::token::{Issuer, KeyRing, metadata};
use crate::util::unix_now;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use routes::App;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Listener or file I/O.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// The store could not be opened or loaded.
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// Signing keys.
    #[error(transparent)]
    Token(#[from] crate::token::TokenError),
    /// Upgrading the bindings of an earlier version failed; nothing was changed.
    #[error("upgrading stored bindings: {0}")]
    Upgrade(String),
    /// Bootstrap account.
    #[error("bootstrap: {0}")]
    Bootstrap(#[from] crate::iam::manage::ManageError),
    /// The policy did not load, compile or pass its tests.
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    /// The route table is invalid.
    #[error("route table {file}:\n  - {}", .errors.join("\n  - "))]
    Routes {
        /// The file, or `built-in`.
        file: String,
        /// Every problem.
        errors: Vec<String>,
    },
    /// TLS certificate, key or client setup.
    #[error("tls: {0}")]
    Tls(String),
    /// The upstream URL cannot be forwarded to.
    #[error("upstream: {0}")]
    Upstream(String),
    /// The trace exporter could not be set up.
    #[error(transparent)]
    Telemetry(#[from] crate::telemetry::trace::TraceError),
    /// Another `iamgate serve` already serves this SQLite database.
    #[error(
        "another iamgate serve is running on {0} (it holds {0}.lock): an SQLite database has one writer; several instances need a postgres database_url"
    )]
    AlreadyServing(String),
}

/// Takes the one-writer lock of an SQLite database: a second server on the same file would keep
/// its own snapshot of accounts and bindings and never see the first one's writes. The lock is
/// the operating system's (released when the process exits, however it exits).
fn lock_sqlite(db: &crate::config::DatabaseSettings) -> Result<Option<std::fs::File>, StartError> {
    let crate::config::DatabaseSettings::Sqlite(path) = db else {
        return Ok(None);
    };
    let mut lock_path = path.clone().into_os_string();
    lock_path.push(".lock");
    let io = |source| StartError::Io {
        what: format!("open {}", std::path::Path::new(&lock_path).display()),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(StartError::AlreadyServing(path.display().to_string()))
        }
        Err(std::fs::TryLockError::Error(source)) => Err(io(source)),
    }
}

/// Whether the certificate chain and key at these paths make a TLS listener (`config check`).
pub fn check_tls(cert: &std::path::Path, key: &std::path::Path) -> Result<(), String> {
    tls::acceptor(cert, key).map(|_| ())
}

/// Loads the policy (configured folder, `./policies`, or the embedded default), tested before
/// use. Returns the engine and the folder to watch, if any.
fn load_policy(
    settings: &crate::config::PolicySettings,
    decision_inputs: f64,
    metrics: &crate::telemetry::metrics::Metrics,
) -> Result<(Arc<crate::policy::PolicyEngine>, Option<PathBuf>), StartError> {
    use crate::policy::{PolicyEngine, Snapshot};
    crate::policy::engine::set_decision_timeout(settings.decision_timeout);
    let (source, dir) = crate::policy::configured_source(settings.dir.as_deref())?;
    let snapshot = Snapshot::compile_tested(source)?;
    tracing::info!(
        revision = %snapshot.revision(),
        source = %dir.as_deref().map_or("embedded".into(), |d| d.display().to_string()),
        "policy loaded"
    );
    let mut engine = PolicyEngine::new(snapshot, settings.cache, settings.interpreter)
        .with_decision_inputs(decision_inputs);
    if let Some(shadow_dir) = &settings.shadow_dir {
        // Gated like the live policy: a shadow that could never go live says nothing.
        let shadow = Snapshot::compile_tested(crate::policy::PolicySource::read(shadow_dir)?)?;
        tracing::info!(revision = %shadow.revision(), source = %shadow_dir.display(), "shadow policy loaded: decided beside the live one, never enforced");
        engine = engine.with_shadow(shadow, metrics.shadow_disagreements.clone());
    }
    Ok((Arc::new(engine), dir))
}

/// A running server.
#[derive(Debug)]
pub struct Running {
    /// The bound address.
    pub addr: SocketAddr,
    /// The bound address of the ext_authz gRPC listener, when configured.
    pub ext_authz_addr: Option<SocketAddr>,
    /// The bound address of the operational listener, when configured.
    pub admin_addr: Option<SocketAddr>,
    /// The public base URL.
    pub public_url: String,
    /// Where bootstrap credentials were written on this start, if they were.
    pub bootstrap_file: Option<PathBuf>,
    /// The account service of this server (for embedding and tests).
    pub accounts: Accounts,
    /// The live policy.
    pub policy: Arc<crate::policy::PolicyEngine>,
    /// Policy reload counters.
    pub policy_stats: Arc<crate::policy::reload::ReloadStats>,
    /// Bindings and the project directory.
    pub directory: crate::iam::directory::Directory,
    /// The management write path (every audited change to accounts, bindings, projects).
    pub manager: crate::iam::manage::Manager,
    /// The access-token issuer (for embedding and tests).
    pub issuer: Issuer,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    /// Held while serving (SQLite only).
    _lock: Option<std::fs::File>,
}

impl Running {
    /// Stops accepting, drains in-flight requests (bounded by `grace`), flushes state.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.shutdown.send(true);
        // Draining takes up to `grace`, flushing the last spans up to five seconds more.
        let _ = tokio::time::timeout(grace + Duration::from_secs(6), self.task).await;
    }
}

/// Binds `addr`; returns the listener and the address it got.
async fn bind(addr: SocketAddr, what: &str) -> Result<(TcpListener, SocketAddr), StartError> {
    let io = |source| StartError::Io {
        what: format!("bind {what} {addr}"),
        source,
    };
    let l = TcpListener::bind(addr).await.map_err(io)?;
    let bound = l.local_addr().map_err(io)?;
    Ok((l, bound))
}

/// [`bind`] for a listener that is configured or not.
async fn bind_optional(
    addr: Option<SocketAddr>,
    what: &str,
) -> Result<(Option<TcpListener>, Option<SocketAddr>), StartError> {
    Ok(match addr {
        Some(a) => {
            let (l, bound) = bind(a, what).await?;
            (Some(l), Some(bound))
        }
        None => (None, None),
    })
}

/// Builds every component and starts serving on the configured address.
pub async fn start(settings: Settings) -> Result<Running, StartError> {
    let io = |what: &str| {
        let what = what.to_owned();
        move |source| StartError::Io { what, source }
    };
    crate::util::create_private_dir(&settings.data_dir).map_err(io("create data dir"))?;
    let lock = lock_sqlite(&settings.database)?;
    let (listener, addr) = bind(settings.listen, "listener").await?;
    let (grpc_listener, ext_authz_addr) = bind_optional(
        settings.server.ext_authz_grpc_listen,
        "ext_authz gRPC listener",
    )
    .await?;
    let (admin_listener, admin_addr) =
        bind_optional(settings.server.admin_listen, "admin listener").await?;
    let public_url = settings
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let issuer_id = settings
        .oauth
        .issuer
        .clone()
        .unwrap_or_else(|| public_url.clone());
    let token_endpoint_url = format!("{public_url}{}", metadata::TOKEN_PATH);

    let metrics = Arc::new(crate::telemetry::metrics::Metrics::new());
    let (policy, policy_dir) = load_policy(&settings.policy, settings.decision_inputs, &metrics)?;
    let policy_stats = Arc::new(crate::policy::reload::ReloadStats::new(&metrics));
    let shadow_stats = Arc::new(crate::policy::reload::ReloadStats::for_shadow(&metrics));

    let store = crate::store::open(&settings.database).await?;
    let pepper = crate::iam::load_pepper(settings.secret_pepper.as_ref(), &settings.data_dir)
        .map_err(io("secret pepper"))?;
    let hasher = Arc::new(SecretHasher::new(&pepper));
    let accounts = Accounts::load(store.clone(), hasher.clone()).await?;

    let lifetime = settings.oauth.access_token_lifetime.as_secs();
    let managed = managed_keys(&settings, &store, &pepper).await?;
    let keyset = match &managed {
        Some(m) => m.load_or_init(unix_now()).await?,
        None => load_configured(&settings.signing.keys)?,
    };
    let keys = KeyRing::new(keyset);

    let audience = settings
        .oauth
        .access_token_audience
        .clone()
        .unwrap_or_else(|| public_url.clone());
    let issuer = Issuer {
        issuer: Arc::from(issuer_id.as_str()),
        audience: Arc::from(audience.as_str()),
        lifetime_secs: lifetime,
        keys: keys.clone(),
    };
    let audiences = settings
        .oauth
        .assertion_audiences
        .clone()
        .unwrap_or_else(|| default_audiences(&issuer_id, &token_endpoint_url));
    let app_issuer = issuer.clone();
    let last_logins = LastLogins::default();
    let token = TokenEndpoint::new(
        &settings.oauth,
        audiences,
        accounts.snapshot().clone(),
        hasher,
        issuer,
        last_logins.clone(),
        metrics.clone(),
    )?;
    let store_healthy = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let token = if store.shares_replay() {
        token.with_shared_store(store.clone(), store_healthy.clone())
    } else {
        token
    };
    let directory = crate::iam::directory::Directory::load(store.clone()).await?;
    let manager = crate::iam::manage::Manager::new(
        accounts.clone(),
        directory.clone(),
        i64::try_from(settings.secret_rotation_grace.as_secs()).unwrap_or(0),
    )
    .with_issuers(
        settings
            .external_issuers
            .iter()
            .map(|e| e.name.clone())
            .collect(),
    );
    // Bindings written before principals were typed and resources named their company are
    // rewritten once, through the audited write path, before the first request is decided.
    match manager.upgrade_bindings(unix_now()).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            bindings = n,
            "upgraded bindings of an earlier version (typed principals, company-scoped resources); see the audit log"
        ),
        Err(e) => return Err(StartError::Upgrade(e.to_string())),
    }
    let bootstrap_file = match &settings.bootstrap {
        Some(name) => {
            let f = crate::iam::bootstrap(
                &manager,
                name,
                &settings.data_dir,
                policy.snapshot().role_model(),
                unix_now(),
            )
            .await?;
            if let Some(path) = &f {
                tracing::warn!(path = %path.display(), "created bootstrap root service account; its credentials are in this file (mode 0600)");
            }
            f
        }
        None => None,
    };

    let gateway = Arc::new(
        build_gateway(
            &settings, &issuer_id, &audience, &keys, &manager, &policy, &metrics,
        )
        .await?,
    );
    let trusted_proxies: Arc<[crate::config::Cidr]> =
        Arc::from(settings.server.trusted_proxies.clone());
    let ingress = crate::proxy::authz::IngressMode {
        names: settings.upstream.identity_headers.clone(),
        skip_response_rules: settings.authz.skip_response_rules,
    };
    let (tls, certs) = match &settings.server.tls {
        Some(t) => {
            let (acceptor, certs) =
                tls::acceptor(&t.cert_file, &t.key_file).map_err(StartError::Tls)?;
            (Some(acceptor), Some((certs, t.reload)))
        }
        None => (None, None),
    };
    let traces = match &settings.telemetry.otlp {
        Some(otlp) => {
            let client = crate::net::http_client(
                crate::net::connector(
                    settings.upstream.connect_timeout,
                    settings.upstream.ca_file.as_deref(),
                )
                .map_err(StartError::Tls)?,
            );
            let client = crate::net::ExportClient::new(client, otlp.export_timeout);
            tracing::info!(endpoint = %otlp.endpoint, sample_ratio = otlp.sample_ratio, "exporting traces over OTLP/HTTP");
            crate::telemetry::trace::Tracing::otlp(otlp, client)?
        }
        None => crate::telemetry::trace::Tracing::off(),
    };
    let app = Arc::new(App {
        console: settings.console,
        traces: traces.clone(),
        token,
        keys: keys.clone(),
        metadata: metadata::document(&issuer_id, &public_url),
        store: store.clone(),
        metrics,
        gateway: gateway.clone(),
        authz: settings.authz.enabled.then(|| ingress.clone()),
        trusted_proxies: trusted_proxies.clone(),
        ops_on_public: admin_listener.is_none(),
    });

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    if let Some(path) = settings.routes_file.clone() {
        // Polled with the policy folder. A file that does not load is logged once per change
        // and the table in service stays.
        let (gateway, policy) = (gateway.clone(), policy.clone());
        let mut watch = crate::util::FileWatch::new(vec![path.clone()]);
        crate::util::spawn_periodic(
            settings.policy.reload,
            shutdown_rx.clone(),
            false,
            move || {
                if let Some(now) = watch.changed() {
                    watch.mark_seen(now);
                    match load_routes(Some(&path), &policy) {
                        Ok(routes) => {
                            tracing::info!(routes = routes.len(), "route file reloaded");
                            gateway.replace_routes(Arc::new(routes));
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "route file changed but does not load; the table in service stays")
                        }
                    }
                }
                std::future::ready(())
            },
        );
    }
    if let Some((certs, every)) = certs {
        crate::util::spawn_periodic(every, shutdown_rx.clone(), false, move || {
            let certs = certs.clone();
            async move {
                match certs.reload_if_changed() {
                    Ok(true) => tracing::info!("tls certificate reloaded"),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "tls certificate not reloaded; serving the previous one")
                    }
                }
            }
        });
    }
    crate::iam::spawn_login_flusher(
        last_logins,
        store.clone(),
        settings.last_login_flush,
        shutdown_rx.clone(),
    );
    if let Some(m) = managed {
        crate::token::keyset::spawn_key_reloader(
            m,
            keys,
            settings.signing.reload,
            shutdown_rx.clone(),
        );
    }
    if let Some(dir) = policy_dir {
        crate::policy::reload::spawn(
            policy.clone(),
            dir,
            crate::policy::reload::Slot::Live,
            settings.policy.reload,
            policy_stats.clone(),
            shutdown_rx.clone(),
        );
    }
    if let Some(dir) = settings.policy.shadow_dir.clone() {
        crate::policy::reload::spawn(
            policy.clone(),
            dir,
            crate::policy::reload::Slot::Shadow,
            settings.policy.reload,
            shadow_stats,
            shutdown_rx.clone(),
        );
    }
    if store.shares_replay() {
        // One ping a second decides whether the token endpoint may issue tokens.
        let (store2, healthy) = (store.clone(), store_healthy.clone());
        crate::util::spawn_periodic(
            Duration::from_secs(1),
            shutdown_rx.clone(),
            false,
            move || {
                let (store, healthy) = (store2.clone(), healthy.clone());
                async move {
                    let ok = store.ping().await.is_ok();
                    if healthy.swap(ok, std::sync::atomic::Ordering::Relaxed) != ok {
                        if ok {
                            tracing::info!("shared store reachable again");
                        } else {
                            tracing::warn!(
                                "shared store unreachable: token endpoint and writes answer 503, requests are decided from the last snapshot"
                            );
                        }
                    }
                }
            },
        );
        crate::iam::follow::spawn_change_follower(
            store.clone(),
            accounts.clone(),
            directory.clone(),
            shutdown_rx.clone(),
        );
        let store = store.clone();
        crate::util::spawn_periodic(
            Duration::from_secs(60),
            shutdown_rx.clone(),
            false,
            move || {
                let store = store.clone();
                async move {
                    if let Err(e) = store.purge_jtis(unix_now()).await {
                        tracing::warn!(error = %e, "could not purge expired replay records");
                    }
                }
            },
        );
    }
    if let Some((url, token, every)) = settings.directory_sync.clone() {
        let client = crate::net::http_client(
            crate::net::connector(
                settings.upstream.connect_timeout,
                settings.upstream.ca_file.as_deref(),
            )
            .map_err(StartError::Tls)?,
        );
        let manager = manager.clone();
        crate::util::spawn_periodic(every, shutdown_rx.clone(), false, move || {
            let (manager, client, url, token) =
                (manager.clone(), client.clone(), url.clone(), token.clone());
            async move {
                match crate::iam::sync::sync_once(&manager, &client, &url, token.as_ref()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(changed = n, "directory synchronised"),
                    Err(e) => {
                        tracing::warn!(error = %e, "directory sync failed; keeping the current directory")
                    }
                }
            }
        });
    }
    let grace = settings.server.shutdown_grace;
    // Every listener drains on the same shutdown signal; the task ends when all have.
    let mut listeners = tokio::task::JoinSet::new();
    if let Some(l) = admin_listener {
        tracing::info!(addr = ?admin_addr, "operational endpoints listening");
        let ops = routes::OpsService(app.clone());
        listeners.spawn(listen::serve(
            l,
            move |_| ops.clone(),
            None,
            grace,
            shutdown_rx.clone(),
            None,
            None,
        ));
    }
    if let Some(l) = grpc_listener {
        let svc = crate::proxy::ext_authz::ExtAuthz::new(
            gateway,
            ingress,
            trusted_proxies,
            traces.clone(),
        );
        tracing::info!(addr = ?ext_authz_addr, "ext_authz gRPC listening");
        let svc = svc.into_service();
        listeners.spawn(listen::serve(
            l,
            // Its requests carry their connection's facts in their extensions.
            move |conn| {
                use tower::ServiceExt;
                svc.clone()
                    .map_request(move |mut r: http::Request<hyper::body::Incoming>| {
                        r.extensions_mut().insert(conn);
                        r
                    })
            },
            tls.clone(),
            grace,
            shutdown_rx.clone(),
            None,
            None,
        ));
    }
    let connections_open = app.metrics.connections_open.clone();
    let stacks = stack::Stacks::new(app, &settings.server);
    let workers = match settings.server.workers {
        Some(n) => Some(
            crate::util::workers::Workers::start(n, "iamgate-conn").map_err(|source| {
                StartError::Io {
                    what: "start the connection workers".to_owned(),
                    source,
                }
            })?,
        ),
        None => None,
    };
    listeners.spawn(listen::serve(
        listener,
        move |conn| stacks.clone().for_connection(conn),
        tls,
        grace,
        shutdown_rx,
        workers,
        Some(connections_open),
    ));
    let task = tokio::spawn(async move {
        while listeners.join_next().await.is_some() {}
        // The spans of the requests just drained go out before the process ends.
        traces.shutdown(Duration::from_secs(5)).await;
    });
    tracing::info!(%addr, %public_url, "iamgate listening");
    Ok(Running {
        addr,
        ext_authz_addr,
        admin_addr,
        public_url,
        bootstrap_file,
        accounts,
        policy,
        policy_stats,
        directory,
        manager: manager.clone(),
        issuer: app_issuer,
        shutdown: shutdown_tx,
        task,
        _lock: lock,
    })
}

/// The route table of `file` (or the built-in one), checked against the policy: a route naming
/// a permission the policy does not define would deny everyone, silently. At start and when the
/// file changes.
fn load_routes(
    file: Option<&std::path::Path>,
    policy: &crate::policy::PolicyEngine,
) -> Result<crate::proxy::table::Routes, StartError> {
    use crate::proxy::table::Routes;
    let routes = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| StartError::Io {
                what: format!("read route file {}", path.display()),
                source,
            })?;
            Routes::from_yaml(&text).map_err(|errors| StartError::Routes {
                file: path.display().to_string(),
                errors,
            })?
        }
        None => Routes::default_table().map_err(|errors| StartError::Routes {
            file: "built-in".to_owned(),
            errors,
        })?,
    };
    policy.require_permissions(routes.named_permissions())?;
    Ok(routes)
}

/// Builds the proxied request path: route table, bearer authentication (ours and external
/// issuers), upstream client.
#[allow(clippy::too_many_arguments)]
async fn build_gateway(
    settings: &Settings,
    issuer_id: &str,
    audience: &str,
    keys: &KeyRing,
    manager: &crate::iam::manage::Manager,
    policy: &Arc<crate::policy::PolicyEngine>,
    metrics: &Arc<crate::telemetry::metrics::Metrics>,
) -> Result<crate::proxy::gateway::Gateway, StartError> {
    let (accounts, directory) = (manager.accounts(), manager.directory());
    let routes = load_routes(settings.routes_file.as_deref(), policy)?;
    let up = &settings.upstream;
    let connector = crate::net::connector(up.connect_timeout, up.ca_file.as_deref())
        .map_err(StartError::Tls)?;
    let client = crate::net::http_client(connector.clone());
    let verifier = Arc::new(crate::token::verifier::AccessTokenVerifier::new(
        keys.clone(),
        issuer_id,
        audience,
        settings.oauth.clock_skew,
        crate::token::verifier::AccessTokenVerifier::CACHE_BYTES,
    ));
    let mut externals = Vec::new();
    for e in &settings.external_issuers {
        externals
            .push(crate::authn::external::ExternalIssuer::load(e.clone(), client.clone()).await);
    }
    let auth = crate::authn::bearer::BearerAuth::new(verifier, accounts.snapshot().clone())
        .with_external(externals);
    let upstream = up
        .url
        .clone()
        .map(|base| {
            crate::proxy::upstream::Upstream::new(
                base,
                connector,
                up.response_timeout,
                up.identity_headers.clone(),
                up.forward_authorization,
            )
            .map(|u| u.with_strip(up.strip_headers.clone()))
        })
        .transpose()
        .map_err(|e| StartError::Upstream(e.to_string()))?;
    if upstream.is_none() {
        tracing::warn!("no upstream.url configured: proxied routes answer 503");
    }
    tracing::info!(routes = routes.len(), "route table loaded");
    let management = crate::proxy::gateway::Management {
        manager: manager.clone(),
        client_keys: Arc::from(settings.client_keys.clone()),
    };
    Ok(crate::proxy::gateway::Gateway::new(
        Arc::new(routes),
        auth,
        directory.clone(),
        policy.clone(),
        upstream,
        crate::proxy::gateway::GatewayLimits {
            max_decision_body: settings.server.max_decision_body_bytes,
            max_filtered_response: settings.server.max_filtered_response_bytes,
        },
        metrics.clone(),
    )
    .with_management(management)
    .with_deny_reasons(settings.server.expose_deny_reasons))
}

/// The managed signing key set, unless the config names PEM files: sealed in the database when
/// the store is shared, otherwise under `<data_dir>/keys`. On a shared store this first checks
/// that this instance's pepper is the one the others use, whichever keys are configured.
pub async fn managed_keys(
    settings: &Settings,
    store: &Arc<dyn crate::store::Store>,
    pepper: &[u8],
) -> Result<Option<ManagedKeys>, StartError> {
    let sealer = if store.shares_replay() {
        let sealer = Arc::new(crate::token::seal::Sealer::from_pepper(pepper)?);
        crate::token::seal::check_same_pepper(store.as_ref(), &sealer).await?;
        Some(sealer)
    } else {
        None
    };
    if !settings.signing.keys.is_empty() {
        return Ok(None);
    }
    let retain =
        settings.oauth.access_token_lifetime.as_secs() + settings.oauth.clock_skew.as_secs();
    let retain = i64::try_from(retain).unwrap_or(i64::MAX);
    let home = match sealer {
        Some(sealer) => KeyHome::Shared {
            store: store.clone(),
            sealer,
        },
        None => KeyHome::Dir(settings.data_dir.join("keys")),
    };
    Ok(Some(ManagedKeys::new(home, retain)))
}
