//! The statements both stores run, written once in PostgreSQL's placeholder style (`$1`);
//! [`sqlite`] rewrites the placeholders for SQLite (`?1`). [`plan`] turns each [`Write`] into
//! its statements with their parameters, so both stores carry out a write the same way and
//! differ only in how they bind and run a statement. What only one store runs (PostgreSQL's
//! notifications and replay record, SQLite's last-login update) stays in that store's file.

use super::{StoreError, Write};
use crate::model::{Credential, IamChange, Owner};

/// One public key of an account.
pub const INSERT_KEY: &str = "INSERT INTO service_account_keys (client_id, kid, n, e, created_at) VALUES ($1, $2, $3, $4, $5)";

/// An account row.
pub const INSERT_ACCOUNT: &str = "INSERT INTO service_accounts (client_id, name, company_id, auth_method, secret_hash, permissions, created_at, last_login) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// An account (its keys go with it).
pub const DELETE_ACCOUNT: &str = "DELETE FROM service_accounts WHERE client_id = $1";

/// An account's secret hash and retired secret.
pub const UPDATE_CREDENTIAL: &str = "UPDATE service_accounts SET secret_hash = $2, retired_secret_hash = $3, retired_secret_until = $4 WHERE client_id = $1";

/// Every key of an account.
pub const DELETE_KEYS: &str = "DELETE FROM service_account_keys WHERE client_id = $1";

/// One audit record.
pub const INSERT_AUDIT: &str = "INSERT INTO audit_log (at, actor, action, target, before, after) VALUES ($1, $2, $3, $4, $5, $6)";

/// The newest audit records.
pub const SELECT_AUDIT: &str =
    "SELECT at, actor, action, target, before, after FROM audit_log ORDER BY id DESC LIMIT $1";

/// A binding.
pub const DELETE_BINDING: &str = "DELETE FROM bindings WHERE binding_id = $1";

/// A project.
pub const DELETE_PROJECT: &str = "DELETE FROM projects WHERE project_id = $1";

/// Inserts or replaces a binding.
pub const PUT_BINDING: &str = "INSERT INTO bindings (binding_id, doc) VALUES ($1, $2) ON CONFLICT (binding_id) DO UPDATE SET doc = excluded.doc";

/// Inserts or replaces a project.
pub const PUT_PROJECT: &str = "INSERT INTO projects (project_id, company_id, environments) VALUES ($1, $2, $3) ON CONFLICT (project_id) DO UPDATE SET company_id = excluded.company_id, environments = excluded.environments";

/// A statement parameter, in the types the schema uses.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// `TEXT NOT NULL`.
    Text(String),
    /// `TEXT`, maybe null.
    OptText(Option<String>),
    /// An integer column.
    Int(i64),
    /// An integer column, maybe null.
    OptInt(Option<i64>),
    /// A blob column, maybe null.
    OptBlob(Option<Vec<u8>>),
}

/// One statement of a write.
#[derive(Debug, Clone, PartialEq)]
pub struct Stmt {
    /// The statement, `$N` placeholders.
    pub sql: &'static str,
    /// Its parameters, in placeholder order.
    pub params: Vec<Param>,
    /// The conflict a unique-constraint violation means, if any.
    pub on_unique: Option<String>,
    /// When set, the statement must change a row; otherwise the write is refused as this
    /// conflict.
    pub must_change: Option<String>,
}

impl Stmt {
    fn new(sql: &'static str, params: Vec<Param>) -> Self {
        Self {
            sql,
            params,
            on_unique: None,
            must_change: None,
        }
    }
}

/// A value stored as JSON text.
fn json<T: serde::Serialize + ?Sized>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn text(s: &str) -> Param {
    Param::Text(s.to_owned())
}

fn key_rows(out: &mut Vec<Stmt>, client_id: &str, credential: &Credential, now: i64) {
    if let Credential::Keys(keys) = credential {
        for k in keys {
            out.push(Stmt {
                on_unique: Some(format!("duplicate kid {}", k.kid)),
                ..Stmt::new(
                    INSERT_KEY,
                    vec![
                        text(client_id),
                        text(&k.kid),
                        text(&k.n),
                        text(&k.e),
                        Param::Int(now),
                    ],
                )
            });
        }
    }
}

/// The statements that carry out `w`, in order; `now` dates keys a credential change adds.
pub fn plan(w: &Write, now: i64) -> Result<Vec<Stmt>, StoreError> {
    let mut out = Vec::new();
    match w {
        Write::InsertAccount(a) => {
            let company = match &a.owner {
                Owner::Root => None,
                Owner::Company(c) => Some(c.clone()),
            };
            out.push(Stmt {
                on_unique: Some(format!("a service account named {:?} exists", a.name)),
                ..Stmt::new(
                    INSERT_ACCOUNT,
                    vec![
                        text(&a.client_id),
                        text(&a.name),
                        Param::OptText(company),
                        text(a.credential.method().as_str()),
                        Param::OptBlob(super::columns::secret_hash(&a.credential)),
                        Param::Text(json(&a.permissions)?),
                        Param::Int(a.created_at),
                        Param::OptInt(a.last_login),
                    ],
                )
            });
            key_rows(&mut out, &a.client_id, &a.credential, a.created_at);
        }
        Write::DeleteAccount(id) => out.push(Stmt::new(DELETE_ACCOUNT, vec![text(id)])),
        Write::UpdateCredential {
            client_id,
            credential,
            retired_secret,
        } => {
            let (rh, ru) = super::columns::retired(retired_secret);
            out.push(Stmt {
                must_change: Some(format!("no account {client_id}")),
                ..Stmt::new(
                    UPDATE_CREDENTIAL,
                    vec![
                        text(client_id),
                        Param::OptBlob(super::columns::secret_hash(credential)),
                        Param::OptBlob(rh),
                        Param::OptInt(ru),
                    ],
                )
            });
            out.push(Stmt::new(DELETE_KEYS, vec![text(client_id)]));
            key_rows(&mut out, client_id, credential, now);
        }
        Write::Iam(IamChange::PutBinding(b)) => out.push(Stmt::new(
            PUT_BINDING,
            vec![text(&b.binding_id), Param::Text(json(b)?)],
        )),
        Write::Iam(IamChange::DeleteBinding(id)) => {
            out.push(Stmt::new(DELETE_BINDING, vec![text(id)]));
        }
        Write::Iam(IamChange::PutProject(p)) => out.push(Stmt::new(
            PUT_PROJECT,
            vec![
                text(&p.project_id),
                text(&p.company_id),
                Param::Text(json(&p.environments)?),
            ],
        )),
        Write::Iam(IamChange::DeleteProject(id)) => {
            out.push(Stmt::new(DELETE_PROJECT, vec![text(id)]));
        }
        Write::Audit(r) => out.push(Stmt::new(
            INSERT_AUDIT,
            vec![
                Param::Int(r.at),
                text(&r.actor),
                text(&r.action),
                text(&r.target),
                Param::OptText(super::columns::json_text(&r.before)),
                Param::OptText(super::columns::json_text(&r.after)),
            ],
        )),
    }
    Ok(out)
}

/// `sql` with `$N` placeholders written as `?N`.
pub fn sqlite(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_are_rewritten_and_nothing_else() {
        assert_eq!(
            super::sqlite("UPDATE t SET a = $2, b = '$x' WHERE id = $1"),
            "UPDATE t SET a = ?2, b = '$x' WHERE id = ?1"
        );
    }
}
