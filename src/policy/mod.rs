//! Policy decision point: Rego policies from `policies/`, compiled with regorus, decide every
//! request after authentication and route matching.
//!
//! A compiled [`engine::Snapshot`] (with its revision, the content hash of the folder) sits
//! behind an `ArcSwap` in the [`engine::PolicyEngine`]; requests read it without locks. The
//! [`reload`] watcher recompiles a changed folder, runs every `test_*` rule through the
//! [`testing`] runner and swaps only when all pass. A deny is a [`engine::Decision`], not an
//! error; evaluation errors and timeouts become denies too (fail closed).

pub mod coverage;
pub mod data;
pub mod engine;
pub mod input;
pub mod item_filter;
pub mod mutation;
pub mod reload;
pub mod replay;
pub mod source;
pub mod testing;

pub use engine::{Decision, PolicyEngine, Snapshot};
pub use input::DecisionInput;
pub use source::PolicySource;

use std::path::Path;

/// Why a policy could not be loaded. (A deny is not an error.)
#[derive(Debug, Clone, thiserror::Error)]
pub enum PolicyError {
    /// Files could not be read.
    #[error("cannot read policy: {0}")]
    Load(String),
    /// Rego did not parse or compile.
    #[error("policy does not compile: {0}")]
    Compile(String),
    /// The role model in the policy data is inconsistent, or names a permission it lacks.
    #[error("policy data is inconsistent: {}", .0.join("; "))]
    Data(Vec<String>),
    /// The policy's own tests failed.
    #[error("policy tests failed: {0}")]
    Tests(String),
}

impl PolicyError {
    fn io(path: &Path, e: std::io::Error) -> Self {
        Self::Load(format!("{}: {e}", path.display()))
    }
}

/// The shipped default policy, compiled into the binary so that `iamgate serve` works from any
/// directory; a policy folder on disk (hot-reloaded) takes precedence when present.
pub const EMBEDDED: &[(&str, &str)] = &[
    ("authz.rego", include_str!("../../policies/authz.rego")),
    (
        "authz_test.rego",
        include_str!("../../policies/authz_test.rego"),
    ),
    ("roles.json", include_str!("../../policies/roles.json")),
    ("tables.rego", include_str!("../../policies/tables.rego")),
    (
        "responses.rego",
        include_str!("../../policies/responses.rego"),
    ),
    (
        "responses_test.rego",
        include_str!("../../policies/responses_test.rego"),
    ),
];

/// The policy a deployment uses: the configured folder, else `./policies` when it holds an
/// `authz.rego`, else the embedded default. Returns the source and the folder, if any.
pub fn configured_source(
    dir: Option<&Path>,
) -> Result<(PolicySource, Option<std::path::PathBuf>), PolicyError> {
    let default_dir = Path::new("policies");
    let dir = match dir {
        Some(d) => Some(d.to_path_buf()),
        None if default_dir.join("authz.rego").is_file() => Some(default_dir.to_path_buf()),
        None => None,
    };
    let source = match &dir {
        Some(d) => PolicySource::read(d)?,
        None => embedded_source(),
    };
    Ok((source, dir))
}

/// The embedded default policy as a source.
pub fn embedded_source() -> PolicySource {
    PolicySource::from_files(
        Path::new("<embedded>"),
        EMBEDDED
            .iter()
            .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
            .collect(),
    )
}

#[cfg(test)]
mod embedded_tests {
    #[test]
    fn embedded_copy_holds_every_policy_file() {
        let mut on_disk: Vec<String> =
            std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/policies"))
                .unwrap()
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".rego") || n.ends_with(".json"))
                .collect();
        on_disk.sort();
        let mut embedded: Vec<String> =
            super::EMBEDDED.iter().map(|(n, _)| n.to_string()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded);
    }
}
