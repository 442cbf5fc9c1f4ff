//! The embedded SQLite store: one file in the data directory, migrated on open.
//!
//! rusqlite is synchronous, so each call runs on tokio's blocking pool holding one connection
//! behind a mutex; SQLite serialises writers anyway, and reads on the hot path come from the
//! snapshot, not from here. WAL mode keeps readers (the CLI) from blocking the server.

use super::{AuditRecord, Store, StoreError, StoreFuture, Write, sql};
use crate::model::{Binding, ClientKey, ServiceAccount};
use crate::model::{IamChange, IamData, Project};
use rusqlite::{Connection, params};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// SQLite-backed [`Store`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || Self::open_blocking(&path))
            .await
            .map_err(unavailable)?
    }

    /// Synchronous open, for the CLI.
    pub fn open_blocking(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            crate::util::create_private_dir(dir).map_err(unavailable)?;
        }
        let mut conn = Connection::open(path).map_err(unavailable)?;
        // The file holds secret hashes and public keys: owner-only, like the rest of the data dir.
        crate::util::make_private(path).map_err(unavailable)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; PRAGMA synchronous = NORMAL;",
        )
        .map_err(unavailable)?;
        migrate(&mut conn)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| StoreError::Unavailable("connection lock poisoned".to_owned()))?;
            f(&mut guard)
        })
        .await
        .map_err(unavailable)?
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    use super::schema::{self, Dialect};
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(unavailable)?;
    let done = usize::try_from(version).unwrap_or(0);
    if done > schema::len() {
        return Err(StoreError::Corrupt(format!(
            "database schema version {done} is newer than this binary ({})",
            schema::len()
        )));
    }
    for i in done..schema::len() {
        let sql = schema::step(i, Dialect::Sqlite).unwrap_or_default();
        let tx = conn.transaction().map_err(unavailable)?;
        tx.execute_batch(&sql).map_err(unavailable)?;
        tx.pragma_update(
            None,
            "user_version",
            i64::try_from(i + 1).unwrap_or(i64::MAX),
        )
        .map_err(unavailable)?;
        tx.commit().map_err(unavailable)?;
    }
    Ok(())
}

fn load_all(conn: &mut Connection) -> Result<Vec<ServiceAccount>, StoreError> {
    let mut keys: std::collections::HashMap<String, Vec<ClientKey>> = Default::default();
    {
        let mut stmt = conn
            .prepare(
                "SELECT client_id, kid, n, e FROM service_account_keys ORDER BY created_at, kid",
            )
            .map_err(unavailable)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .map_err(unavailable)?;
        for row in rows {
            let (cid, kid, n, e) = row.map_err(unavailable)?;
            let key = ClientKey::from_stored(kid, n, e)
                .map_err(|e| StoreError::Corrupt(format!("key of {cid}: {e}")))?;
            keys.entry(cid).or_default().push(key);
        }
    }
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {} FROM service_accounts ORDER BY created_at, client_id",
            super::columns::ACCOUNT_COLUMNS
        ))
        .map_err(unavailable)?;
    let rows = stmt
        .query_map([], |r| {
            Ok(super::columns::AccountRow {
                client_id: r.get(0)?,
                name: r.get(1)?,
                company_id: r.get(2)?,
                auth_method: r.get(3)?,
                secret_hash: r.get(4)?,
                permissions: r.get(5)?,
                created_at: r.get(6)?,
                last_login: r.get(7)?,
                retired_hash: r.get(8)?,
                retired_until: r.get(9)?,
            })
        })
        .map_err(unavailable)?;
    let mut out = Vec::new();
    for row in rows {
        out.push(row.map_err(unavailable)?.into_account(&mut keys)?);
    }
    Ok(out)
}

