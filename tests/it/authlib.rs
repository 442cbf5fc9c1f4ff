//! Runs the Python suites (`tests/python`) against real `iamgate serve` processes: Authlib, a
//! widely used third-party OAuth client, obtains tokens with both authentication methods; and
//! Playwright drives Debian's Chromium through the web console. The virtualenv they run in is
//! created here when missing (or when the pinned requirements changed), so that `cargo test` on
//! a fresh machine needs nothing run before it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The virtualenv's pytest, after creating the virtualenv and installing the pinned requirements
/// if `.venv/.requirements` does not hold the current ones. Under a file lock: several test
/// processes may start at once.
fn venv(root: &Path) -> PathBuf {
    let lock = std::fs::File::create(std::env::temp_dir().join("iamgate-venv.lock")).unwrap();
    lock.lock().unwrap();
    let requirements = std::fs::read_to_string(root.join("tests/python/requirements.txt")).unwrap();
    let marker = root.join(".venv/.requirements");
    let pytest = root.join(".venv/bin/pytest");
    if pytest.exists() && std::fs::read_to_string(&marker).ok().as_deref() == Some(&requirements) {
        return pytest;
    }
    let run = |cmd: &mut Command| {
        let status = cmd.current_dir(root).status().unwrap();
        assert!(status.success(), "{cmd:?} failed: {status}");
    };
    if !root.join(".venv/bin/pip").exists() {
        run(Command::new("python3").args(["-m", "venv", ".venv"]));
    }
    run(Command::new(root.join(".venv/bin/pip")).args([
        "install",
        "-q",
        "--disable-pip-version-check",
        "-r",
        "tests/python/requirements.txt",
    ]));
    std::fs::write(&marker, requirements).unwrap();
    pytest
}

/// Runs one file of the Python suite with pytest (bounded), and asserts it passed.
fn pytest(file: &str, what: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let pytest = venv(root);
    let mut child = Command::new(&pytest)
        .args(["-q", "-s", "-p", "no:cacheprovider", file])
        .current_dir(root)
        .env("IAMGATE_BIN", env!("CARGO_BIN_EXE_iamgate"))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("pytest {file} did not finish within 180 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{what} failed: {status}");
}

#[test]
fn authlib_client_gets_tokens_with_both_methods() {
    pytest("tests/python/test_authlib.py", "the Authlib suite");
}

#[test]
fn the_console_works_in_a_real_browser() {
    pytest(
        "tests/python/test_console.py",
        "the console's browser suite",
    );
}
