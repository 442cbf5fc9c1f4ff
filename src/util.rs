//! Small encoding helpers shared by the token signer, the client-key parser and the CLI: base64url
//! without padding (the JOSE alphabet), PEM armour, randomness, and the clock; one container,
//! [`ttl_cache::TtlCache`]; and the connection [`workers`] (one runtime per core). They sit below every layer (with [`crate::error`], the lowest) and
//! hold no global state beyond the worker index of a thread.

pub mod ttl_cache;
pub mod workers;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use std::time::{SystemTime, UNIX_EPOCH};

/// Encodes bytes as base64url without padding (RFC 7515 §2).
pub fn b64url(data: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// RFC 7638 thumbprint of an RSA public key given its base64url `n` and `e`.
pub fn rsa_thumbprint(n_b64: &str, e_b64: &str) -> String {
    // Members in lexicographic order, no whitespace: the canonical form of RFC 7638 §3.
    let canonical = format!(r#"{{"e":"{e_b64}","kty":"RSA","n":"{n_b64}"}}"#);
    b64url(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        canonical.as_bytes(),
    ))
}

/// Decodes base64url without padding; `None` on any non-alphabet byte or padding.
pub fn b64url_decode(data: impl AsRef<[u8]>) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(data).ok()
}

/// Appends the base64url encoding of `data` to `out` without an intermediate allocation.
pub fn b64url_into(data: impl AsRef<[u8]>, out: &mut String) {
    URL_SAFE_NO_PAD.encode_string(data, out);
}

/// `n` bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], aws_lc_rs::error::Unspecified> {
    let mut buf = [0u8; N];
    SystemRandom::new().fill(&mut buf)?;
    Ok(buf)
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// One PEM block: its label (`PUBLIC KEY`, `RSA PRIVATE KEY`, …) and DER contents.
#[derive(Debug)]
pub struct PemBlock {
    /// The label between `-----BEGIN ` and `-----`.
    pub label: String,
    /// The decoded body.
    pub der: Vec<u8>,
}

/// Parses the first PEM block of `text`. Returns `None` when there is no well-formed block.
///
/// Written here rather than taken from `rustls-pki-types` because that parser does not know the
/// `RSA PUBLIC KEY` (PKCS#1) label, which the Console's clients send.
pub fn pem_decode(text: &str) -> Option<PemBlock> {
    let start = text.find("-----BEGIN ")?;
    let rest = &text[start + "-----BEGIN ".len()..];
    let label_end = rest.find("-----")?;
    let label = rest[..label_end].to_owned();
    let body_start = &rest[label_end + 5..];
    let end_marker = format!("-----END {label}-----");
    let end = body_start.find(&end_marker)?;
    let b64: String = body_start[..end]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let der = STANDARD.decode(b64).ok()?;
    Some(PemBlock { label, der })
}

/// Wraps DER bytes in PEM armour with 64-column lines.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Creates `dir` (and missing parents) owner-only (0700 on Unix) when it does not exist yet: the
/// data directory holds the database, keys and the pepper. An existing directory is left as the
/// operator set it.
pub fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    if dir.as_os_str().is_empty() || dir.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Restricts an existing file to its owner (0600 on Unix).
pub fn make_private(path: &std::path::Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    let _ = path;
    Ok(())
}

/// A file's size and modification time, through symlinks (a mounted Secret or ConfigMap swaps
/// its files behind `..data`); `None` when it cannot be read.
type FileStamp = Option<(u64, std::time::SystemTime)>;

fn file_stamp(path: &std::path::Path) -> FileStamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

/// The one change check of the files reloaded while serving (TLS certificate and key, route
/// file, JWKS files): their stamps, compared with the ones last marked seen, instead of reading
/// the files on every look. The caller decides when a change counts as seen: after a
/// successful load (a broken file is tried again next time) or at once.
#[derive(Debug)]
pub struct FileWatch {
    paths: Vec<std::path::PathBuf>,
    seen: Vec<FileStamp>,
}

/// The stamps [`FileWatch::changed`] found, to hand back to [`FileWatch::mark_seen`].
#[derive(Debug, PartialEq, Eq)]
pub struct FileStamps(Vec<FileStamp>);

impl FileWatch {
    /// Watches `paths`, their current state counting as seen.
    pub fn new(paths: Vec<std::path::PathBuf>) -> Self {
        let seen = paths.iter().map(|p| file_stamp(p)).collect();
        Self { paths, seen }
    }

    /// The files' stamps now, if any differs from the ones last marked seen.
    pub fn changed(&self) -> Option<FileStamps> {
        let now: Vec<FileStamp> = self.paths.iter().map(|p| file_stamp(p)).collect();
        (now != self.seen).then_some(FileStamps(now))
    }

    /// Marks `stamps` (from [`changed`](Self::changed)) as seen.
    pub fn mark_seen(&mut self, stamps: FileStamps) {
        self.seen = stamps.0;
    }
}

/// Reads at most `max` bytes of `path`; a longer file is an error (`InvalidData`), so that a
/// path to a device or a huge file cannot exhaust memory.
pub fn read_bounded(path: &std::path::Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    std::fs::File::open(path)?
        .take(max.saturating_add(1))
        .read_to_end(&mut out)?;
    if out.len() as u64 > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("longer than {max} bytes"),
        ));
    }
    Ok(out)
}

/// Writes `contents` to `path` atomically (temporary file + rename) with mode 0600 on Unix, so a
/// crash never leaves a half-written key or credential file and no other user can read it.
pub fn write_private_file(path: &std::path::Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    create_private_dir(dir)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// Runs `tick` every `every` until `shutdown` flips, then once more when `last_run` is set (for
/// work that must flush on the way out). Missed ticks are delayed, never bunched up.
pub fn spawn_periodic<F, Fut>(
    every: std::time::Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    last_run: bool,
    mut tick: F,
) where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let stop = tokio::select! {
                _ = interval.tick() => false,
                _ = shutdown.changed() => true,
            };
            if stop {
                if last_run {
                    tick().await;
                }
                break;
            }
            tick().await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip_keeps_label_and_bytes() {
        let der: Vec<u8> = (0..=255u8).collect();
        let pem = pem_encode("RSA PUBLIC KEY", &der);
        let block = pem_decode(&pem).unwrap();
        assert_eq!(block.label, "RSA PUBLIC KEY");
        assert_eq!(block.der, der);
    }

    #[test]
    fn pem_decode_rejects_mismatched_end_and_garbage() {
        assert!(pem_decode("-----BEGIN A-----\nAAAA\n-----END B-----\n").is_none());
        assert!(pem_decode("-----BEGIN A-----\n!!!!\n-----END A-----\n").is_none());
        assert!(pem_decode("no pem here").is_none());
    }

    #[test]
    fn b64url_has_no_padding() {
        assert_eq!(b64url([0xfbu8, 0xff]), "-_8");
        assert_eq!(b64url_decode("-_8").unwrap(), vec![0xfb, 0xff]);
        assert!(b64url_decode("-_8=").is_none());
    }
}
