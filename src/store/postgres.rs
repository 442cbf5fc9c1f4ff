//! The PostgreSQL store, for several instances sharing one database (selected by a
//! `postgres://` URL). Same schema and semantics as the SQLite store, plus what sharing needs:
//! migrations serialised by an advisory lock, the assertion replay record, and a `NOTIFY` after
//! every committed batch, naming the rows it wrote, so other instances read and apply them.
//!
//! The store keeps a small pool of connections of its own; a connection that broke (database
//! restart) is replaced on next use, so the gateway recovers without a restart. TLS to the
//! database goes through rustls, with the Mozilla roots or the CA file `sslrootcert` names; every
//! TLS mode verifies the chain, and all but `verify-ca` the server's name.

use super::{
    AuditRecord, ChangeFeed, Changed, JtiOutcome, Loaded, Store, StoreError, StoreFuture, Write,
    sql,
};
use crate::config::{PgSslMode, PgTls};
use crate::model::{Binding, ClientKey, ServiceAccount};
use crate::model::{IamChange, IamData, Project};
use crate::token::{SharedDocs, SharedError, SharedFuture};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, Config, NoTls};

/// The channel other instances listen on.
pub const CHANNEL: &str = "iamgate_changes";
/// Connections kept.
const POOL_SIZE: usize = 8;
/// Longest wait for a connection or a statement.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Assertions waiting for the replay record; a full queue makes callers wait (bounded by
/// [`TIMEOUT`]).
const JTI_QUEUE: usize = 4096;
/// Most assertions recorded by one statement.
const JTI_BATCH: usize = 256;
/// Replay-record statements in flight at once; while they run, the next batch fills up.
const JTI_IN_FLIGHT: usize = 2;

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// A failed connection with its causes (`error performing TLS handshake: invalid peer
/// certificate: …`): the driver's own message alone does not say what to fix.
fn connect_failed(e: &tokio_postgres::Error) -> StoreError {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    StoreError::Unavailable(message)
}

fn db_error(e: tokio_postgres::Error, conflict: impl FnOnce() -> String) -> StoreError {
    if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
        StoreError::Conflict(conflict())
    } else {
        unavailable(e)
    }
}

/// Runs one planned statement.
async fn run(tx: &tokio_postgres::Transaction<'_>, stmt: &sql::Stmt) -> Result<(), StoreError> {
    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = stmt
        .params
        .iter()
        .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect();
    let n = tx
        .execute(stmt.sql, &params)
        .await
        .map_err(|e| match &stmt.on_unique {
            Some(conflict) => db_error(e, || conflict.clone()),
            None => unavailable(e),
        })?;
    match &stmt.must_change {
        Some(conflict) if n == 0 => Err(StoreError::Conflict(conflict.clone())),
        _ => Ok(()),
    }
}

impl tokio_postgres::types::ToSql for sql::Param {
    fn to_sql(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        // Checked per variant: a parameter of the wrong type for its column is an error, never
        // bytes of another type.
        match self {
            Self::Text(s) => s.to_sql_checked(ty, out),
            Self::OptText(s) => s.to_sql_checked(ty, out),
            Self::Int(i) => i.to_sql_checked(ty, out),
            Self::OptInt(i) => i.to_sql_checked(ty, out),
            Self::OptBlob(b) => b.to_sql_checked(ty, out),
        }
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        // Each variant checks its own type in `to_sql`.
        <String as tokio_postgres::types::ToSql>::accepts(ty)
            || <i64 as tokio_postgres::types::ToSql>::accepts(ty)
            || <Vec<u8> as tokio_postgres::types::ToSql>::accepts(ty)
    }

    tokio_postgres::types::to_sql_checked!();
}

