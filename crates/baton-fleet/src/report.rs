//! The orchestration report: hosts, groups, the task with its strategy, waves with their
//! times, each host's outcome (ok, changed, failed, unreachable, skipped), duration and
//! output tail; rendered as a table or kept as JSON in the store.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostStatus {
    Ok,
    Changed,
    Failed,
    Unreachable,
    /// Never started: the run halted or aborted first.
    Skipped,
}

impl HostStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HostStatus::Ok => "ok",
            HostStatus::Changed => "changed",
            HostStatus::Failed => "failed",
            HostStatus::Unreachable => "unreachable",
            HostStatus::Skipped => "skipped",
        }
    }
    pub fn is_failure(self) -> bool {
        matches!(self, HostStatus::Failed | HostStatus::Unreachable)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepResult {
    pub name: String,
    pub kind: String,
    /// ok, changed, failed, ignored (failed under on_failure: ignore), skipped.
    pub status: String,
    pub duration_ms: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub diff: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostResult {
    pub host: String,
    pub address: String,
    /// 1-based wave number.
    pub wave: usize,
    pub status: HostStatus,
    pub started_at: i64,
    pub finished_at: i64,
    pub duration_ms: i64,
    pub steps: Vec<StepResult>,
    /// The last lines of output (of the last step that printed).
    pub output_tail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The run halted while this host still had steps to do.
    #[serde(default)]
    pub halted: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Wave {
    pub number: usize,
    pub hosts: Vec<String>,
    pub started_at: i64,
    pub finished_at: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summary {
    pub ok: usize,
    pub changed: usize,
    pub failed: usize,
    pub unreachable: usize,
    pub skipped: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    #[serde(default)]
    pub id: Option<i64>,
    /// `adhoc`, `runbook`, `ping`, `facts`.
    pub kind: String,
    /// The command line or the runbook's name.
    pub task: String,
    pub target: String,
    pub strategy: String,
    pub batch: Option<String>,
    pub forks: usize,
    pub on_failure: String,
    pub max_fail_percentage: Option<u8>,
    pub check: bool,
    pub groups: BTreeMap<String, Vec<String>>,
    pub waves: Vec<Wave>,
    pub hosts: Vec<HostResult>,
    pub summary: Summary,
    pub started_at: i64,
    pub finished_at: i64,
    pub duration_ms: i64,
    /// `ok`, `failed` (some hosts failed), `halted` (on_failure stop), `aborted`
    /// (max_fail_percentage exceeded).
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl RunReport {
    pub fn summarise(&mut self) {
        let mut s = Summary::default();
        for h in &self.hosts {
            match h.status {
                HostStatus::Ok => s.ok += 1,
                HostStatus::Changed => s.changed += 1,
                HostStatus::Failed => s.failed += 1,
                HostStatus::Unreachable => s.unreachable += 1,
                HostStatus::Skipped => s.skipped += 1,
            }
        }
        self.summary = s;
    }

    pub fn success(&self) -> bool {
        self.outcome == "ok"
    }

    /// The per-host table and a summary line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let width = self
            .hosts
            .iter()
            .map(|h| h.host.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let _ = writeln!(
            out,
            "{} {} on {} ({} hosts, strategy {}{}, forks {}, on failure {}{}){}",
            self.kind,
            self.task,
            self.target,
            self.hosts.len(),
            self.strategy,
            self.batch
                .as_ref()
                .map(|b| format!(" batch {b}"))
                .unwrap_or_default(),
            self.forks,
            self.on_failure,
            self.max_fail_percentage
                .map(|m| format!(", max fail {m}%"))
                .unwrap_or_default(),
            if self.check { " [check mode]" } else { "" }
        );
        let _ = writeln!(
            out,
            "{:<width$}  {:<11}  {:>4}  {:>9}  OUTPUT",
            "HOST", "STATUS", "WAVE", "DURATION"
        );
        for h in &self.hosts {
            let mut tail = h.error.clone().unwrap_or_else(|| h.output_tail.clone());
            tail = tail.replace('\n', " ⏎ ");
            if tail.chars().count() > 70 {
                tail = tail.chars().take(67).collect::<String>() + "...";
            }
            let _ = writeln!(
                out,
                "{:<width$}  {:<11}  {:>4}  {:>8.2}s  {}",
                h.host,
                format!("{}{}", h.status.as_str(), if h.halted { "*" } else { "" }),
                h.wave,
                h.duration_ms as f64 / 1000.0,
                tail
            );
            for s in &h.steps {
                if !s.diff.is_empty() {
                    for line in s.diff.lines() {
                        let _ = writeln!(out, "    {line}");
                    }
                }
            }
        }
        let s = &self.summary;
        let _ = writeln!(
            out,
            "{}: ok={} changed={} failed={} unreachable={} skipped={} in {:.2}s{}",
            self.outcome,
            s.ok,
            s.changed,
            s.failed,
            s.unreachable,
            s.skipped,
            self.duration_ms as f64 / 1000.0,
            self.reason
                .as_ref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        );
        if self.hosts.iter().any(|h| h.halted) {
            let _ = writeln!(out, "* halted before finishing its steps");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(id: &str, status: HostStatus, halted: bool) -> HostResult {
        HostResult {
            host: id.into(),
            address: "127.0.0.1:22".into(),
            wave: 1,
            status,
            started_at: 0,
            finished_at: 1500,
            duration_ms: 1500,
            steps: Vec::new(),
            output_tail: "line one\nline two".into(),
            error: None,
            halted,
        }
    }

    #[test]
    fn the_table_shows_each_host_and_a_summary() {
        let mut r = RunReport {
            id: None,
            kind: "adhoc".into(),
            task: "hostname".into(),
            target: "all".into(),
            strategy: "rolling".into(),
            batch: Some("5".into()),
            forks: 50,
            on_failure: "stop".into(),
            max_fail_percentage: Some(20),
            check: false,
            groups: BTreeMap::new(),
            waves: Vec::new(),
            hosts: vec![
                host("a", HostStatus::Changed, false),
                host("bb", HostStatus::Unreachable, true),
            ],
            summary: Summary::default(),
            started_at: 0,
            finished_at: 1500,
            duration_ms: 1500,
            outcome: "halted".into(),
            reason: Some("bb failed".into()),
        };
        r.summarise();
        let text = r.render();
        assert!(text.contains("strategy rolling batch 5"), "{text}");
        assert!(text.contains("a     changed"), "{text}");
        assert!(text.contains("unreachable*"), "{text}");
        assert!(text.contains("line one ⏎ line two"), "{text}");
        assert!(
            text.contains(
                "halted: ok=0 changed=1 failed=0 unreachable=1 skipped=0 in 1.50s (bb failed)"
            ),
            "{text}"
        );
        assert!(!r.success());
    }
}