/// Runs one planned statement.
fn run(tx: &rusqlite::Transaction<'_>, stmt: &sql::Stmt) -> Result<(), StoreError> {
    let n = tx
        .execute(
            &sql::sqlite(stmt.sql),
            rusqlite::params_from_iter(stmt.params.iter()),
        )
        .map_err(|e| match &stmt.on_unique {
            Some(conflict) => constraint(e, || conflict.clone()),
            None => unavailable(e),
        })?;
    match &stmt.must_change {
        Some(conflict) if n == 0 => Err(StoreError::Conflict(conflict.clone())),
        _ => Ok(()),
    }
}

impl rusqlite::ToSql for sql::Param {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Self::Text(s) => s.to_sql(),
            Self::OptText(s) => s.to_sql(),
            Self::Int(i) => i.to_sql(),
            Self::OptInt(i) => i.to_sql(),
            Self::OptBlob(b) => b.to_sql(),
        }
    }
}

fn constraint(e: rusqlite::Error, what: impl FnOnce() -> String) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::Conflict(what())
        }
        other => unavailable(other),
    }
}

fn commit_batch(conn: &mut Connection, writes: &[Write]) -> Result<(), StoreError> {
    let tx = conn.transaction().map_err(unavailable)?;
    let now = crate::util::unix_now();
    for w in writes {
        for stmt in sql::plan(w, now)? {
            run(&tx, &stmt)?;
        }
    }
    tx.commit().map_err(unavailable)
}

fn audit_log(conn: &mut Connection, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
    let mut stmt = conn
        .prepare(&sql::sqlite(sql::SELECT_AUDIT))
        .map_err(unavailable)?;
    let rows = stmt
        .query_map(params![i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, Option<String>>(5)?,
            ))
        })
        .map_err(unavailable)?;
    let mut out = Vec::new();
    for row in rows {
        let (at, actor, action, target, before, after) = row.map_err(unavailable)?;
        out.push(AuditRecord {
            at,
            actor,
            action,
            target,
            before: super::columns::json_value(before)?,
            after: super::columns::json_value(after)?,
        });
    }
    Ok(out)
}

fn corrupt(what: &str) -> impl Fn(serde_json::Error) -> StoreError + '_ {
    move |e| StoreError::Corrupt(format!("{what}: {e}"))
}

fn load_iam(conn: &mut Connection) -> Result<IamData, StoreError> {
    let mut data = IamData::default();
    // A plain table scan (the directory indexes and orders what it needs), each document parsed
    // straight from SQLite's buffer: this is most of start-up with a million bindings.
    let mut stmt = conn
        .prepare("SELECT doc FROM bindings")
        .map_err(unavailable)?;
    let mut rows = stmt.query([]).map_err(unavailable)?;
    while let Some(row) = rows.next().map_err(unavailable)? {
        let doc = row
            .get_ref(0)
            .and_then(|v| v.as_str().map_err(Into::into))
            .map_err(unavailable)?;
        data.bindings
            .push(&serde_json::from_str::<Binding>(doc).map_err(corrupt("binding"))?);
    }
    let mut stmt = conn
        .prepare("SELECT project_id, company_id, environments FROM projects ORDER BY project_id")
        .map_err(unavailable)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .map_err(unavailable)?;
    for row in rows {
        let (project_id, company_id, envs) = row.map_err(unavailable)?;
        data.projects.push(Project {
            environments: serde_json::from_str(&envs).map_err(corrupt("project environments"))?,
            project_id,
            company_id,
        });
    }
    Ok(data)
}

/// One instance per SQLite file: nothing is shared (the defaults say so).
impl crate::token::SharedDocs for SqliteStore {}