/// The TLS connector `tls` asks for; `None` for `disable`.
fn connector(tls: &PgTls) -> Result<Option<tokio_postgres_rustls::MakeRustlsConnect>, StoreError> {
    if tls.mode == PgSslMode::Disable {
        return Ok(None);
    }
    let mut roots = rustls::RootCertStore::empty();
    match &tls.root_cert {
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Some(path) => {
            for cert in crate::config::read_roots(path).map_err(StoreError::Unavailable)? {
                roots.add(cert).map_err(|e| {
                    StoreError::Unavailable(format!("sslrootcert {}: {e}", path.display()))
                })?;
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(unavailable)?;
    let cfg = if tls.mode == PgSslMode::VerifyCa {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly {
                roots: Arc::new(roots),
                provider,
            }))
            .with_no_client_auth()
    } else {
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(Some(tokio_postgres_rustls::MakeRustlsConnect::new(cfg)))
}

/// `verify-ca`: the server's chain must end in one of the roots, whatever name it carries.
/// Signatures of the handshake are checked as always.
#[derive(Debug)]
struct ChainOnly {
    roots: Arc<rustls::RootCertStore>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &rustls_pki_types::CertificateDer<'_>,
        intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// PostgreSQL-backed [`Store`].
pub struct PgStore {
    instance: String,
    pool: Arc<Pool>,
    jtis: tokio::sync::mpsc::Sender<JtiClaim>,
}

/// The store's own small connection pool.
struct Pool {
    config: Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    /// The runtime the store was opened on, which opens and drives every connection: one opened
    /// for a request on a connection worker must not stop with that worker.
    runtime: tokio::runtime::Handle,
    idle: Mutex<Vec<Client>>,
    permits: tokio::sync::Semaphore,
}

/// One assertion waiting for the next replay-record batch.
struct JtiClaim {
    client_id: String,
    jti: String,
    expires_at: i64,
    now: i64,
    /// Unexpired records the client may hold.
    per_client: usize,
    reply: tokio::sync::oneshot::Sender<Result<JtiOutcome, StoreError>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it may hold a password.
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

/// A pooled connection, returned on drop unless it broke.
struct Conn<'a> {
    pool: &'a Pool,
    client: Option<Client>,
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.client.take()
            && !c.is_closed()
            && let Ok(mut idle) = self.pool.idle.lock()
        {
            idle.push(c);
        }
    }
}

impl std::ops::Deref for Conn<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        // Always Some until drop.
        self.client.as_ref().unwrap_or_else(|| unreachable_client())
    }
}

impl std::ops::DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        match self.client.as_mut() {
            Some(c) => c,
            None => unreachable_client(),
        }
    }
}

#[allow(clippy::panic)]
fn unreachable_client() -> ! {
    panic!("pooled connection used after release")
}

impl Pool {
    /// A new connection whose driver runs on its own task; with `notify`, that task forwards
    /// other instances' notifications.
    async fn connect(&self, notify: Option<Listener>) -> Result<Client, StoreError> {
        let (config, tls) = (self.config.clone(), self.tls.clone());
        // Opened and driven on the store's runtime: the socket belongs to the reactor of the
        // runtime that opens it.
        let opened = self
            .runtime
            .spawn(tokio::time::timeout(TIMEOUT, async move {
                Ok::<_, tokio_postgres::Error>(match tls {
                    None => {
                        let (client, conn) = config.connect(NoTls).await?;
                        tokio::spawn(drive(conn, notify));
                        client
                    }
                    Some(tls) => {
                        let (client, conn) = config.connect(tls).await?;
                        tokio::spawn(drive(conn, notify));
                        client
                    }
                })
            }));
        opened
            .await
            .map_err(|_| StoreError::Unavailable("connect abandoned".to_owned()))?
            .map_err(|_| StoreError::Unavailable("connect timed out".to_owned()))?
            .map_err(|e| connect_failed(&e))
    }

