//! Path validation. Ambiguous paths are refused (400), never normalised: normalising would let
//! the gateway authorize one path while the upstream serves another (`/a/../admin`, `%2e%2e`,
//! `a\b`, `//x`). What is left splits cleanly into segments.

use std::borrow::Cow;

/// Why a path was refused; the message is safe to return.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Does not start with `/`.
    #[error("path must start with /")]
    NotAbsolute,
    /// `//` inside the path.
    #[error("path has an empty segment")]
    EmptySegment,
    /// `.` or `..` segment.
    #[error("path has a dot segment")]
    DotSegment,
    /// `%2e` anywhere.
    #[error("path has a percent-encoded dot")]
    EncodedDot,
    /// `\` or `%5c`.
    #[error("path has a backslash")]
    Backslash,
    /// `%` not followed by two hex digits, an encoded NUL or a control character.
    #[error("path has an invalid percent-encoding or control character")]
    Encoding,
    /// A `;` path parameter, which some servers strip before routing (`/a;x=y` → `/a`).
    #[error("path has a ; parameter")]
    Semicolon,
    /// `%25` followed by the escape of `.`, `/`, `\` or `%` (`%252e`, `%252f`): an upstream that
    /// decodes twice would see a dot, a separator or another escape the gateway did not.
    #[error("path has a double-encoded dot, separator or escape")]
    DoubleEncoded,
    /// Longer than the limit.
    #[error("path too long")]
    TooLong,
}

/// Longest accepted path.
pub const MAX_PATH: usize = 4096;

/// A validated path: its raw segments (as received, for forwarding) and their decoded values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segments<'a> {
    /// Raw segments, without the trailing empty one of a trailing slash.
    pub raw: Vec<&'a str>,
    /// Percent-decoded segments (`%2F` decodes to `/` and stays inside its segment). A segment
    /// without `%` is its raw text, borrowed: most requests split without copying.
    pub decoded: Vec<Cow<'a, str>>,
    /// Whether the path ended with `/`.
    pub trailing_slash: bool,
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// Validates `seg` and percent-decodes it. One pass does both; the decoded copy is started only
/// at the first `%`, so a segment without one comes back borrowed.
fn decode_segment(seg: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = seg.as_bytes();
    let mut out: Option<Vec<u8>> = None;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\\' => return Err(PathError::Backslash),
            b';' => return Err(PathError::Semicolon),
            b'%' => {
                let hi = bytes
                    .get(i + 1)
                    .copied()
                    .and_then(hex)
                    .ok_or(PathError::Encoding)?;
                let lo = bytes
                    .get(i + 2)
                    .copied()
                    .and_then(hex)
                    .ok_or(PathError::Encoding)?;
                let v = hi << 4 | lo;
                let escapes = |j: usize| {
                    let h = bytes.get(j).copied().and_then(hex)?;
                    let l = bytes.get(j + 1).copied().and_then(hex)?;
                    Some(h << 4 | l)
                };
                if v == b'%' && matches!(escapes(i + 3), Some(b'.' | b'/' | b'\\' | b'%')) {
                    return Err(PathError::DoubleEncoded);
                }
                match v {
                    b'.' => return Err(PathError::EncodedDot),
                    b'\\' => return Err(PathError::Backslash),
                    0..=0x1f | 0x7f => return Err(PathError::Encoding),
                    _ => out
                        .get_or_insert_with(|| {
                            let mut o = Vec::with_capacity(bytes.len());
                            o.extend_from_slice(bytes.get(..i).unwrap_or_default());
                            o
                        })
                        .push(v),
                }
                i += 3;
            }
            0..=0x1f | 0x7f => return Err(PathError::Encoding),
            _ => {
                if let Some(o) = &mut out {
                    o.push(b);
                }
                i += 1;
            }
        }
    }
    match out {
        None => Ok(Cow::Borrowed(seg)),
        Some(o) => String::from_utf8(o)
            .map(Cow::Owned)
            .map_err(|_| PathError::Encoding),
    }
}

