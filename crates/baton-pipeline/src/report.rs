//! Reports of a recorded run: text for people, JSON for programs, JUnit XML for CI
//! dashboards, Markdown for pull requests. Pure: records in, a string out.

use baton_state::{PipelineJob, PipelineRun};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Junit,
    Markdown,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Format, String> {
        match s {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            "junit" => Ok(Format::Junit),
            "markdown" | "md" => Ok(Format::Markdown),
            _ => Err(format!(
                "unknown format \"{s}\" (text, json, junit, markdown)"
            )),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report<'a> {
    pub run: &'a PipelineRun,
    pub jobs: &'a [PipelineJob],
}

pub fn render(run: &PipelineRun, jobs: &[PipelineJob], format: Format) -> String {
    match format {
        Format::Text => text(run, jobs),
        Format::Json => {
            serde_json::to_string_pretty(&Report { run, jobs }).unwrap_or_default() + "\n"
        }
        Format::Junit => junit(run, jobs),
        Format::Markdown => markdown(run, jobs),
    }
}

fn secs(j: &PipelineJob) -> f64 {
    match (j.started_at, j.finished_at) {
        (Some(a), Some(b)) if b >= a => (b - a) as f64 / 1000.0,
        _ => 0.0,
    }
}

fn outcome(j: &PipelineJob) -> String {
    let mut s = j.status.clone();
    if j.attempts > 1 {
        s.push_str(&format!(" after {} attempts", j.attempts));
    }
    if let Some(r) = &j.reason {
        s.push_str(&format!(": {r}"));
    }
    s
}

fn text(run: &PipelineRun, jobs: &[PipelineJob]) -> String {
    let mut s = format!(
        "run {} of {} ({}): {}\n",
        run.id, run.pipeline, run.trigger, run.status
    );
    let width = jobs.iter().map(|j| j.name.len()).max().unwrap_or(0);
    for j in jobs {
        s.push_str(&format!(
            "{:>3}. {:<width$}  {:>7.2}s  {}\n",
            j.seq,
            j.name,
            secs(j),
            outcome(j)
        ));
    }
    s
}

fn markdown(run: &PipelineRun, jobs: &[PipelineJob]) -> String {
    let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
    let mut s = format!(
        "### Pipeline `{}` run {}: **{}**\n\n| # | job | status | attempts | time |\n|---|---|---|---|---|\n",
        cell(&run.pipeline),
        run.id,
        run.status
    );
    for j in jobs {
        s.push_str(&format!(
            "| {} | `{}` | {} | {} | {:.2}s |\n",
            j.seq,
            cell(&j.name),
            cell(&outcome(j)),
            j.attempts,
            secs(j)
        ));
    }
    s
}

/// Escapes text for XML attributes and content, dropping characters XML 1.0 forbids.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

fn junit(run: &PipelineRun, jobs: &[PipelineJob]) -> String {
    let failures = jobs
        .iter()
        .filter(|j| matches!(j.status.as_str(), "failed" | "cancelled" | "interrupted"))
        .count();
    let skipped = jobs
        .iter()
        .filter(|j| matches!(j.status.as_str(), "skipped" | "upstream_failed" | "reused"))
        .count();
    let total: f64 = jobs.iter().map(secs).sum();
    let name = xml_escape(&run.pipeline);
    let mut s = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"{name}\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\" time=\"{total:.3}\">\n  <testsuite name=\"{name}\" id=\"{}\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\" time=\"{total:.3}\">\n",
        jobs.len(),
        run.id,
        jobs.len()
    );
    for j in jobs {
        s.push_str(&format!(
            "    <testcase classname=\"{name}\" name=\"{}\" time=\"{:.3}\"",
            xml_escape(&j.name),
            secs(j)
        ));
        let msg = xml_escape(&outcome(j));
        match j.status.as_str() {
            "failed" | "cancelled" | "interrupted" => s.push_str(&format!(
                ">\n      <failure message=\"{msg}\" type=\"{}\"/>\n    </testcase>\n",
                xml_escape(&j.status)
            )),
            "skipped" | "upstream_failed" | "reused" => s.push_str(&format!(
                ">\n      <skipped message=\"{msg}\"/>\n    </testcase>\n"
            )),
            _ => s.push_str("/>\n"),
        }
    }
    s.push_str("  </testsuite>\n</testsuites>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn junit_escapes_names_and_reasons() {
        let run = PipelineRun {
            id: 7,
            project: "p".into(),
            pipeline: "ci<&>".into(),
            status: "failed".into(),
            trigger: "manual".into(),
            vars: Default::default(),
            rerun_of: None,
            started_at: 0,
            finished_at: Some(5),
        };
        let job = PipelineJob {
            run_id: 7,
            name: "test[shard=\"a\"]".into(),
            kind: "job".into(),
            seq: 1,
            status: "failed".into(),
            attempts: 2,
            exit_code: Some(1),
            reason: Some("exit <1> & 'more'\u{1}".into()),
            log_file: "x".into(),
            started_at: Some(0),
            finished_at: Some(1500),
        };
        let x = render(&run, &[job], Format::Junit);
        assert!(
            x.contains("name=\"test[shard=&quot;a&quot;]\" time=\"1.500\""),
            "{x}"
        );
        assert!(
            x.contains(
                "message=\"failed after 2 attempts: exit &lt;1&gt; &amp; &apos;more&apos;\""
            ),
            "{x}"
        );
        assert!(x.contains("<testsuites name=\"ci&lt;&amp;&gt;\""), "{x}");
        assert!(!x.contains('\u{1}'));
    }
}