    async fn conn(&self) -> Result<Conn<'_>, StoreError> {
        let permit = tokio::time::timeout(TIMEOUT, self.permits.acquire())
            .await
            .map_err(|_| StoreError::Unavailable("no database connection free".to_owned()))?
            .map_err(unavailable)?;
        let reused = self.idle.lock().ok().and_then(|mut idle| {
            while let Some(c) = idle.pop() {
                if !c.is_closed() {
                    return Some(c);
                }
            }
            None
        });
        let client = match reused {
            Some(c) => c,
            None => self.connect(None).await?,
        };
        Ok(Conn {
            pool: self,
            client: Some(client),
            _permit: permit,
        })
    }
}

impl PgStore {
    /// Connects, migrates, and returns the store, with the driver's TLS default (`prefer`,
    /// verified against the public roots). The URL is never logged.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(
            url,
            &PgTls {
                mode: PgSslMode::Prefer,
                root_cert: None,
            },
        )
        .await
    }

    /// Connects over `tls`, migrates, and returns the store. The URL is never logged.
    pub async fn open_with(url: &str, tls: &PgTls) -> Result<Self, StoreError> {
        let mut config: Config = url.parse().map_err(|e: tokio_postgres::Error| {
            StoreError::Unavailable(format!("database url: {e}"))
        })?;
        config.ssl_mode(match tls.mode {
            PgSslMode::Disable => SslMode::Disable,
            PgSslMode::Prefer => SslMode::Prefer,
            _ => SslMode::Require,
        });
        let tls = connector(tls)?;
        let pool = Arc::new(Pool {
            config,
            tls,
            runtime: tokio::runtime::Handle::current(),
            idle: Mutex::new(Vec::new()),
            permits: tokio::sync::Semaphore::new(POOL_SIZE),
        });
        let (jtis, claims) = tokio::sync::mpsc::channel(JTI_QUEUE);
        tokio::spawn(batch_jtis(pool.clone(), claims));
        let store = Self {
            instance: uuid::Uuid::new_v4().to_string(),
            pool,
            jtis,
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn conn(&self) -> Result<Conn<'_>, StoreError> {
        self.pool.conn().await
    }

    /// Opens a dedicated connection that `LISTEN`s for the changes of *other* instances; each
    /// notification is merged into the feed's pending changes and wakes it (coalesced). The feed
    /// ends when the connection ends (database restart): the caller reconnects and
    /// resynchronises.
    pub async fn listen(&self) -> Result<ChangeFeed, StoreError> {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let pending = Arc::new(Mutex::new(Changed::default()));
        let listener = Listener {
            own: self.instance.clone(),
            wake: tx,
            pending: pending.clone(),
        };
        let client = self.pool.connect(Some(listener)).await?;
        client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .await
            .map_err(unavailable)?;
        tokio::spawn(hold(client));
        Ok(ChangeFeed { wake: rx, pending })
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        use super::schema::{self, Dialect};
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(unavailable)?;
        // Several instances may start at once: one migrates, the others wait here.
        tx.execute("SELECT pg_advisory_xact_lock(7210843350)", &[])
            .await
            .map_err(unavailable)?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS iamgate_schema (version INT NOT NULL)")
            .await
            .map_err(unavailable)?;
        let row = tx
            .query_opt("SELECT version FROM iamgate_schema", &[])
            .await
            .map_err(unavailable)?;
        let recorded = match row {
            Some(r) => r.get::<_, i32>(0),
            None => {
                tx.execute("INSERT INTO iamgate_schema (version) VALUES (0)", &[])
                    .await
                    .map_err(unavailable)?;
                0
            }
        };
        let done = schema::from_legacy_pg(recorded)
            .filter(|d| *d <= schema::len())
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "database schema version {recorded} is newer than this binary ({})",
                    schema::PG_VERSION_BASE
                        .saturating_add(i32::try_from(schema::len()).unwrap_or(i32::MAX))
                ))
            })?;
        for i in done..schema::len() {
            let sql = schema::step(i, Dialect::Postgres).unwrap_or_default();
            tx.batch_execute(&sql).await.map_err(unavailable)?;
        }
        let version = schema::PG_VERSION_BASE
            .saturating_add(i32::try_from(schema::len()).unwrap_or(i32::MAX));
        tx.execute("UPDATE iamgate_schema SET version = $1", &[&version])
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)
    }

    async fn load_all(&self) -> Result<Vec<ServiceAccount>, StoreError> {
        self.load_accounts_in(None).await
    }

    /// Every account, or those of `ids`.
    async fn load_accounts_in(
        &self,
        ids: Option<&Vec<String>>,
    ) -> Result<Vec<ServiceAccount>, StoreError> {
        let c = self.conn().await?;
        let mut keys: HashMap<String, Vec<ClientKey>> = HashMap::new();
        let (only, params) = only(ids, "client_id");
        for r in c
            .query(
                &format!("SELECT client_id, kid, n, e FROM service_account_keys{only} ORDER BY created_at, kid"),
                &params,
            )
            .await
            .map_err(unavailable)?
        {
            let cid: String = r.get(0);
            let key = ClientKey::from_stored(r.get(1), r.get(2), r.get(3))
                .map_err(|e| StoreError::Corrupt(format!("key of {cid}: {e}")))?;
            keys.entry(cid).or_default().push(key);
        }
        let mut out = Vec::new();
        let sql = format!(
            "SELECT {} FROM service_accounts{only} ORDER BY created_at, client_id",
            super::columns::ACCOUNT_COLUMNS
        );
        for r in c.query(&sql, &params).await.map_err(unavailable)? {
            let row = super::columns::AccountRow {
                client_id: r.get(0),
                name: r.get(1),
                company_id: r.get(2),
                auth_method: r.get(3),
                secret_hash: r.get(4),
                permissions: r.get(5),
                created_at: r.get(6),
                last_login: r.get(7),
                retired_hash: r.get(8),
                retired_until: r.get(9),
            };
            out.push(row.into_account(&mut keys)?);
        }
        Ok(out)
    }

    async fn load_iam_data(&self) -> Result<IamData, StoreError> {
        let mut data = IamData::default();
        self.load_bindings_in(None, |b| data.bindings.push(&b))
            .await?;
        data.projects = self.load_projects_in(None).await?;
        Ok(data)
    }

    /// Every binding, or those of `ids`, in id order, each handed to `each` as it is parsed.
    async fn load_bindings_in(
        &self,
        ids: Option<&Vec<String>>,
        mut each: impl FnMut(Binding),
    ) -> Result<(), StoreError> {
        let c = self.conn().await?;
        let (only, params) = only(ids, "binding_id");
        for r in c
            .query(
                &format!("SELECT doc FROM bindings{only} ORDER BY binding_id"),
                &params,
            )
            .await
            .map_err(unavailable)?
        {
            let doc: String = r.get(0);
            each(
                serde_json::from_str::<Binding>(&doc)
                    .map_err(|e| StoreError::Corrupt(format!("binding: {e}")))?,
            );
        }
        Ok(())
    }

    /// Every project, or those of `ids`, in id order.
    async fn load_projects_in(
        &self,
        ids: Option<&Vec<String>>,
    ) -> Result<Vec<Project>, StoreError> {
        let c = self.conn().await?;
        let (only, params) = only(ids, "project_id");
        let mut out = Vec::new();
        for r in c
            .query(
                &format!("SELECT project_id, company_id, environments FROM projects{only} ORDER BY project_id"),
                &params,
            )
            .await
            .map_err(unavailable)?
        {
            let envs: String = r.get(2);
            out.push(Project {
                project_id: r.get(0),
                company_id: r.get(1),
                environments: serde_json::from_str(&envs)
                    .map_err(|e| StoreError::Corrupt(format!("project: {e}")))?,
            });
        }
        Ok(out)
    }

    async fn commit_batch(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(unavailable)?;
        let now = crate::util::unix_now();
        for w in &writes {
            for stmt in sql::plan(w, now)? {
                run(&tx, &stmt).await?;
            }
        }
        // Delivered to the other instances only if the transaction commits, and in commit order;
        // it names what changed, so they read only that.
        tx.execute(
            "SELECT pg_notify($1, $2)",
            &[&CHANNEL, &self.payload(&writes)],
        )
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)
    }
}

