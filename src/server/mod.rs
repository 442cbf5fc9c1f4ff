//! The server: builds every component from [`Settings`], binds the listener and serves HTTP/1.1
//! and HTTP/2 through hyper-util's auto builder, draining in-flight requests on shutdown.
//!
//! [`start`] is what both `iamgate serve` and the integration tests call, so the tests exercise
//! exactly the production wiring on a real socket.

mod routes;
pub mod stack;
mod tls;

use crate::authn::{TokenEndpoint, default_audiences};
use crate::config::Settings;
use crate::iam::{Accounts, LastLogins, SecretHasher};
use crate::token::keyset::{KeyHome, ManagedKeys, load_configured};
use crate::token::{Issuer, KeyRing, metadata};
use crate::util::unix_now;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use routes::App;

/// Longest time a client may take to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// An external issuer's keys could not be loaded.
    #[error(transparent)]
    External(#[from] crate::authn::external::ExternalError),
    /// The upstream URL cannot be forwarded to.
    #[error("upstream: {0}")]
    Upstream(String),
}

/// Loads the policy (configured folder, `./policies`, or the embedded default), tested before
/// use. Returns the engine and the folder to watch, if any.
fn load_policy(
    settings: &crate::config::PolicySettings,
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
    Ok((
        Arc::new(PolicyEngine::new(
            snapshot,
            settings.cache,
            settings.interpreter,
        )),
        dir,
    ))
}

/// A running server.
#[derive(Debug)]
pub struct Running {
    /// The bound address.
    pub addr: SocketAddr,
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
}

impl Running {
    /// Stops accepting, drains in-flight requests (bounded by `grace`), flushes state.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.shutdown.send(true);
        let _ = tokio::time::timeout(grace + Duration::from_secs(1), self.task).await;
    }
}

/// Builds every component and starts serving on the configured address.
pub async fn start(settings: Settings) -> Result<Running, StartError> {
    let io = |what: &str| {
        let what = what.to_owned();
        move |source| StartError::Io { what, source }
    };
    crate::util::create_private_dir(&settings.data_dir).map_err(io("create data dir"))?;
    let listener = TcpListener::bind(settings.listen)
        .await
        .map_err(io("bind listener"))?;
    let addr = listener.local_addr().map_err(io("listener address"))?;
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

    let (policy, policy_dir) = load_policy(&settings.policy)?;
    let metrics = Arc::new(crate::telemetry::metrics::Metrics::new());
    let policy_stats = Arc::new(crate::policy::reload::ReloadStats::new(&metrics));

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

    let gateway = build_gateway(
        &settings, &issuer_id, &audience, &keys, &manager, &policy, &metrics,
    )
    .await?;
    let tls = match &settings.server.tls {
        Some((cert, key)) => Some(tls::acceptor(cert, key).map_err(StartError::Tls)?),
        None => None,
    };
    let app = Arc::new(App {
        token,
        keys: keys.clone(),
        metadata: metadata::document(&issuer_id, &public_url),
        store: store.clone(),
        metrics,
        gateway,
    });

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    spawn_login_flusher(
        last_logins,
        store.clone(),
        settings.last_login_flush,
        shutdown_rx.clone(),
    );
    if let Some(m) = managed {
        spawn_key_reloader(m, keys, settings.signing.reload, shutdown_rx.clone());
    }
    if let Some(dir) = policy_dir {
        crate::policy::reload::spawn(
            policy.clone(),
            dir,
            settings.policy.reload,
            policy_stats.clone(),
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
        spawn_change_follower(
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
    let service = stack::build(app, &settings.server);
    let task = tokio::spawn(serve(
        listener,
        service,
        tls,
        settings.server.shutdown_grace,
        shutdown_rx,
    ));
    tracing::info!(%addr, %public_url, "iamgate listening");
    Ok(Running {
        addr,
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
    })
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
    use crate::proxy::table::Routes;
    let routes = match &settings.routes_file {
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
    // A route naming a permission the policy does not define would deny everyone, silently.
    policy.require_permissions(routes.named_permissions())?;
    let up = &settings.upstream;
    let connector = crate::net::connector(up.connect_timeout, up.ca_file.as_deref())
        .map_err(StartError::Tls)?;
    let client = crate::net::http_client(connector.clone());
    let verifier = Arc::new(crate::token::verifier::AccessTokenVerifier::new(
        keys.clone(),
        issuer_id,
        audience,
        settings.oauth.clock_skew,
        100_000,
    ));
    let mut externals = Vec::new();
    for e in &settings.external_issuers {
        externals.push(Arc::new(
            crate::authn::external::ExternalIssuer::load(e.clone(), client.clone()).await?,
        ));
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
    .with_management(management))
}

/// Longest a client may take to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

async fn serve<S, B>(
    listener: TcpListener,
    service: S,
    tls: Option<tokio_rustls::TlsAcceptor>,
    grace: Duration,
    mut shutdown: watch::Receiver<bool>,
) where
    S: tower::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<B>,
            Error = tower::BoxError,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: hyper::body::Body<Data = bytes::Bytes, Error = hyper::Error> + Send + 'static,
{
    use crate::proxy::gateway::ConnInfo;
    use tower::ServiceExt;
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A client that never finishes its request headers must not hold a connection forever.
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(hyper_util::rt::TokioTimer::new());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors and similar: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let conn = ConnInfo { peer, tls: tls.is_some() };
                let svc = service.clone().map_request(move |mut r: http::Request<hyper::body::Incoming>| {
                    r.extensions_mut().insert(conn);
                    r
                });
                let svc = hyper_util::service::TowerToHyperService::new(svc);
                let builder = builder.clone();
                let watcher = graceful.watcher();
                match &tls {
                    None => {
                        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc).into_owned();
                        tokio::spawn(async move {
                            if let Err(e) = watcher.watch(conn).await {
                                tracing::debug!(error = %e, "connection ended with error");
                            }
                        });
                    }
                    Some(acceptor) => {
                        let acceptor = acceptor.clone();
                        tokio::spawn(async move {
                            let stream = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                Ok(Ok(s)) => s,
                                Ok(Err(e)) => {
                                    tracing::debug!(error = %e, %peer, "tls handshake failed");
                                    return;
                                }
                                Err(_) => {
                                    tracing::debug!(%peer, "tls handshake timed out");
                                    return;
                                }
                            };
                            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc).into_owned();
                            if let Err(e) = watcher.watch(conn).await {
                                tracing::debug!(error = %e, "connection ended with error");
                            }
                        });
                    }
                }
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period elapsed with connections still open");
    }
}