/// The part of `path` that holds segments and whether a slash ended it; `None` for `/`.
fn body(path: &str) -> Result<Option<(&str, bool)>, PathError> {
    if path.len() > MAX_PATH {
        return Err(PathError::TooLong);
    }
    let rest = path.strip_prefix('/').ok_or(PathError::NotAbsolute)?;
    if rest.is_empty() {
        return Ok(None);
    }
    Ok(Some(match rest.strip_suffix('/') {
        Some(b) => (b, true),
        None => (rest, false),
    }))
}

/// `seg` as it is in the path, if it may be a segment at all: not empty, not a dot segment.
fn checked(seg: &str) -> Result<&str, PathError> {
    if seg.is_empty() {
        return Err(PathError::EmptySegment);
    }
    if seg == "." || seg == ".." {
        return Err(PathError::DotSegment);
    }
    Ok(seg)
}

/// Whether `b` is a byte the rules of [`decode_segment`] look at.
fn needs_rules(b: u8) -> bool {
    matches!(b, b'%' | b'\\' | b';' | 0..=0x1f | 0x7f)
}

/// Validates `path` (without query) and splits it into segments.
pub fn split(path: &str) -> Result<Segments<'_>, PathError> {
    let Some((body, trailing_slash)) = body(path)? else {
        return Ok(Segments {
            raw: vec![],
            decoded: vec![],
            trailing_slash: true,
        });
    };
    // One pass over the bytes finds the segments; only a segment holding a byte the rules look
    // at (`%`, `\\`, `;`, a control character) goes through `decode_segment`, which checks it in
    // order. A plain segment is its own decoded value. `str::split` and a second pass per segment
    // cost as much as the route match and the cached decision together.
    let bytes = body.as_bytes();
    let mut raw = Vec::with_capacity(8);
    let mut decoded = Vec::with_capacity(8);
    // Most paths hold none of those bytes: one pass without early exit (which the compiler turns
    // into wide compares) tells, and such a path only splits at its slashes.
    if !bytes.iter().fold(false, |any, &b| any | needs_rules(b)) {
        let mut start = 0;
        // Each slash, then the end: every segment is the text before one of them.
        let ends = bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'/')
            .map(|(i, _)| i)
            .chain(std::iter::once(bytes.len()));
        for end in ends {
            // `start` and `end` sit at slashes or the ends, always character boundaries.
            let seg = checked(body.get(start..end).unwrap_or_default())?;
            decoded.push(Cow::Borrowed(seg));
            raw.push(seg);
            start = end + 1;
        }
        return Ok(Segments {
            raw,
            decoded,
            trailing_slash,
        });
    }
    let mut start = 0;
    loop {
        let mut end = start;
        let mut plain = true;
        while let Some(&b) = bytes.get(end) {
            match b {
                b'/' => break,
                b if needs_rules(b) => plain = false,
                _ => {}
            }
            end += 1;
        }
        // `start` and `end` sit at ASCII bytes or the ends, always character boundaries.
        let seg = checked(body.get(start..end).unwrap_or_default())?;
        let value = if plain {
            Cow::Borrowed(seg)
        } else {
            let value = decode_segment(seg)?;
            // `a%2F..%2Fb` is one segment here, but an upstream that decodes `%2F` before
            // routing would see a dot segment: refuse it as ambiguous too.
            if value.contains('/') && value.split('/').any(|p| p == "." || p == "..") {
                return Err(PathError::DotSegment);
            }
            value
        };
        decoded.push(value);
        raw.push(seg);
        if end >= bytes.len() {
            break;
        }
        start = end + 1;
    }
    Ok(Segments {
        raw,
        decoded,
        trailing_slash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The splitter as it was before the one-pass scan: `str::split`, every segment decoded.
    fn reference(path: &str) -> Result<Segments<'_>, PathError> {
        let Some((body, trailing_slash)) = body(path)? else {
            return Ok(Segments {
                raw: vec![],
                decoded: vec![],
                trailing_slash: true,
            });
        };
        let (mut raw, mut decoded) = (Vec::new(), Vec::new());
        for seg in body.split('/') {
            if seg.is_empty() {
                return Err(PathError::EmptySegment);
            }
            if seg == "." || seg == ".." {
                return Err(PathError::DotSegment);
            }
            let value = decode_segment(seg)?;
            // `a%2F..%2Fb` is one segment here, but an upstream that decodes `%2F` before routing
            // would see a dot segment: refuse it as ambiguous too.
            if value.contains('/') && value.split('/').any(|p| p == "." || p == "..") {
                return Err(PathError::DotSegment);
            }
            decoded.push(value);
            raw.push(seg);
        }
        Ok(Segments {
            raw,
            decoded,
            trailing_slash,
        })
    }

    #[test]
    fn the_one_pass_scan_agrees_with_the_reference_on_every_short_path() {
        // Every path of up to five characters over the characters the rules look at.
        let alphabet = [
            '/', '.', '%', '2', 'e', 'f', '5', 'c', '\\', ';', 'a', '\u{1}', 'é',
        ];
        let mut paths = vec![String::from("/")];
        let mut frontier = paths.clone();
        for _ in 0..5 {
            let mut next = Vec::new();
            for p in &frontier {
                for c in alphabet {
                    let mut q = p.clone();
                    q.push(c);
                    next.push(q);
                }
            }
            paths.extend(next.iter().cloned());
            frontier = next;
        }
        paths.extend(["x", "", "/a%2F..%2Fb/c", "/a%252e/b", "/a/b/"].map(String::from));
        assert!(paths.len() > 400_000);
        for p in &paths {
            assert_eq!(split(p), reference(p), "{p:?}");
        }
    }

    #[test]
    fn plain_paths_split_and_one_trailing_slash_is_noted() {
        let s = split("/api/backend/projects/").unwrap();
        assert_eq!(s.raw, vec!["api", "backend", "projects"]);
        assert!(s.trailing_slash);
        let s = split("/api/projects/p1").unwrap();
        assert!(!s.trailing_slash);
        assert_eq!(split("/").unwrap().raw.len(), 0);
    }

    #[test]
    fn plain_segments_are_borrowed_and_encoded_ones_decoded() {
        let s = split("/api/projects/a%20b").unwrap();
        assert!(matches!(s.decoded[0], Cow::Borrowed("api")));
        assert!(matches!(s.decoded[1], Cow::Borrowed("projects")));
        assert_eq!(s.decoded[2], "a b");
        assert!(matches!(s.decoded[2], Cow::Owned(_)));
    }

    #[test]
    fn a_literal_percent_before_other_characters_is_kept() {
        let s = split("/api/files/100%25%20done/a%2520b").unwrap();
        assert_eq!(s.decoded[2], "100% done");
        assert_eq!(s.decoded[3], "a%20b");
    }

    #[test]
    fn encoded_slash_stays_inside_its_segment() {
        let s = split("/api/files/a%2Fb/raw").unwrap();
        assert_eq!(s.raw, vec!["api", "files", "a%2Fb", "raw"]);
        assert_eq!(s.decoded[2], "a/b");
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        for (p, e) in [
            ("api", PathError::NotAbsolute),
            ("/api//projects", PathError::EmptySegment),
            ("/api/projects//", PathError::EmptySegment),
            ("/api/../admin", PathError::DotSegment),
            ("/api/./x", PathError::DotSegment),
            ("/api/%2e%2e/admin", PathError::EncodedDot),
            ("/api/%252e%252e%252fadmin", PathError::DoubleEncoded),
            ("/api/a%252Fb", PathError::DoubleEncoded),
            ("/api/a%255cb", PathError::DoubleEncoded),
            ("/api/a%2525", PathError::DoubleEncoded),
            ("/api/%2E/x", PathError::EncodedDot),
            ("/api/a%2eb", PathError::EncodedDot),
            ("/api/a\\b", PathError::Backslash),
            ("/api/a%5cb", PathError::Backslash),
            ("/api/a%zz", PathError::Encoding),
            ("/api/a%2", PathError::Encoding),
            ("/api/a%00b", PathError::Encoding),
            ("/api/a%ff", PathError::Encoding),
            ("/api/projects/p1;x=y", PathError::Semicolon),
            ("/api/projects/p1%2F..%2Fp2", PathError::DotSegment),
            ("/api/projects/..%2Fp2", PathError::DotSegment),
        ] {
            assert_eq!(split(p).unwrap_err(), e, "{p}");
        }
        assert_eq!(
            split(&format!("/{}", "a".repeat(MAX_PATH))).unwrap_err(),
            PathError::TooLong
        );
    }
}