/// The `WHERE` clause and parameters selecting `ids` in `column` (nothing for all rows).
fn only<'a>(
    ids: Option<&'a Vec<String>>,
    column: &str,
) -> (String, Vec<&'a (dyn tokio_postgres::types::ToSql + Sync)>) {
    match ids {
        Some(ids) => (format!(" WHERE {column} = ANY($1)"), vec![ids]),
        None => (String::new(), Vec::new()),
    }
}

/// Largest notification payload PostgreSQL accepts is 8000 bytes; past this the payload says
/// nothing, and the other instances read everything.
const MAX_PAYLOAD: usize = 7900;

impl PgStore {
    /// The notification payload naming what `writes` change, from this instance.
    fn payload(&self, writes: &[Write]) -> String {
        let changed = Changed {
            origin: self.instance.clone(),
            ..Changed::of(writes)
        };
        serde_json::to_string(&changed)
            .ok()
            .filter(|p| p.len() <= MAX_PAYLOAD)
            .unwrap_or_else(|| "*".to_owned())
    }
}

/// The listening connection's side of a [`ChangeFeed`].
struct Listener {
    /// This instance's id: notifications of its own writes are skipped.
    own: String,
    wake: tokio::sync::mpsc::Sender<()>,
    pending: Arc<Mutex<Changed>>,
}