/// Interval of the full resynchronisation that covers lost notifications.
const RESYNC_EVERY: Duration = Duration::from_secs(30);

/// Re-reads accounts, bindings and the directory from the shared store.
async fn resync(
    store: &dyn crate::store::Store,
    accounts: &Accounts,
    directory: &crate::iam::directory::Directory,
) -> Result<(), crate::store::StoreError> {
    // A read that raced a local write is stale: read again (the write is in the store now).
    for _ in 0..5 {
        let (generation, version) = (accounts.snapshot().generation(), directory.version());
        let all = store.load_accounts().await?;
        let iam = store.load_iam().await?;
        let fresh_accounts = accounts.snapshot().replace_all_if(generation, all);
        let fresh_iam = directory.replace_if(version, iam).await;
        if fresh_accounts && fresh_iam {
            return Ok(());
        }
    }
    Ok(())
}

/// Applies other instances' changes: the rows a notification names are read again and applied,
/// unless a local write was published meanwhile (the rows may predate it: read again); a
/// notification that names nothing in particular, or a failure, reads everything.
async fn follow(
    store: &dyn crate::store::Store,
    accounts: &Accounts,
    directory: &crate::iam::directory::Directory,
    changed: crate::store::Changed,
) -> Result<(), crate::store::StoreError> {
    use crate::iam::directory::IamChange;
    if changed.all {
        return resync(store, accounts, directory).await;
    }
    if changed.is_empty() {
        return Ok(());
    }
    for _ in 0..5 {
        let (generation, version) = (accounts.snapshot().generation(), directory.version());
        let loaded = match store.load_changed(changed.clone()).await {
            Ok(loaded) => loaded,
            // What the notification named is not applied: read everything instead.
            Err(_) => break,
        };
        let account_changes = as_changes(
            &changed.accounts,
            loaded.accounts,
            |a| &a.client_id,
            |a| (a.client_id.clone(), Some(a)),
            |id| (id, None),
        );
        let mut iam = as_changes(
            &changed.bindings,
            loaded.bindings,
            |b| &b.binding_id,
            IamChange::PutBinding,
            IamChange::DeleteBinding,
        );
        iam.extend(as_changes(
            &changed.projects,
            loaded.projects,
            |p| &p.project_id,
            IamChange::PutProject,
            IamChange::DeleteProject,
        ));
        let fresh_accounts = account_changes.is_empty()
            || accounts
                .snapshot()
                .apply_all_if(generation, account_changes);
        let fresh_iam = iam.is_empty() || directory.publish_if(version, iam).await;
        if fresh_accounts && fresh_iam {
            return Ok(());
        }
    }
    resync(store, accounts, directory).await
}

