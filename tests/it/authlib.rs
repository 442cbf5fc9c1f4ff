//! Runs the Python suite (`tests/python`), where Authlib, a widely used third-party OAuth client,
//! obtains tokens from a real `iamgate serve` process with both authentication methods.
//! `.ci/setup` creates the virtualenv; without it this test fails and says so.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn authlib_client_gets_tokens_with_both_methods() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let pytest = root.join(".venv/bin/pytest");
    assert!(
        pytest.exists(),
        "{} is missing: run .ci/setup once to create the Python virtualenv",
        pytest.display()
    );
    let mut child = Command::new(&pytest)
        .args(["-q", "-p", "no:cacheprovider", "tests/python"])
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
            panic!("pytest did not finish within 180 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "the Authlib suite failed: {status}");
}
