//! Reading a policy folder: every `*.rego` file (any package, any number of files) and every
//! `*.json` data file, in a stable order, with a content hash that names the revision.

use super::PolicyError;
use aws_lc_rs::digest;
use std::path::{Path, PathBuf};

/// Largest single policy or data file accepted.
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// The contents of a policy folder.
#[derive(Debug, Clone)]
pub struct PolicySource {
    /// The folder.
    pub dir: PathBuf,
    /// `(relative path, text)` of every `.rego` file, sorted by path.
    pub modules: Vec<(String, String)>,
    /// `(relative path, text)` of every `.json` data file, sorted by path.
    pub data: Vec<(String, String)>,
    /// SHA-256 over names and contents, hex (first 16 characters): the policy revision.
    pub revision: String,
}

impl PolicySource {
    /// Reads `dir` and its subfolders (per-team folders), skipping hidden files.
    pub fn read(dir: &Path) -> Result<Self, PolicyError> {
        let mut names = Vec::new();
        collect(dir, dir, 0, &mut names)?;
        let mut files = Vec::with_capacity(names.len());
        for rel in names {
            let path = dir.join(&rel);
            let meta = std::fs::metadata(&path).map_err(|e| PolicyError::io(&path, e))?;
            if meta.len() > MAX_FILE_BYTES {
                return Err(PolicyError::Load(format!("{rel}: larger than 4 MiB")));
            }
            let text = std::fs::read_to_string(&path).map_err(|e| PolicyError::io(&path, e))?;
            files.push((rel, text));
        }
        let source = Self::from_files(dir, files);
        if source.modules.is_empty() {
            return Err(PolicyError::Load(format!(
                "{}: no .rego files",
                dir.display()
            )));
        }
        Ok(source)
    }

    /// Builds a source from in-memory `(name, text)` files.
    pub fn from_files(dir: &Path, mut files: Vec<(String, String)>) -> Self {
        files.sort();
        let mut modules = Vec::new();
        let mut data = Vec::new();
        let mut ctx = digest::Context::new(&digest::SHA256);
        for (rel, text) in files {
            ctx.update(rel.as_bytes());
            ctx.update(&[0]);
            ctx.update(text.as_bytes());
            ctx.update(&[0]);
            if rel.ends_with(".rego") {
                modules.push((rel, text));
            } else {
                data.push((rel, text));
            }
        }
        let hash = ctx.finish();
        let revision: String = hash.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Self {
            dir: dir.to_owned(),
            modules,
            data,
            revision,
        }
    }

    /// Builds a regorus engine with the modules (test files only when `with_tests`) and data.
    pub fn engine(&self, with_tests: bool) -> Result<regorus::Engine, PolicyError> {
        self.engine_with(|name, _| with_tests || !is_test_file(name))
    }

    /// Builds a regorus engine with the modules `keep(name, text)` selects, and every data file.
    pub fn engine_with(
        &self,
        keep: impl Fn(&str, &str) -> bool,
    ) -> Result<regorus::Engine, PolicyError> {
        let mut engine = regorus::Engine::new();
        engine.set_strict_builtin_errors(true);
        for (name, text) in &self.modules {
            if !keep(name, text) {
                continue;
            }
            engine
                .add_policy(name.clone(), text.clone())
                .map_err(|e| PolicyError::Compile(format!("{e}")))?;
        }
        for (name, text) in &self.data {
            let value = regorus::Value::from_json_str(text)
                .map_err(|e| PolicyError::Load(format!("{name}: {e}")))?;
            if value.as_object().is_err() {
                return Err(PolicyError::Load(format!(
                    "{name}: data must be a JSON object"
                )));
            }
            engine
                .add_data(value)
                .map_err(|e| PolicyError::Load(format!("{name}: {e}")))?;
        }
        Ok(engine)
    }

    /// `(package path, rule name)` of every `test_*` rule, in file order, without duplicates
    /// (a test written as several incremental definitions runs once).
    pub fn tests(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (_, text) in &self.modules {
            let Some(pkg) = package_of(text) else {
                continue;
            };
            for line in text.lines() {
                if !line.starts_with("test_") {
                    continue;
                }
                let name: String = line
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let entry = (pkg.to_owned(), name);
                if !out.contains(&entry) {
                    out.push(entry);
                }
            }
        }
        out
    }
}

/// The package a module declares (`iamgate.authz`), from its `package` line.
pub fn package_of(text: &str) -> Option<&str> {
    text.lines()
        .find_map(|line| line.strip_prefix("package "))
        .map(str::trim)
}

/// `*_test.rego` files hold tests and are not loaded into the serving policy.
pub fn is_test_file(name: &str) -> bool {
    name.ends_with("_test.rego")
}

fn collect(root: &Path, dir: &Path, depth: u32, out: &mut Vec<String>) -> Result<(), PolicyError> {
    let entries = std::fs::read_dir(dir).map_err(|e| PolicyError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| PolicyError::io(dir, e))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        // Followed through symlinks: a ConfigMap mounts each file as a symlink through `..data`
        // (hidden, like the timestamped folder it points to, so neither is read twice).
        // A dangling link is a file the kubelet is about to remove after a swap: not there.
        let ft = match std::fs::metadata(&path) {
            Ok(meta) => meta.file_type(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(PolicyError::io(&path, e)),
        };
        if ft.is_dir() && depth < 4 {
            collect(root, &path, depth + 1, out)?;
        } else if ft.is_file() && (name.ends_with(".rego") || name.ends_with(".json")) {
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            out.push(rel);
        }
    }
    Ok(())
}