impl Store for SqliteStore {
    fn load_iam(&self) -> StoreFuture<'_, IamData> {
        Box::pin(self.run(load_iam))
    }

    fn apply_iam(&self, changes: Vec<IamChange>) -> StoreFuture<'_, ()> {
        let writes = changes.into_iter().map(Write::Iam).collect::<Vec<_>>();
        Box::pin(self.run(move |c| commit_batch(c, &writes)))
    }

    fn commit(&self, writes: Vec<Write>) -> StoreFuture<'_, ()> {
        Box::pin(self.run(move |c| commit_batch(c, &writes)))
    }

    fn audit_log(&self, limit: usize) -> StoreFuture<'_, Vec<AuditRecord>> {
        Box::pin(self.run(move |c| audit_log(c, limit)))
    }

    fn load_accounts(&self) -> StoreFuture<'_, Vec<ServiceAccount>> {
        Box::pin(self.run(load_all))
    }

    fn insert_account(&self, account: ServiceAccount) -> StoreFuture<'_, ()> {
        Box::pin(self.run(move |c| commit_batch(c, &[Write::InsertAccount(account)])))
    }

    fn delete_account(&self, client_id: String) -> StoreFuture<'_, bool> {
        Box::pin(self.run(move |c| {
            let n = c
                .execute(&sql::sqlite(sql::DELETE_ACCOUNT), params![client_id])
                .map_err(unavailable)?;
            Ok(n > 0)
        }))
    }

    fn record_logins(&self, logins: Vec<(String, i64)>) -> StoreFuture<'_, ()> {
        Box::pin(self.run(move |c| {
            let tx = c.transaction().map_err(unavailable)?;
            {
                let mut stmt = tx
                    .prepare_cached(
                        "UPDATE service_accounts SET last_login = MAX(COALESCE(last_login, 0), ?2) WHERE client_id = ?1",
                    )
                    .map_err(unavailable)?;
                for (id, ts) in &logins {
                    stmt.execute(params![id, ts]).map_err(unavailable)?;
                }
            }
            tx.commit().map_err(unavailable)
        }))
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(self.run(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(unavailable)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iam::{ClientKey, SecretHasher};
    use crate::model::{Credential, Owner};
    use crate::token::SigningKey;

    fn secret_account(id: &str) -> ServiceAccount {
        ServiceAccount {
            client_id: id.to_owned(),
            name: format!("sa {id}"),
            owner: Owner::Root,
            credential: Credential::Secret(SecretHasher::new(b"pepper-pepper-pepper").hash("x")),
            permissions: vec!["console.root.view".to_owned()].into(),
            created_at: 100,
            last_login: None,
            retired_secret: None,
        }
    }

    #[tokio::test]
    async fn accounts_survive_reopen_and_delete_cascades_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let store = SqliteStore::open(&path).await.unwrap();
        store.insert_account(secret_account("a")).await.unwrap();
        let sk = SigningKey::generate(None).unwrap();
        let key = ClientKey::from_jwk(&sk.public_jwk()).unwrap();
        let jwt_account = ServiceAccount {
            client_id: "b".into(),
            name: "jwt".into(),
            owner: Owner::Company("acme".into()),
            credential: Credential::Keys(vec![key.clone()]),
            permissions: vec![].into(),
            created_at: 101,
            last_login: None,
            retired_secret: None,
        };
        store.insert_account(jwt_account.clone()).await.unwrap();
        assert!(matches!(
            store.insert_account(secret_account("a")).await,
            Err(StoreError::Conflict(_))
        ));
        store.record_logins(vec![("a".into(), 500)]).await.unwrap();
        drop(store);

        let store = SqliteStore::open(&path).await.unwrap();
        let all = store.load_accounts().await.unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].last_login, Some(500));
        assert_eq!(all[1], jwt_account);

        assert!(store.delete_account("b".into()).await.unwrap());
        assert!(!store.delete_account("b".into()).await.unwrap());
        let orphans: i64 = store
            .run(|c| {
                c.query_row("SELECT COUNT(*) FROM service_account_keys", [], |r| {
                    r.get(0)
                })
                .map_err(unavailable)
            })
            .await
            .unwrap();
        assert_eq!(orphans, 0);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn database_file_and_new_directory_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fresh").join("db.sqlite");
        SqliteStore::open(&path).await.unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.path().join("fresh")), 0o700);
    }

    #[tokio::test]
    async fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        {
            let c = Connection::open(&path).unwrap();
            c.pragma_update(None, "user_version", 99).unwrap();
        }
        assert!(matches!(
            SqliteStore::open(&path).await,
            Err(StoreError::Corrupt(_))
        ));
    }
}
