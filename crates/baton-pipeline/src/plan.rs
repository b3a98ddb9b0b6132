//! The pure planner: a pipeline and the run's variables in, the jobs to consider in
//! topological order out (matrix expanded, `if:` evaluated), plus the rules that decide,
//! from the outcomes of a job's needs, whether it runs. No processes, no clock.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::spec::{Job, Pipeline, When};

/// The jobs of one run, in the order they are considered (needs first; ties in the
/// order written, matrix combinations in order).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub pipeline: String,
    pub jobs: Vec<PlannedJob>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedJob {
    /// `build`, or `test[shard=a]` for a matrix combination.
    pub id: String,
    /// The job as written.
    pub job: String,
    /// Index of the job in `Pipeline::jobs`.
    #[serde(skip)]
    pub spec: usize,
    pub matrix: BTreeMap<String, String>,
    /// Indices into `Plan::jobs` this one waits for.
    #[serde(skip)]
    pub needs: Vec<usize>,
    /// The ids it waits for, for people and JSON.
    #[serde(rename = "needs")]
    pub needs_ids: Vec<String>,
    pub when: When,
    /// `false` when its `if:` does not hold for this run: it will be skipped.
    pub condition_holds: bool,
    /// `local`, `image IMAGE` or `host HOST`.
    pub runs_on: String,
    pub has_rollback: bool,
}

/// What a finished (or skipped) job means for the jobs that need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Success,
    Failed,
    /// Failed, but `allow_failure: true`: counts as passed for what follows.
    AllowedFailure,
    /// Not run: its `if:` or `when:` said so; counts as passed.
    Skipped,
    /// Not run because a job it needs failed.
    UpstreamFailed,
    Cancelled,
    /// Passed in the run this one reruns; not run again.
    Reused,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Success => "success",
            JobStatus::Failed => "failed",
            JobStatus::AllowedFailure => "allowed_failure",
            JobStatus::Skipped => "skipped",
            JobStatus::UpstreamFailed => "upstream_failed",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Reused => "reused",
        }
    }

    pub fn parse(s: &str) -> Option<JobStatus> {
        Some(match s {
            "success" => JobStatus::Success,
            "failed" => JobStatus::Failed,
            "allowed_failure" => JobStatus::AllowedFailure,
            "skipped" => JobStatus::Skipped,
            "upstream_failed" => JobStatus::UpstreamFailed,
            "cancelled" => JobStatus::Cancelled,
            "reused" => JobStatus::Reused,
            _ => return None,
        })
    }

    /// Whether jobs after it see a failure.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            JobStatus::Failed | JobStatus::UpstreamFailed | JobStatus::Cancelled
        )
    }

    /// Whether it makes the whole run fail.
    pub fn fails_run(self) -> bool {
        matches!(self, JobStatus::Failed | JobStatus::Cancelled)
    }
}

/// Whether a job whose needs all finished with `upstream` runs, or why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Run,
    Skip { status: JobStatus, reason: String },
}

/// GitLab's rules: `on_success` runs when nothing it waits for failed, `on_failure` only
/// when something did, `always` regardless; a false `if:` skips first.
pub fn decide(job: &PlannedJob, upstream: &[JobStatus]) -> Decision {
    if !job.condition_holds {
        return Decision::Skip {
            status: JobStatus::Skipped,
            reason: "its `if:` does not hold".into(),
        };
    }
    let failed = upstream.iter().any(|s| s.is_failure());
    match (job.when, failed) {
        (When::OnSuccess, true) => Decision::Skip {
            status: JobStatus::UpstreamFailed,
            reason: "a job it needs failed".into(),
        },
        (When::OnFailure, false) => Decision::Skip {
            status: JobStatus::Skipped,
            reason: "when: on_failure and nothing failed".into(),
        },
        _ => Decision::Run,
    }
}

