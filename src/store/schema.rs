//! The database schema, written once for both stores: one ordered list of migrations whose text
//! names column types by role (`{int}`, `{blob}`, `{serial_key}`), rendered for SQLite or
//! PostgreSQL. Both databases run the same steps and end with the same tables and columns
//! (`tests/it/schema.rs` compares them).
//!
//! Steps are only ever appended. SQLite databases record how many ran in `PRAGMA user_version`;
//! PostgreSQL ones in `iamgate_schema.version`, as [`PG_VERSION_BASE`] plus the count. Values
//! below the base were written when PostgreSQL kept a migration list of its own, whose two steps
//! are steps 1–4 and 5 of this one ([`from_legacy_pg`]).

/// A database's SQL dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite (the embedded default).
    Sqlite,
    /// PostgreSQL (a cluster of instances).
    Postgres,
}

/// The migrations, in order.
const MIGRATIONS: &[&str] = &[
    // 1: service accounts and their keys.
    r#"
CREATE TABLE service_accounts (
    client_id   TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    company_id  TEXT,
    auth_method TEXT NOT NULL CHECK (auth_method IN ('client_secret_basic','private_key_jwt')),
    secret_hash {blob},
    permissions TEXT NOT NULL DEFAULT '[]',
    created_at  {int} NOT NULL,
    last_login  {int},
    CHECK ((auth_method = 'client_secret_basic') = (secret_hash IS NOT NULL))
);
CREATE INDEX service_accounts_company ON service_accounts(company_id);
CREATE TABLE service_account_keys (
    client_id  TEXT NOT NULL REFERENCES service_accounts(client_id) ON DELETE CASCADE,
    kid        TEXT NOT NULL,
    n          TEXT NOT NULL,
    e          TEXT NOT NULL,
    created_at {int} NOT NULL,
    PRIMARY KEY (client_id, kid)
);
"#,
    // 2: role bindings and the project directory.
    r#"
CREATE TABLE bindings (
    binding_id TEXT PRIMARY KEY,
    doc        TEXT NOT NULL
);
CREATE TABLE projects (
    project_id   TEXT PRIMARY KEY,
    company_id   TEXT NOT NULL,
    environments TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX projects_company ON projects(company_id);
"#,
    // 3: secret rotation, unique names per owner, the audit log.
    r#"
ALTER TABLE service_accounts ADD COLUMN retired_secret_hash {blob};
ALTER TABLE service_accounts ADD COLUMN retired_secret_until {int};
CREATE UNIQUE INDEX service_accounts_name ON service_accounts ((COALESCE(company_id, '')), name);
CREATE TABLE audit_log (
    id     {serial_key},
    at     {int} NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    before TEXT,
    after  TEXT
);
"#,
    // 4: the replay record of client assertions shared by a cluster.
    r#"
CREATE TABLE assertion_jtis (
    client_id  TEXT NOT NULL,
    jti        TEXT NOT NULL,
    expires_at {int} NOT NULL,
    PRIMARY KEY (client_id, jti)
);
CREATE INDEX assertion_jtis_expiry ON assertion_jtis (expires_at);
"#,
    // 5: documents a cluster shares (the sealed key set, the pepper check).
    r#"
CREATE TABLE shared_state (
    name    TEXT PRIMARY KEY,
    version {int} NOT NULL,
    value   {blob} NOT NULL
);
"#,
    // 6: the indexes PostgreSQL's own first step lacked (present on SQLite since steps 1–2).
    r#"
CREATE INDEX IF NOT EXISTS service_accounts_company ON service_accounts(company_id);
CREATE INDEX IF NOT EXISTS projects_company ON projects(company_id);
"#,
];

/// Added to the step count recorded in PostgreSQL's `iamgate_schema.version`.
pub const PG_VERSION_BASE: i32 = 100;

/// Number of steps.
pub fn len() -> usize {
    MIGRATIONS.len()
}

/// Step `i` (0-based) rendered for `dialect`.
pub fn step(i: usize, dialect: Dialect) -> Option<String> {
    let (int, blob, serial_key) = match dialect {
        Dialect::Sqlite => ("INTEGER", "BLOB", "INTEGER PRIMARY KEY AUTOINCREMENT"),
        Dialect::Postgres => ("BIGINT", "BYTEA", "BIGSERIAL PRIMARY KEY"),
    };
    MIGRATIONS.get(i).map(|sql| {
        sql.replace("{int}", int)
            .replace("{blob}", blob)
            .replace("{serial_key}", serial_key)
    })
}

/// The number of steps done in a PostgreSQL database whose `iamgate_schema.version` is
/// `recorded`: a value below [`PG_VERSION_BASE`] was written by the earlier, PostgreSQL-only
/// list (its step 1 created what steps 1–4 here do, minus two indexes; its step 2 is step 5).
pub fn from_legacy_pg(recorded: i32) -> Option<usize> {
    match recorded {
        r if r >= PG_VERSION_BASE => usize::try_from(r - PG_VERSION_BASE).ok(),
        0 => Some(0),
        1 => Some(4),
        2 => Some(5),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_is_rendered_for_both_dialects() {
        for d in [Dialect::Sqlite, Dialect::Postgres] {
            for i in 0..len() {
                let sql = step(i, d).unwrap();
                assert!(
                    !sql.contains('{') && !sql.contains('}'),
                    "{d:?} step {i}: {sql}"
                );
            }
        }
        assert!(step(len(), Dialect::Sqlite).is_none());
    }

    #[test]
    fn legacy_postgres_versions_map_onto_the_shared_steps() {
        assert_eq!(from_legacy_pg(0), Some(0));
        assert_eq!(from_legacy_pg(1), Some(4));
        assert_eq!(from_legacy_pg(2), Some(5));
        assert_eq!(from_legacy_pg(3), None);
        assert_eq!(from_legacy_pg(PG_VERSION_BASE + 6), Some(6));
    }
}
