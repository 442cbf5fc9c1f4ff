//! One schema for both stores: a fresh SQLite file and a fresh PostgreSQL database end with the
//! same tables and columns, and a PostgreSQL database of the previous version's own migration
//! list (tests/fixtures/postgres-schema-v2.sql) is carried onto the shared steps with its rows.

use crate::common;

use iamgate::store::Store;
use std::collections::BTreeSet;

type Columns = BTreeSet<(String, String)>;

fn sqlite_columns(path: &std::path::Path) -> Columns {
    let conn = rusqlite::Connection::open(path).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut out = Columns::new();
    for t in tables {
        let mut stmt = conn.prepare(&format!("PRAGMA table_info({t})")).unwrap();
        for c in stmt.query_map([], |r| r.get::<_, String>(1)).unwrap() {
            out.insert((t.clone(), c.unwrap()));
        }
    }
    out
}

async fn pg_client(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

async fn pg_columns(url: &str) -> Columns {
    pg_client(url)
        .await
        .query(
            "SELECT table_name, column_name FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name <> 'iamgate_schema'",
            &[],
        )
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

async fn pg_indexes(url: &str) -> BTreeSet<String> {
    pg_client(url)
        .await
        .query(
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()",
            &[],
        )
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.get(0))
        .filter(|n: &String| !n.ends_with("_pkey"))
        .collect()
}

fn sqlite_indexes(path: &std::path::Path) -> BTreeSet<String> {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// A fresh PostgreSQL database, or `None` (said loudly) without `IAMGATE_TEST_DATABASE_URL`.
async fn postgres(dir: &tempfile::TempDir) -> Option<String> {
    let url = common::test_database(dir).await;
    if url.is_none() {
        eprintln!(
            "SKIPPED (PostgreSQL part): IAMGATE_TEST_DATABASE_URL is not set; .ci/run sets it"
        );
    }
    url
}

#[tokio::test]
async fn both_databases_end_with_the_same_tables_columns_and_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.db");
    drop(
        iamgate::store::sqlite::SqliteStore::open(&file)
            .await
            .unwrap(),
    );
    let lite = sqlite_columns(&file);
    for (t, c) in [
        ("service_accounts", "retired_secret_until"),
        ("audit_log", "actor"),
        ("shared_state", "value"),
        ("assertion_jtis", "expires_at"),
        ("projects", "environments"),
    ] {
        assert!(
            lite.contains(&(t.to_owned(), c.to_owned())),
            "{t}.{c} in {lite:?}"
        );
    }
    let Some(url) = postgres(&dir).await else {
        return;
    };
    let pg = iamgate::store::postgres::PgStore::open(&url).await.unwrap();
    pg.ping().await.unwrap();
    assert_eq!(pg_columns(&url).await, lite);
    assert_eq!(pg_indexes(&url).await, sqlite_indexes(&file));
}

#[tokio::test]
async fn a_postgres_database_of_the_previous_migration_list_joins_the_shared_steps() {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = postgres(&dir).await else {
        return;
    };
    let fixture = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/postgres-schema-v2.sql"),
    )
    .unwrap();
    let client = pg_client(&url).await;
    client.batch_execute(&fixture).await.unwrap();
    client
        .batch_execute(
            "INSERT INTO service_accounts (client_id, name, company_id, auth_method, secret_hash, created_at)
             VALUES ('old', 'old-account', NULL, 'client_secret_basic', decode(repeat('00', 32), 'hex'), 1)",
        )
        .await
        .unwrap();
    let store = iamgate::store::postgres::PgStore::open(&url).await.unwrap();
    let accounts = store.load_accounts().await.unwrap();
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts[0].name, "old-account");
    let version: i32 = client
        .query_one("SELECT version FROM iamgate_schema", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, iamgate::store::schema::PG_VERSION_BASE + 6);
    // The same tables, columns and indexes as a fresh SQLite file.
    let file = dir.path().join("s.db");
    drop(
        iamgate::store::sqlite::SqliteStore::open(&file)
            .await
            .unwrap(),
    );
    assert_eq!(pg_columns(&url).await, sqlite_columns(&file));
    assert_eq!(pg_indexes(&url).await, sqlite_indexes(&file));
    // Opening again changes nothing.
    drop(store);
    iamgate::store::postgres::PgStore::open(&url).await.unwrap();
}
