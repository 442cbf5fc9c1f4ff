//! TLS to PostgreSQL with a private CA: a throwaway PostgreSQL that accepts TLS connections
//! only, serving a certificate for `db.iamgate.test` issued by a CA made here with openssl.
//! `verify-full` connects when the URL names that host and refuses another name; `verify-ca`
//! accepts any name under the CA; a foreign CA, or the public roots, are refused in every mode.
//! Needs Debian's `postgresql` and `openssl`; without them the test says so and skips, except in
//! CI (`IAMGATE_TEST_DATABASE_URL` set), where it fails.

use iamgate::config::{DatabaseSettings, PgSslMode, PgTls};
use iamgate::store::postgres::PgStore;
use std::path::{Path, PathBuf};
use std::process::Command;

fn pg_bin() -> Option<PathBuf> {
    let mut bins: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| Some(e.ok()?.path().join("bin")))
        .filter(|b| b.join("initdb").exists())
        .collect();
    bins.sort();
    bins.pop()
}

/// Runs `cmd` as the `postgres` user when we are root (PostgreSQL refuses to run as root).
fn as_pg(program: &Path) -> Command {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false);
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn openssl(dir: &Path, args: &[&str]) {
    run(Command::new("openssl").current_dir(dir).args(args));
}

/// A CA (`NAME-ca.pem`, `NAME-ca.key`), and with `server`, a server certificate it issued for
/// `db.iamgate.test` (`server.crt`, `server.key`).
fn make_ca(dir: &Path, name: &str, server: bool) {
    let (key, cert) = (format!("{name}-ca.key"), format!("{name}-ca.pem"));
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            &key,
            "-out",
            &cert,
            "-subj",
            &format!("/CN=iamgate test CA {name}"),
        ],
    );
    if server {
        std::fs::write(
            dir.join("san.ext"),
            "subjectAltName=DNS:db.iamgate.test\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=db.iamgate.test",
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                &cert,
                "-CAkey",
                &key,
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                "server.crt",
                "-extfile",
                "san.ext",
            ],
        );
    }
}