/// Drives a connection; with `notify`, forwards other instances' notifications.
async fn drive<S, T>(mut conn: tokio_postgres::Connection<S, T>, notify: Option<Listener>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
            Some(Ok(tokio_postgres::AsyncMessage::Notification(n))) => {
                let Some(l) = &notify else { continue };
                let changed: Option<Changed> = serde_json::from_str(n.payload()).ok();
                // Its own writes this instance published itself.
                if changed.as_ref().is_some_and(|c| c.origin == l.own) {
                    continue;
                }
                // Anything but a change payload (the key set, the pepper check, a payload
                // too large) means: read everything.
                l.pending
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .merge(changed);
                // A full channel already holds a pending wake-up.
                let _ = l.wake.try_send(());
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                tracing::debug!(error = %e, "database connection ended");
                break;
            }
            None => break,
        }
    }
}

/// Records assertions in batches: one statement (one transaction, one round trip) for every
/// claim that queued up while the previous statements ran. Under load this turns hundreds of
/// single-row transactions a second into a few dozen, which is what keeps the shared replay
/// record from costing the token endpoint its throughput; alone, a claim waits for nobody.
async fn batch_jtis(pool: Arc<Pool>, mut claims: tokio::sync::mpsc::Receiver<JtiClaim>) {
    let in_flight = Arc::new(tokio::sync::Semaphore::new(JTI_IN_FLIGHT));
    loop {
        // Wait for a free slot first, so that claims arriving meanwhile join the batch.
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let mut batch = Vec::with_capacity(JTI_BATCH);
        if claims.recv_many(&mut batch, JTI_BATCH).await == 0 {
            return; // the store was dropped
        }
        let pool = pool.clone();
        tokio::spawn(async move {
            record_batch(&pool, batch).await;
            drop(permit);
        });
    }
}

/// Inserts one batch and answers each claim: `true` on first use, `false` for a replay, whether
/// of an earlier record or of a copy in the same batch.
async fn record_batch(pool: &Pool, batch: Vec<JtiClaim>) {
    // Later copies of a claim in the same batch are replays whatever the database says.
    let mut seen = std::collections::HashSet::with_capacity(batch.len());
    let (claims, copies): (Vec<JtiClaim>, Vec<JtiClaim>) = batch
        .into_iter()
        .partition(|c| seen.insert((c.client_id.clone(), c.jti.clone())));
    for c in copies {
        let _ = c.reply.send(Ok(JtiOutcome::Replayed));
    }
    // The earliest clock of the batch: an old record counts as expired only if it expired for
    // every claim (fail closed), and as held against a client's quota as long as it may.
    let now = claims.iter().map(|c| c.now).min().unwrap_or(i64::MAX);
    let outcome = tokio::time::timeout(TIMEOUT, record_claims(pool, &claims, now))
        .await
        .unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "replay record timed out".to_owned(),
            ))
        });
    for (i, c) in claims.into_iter().enumerate() {
        let answer = match &outcome {
            Ok(outcomes) => Ok(outcomes.get(i).copied().unwrap_or(JtiOutcome::Replayed)),
            Err(e) => Err(e.clone()),
        };
        let _ = c.reply.send(answer);
    }
}

