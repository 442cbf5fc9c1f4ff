//! The crate's layers, kept one-way: every `crate::…` path in `src/` (outside the `#[cfg(test)]`
//! module that closes a file) may name only a module of a lower layer. An import that runs up a
//! layer, or sideways within one, closes a loop sooner or later; this test refuses it and names
//! the file, the line and both layers.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Lowest first. A module may import only modules of the layers before its own.
const LAYERS: &[(&str, &[&str])] = &[
    ("leaves", &["error", "util"]),
    ("shared types", &["model"]),
    ("configuration", &["config"]),
    ("outbound HTTP and telemetry", &["net", "telemetry"]),
    ("tokens and keys", &["token"]),
    ("persistence", &["store"]),
    ("identity and access management", &["iam"]),
    ("policy decisions", &["policy"]),
    ("authentication", &["authn"]),
    ("HTTP handlers and the proxy", &["proxy"]),
    ("composition root", &["server"]),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, ms)| ms.contains(&module))
}

/// One `crate::<module>` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Edge {
    file: String,
    line: usize,
    from: String,
    to: String,
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The source without comments, string literals and inline `#[cfg(test)] mod … { … }` blocks
/// (each replaced by blanks, lines kept): test modules may use anything.
fn code_of(text: &str) -> String {
    let b = text.as_bytes();
    let mut code = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i] == b'\'' && b.get(i + 2) == Some(&b'\'') {
            // A character literal such as '{' (a lifetime never closes like this).
            code.push_str("   ");
            i += 3;
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                if b.get(i) == Some(&b'\n') {
                    code.push('\n');
                }
                i += 1;
            }
            i += 1;
            code.push(' ');
        } else {
            code.push(b[i] as char);
            i += 1;
        }
    }
    // Blank every inline test module, matching its braces.
    let mut out = String::with_capacity(code.len());
    let mut rest = code.as_str();
    while let Some(at) = rest.find("#[cfg(test)]") {
        let after = &rest[at + "#[cfg(test)]".len()..];
        let item = after.trim_start();
        let open = item.find('{');
        let is_inline_mod =
            item.starts_with("mod ") && open.is_some_and(|o| item.find(';').is_none_or(|s| o < s));
        let Some(open) = open.filter(|_| is_inline_mod) else {
            out.push_str(&rest[..at + "#[cfg(test)]".len()]);
            rest = after;
            continue;
        };
        out.push_str(&rest[..at]);
        let body_start = at + "#[cfg(test)]".len() + (after.len() - item.len()) + open;
        let mut depth = 0usize;
        let mut end = rest.len();
        for (k, c) in rest[body_start..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = body_start + k + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.extend(rest[at..end].chars().filter(|c| *c == '\n'));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// The top-level module names a `crate::` path starting at `rest` names: one, or several in a
/// `crate::{a, b::c}` group.
fn named_modules(rest: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    if let Some(group) = rest.strip_prefix('{') {
        let mut depth = 0;
        let mut items = vec![String::new()];
        for c in group.chars() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => items.push(String::new()),
                _ => {}
            }
            if !(c == ',' && depth == 0)
                && let Some(last) = items.last_mut()
            {
                last.push(c);
            }
        }
        items
            .iter()
            .map(|i| ident(i))
            .filter(|i| !i.is_empty())
            .collect()
    } else {
        vec![ident(rest)]
    }
}

fn edges(src: &Path) -> Vec<Edge> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let rel = f
            .strip_prefix(src)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let from = rel
            .split('/')
            .next()
            .unwrap()
            .trim_end_matches(".rs")
            .to_owned();
        // The binary, the crate root, and test modules kept in files of their own.
        if from == "main" || from == "lib" || rel.ends_with("/tests.rs") {
            continue;
        }
        let code = code_of(&std::fs::read_to_string(&f).unwrap());
        for (n, line) in code.lines().enumerate() {
            let mut rest = line;
            while let Some(i) = rest.find("crate::") {
                let before = rest[..i].chars().last();
                rest = &rest[i + "crate::".len()..];
                if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                    continue; // e.g. `iamgate_crate::`
                }
                for to in named_modules(rest) {
                    if to != from {
                        out.push(Edge {
                            file: rel.clone(),
                            line: n + 1,
                            from: from.clone(),
                            to,
                        });
                    }
                }
            }
        }
    }
    out
}

/// The edges that do not run strictly down.
fn violations(edges: &[Edge]) -> Vec<String> {
    edges
        .iter()
        .filter_map(|e| {
            let describe = |m: &str| {
                layer_of(m).map_or_else(
                    || format!("`{m}` (in no layer)"),
                    |l| format!("`{m}` (layer {l}, {})", LAYERS[l].0),
                )
            };
            match (layer_of(&e.from), layer_of(&e.to)) {
                (Some(a), Some(b)) if b < a => None,
                _ => Some(format!(
                    "src/{}:{}: {} imports {}",
                    e.file,
                    e.line,
                    describe(&e.from),
                    describe(&e.to)
                )),
            }
        })
        .collect()
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn every_import_runs_down_a_layer() {
    let edges = edges(&src());
    assert!(
        edges.len() > 50,
        "the scan found only {} edges: is it reading src/?",
        edges.len()
    );
    let bad = violations(&edges);
    assert!(
        bad.is_empty(),
        "{} imports break the layering (a module may import only lower layers):\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn every_module_of_the_crate_has_a_layer() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let modules: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';'))
        .collect();
    assert!(!modules.is_empty());
    for m in modules {
        assert!(
            layer_of(m).is_some(),
            "module `{m}` is in no layer of LAYERS"
        );
    }
}

#[test]
fn the_scan_sees_single_grouped_and_nested_imports() {
    let dir = tempfile::tempdir().unwrap();
    let write = |path: &str, text: &str| {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write("model/mod.rs", "use crate::util::b64url;\n");
    write(
        "store/sqlite.rs",
        "#[cfg(test)]\nmod helpers;\nuse crate::{config::X, iam::{A, B}};\n// crate::server in a comment\nconst S: &str = \"crate::proxy\";\nfn f() { crate::model::g(); }\n#[cfg(test)]\nmod tests { fn t() { let _ = '}'; use crate::server::Y; } }\nuse crate::token::Z;\n",
    );
    let found = edges(dir.path());
    let pairs: BTreeMap<(String, String), usize> = found
        .iter()
        .map(|e| ((e.from.clone(), e.to.clone()), e.line))
        .collect();
    let expected: BTreeMap<(String, String), usize> = [
        (("model".to_owned(), "util".to_owned()), 1),
        (("store".to_owned(), "config".to_owned()), 3),
        (("store".to_owned(), "iam".to_owned()), 3),
        (("store".to_owned(), "model".to_owned()), 6),
        (("store".to_owned(), "token".to_owned()), 9),
    ]
    .into_iter()
    .collect();
    assert_eq!(pairs, expected);
    // An upward import is named with its file, line and both layers.
    let bad = violations(&found);
    assert_eq!(
        bad,
        [
            "src/store/sqlite.rs:3: `store` (layer 5, persistence) imports `iam` (layer 6, identity and access management)"
        ]
    );
}