/// Plans a run of `p` with the run's variables (for `if:`).
pub fn plan(p: &Pipeline, vars: &BTreeMap<String, String>) -> Plan {
    // Expand each job into its matrix combinations.
    let mut expanded: Vec<PlannedJob> = Vec::new();
    let mut by_job: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (si, j) in p.jobs.iter().enumerate() {
        for combo in combinations(&j.matrix) {
            let id = if combo.is_empty() {
                j.name.clone()
            } else {
                let parts: Vec<String> = combo.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("{}[{}]", j.name, parts.join(","))
            };
            let mut scope = vars.clone();
            scope.extend(combo.clone());
            by_job
                .entry(j.name.as_str())
                .or_default()
                .push(expanded.len());
            expanded.push(PlannedJob {
                id,
                job: j.name.clone(),
                spec: si,
                matrix: combo,
                needs: Vec::new(),
                needs_ids: Vec::new(),
                when: j.when,
                condition_holds: j.condition.as_ref().is_none_or(|c| c.eval(&scope)),
                runs_on: runs_on(j),
                has_rollback: j.rollback.is_some(),
            });
        }
    }
    // Edges: a need on a matrix job waits for all its combinations. A final
    // `on_failure`/`always` job without needs waits for every other job that does not
    // (transitively) wait for it.
    let mut edges: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); expanded.len()];
    for (i, pj) in expanded.iter().enumerate() {
        for n in &p.jobs[pj.spec].needs {
            edges[i].extend(by_job.get(n.as_str()).into_iter().flatten().copied());
        }
    }
    for i in 0..expanded.len() {
        let j = &p.jobs[expanded[i].spec];
        if j.needs.is_empty() && j.when != When::OnSuccess {
            let after = descendants(&edges, i);
            let finals: Vec<usize> = (0..expanded.len())
                .filter(|&k| {
                    k != i
                        && !after.contains(&k)
                        && !(p.jobs[expanded[k].spec].needs.is_empty()
                            && expanded[k].when != When::OnSuccess)
                })
                .collect();
            edges[i].extend(finals);
        }
    }
    // Kahn's algorithm, lowest index first.
    let mut indegree: Vec<usize> = edges.iter().map(BTreeSet::len).collect();
    let mut ready: BTreeSet<usize> = (0..expanded.len()).filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(expanded.len());
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for (k, e) in edges.iter().enumerate() {
            if e.contains(&i) {
                indegree[k] -= 1;
                if indegree[k] == 0 {
                    ready.insert(k);
                }
            }
        }
    }
    // The spec was checked for cycles; anything left (impossible) goes last.
    for i in 0..expanded.len() {
        if !order.contains(&i) {
            order.push(i);
        }
    }
    let position: BTreeMap<usize, usize> = order.iter().enumerate().map(|(p, &i)| (i, p)).collect();
    let mut jobs: Vec<PlannedJob> = order.iter().map(|&i| expanded[i].clone()).collect();
    for (pos, &i) in order.iter().enumerate() {
        let mut needs: Vec<usize> = edges[i].iter().map(|e| position[e]).collect();
        needs.sort_unstable();
        jobs[pos].needs_ids = needs.iter().map(|&n| jobs[n].id.clone()).collect();
        jobs[pos].needs = needs;
    }
    Plan {
        pipeline: p.name.clone(),
        jobs,
    }
}

fn runs_on(j: &Job) -> String {
    match (&j.image, &j.host) {
        (Some(i), _) => format!("image {i}"),
        (None, Some(h)) if j.hosts.is_empty() => format!("host {h}"),
        (None, Some(h)) => format!("host {h}: {}", j.hosts.join(", ")),
        _ => "local".into(),
    }
}

fn descendants(edges: &[BTreeSet<usize>], of: usize) -> BTreeSet<usize> {
    let mut out = BTreeSet::new();
    let mut todo = vec![of];
    while let Some(n) = todo.pop() {
        for (k, e) in edges.iter().enumerate() {
            if e.contains(&n) && out.insert(k) {
                todo.push(k);
            }
        }
    }
    out
}

/// Every combination of the matrix, keys in order; one empty combination without one.
fn combinations(m: &BTreeMap<String, Vec<String>>) -> Vec<BTreeMap<String, String>> {
    let mut out = vec![BTreeMap::new()];
    for (k, vals) in m {
        out = out
            .into_iter()
            .flat_map(|c| {
                vals.iter().map(move |v| {
                    let mut c = c.clone();
                    c.insert(k.clone(), v.clone());
                    c
                })
            })
            .collect();
    }
    out
}