/// Records a batch of distinct claims; one outcome per claim, in order. A client's unexpired
/// records are counted first, and its claims past `per_client` are not inserted (concurrent
/// instances may each admit one batch more before they see each other's rows).
async fn record_claims(
    pool: &Pool,
    claims: &[JtiClaim],
    now: i64,
) -> Result<Vec<JtiOutcome>, StoreError> {
    use tokio_postgres::types::Type;
    let c = pool.conn().await?;
    let clients: Vec<&str> = claims.iter().map(|c| c.client_id.as_str()).collect();
    let mut held: std::collections::HashMap<String, usize> = c
        .query_typed(
            "SELECT client_id, count(*) FROM assertion_jtis WHERE client_id = ANY($1) AND expires_at >= $2 GROUP BY client_id",
            &[(&clients, Type::TEXT_ARRAY), (&now, Type::INT8)],
        )
        .await
        .map_err(unavailable)?
        .into_iter()
        .map(|r| {
            let n: i64 = r.get(1);
            (r.get::<_, String>(0), usize::try_from(n).unwrap_or(usize::MAX))
        })
        .collect();
    let mut admitted = Vec::with_capacity(claims.len());
    let mut over = Vec::new();
    for (i, claim) in claims.iter().enumerate() {
        let n = held.entry(claim.client_id.clone()).or_insert(0);
        if *n >= claim.per_client {
            over.push(i);
        } else {
            *n += 1;
            admitted.push(i);
        }
    }
    let mut outcomes = vec![JtiOutcome::Replayed; claims.len()];
    if !admitted.is_empty() {
        let ids: Vec<&str> = admitted
            .iter()
            .map(|&i| claims[i].client_id.as_str())
            .collect();
        let jtis: Vec<&str> = admitted.iter().map(|&i| claims[i].jti.as_str()).collect();
        let expiries: Vec<i64> = admitted.iter().map(|&i| claims[i].expires_at).collect();
        // Insert-if-absent; an expired record of the same pair is replaced, not a replay.
        // Typed parameters: one round trip, no prepare.
        let rows = c
            .query_typed(
                "INSERT INTO assertion_jtis (client_id, jti, expires_at) SELECT * FROM unnest($1::text[], $2::text[], $3::int8[]) ON CONFLICT (client_id, jti) DO UPDATE SET expires_at = EXCLUDED.expires_at WHERE assertion_jtis.expires_at < $4 RETURNING client_id, jti",
                &[
                    (&ids, Type::TEXT_ARRAY),
                    (&jtis, Type::TEXT_ARRAY),
                    (&expiries, Type::INT8_ARRAY),
                    (&now, Type::INT8),
                ],
            )
            .await
            .map_err(unavailable)?;
        let mut fresh = std::collections::HashSet::with_capacity(rows.len());
        for r in rows {
            fresh.insert((
                r.try_get::<_, String>(0).map_err(unavailable)?,
                r.try_get::<_, String>(1).map_err(unavailable)?,
            ));
        }
        for &i in &admitted {
            if fresh.contains(&(claims[i].client_id.clone(), claims[i].jti.clone())) {
                outcomes[i] = JtiOutcome::Fresh;
            }
        }
    }
    if !over.is_empty() {
        // Over the quota: still a replay when the pair is recorded, otherwise refused.
        let ids: Vec<&str> = over.iter().map(|&i| claims[i].client_id.as_str()).collect();
        let jtis: Vec<&str> = over.iter().map(|&i| claims[i].jti.as_str()).collect();
        let known: std::collections::HashSet<(String, String)> = c
            .query_typed(
                "SELECT a.client_id, a.jti FROM assertion_jtis a JOIN unnest($1::text[], $2::text[]) AS q(client_id, jti) ON a.client_id = q.client_id AND a.jti = q.jti WHERE a.expires_at >= $3",
                &[
                    (&ids, Type::TEXT_ARRAY),
                    (&jtis, Type::TEXT_ARRAY),
                    (&now, Type::INT8),
                ],
            )
            .await
            .map_err(unavailable)?
            .into_iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        for &i in &over {
            if !known.contains(&(claims[i].client_id.clone(), claims[i].jti.clone())) {
                outcomes[i] = JtiOutcome::ClientFull;
            }
        }
    }
    Ok(outcomes)
}