/// A PostgreSQL cluster that takes TLS connections only; stopped and removed on drop.
struct TlsPostgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let _ = as_pg(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

fn free_port() -> u16 {
    // Below the ephemeral range, so that no outgoing connection holds it meanwhile.
    for _ in 0..200 {
        let port = 20_000 + (rand_u16() % 10_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port");
}

fn rand_u16() -> u16 {
    let b = uuid::Uuid::new_v4().into_bytes();
    u16::from_le_bytes([b[0], b[1]])
}

fn start_tls_postgres(bin: PathBuf, certs: &Path) -> TlsPostgres {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    run(Command::new("chmod").arg("755").arg(dir.path()));
    let _ = Command::new("chown")
        .arg("postgres")
        .arg(dir.path())
        .output();
    run(as_pg(&bin.join("initdb")).arg("-D").arg(&data).args([
        "-U",
        "postgres",
        "--auth=trust",
        "-E",
        "UTF8",
    ]));
    for f in ["server.crt", "server.key"] {
        std::fs::copy(certs.join(f), data.join(f)).unwrap();
    }
    run(Command::new("chmod")
        .arg("600")
        .arg(data.join("server.key")));
    let _ = Command::new("chown")
        .arg("postgres")
        .arg(data.join("server.crt"))
        .arg(data.join("server.key"))
        .output();
    // TLS connections only: a connection that is not TLS finds no pg_hba entry.
    std::fs::write(
        data.join("pg_hba.conf"),
        "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
    )
    .unwrap();
    let port = free_port();
    run(as_pg(&bin.join("pg_ctl"))
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(dir.path().join("server.log"))
        .args(["-w", "-t", "30", "-o"])
        .arg(format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c ssl=on -c fsync=off",
            dir.path().display()
        ))
        .arg("start"));
    TlsPostgres {
        bin,
        data,
        port,
        _dir: dir,
    }
}

async fn open(url: &str, mode: PgSslMode, root_cert: Option<&Path>) -> Result<PgStore, String> {
    PgStore::open_with(
        url,
        &PgTls {
            mode,
            root_cert: root_cert.map(Path::to_path_buf),
        },
    )
    .await
    .map_err(|e| e.to_string())
}

#[tokio::test]
async fn a_private_ca_is_trusted_and_verify_full_checks_the_name() {
    let (Some(bin), true) = (
        pg_bin(),
        Command::new("openssl").arg("version").output().is_ok(),
    ) else {
        assert!(
            std::env::var_os("IAMGATE_TEST_DATABASE_URL").is_none(),
            "CI must run the database TLS test: postgresql or openssl is missing"
        );
        println!(
            "SKIPPED: database TLS test needs postgresql and openssl (apt-get install postgresql)"
        );
        return;
    };
    let certs = tempfile::tempdir().unwrap();
    make_ca(certs.path(), "private", true);
    make_ca(certs.path(), "foreign", false);
    let ca = certs.path().join("private-ca.pem");
    let foreign = certs.path().join("foreign-ca.pem");
    let pg = start_tls_postgres(bin, certs.path());
    // The name the certificate carries, reached at the loopback address; and another name.
    let named = |host: &str| {
        format!(
            "postgres://postgres@{host}:{}/postgres?hostaddr=127.0.0.1&connect_timeout=5",
            pg.port
        )
    };
    let (right, wrong) = (named("db.iamgate.test"), named("other.iamgate.test"));

    // verify-full with the private CA and the right name: connected (and migrated).
    let store = open(&right, PgSslMode::VerifyFull, Some(&ca)).await;
    assert!(store.is_ok(), "{:?}", store.err());
    // The wrong name: refused, and the error says why.
    let e = open(&wrong, PgSslMode::VerifyFull, Some(&ca))
        .await
        .err()
        .unwrap();
    assert!(e.to_lowercase().contains("name"), "{e}");
    // require verifies as verify-full.
    assert!(open(&wrong, PgSslMode::Require, Some(&ca)).await.is_err());
    assert!(open(&right, PgSslMode::Require, Some(&ca)).await.is_ok());
    // verify-ca: any name under the CA.
    let store = open(&wrong, PgSslMode::VerifyCa, Some(&ca)).await;
    assert!(store.is_ok(), "{:?}", store.err());
    // Another CA, or the public roots: refused in every mode, the name right or not.
    for mode in [
        PgSslMode::VerifyFull,
        PgSslMode::VerifyCa,
        PgSslMode::Require,
        PgSslMode::Prefer,
    ] {
        for root in [Some(foreign.as_path()), None] {
            let e = open(&right, mode, root).await.err();
            assert!(e.is_some(), "{mode:?} {root:?} connected");
        }
    }
    // The server takes TLS only: without it there is no way in.
    assert!(open(&right, PgSslMode::Disable, None).await.is_err());

    // End to end: the gateway starts on this database from its configuration, with the TLS
    // options in the URL as PostgreSQL clients write them.
    let url = format!("{right}&sslmode=verify-full&sslrootcert={}", ca.display());
    let yaml = format!("database_url: \"{url}\"\nsecret_pepper: tls-test-pepper-0123456789\n");
    let gw = crate::common::gateway().with(&yaml).start().await;
    let (id, secret) = gw.secret_client().await;
    assert_eq!(gw.token_basic(&id, &secret).await.status, 200);
    drop(gw);
    let raw = iamgate::config::parse_yaml(&yaml).unwrap();
    assert!(matches!(
        raw.validate().unwrap().database,
        DatabaseSettings::Postgres {
            tls: PgTls {
                mode: PgSslMode::VerifyFull,
                ..
            },
            ..
        }
    ));
    let e =
        crate::common::start_error(&yaml.replace("db.iamgate.test", "other.iamgate.test")).await;
    assert!(e.to_lowercase().contains("name"), "{e}");
    assert!(!e.contains("tls-test-pepper"), "{e}");
}