/// The dry-run text: the order, where each job runs, and what it would do.
pub fn describe(p: &Pipeline, plan: &Plan) -> String {
    let mut s = format!(
        "pipeline {}: {} jobs, in this order\n",
        plan.pipeline,
        plan.jobs.len()
    );
    for (n, j) in plan.jobs.iter().enumerate() {
        let spec = &p.jobs[j.spec];
        let needs = if j.needs_ids.is_empty() {
            "-".to_string()
        } else {
            j.needs_ids.join(", ")
        };
        let mut notes = Vec::new();
        if !j.condition_holds {
            notes.push("skipped: `if:` does not hold".to_string());
        }
        match j.when {
            When::OnSuccess => {}
            When::OnFailure => notes.push("only if something failed".into()),
            When::Always => notes.push("always".into()),
        }
        if spec.allow_failure {
            notes.push("may fail".into());
        }
        if let Some(t) = spec.timeout {
            notes.push(format!("timeout {}", humantime::format_duration(t)));
        }
        if spec.retry.max > 0 {
            notes.push(format!("retry {}", spec.retry.max));
        }
        if j.has_rollback {
            notes.push("has rollback".into());
        }
        let notes = if notes.is_empty() {
            String::new()
        } else {
            format!("  ({})", notes.join("; "))
        };
        s.push_str(&format!(
            "{:>3}. {}  [{}]  needs: {}{}\n",
            n + 1,
            j.id,
            j.runs_on,
            needs,
            notes
        ));
        for line in spec.run.lines().filter(|l| !l.trim().is_empty()) {
            s.push_str(&format!("       $ {line}\n"));
        }
    }
    s.push_str("dry run: nothing was run\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Retry, Trigger};

    fn job(name: &str, needs: &[&str]) -> Job {
        Job {
            name: name.into(),
            run: "true".into(),
            needs: needs.iter().map(|s| s.to_string()).collect(),
            image: None,
            host: None,
            hosts: vec![],
            parallel: None,
            env: BTreeMap::new(),
            secrets: vec![],
            timeout: None,
            retry: Retry::default(),
            when: When::OnSuccess,
            condition: None,
            artifacts: None,
            cache: None,
            matrix: BTreeMap::new(),
            allow_failure: false,
            rollback: None,
        }
    }

    fn pipeline(jobs: Vec<Job>) -> Pipeline {
        Pipeline {
            name: "ci".into(),
            triggers: vec![Trigger::Manual],
            jobs,
            concurrency: None,
            inventory: Default::default(),
        }
    }

    #[test]
    fn a_diamond_with_a_matrix_is_ordered_needs_first() {
        let mut test = job("test", &["build"]);
        test.matrix
            .insert("shard".into(), vec!["a".into(), "b".into(), "c".into()]);
        let mut notify = job("notify", &[]);
        notify.when = When::OnFailure;
        let p = pipeline(vec![
            job("deploy", &["test", "lint"]),
            job("lint", &["checkout"]),
            test,
            job("build", &["checkout"]),
            job("checkout", &[]),
            notify,
        ]);
        let plan = plan(&p, &BTreeMap::new());
        let ids: Vec<&str> = plan.jobs.iter().map(|j| j.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "checkout",
                "lint",
                "build",
                "test[shard=a]",
                "test[shard=b]",
                "test[shard=c]",
                "deploy",
                "notify"
            ]
        );
        assert_eq!(
            plan.jobs[6].needs_ids,
            ["lint", "test[shard=a]", "test[shard=b]", "test[shard=c]"]
        );
        assert_eq!(plan.jobs[7].needs.len(), 7);
    }

    #[test]
    fn decisions_follow_when_and_if() {
        let p = pipeline(vec![job("a", &[])]);
        let mut pj = plan(&p, &BTreeMap::new()).jobs.remove(0);
        assert_eq!(
            decide(&pj, &[JobStatus::Success, JobStatus::AllowedFailure]),
            Decision::Run
        );
        assert!(matches!(
            decide(&pj, &[JobStatus::Failed]),
            Decision::Skip {
                status: JobStatus::UpstreamFailed,
                ..
            }
        ));
        pj.when = When::OnFailure;
        assert_eq!(decide(&pj, &[JobStatus::UpstreamFailed]), Decision::Run);
        assert!(matches!(
            decide(&pj, &[JobStatus::Success]),
            Decision::Skip {
                status: JobStatus::Skipped,
                ..
            }
        ));
        pj.when = When::Always;
        assert_eq!(decide(&pj, &[JobStatus::Failed]), Decision::Run);
        pj.condition_holds = false;
        assert!(matches!(
            decide(&pj, &[]),
            Decision::Skip {
                status: JobStatus::Skipped,
                ..
            }
        ));
    }
}
