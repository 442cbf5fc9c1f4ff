//! `database_url`: where accounts, bindings and keys persist, and for PostgreSQL how the
//! connection is secured. The TLS options are read out of the URL's query (`sslmode`,
//! `sslrootcert`, named as PostgreSQL's own clients name them) and the rest of the URL goes to
//! the driver unchanged.

use super::Secret;
use std::path::PathBuf;

/// Where accounts and keys persist.
#[derive(Debug, Clone)]
pub enum DatabaseSettings {
    /// Embedded SQLite file.
    Sqlite(PathBuf),
    /// PostgreSQL.
    Postgres {
        /// The URL without the TLS options (it may hold a password: never logged).
        url: Secret,
        /// How the connection is secured.
        tls: PgTls,
    },
}

/// TLS to PostgreSQL. Unlike libpq, iamgate never accepts a certificate it has not verified:
/// every mode that uses TLS checks the chain, and all but `verify-ca` the name too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgTls {
    /// `sslmode`.
    pub mode: PgSslMode,
    /// `sslrootcert`: the CA certificates (PEM) the server's chain must end in, instead of the
    /// public roots (`system`, or absent).
    pub root_cert: Option<PathBuf>,
}

/// `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgSslMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it (the default, as in libpq), verified as `verify-full`.
    Prefer,
    /// TLS or no connection, verified as `verify-full` (libpq would not verify at all).
    Require,
    /// TLS or no connection; the chain is verified, the name is not (a database reached through
    /// an address or a proxy its certificate does not name).
    VerifyCa,
    /// TLS or no connection; the chain and the name are verified.
    VerifyFull,
}

impl PgSslMode {
    fn parse(v: &str) -> Option<Self> {
        Some(match v {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            _ => return None,
        })
    }

    /// Whether the connection fails rather than go without TLS.
    pub fn requires_tls(self) -> bool {
        matches!(self, Self::Require | Self::VerifyCa | Self::VerifyFull)
    }
}

/// Reads a `postgres://` URL: takes `sslmode` and `sslrootcert` out of its query, checks them
/// (the CA file must hold at least one certificate), and leaves every other parameter as it was.
/// Messages never quote the URL.
pub(super) fn postgres(url: &Secret, errs: &mut Vec<String>) -> DatabaseSettings {
    let u = url.expose();
    let (base, query) = match u.split_once('?') {
        Some((b, q)) => (b, q),
        None => (u, ""),
    };
    let mut kept = Vec::new();
    let mut tls = PgTls {
        mode: PgSslMode::Prefer,
        root_cert: None,
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = form_urlencoded::parse(pair.as_bytes())
            .next()
            .unwrap_or_default();
        match &*key {
            "sslmode" => match PgSslMode::parse(&value) {
                Some(m) => tls.mode = m,
                None => errs.push(format!(
                    "database_url: sslmode `{value}` is not one of disable, prefer, require, verify-ca, verify-full"
                )),
            },
            "sslrootcert" if value == "system" => tls.root_cert = None,
            "sslrootcert" => {
                let path = PathBuf::from(&*value);
                if let Err(e) = read_roots(&path) {
                    errs.push(format!("database_url: sslrootcert {e}"));
                }
                tls.root_cert = Some(path);
            }
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    DatabaseSettings::Postgres {
        url: Secret::new(url),
        tls,
    }
}

/// The CA certificates of a PEM file; an error names the file and what is wrong.
pub fn read_roots(
    path: &std::path::Path,
) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, String> {
    use rustls_pki_types::pem::PemObject;
    let certs: Vec<_> = rustls_pki_types::CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(url: &str) -> (DatabaseSettings, Vec<String>) {
        let mut errs = Vec::new();
        (postgres(&Secret::new(url), &mut errs), errs)
    }

    #[test]
    fn tls_options_are_taken_out_and_the_rest_is_left_alone() {
        let (d, errs) = read(
            "postgres://u:p%40ss@db:5432/iam?application_name=a%20b&sslmode=verify-ca&connect_timeout=5&sslrootcert=system",
        );
        assert!(errs.is_empty(), "{errs:?}");
        let DatabaseSettings::Postgres { url, tls } = d else {
            panic!()
        };
        assert_eq!(
            url.expose(),
            "postgres://u:p%40ss@db:5432/iam?application_name=a%20b&connect_timeout=5"
        );
        assert_eq!(
            tls,
            PgTls {
                mode: PgSslMode::VerifyCa,
                root_cert: None
            }
        );
        let (d, _) = read("postgres://db/iam");
        let DatabaseSettings::Postgres { url, tls } = d else {
            panic!()
        };
        assert_eq!(url.expose(), "postgres://db/iam");
        assert_eq!(tls.mode, PgSslMode::Prefer);
    }

    #[test]
    fn bad_modes_and_ca_files_are_named_without_the_url() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate").unwrap();
        let (_, errs) = read(&format!(
            "postgres://u:hunter2@db/iam?sslmode=allow&sslrootcert={}",
            empty.display()
        ));
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].contains("sslmode `allow`"), "{errs:?}");
        assert!(errs[1].contains("no PEM certificate"), "{errs:?}");
        let (_, errs) = read("postgres://u:hunter2@db/iam?sslrootcert=/nonexistent/ca.pem");
        assert!(errs[0].contains("/nonexistent/ca.pem"), "{errs:?}");
        assert!(errs.iter().all(|e| !e.contains("hunter2")));
    }
}