/// Keeps the listening client alive until its connection ends.
async fn hold(client: Client) {
    while !client.is_closed() {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

impl Store for PgStore {
    fn load_accounts(&self) -> StoreFuture<'_, Vec<ServiceAccount>> {
        Box::pin(self.load_all())
    }

    fn insert_account(&self, account: ServiceAccount) -> StoreFuture<'_, ()> {
        Box::pin(self.commit_batch(vec![Write::InsertAccount(account)]))
    }

    fn delete_account(&self, client_id: String) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let c = self.conn().await?;
            let n = c
                .execute(
                    "WITH gone AS (DELETE FROM service_accounts WHERE client_id = $1 RETURNING 1) SELECT pg_notify($2, $3) FROM gone",
                    &[&client_id, &CHANNEL, &self.payload(&[Write::DeleteAccount(client_id.clone())])],
                )
                .await
                .map_err(unavailable)?;
            Ok(n > 0)
        })
    }

    fn record_logins(&self, logins: Vec<(String, i64)>) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut c = self.conn().await?;
            let tx = c.transaction().await.map_err(unavailable)?;
            for (id, ts) in &logins {
                tx.execute(
                    "UPDATE service_accounts SET last_login = GREATEST(COALESCE(last_login, 0), $2) WHERE client_id = $1",
                    &[id, ts],
                )
                .await
                .map_err(unavailable)?;
            }
            tx.commit().await.map_err(unavailable)
        })
    }

    fn load_iam(&self) -> StoreFuture<'_, IamData> {
        Box::pin(self.load_iam_data())
    }

    fn apply_iam(&self, changes: Vec<IamChange>) -> StoreFuture<'_, ()> {
        Box::pin(self.commit_batch(changes.into_iter().map(Write::Iam).collect()))
    }

    fn commit(&self, writes: Vec<Write>) -> StoreFuture<'_, ()> {
        Box::pin(self.commit_batch(writes))
    }

    fn audit_log(&self, limit: usize) -> StoreFuture<'_, Vec<AuditRecord>> {
        Box::pin(async move {
            let c = self.conn().await?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let mut out = Vec::new();
            for r in c
                .query(sql::SELECT_AUDIT, &[&limit])
                .await
                .map_err(unavailable)?
            {
                out.push(AuditRecord {
                    at: r.get(0),
                    actor: r.get(1),
                    action: r.get(2),
                    target: r.get(3),
                    before: super::columns::json_value(r.get(4))?,
                    after: super::columns::json_value(r.get(5))?,
                });
            }
            Ok(out)
        })
    }

    fn shares_replay(&self) -> bool {
        true
    }

    fn changes(&self) -> StoreFuture<'_, Option<ChangeFeed>> {
        Box::pin(async move { self.listen().await.map(Some) })
    }

    fn load_changed(&self, changed: Changed) -> StoreFuture<'_, Loaded> {
        Box::pin(async move {
            let ids = |set: BTreeSet<String>| set.into_iter().collect::<Vec<_>>();
            let (accounts, bindings, projects) = (
                ids(changed.accounts),
                ids(changed.bindings),
                ids(changed.projects),
            );
            let mut loaded = Loaded::default();
            if !accounts.is_empty() {
                loaded.accounts = self.load_accounts_in(Some(&accounts)).await?;
            }
            if !bindings.is_empty() {
                self.load_bindings_in(Some(&bindings), |b| loaded.bindings.push(b))
                    .await?;
            }
            if !projects.is_empty() {
                loaded.projects = self.load_projects_in(Some(&projects)).await?;
            }
            Ok(loaded)
        })
    }

    fn record_jti(
        &self,
        client_id: String,
        jti: String,
        expires_at: i64,
        now: i64,
        per_client: usize,
    ) -> StoreFuture<'_, JtiOutcome> {
        Box::pin(async move {
            let (reply, answer) = tokio::sync::oneshot::channel();
            let claim = JtiClaim {
                client_id,
                jti,
                expires_at,
                now,
                per_client,
                reply,
            };
            let wait = async {
                self.jtis
                    .send(claim)
                    .await
                    .map_err(|_| StoreError::Unavailable("replay record stopped".to_owned()))?;
                answer
                    .await
                    .map_err(|_| StoreError::Unavailable("replay record stopped".to_owned()))?
            };
            tokio::time::timeout(TIMEOUT, wait)
                .await
                .map_err(|_| StoreError::Unavailable("replay record timed out".to_owned()))?
        })
    }

    fn purge_jtis(&self, now: i64) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let c = self.conn().await?;
            c.execute("DELETE FROM assertion_jtis WHERE expires_at < $1", &[&now])
                .await
                .map_err(unavailable)
        })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let c = self.conn().await?;
            tokio::time::timeout(TIMEOUT, c.simple_query("SELECT 1"))
                .await
                .map_err(|_| StoreError::Unavailable("ping timed out".to_owned()))?
                .map_err(unavailable)?;
            Ok(())
        })
    }
}