/// What the rows read for the `named` ids mean: a row found is put, an id without one was
/// deleted.
fn as_changes<T, C>(
    named: &std::collections::BTreeSet<String>,
    rows: Vec<T>,
    id: impl Fn(&T) -> &String,
    put: impl Fn(T) -> C,
    delete: impl Fn(String) -> C,
) -> Vec<C> {
    let found: std::collections::HashSet<String> = rows.iter().map(|r| id(r).clone()).collect();
    let mut out: Vec<C> = rows.into_iter().map(put).collect();
    out.extend(
        named
            .iter()
            .filter(|n| !found.contains(*n))
            .map(|n| delete(n.clone())),
    );
    out
}

/// Follows other instances' changes on a shared store: a notification names the rows a batch
/// wrote, which are read and applied; a periodic resynchronisation covers lost ones. After a
/// broken feed (database restart) it reconnects, resynchronises, and goes on; requests keep
/// being served meanwhile.
fn spawn_change_follower(
    store: Arc<dyn crate::store::Store>,
    accounts: Accounts,
    directory: crate::iam::directory::Directory,
    mut shutdown: watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        loop {
            let mut feed = match store.changes().await {
                Ok(Some(rx)) => rx,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "change feed unavailable; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        _ = shutdown.changed() => return,
                    }
                }
            };
            // Whatever happened while the feed was down is picked up here.
            if let Err(e) = resync(store.as_ref(), &accounts, &directory).await {
                tracing::warn!(error = %e, "resynchronisation failed");
            }
            loop {
                tokio::select! {
                    got = feed.next() => match got {
                        Some(changed) => {
                            if let Err(e) = follow(store.as_ref(), &accounts, &directory, changed).await {
                                tracing::warn!(error = %e, "applying another instance's change failed");
                            }
                        }
                        None => {
                            tracing::warn!("change feed ended; reconnecting");
                            break;
                        }
                    },
                    _ = tokio::time::sleep(RESYNC_EVERY) => {
                        if let Err(e) = resync(store.as_ref(), &accounts, &directory).await {
                            tracing::warn!(error = %e, "periodic resynchronisation failed");
                        }
                    }
                    _ = shutdown.changed() => return,
                }
            }
        }
    });
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

fn spawn_login_flusher(
    logins: LastLogins,
    store: Arc<dyn crate::store::Store>,
    every: Duration,
    shutdown: watch::Receiver<bool>,
) {
    crate::util::spawn_periodic(every, shutdown, true, move || {
        let (logins, store) = (logins.clone(), store.clone());
        async move {
            if let Err(e) = logins.flush(store.as_ref()).await {
                tracing::warn!(error = %e, "could not record last logins; will retry");
            }
        }
    });
}

fn spawn_key_reloader(
    managed: ManagedKeys,
    ring: KeyRing,
    every: Duration,
    shutdown: watch::Receiver<bool>,
) {
    let managed = Arc::new(managed);
    crate::util::spawn_periodic(every, shutdown, false, move || {
        let (managed, ring) = (managed.clone(), ring.clone());
        async move {
            // Also rebuilt when unchanged, so retired keys drop out once their tokens expired.
            match managed.reload(unix_now()).await {
                Ok(set) => {
                    if !set.same_keys(&ring.current()) {
                        tracing::info!(active = set.active().kid(), "signing key set reloaded");
                    }
                    ring.replace(set);
                }
                Err(crate::token::TokenError::Store(e)) => {
                    // An unreachable store is reported by the health check; keep signing.
                    tracing::debug!(error = %e, "signing key set not checked");
                }
                Err(e) => {
                    tracing::error!(error = %e, "signing key set rejected; keeping the current one")
                }
            }
        }
    });
}
