//! What a policy change would do to real traffic, before it is live: the decisions recorded in a
//! decision log (the JSON lines `iamgate serve` writes with `log.decision_inputs`) are decided
//! again by a candidate policy, and every decision that comes out differently is reported,
//! grouped by route and by what changed. Behind `iamgate policy replay`; nothing on the request
//! path.
//!
//! A record is replayed only from the input document it kept: one without (written before
//! `log.decision_inputs` was on, or sampled out) is counted and skipped, never reconstructed.

use super::engine::Snapshot;
use super::input::DecisionInput;
use std::collections::BTreeMap;
use std::io::BufRead;

/// How a decision changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChangeKind {
    /// A deny became an allow.
    Grant,
    /// An allow became a deny.
    Revoke,
    /// Same outcome, another reason.
    Reason,
}

impl ChangeKind {
    /// `grant`, `revoke` or `reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grant => "grant",
            Self::Revoke => "revoke",
            Self::Reason => "reason",
        }
    }
}

/// One group of changed decisions: one route, one kind, one pair of reasons.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeGroup {
    /// How many decisions changed so.
    pub count: usize,
    /// A few of them, as `METHOD path (subject)`.
    pub examples: Vec<String>,
}

/// `(route, kind, recorded reason, candidate reason)`.
pub type ChangeKey = (String, ChangeKind, String, String);

/// The outcome of a replay.
#[derive(Debug, Clone, Default)]
pub struct ReplayReport {
    /// Decision records read.
    pub records: usize,
    /// Records decided again (they kept their input).
    pub replayed: usize,
    /// Records without an input document, skipped.
    pub without_input: usize,
    /// Records whose fields or input could not be read, with their line numbers.
    pub unreadable: Vec<(usize, String)>,
    /// Changed decisions, grouped.
    pub changes: BTreeMap<ChangeKey, ChangeGroup>,
}

/// Examples kept per group.
pub const EXAMPLES: usize = 3;

impl ReplayReport {
    /// Changed decisions of `kind`.
    pub fn count(&self, kind: ChangeKind) -> usize {
        self.changes
            .iter()
            .filter(|((_, k, _, _), _)| *k == kind)
            .map(|(_, g)| g.count)
            .sum()
    }

    /// All changed decisions.
    pub fn changed(&self) -> usize {
        self.changes.values().map(|g| g.count).sum()
    }

    /// The report `iamgate policy replay` prints.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for ((route, kind, from, to), g) in &self.changes {
            out.push_str(&format!(
                "{:6} {:<7} {route}: {from} -> {to}\n",
                g.count,
                kind.as_str()
            ));
            for e in &g.examples {
                out.push_str(&format!("         e.g. {e}\n"));
            }
        }
        for (line, why) in &self.unreadable {
            out.push_str(&format!("unreadable record at line {line}: {why}\n"));
        }
        out.push_str(&format!(
            "{} decision records: {} replayed, {} without their input (skipped), {} unreadable; {} changed ({} grant, {} revoke, {} reason)\n",
            self.records,
            self.replayed,
            self.without_input,
            self.unreadable.len(),
            self.changed(),
            self.count(ChangeKind::Grant),
            self.count(ChangeKind::Revoke),
            self.count(ChangeKind::Reason),
        ));
        out
    }
}

/// The fields of a decision record that a replay reads.
struct Record {
    route: String,
    allow: bool,
    reason: String,
    input: Option<String>,
}

/// The decision record on `line`: `None` for any other line (other log records, text, blank),
/// `Some(Err)` for a decision record missing what a replay needs.
fn record_of(line: &str) -> Option<Result<Record, String>> {
    let v: serde_json::Value = serde_json::from_str(line.trim()).ok()?;
    if v.get("target").and_then(|t| t.as_str()) != Some("iamgate::decision") {
        return None;
    }
    // The fields sit at the top level (flattened JSON log) or under `fields`.
    let fields = v.get("fields").filter(|f| f.is_object()).unwrap_or(&v);
    let text = |k: &str| fields.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    Some(
        (|| {
            Ok(Record {
                route: text("route").ok_or("no route")?,
                allow: fields
                    .get("allow")
                    .and_then(serde_json::Value::as_bool)
                    .ok_or("no allow")?,
                reason: text("reason").ok_or("no reason")?,
                input: text("input"),
            })
        })()
        .map_err(|e: &str| e.to_owned()),
    )
}

/// Decides every decision record of `log` with `candidate` and reports what changes.
pub fn replay(log: impl BufRead, candidate: &Snapshot) -> std::io::Result<ReplayReport> {
    let mut report = ReplayReport::default();
    for (i, line) in log.lines().enumerate() {
        let line = line?;
        let Some(record) = record_of(&line) else {
            continue;
        };
        report.records += 1;
        let r = match record {
            Ok(r) => r,
            Err(why) => {
                report.unreadable.push((i + 1, why));
                continue;
            }
        };
        let Some(input) = r.input else {
            report.without_input += 1;
            continue;
        };
        let input: DecisionInput = match serde_json::from_str(&input) {
            Ok(x) => x,
            Err(e) => {
                report.unreadable.push((i + 1, format!("input: {e}")));
                continue;
            }
        };
        report.replayed += 1;
        let d = candidate.decide(&input);
        let kind = match (r.allow, d.allow) {
            (false, true) => ChangeKind::Grant,
            (true, false) => ChangeKind::Revoke,
            _ if r.reason != *d.reason => ChangeKind::Reason,
            _ => continue,
        };
        let g = report
            .changes
            .entry((r.route, kind, r.reason, d.reason.to_string()))
            .or_default();
        g.count += 1;
        if g.examples.len() < EXAMPLES {
            g.examples.push(format!(
                "{} {} ({})",
                input.request.method, input.request.path, input.user.id
            ));
        }
    }
    Ok(report)
}