/// The shared documents live in table `shared_state`; a write notifies the other instances.
impl SharedDocs for PgStore {
    fn load_shared(&self, name: &'static str) -> SharedFuture<'_, Option<(i64, Vec<u8>)>> {
        Box::pin(async move {
            let run = async move {
                let c = self.conn().await?;
                let row = c
                    .query_opt(
                        "SELECT version, value FROM shared_state WHERE name = $1",
                        &[&name],
                    )
                    .await
                    .map_err(unavailable)?;
                Ok::<_, StoreError>(row.map(|r| (r.get(0), r.get(1))))
            };
            run.await.map_err(|e| SharedError(e.to_string()))
        })
    }

    fn store_shared(
        &self,
        name: &'static str,
        expected: Option<i64>,
        value: Vec<u8>,
    ) -> SharedFuture<'_, bool> {
        Box::pin(async move {
            let run = async move {
                let mut c = self.conn().await?;
                let tx = c.transaction().await.map_err(unavailable)?;
                let n = match expected {
                None => tx
                    .execute(
                        "INSERT INTO shared_state (name, version, value) VALUES ($1, 1, $2) ON CONFLICT (name) DO NOTHING",
                        &[&name, &value],
                    )
                    .await
                    .map_err(unavailable)?,
                Some(v) => tx
                    .execute(
                        "UPDATE shared_state SET value = $3, version = version + 1 WHERE name = $1 AND version = $2",
                        &[&name, &v, &value],
                    )
                    .await
                    .map_err(unavailable)?,
            };
                if n == 0 {
                    return Ok::<_, StoreError>(false);
                }
                // Names no account, binding or project: the others have nothing to re-read (the key
                // reloader polls the key set on its own interval).
                tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &self.payload(&[])])
                    .await
                    .map_err(unavailable)?;
                tx.commit().await.map_err(unavailable)?;
                Ok(true)
            };
            run.await.map_err(|e| SharedError(e.to_string()))
        })
    }
}
