//! Pipeline runs in the store: runs, their jobs (attempts, exit code, status, times),
//! artifact metadata, and what each trigger last saw (a git poller's last commit).

use rusqlite::{params, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use crate::{Result, Store};

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS pipeline_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project TEXT NOT NULL,
    pipeline TEXT NOT NULL,
    status TEXT NOT NULL,
    trigger TEXT NOT NULL,
    vars_json TEXT NOT NULL,
    rerun_of INTEGER,
    started_at INTEGER NOT NULL,
    finished_at INTEGER
);
CREATE INDEX IF NOT EXISTS pipeline_runs_name ON pipeline_runs (project, pipeline, id);
CREATE TABLE IF NOT EXISTS pipeline_run_owners (
    run_id INTEGER PRIMARY KEY,
    pid INTEGER NOT NULL,
    start_ticks INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS pipeline_jobs (
    run_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    seq INTEGER NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    exit_code INTEGER,
    reason TEXT,
    log_file TEXT NOT NULL,
    started_at INTEGER,
    finished_at INTEGER,
    PRIMARY KEY (run_id, name)
);
CREATE TABLE IF NOT EXISTS pipeline_artifacts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project TEXT NOT NULL,
    pipeline TEXT NOT NULL,
    run_id INTEGER NOT NULL,
    job TEXT NOT NULL,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER
);
CREATE INDEX IF NOT EXISTS pipeline_artifacts_run ON pipeline_artifacts (run_id, job);
CREATE TABLE IF NOT EXISTS pipeline_triggers (
    project TEXT NOT NULL,
    pipeline TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (project, pipeline, key)
);
";

/// Cancel requests on running pipeline runs: whatever process runs one (the CLI, the
/// daemon) watches for its row and stops the run.
pub(crate) const CANCELS: &str = "
CREATE TABLE pipeline_cancels (
    run_id INTEGER PRIMARY KEY,
    requested_at INTEGER NOT NULL
);
";

/// Webhook deliveries already answered (delivery ids and signed-body digests), kept for
/// a window so that a replayed delivery does not run its pipeline again.
pub(crate) const DELIVERIES: &str = "
CREATE TABLE webhook_deliveries (
    project TEXT NOT NULL,
    pipeline TEXT NOT NULL,
    key TEXT NOT NULL,
    seen_at INTEGER NOT NULL,
    PRIMARY KEY (project, pipeline, key)
);
CREATE INDEX webhook_deliveries_seen ON webhook_deliveries (seen_at);
";

/// One run of a pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineRun {
    pub id: i64,
    pub project: String,
    pub pipeline: String,
    /// `running`, `success`, `failed`, `cancelled`, `interrupted`.
    pub status: String,
    /// `manual`, `schedule`, `webhook`, `git`, `rerun`.
    pub trigger: String,
    /// The run's variables (`-v`, trigger variables), never secrets.
    pub vars: std::collections::BTreeMap<String, String>,
    pub rerun_of: Option<i64>,
    pub started_at: i64,
    pub finished_at: Option<i64>,
}

/// The process conducting a run: its pid and start time (field 22 of `/proc/PID/stat`,
/// clock ticks since boot), so a reused pid is not taken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunOwner {
    pub pid: u32,
    pub start_ticks: u64,
}

/// One job of a run (or one rollback), as last recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineJob {
    pub run_id: i64,
    /// `build`, `test[shard=a]`, or `rollback:deploy`.
    pub name: String,
    /// `job` or `rollback`.
    pub kind: String,
    /// The order in which jobs were started or decided within the run, from 1.
    pub seq: i64,
    pub status: String,
    pub attempts: u32,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
    /// The log's file name in the run's log directory.
    pub log_file: String,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

/// One file an artifact-producing job left, stored by content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactRecord {
    pub id: i64,
    pub project: String,
    pub pipeline: String,
    pub run_id: i64,
    pub job: String,
    /// Relative to the job's workspace.
    pub path: String,
    pub sha256: String,
    pub size: u64,
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

fn run_row(r: &Row) -> rusqlite::Result<PipelineRun> {
    let vars: String = r.get(5)?;
    Ok(PipelineRun {
        id: r.get(0)?,
        project: r.get(1)?,
        pipeline: r.get(2)?,
        status: r.get(3)?,
        trigger: r.get(4)?,
        vars: serde_json::from_str(&vars).unwrap_or_default(),
        rerun_of: r.get(6)?,
        started_at: r.get(7)?,
        finished_at: r.get(8)?,
    })
}

const RUN_COLS: &str =
    "id, project, pipeline, status, trigger, vars_json, rerun_of, started_at, finished_at";

fn artifact_row(r: &Row) -> rusqlite::Result<ArtifactRecord> {
    Ok(ArtifactRecord {
        id: r.get(0)?,
        project: r.get(1)?,
        pipeline: r.get(2)?,
        run_id: r.get(3)?,
        job: r.get(4)?,
        path: r.get(5)?,
        sha256: r.get(6)?,
        size: r.get::<_, i64>(7)?.max(0) as u64,
        created_at: r.get(8)?,
        expires_at: r.get(9)?,
    })
}

const ARTIFACT_COLS: &str =
    "id, project, pipeline, run_id, job, path, sha256, size, created_at, expires_at";

impl Store {
    /// Records a new run as `running`; `run.id` is ignored. Returns its id.
    pub fn start_pipeline_run(&self, run: &PipelineRun) -> Result<i64> {
        let vars = serde_json::to_string(&run.vars).unwrap_or_else(|_| "{}".into());
        self.with(|c| {
            c.execute(
                "INSERT INTO pipeline_runs (project, pipeline, status, trigger, vars_json, rerun_of, started_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![run.project, run.pipeline, run.status, run.trigger, vars, run.rerun_of, run.started_at],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    pub fn finish_pipeline_run(&self, id: i64, status: &str, now: i64) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE pipeline_runs SET status = ?2, finished_at = ?3 WHERE id = ?1",
                params![id, status, now],
            )
            .map(|_| ())
        })
    }

    pub fn pipeline_run(&self, id: i64) -> Result<Option<PipelineRun>> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {RUN_COLS} FROM pipeline_runs WHERE id = ?1"),
                params![id],
                run_row,
            )
            .optional()
        })
    }

    /// Records which process conducts a run.
    pub fn set_pipeline_run_owner(&self, run_id: i64, owner: RunOwner) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO pipeline_run_owners (run_id, pid, start_ticks) VALUES (?1, ?2, ?3)",
                params![run_id, owner.pid, owner.start_ticks as i64],
            )
            .map(|_| ())
        })
    }

    /// Every run still recorded as `running`, with its owner (pid, start ticks) when one
    /// was recorded.
    pub fn running_pipeline_runs(&self) -> Result<Vec<(i64, Option<RunOwner>)>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT r.id, o.pid, o.start_ticks FROM pipeline_runs r
                 LEFT JOIN pipeline_run_owners o ON o.run_id = r.id
                 WHERE r.status = 'running' ORDER BY r.id",
            )?;
            let rows = st.query_map([], |r| {
                let pid: Option<i64> = r.get(1)?;
                let start: Option<i64> = r.get(2)?;
                Ok((
                    r.get(0)?,
                    pid.zip(start).map(|(p, s)| RunOwner {
                        pid: u32::try_from(p).unwrap_or(0),
                        start_ticks: s.max(0) as u64,
                    }),
                ))
            })?;
            rows.collect()
        })
    }

    /// Marks a `running` run whose owner is gone as `interrupted` (its end time unknown:
    /// `finished_at` stays empty), with its running and pending jobs. False when the run
    /// was no longer running.
    pub fn interrupt_pipeline_run(&self, run_id: i64) -> Result<bool> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            let n = tx.execute(
                "UPDATE pipeline_runs SET status = 'interrupted' WHERE id = ?1 AND status = 'running'",
                params![run_id],
            )?;
            if n > 0 {
                tx.execute(
                    "UPDATE pipeline_jobs SET status = 'interrupted',
                     reason = 'the baton process running it disappeared'
                     WHERE run_id = ?1 AND status IN ('running', 'pending')",
                    params![run_id],
                )?;
            }
            tx.commit()?;
            Ok(n > 0)
        })
    }

    /// The newest runs first, of one project (and one pipeline when named).
    pub fn pipeline_runs(
        &self,
        project: &str,
        pipeline: Option<&str>,
        limit: i64,
    ) -> Result<Vec<PipelineRun>> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {RUN_COLS} FROM pipeline_runs
                 WHERE project = ?1 AND (?2 IS NULL OR pipeline = ?2)
                 ORDER BY id DESC LIMIT ?3"
            ))?;
            let rows = st.query_map(params![project, pipeline, limit], run_row)?;
            rows.collect()
        })
    }

    /// How many runs ended each way, per pipeline (all projects): `(pipeline, status,
    /// count)`, runs still going left out.
    pub fn pipeline_run_counts(&self) -> Result<Vec<(String, String, u64)>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT pipeline, status, COUNT(*) FROM pipeline_runs
                 WHERE status != 'running' GROUP BY pipeline, status ORDER BY pipeline, status",
            )?;
            let rows = st.query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?.max(0) as u64))
            })?;
            rows.collect()
        })
    }

    /// Each pipeline's newest finished run: `(project, pipeline, status)`.
    pub fn pipeline_last_results(&self) -> Result<Vec<(String, String, String)>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT r.project, r.pipeline, r.status FROM pipeline_runs r
                 JOIN (SELECT MAX(id) AS id FROM pipeline_runs WHERE status != 'running'
                       GROUP BY project, pipeline) m ON r.id = m.id
                 ORDER BY r.project, r.pipeline",
            )?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect()
        })
    }

    /// Writes the given jobs' current records in one transaction (inserted or replaced).
    pub fn save_pipeline_jobs(&self, jobs: &[PipelineJob]) -> Result<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            {
                let mut st = tx.prepare_cached(
                    "INSERT OR REPLACE INTO pipeline_jobs
                     (run_id, name, kind, seq, status, attempts, exit_code, reason, log_file, started_at, finished_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )?;
                for j in jobs {
                    st.execute(params![
                        j.run_id,
                        j.name,
                        j.kind,
                        j.seq,
                        j.status,
                        j.attempts,
                        j.exit_code,
                        j.reason,
                        j.log_file,
                        j.started_at,
                        j.finished_at
                    ])?;
                }
            }
            tx.commit()
        })
    }

    /// A run's jobs in the order they were started or decided.
    pub fn pipeline_jobs(&self, run_id: i64) -> Result<Vec<PipelineJob>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT run_id, name, kind, seq, status, attempts, exit_code, reason, log_file, started_at, finished_at
                 FROM pipeline_jobs WHERE run_id = ?1 ORDER BY seq, name",
            )?;
            let rows = st.query_map(params![run_id], |r| {
                Ok(PipelineJob {
                    run_id: r.get(0)?,
                    name: r.get(1)?,
                    kind: r.get(2)?,
                    seq: r.get(3)?,
                    status: r.get(4)?,
                    attempts: r.get(5)?,
                    exit_code: r.get(6)?,
                    reason: r.get(7)?,
                    log_file: r.get(8)?,
                    started_at: r.get(9)?,
                    finished_at: r.get(10)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Records artifacts; `id` is ignored.
    pub fn add_artifacts(&self, items: &[ArtifactRecord]) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            {
                let mut st = tx.prepare_cached(
                    "INSERT INTO pipeline_artifacts (project, pipeline, run_id, job, path, sha256, size, created_at, expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )?;
                for a in items {
                    st.execute(params![
                        a.project,
                        a.pipeline,
                        a.run_id,
                        a.job,
                        a.path,
                        a.sha256,
                        a.size as i64,
                        a.created_at,
                        a.expires_at
                    ])?;
                }
            }
            tx.commit()
        })
    }

    /// Artifacts of a project, newest first; only one run's when `run_id` is given.
    pub fn artifacts(&self, project: &str, run_id: Option<i64>) -> Result<Vec<ArtifactRecord>> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {ARTIFACT_COLS} FROM pipeline_artifacts
                 WHERE project = ?1 AND (?2 IS NULL OR run_id = ?2)
                 ORDER BY run_id DESC, job, path"
            ))?;
            let rows = st.query_map(params![project, run_id], artifact_row)?;
            rows.collect()
        })
    }

    /// Drops artifact records of `job` beyond its newest `keep` runs, and every record
    /// expired at `now`. Returns how many were dropped.
    pub fn prune_artifacts(
        &self,
        project: &str,
        pipeline: &str,
        job: &str,
        keep: Option<u32>,
        now: i64,
    ) -> Result<usize> {
        self.with(|c| {
            let mut n = c.execute(
                "DELETE FROM pipeline_artifacts WHERE expires_at IS NOT NULL AND expires_at <= ?1",
                params![now],
            )?;
            if let Some(keep) = keep {
                n += c.execute(
                    "DELETE FROM pipeline_artifacts
                     WHERE project = ?1 AND pipeline = ?2 AND job = ?3 AND run_id NOT IN (
                        SELECT DISTINCT run_id FROM pipeline_artifacts
                        WHERE project = ?1 AND pipeline = ?2 AND job = ?3
                        ORDER BY run_id DESC LIMIT ?4)",
                    params![project, pipeline, job, keep],
                )?;
            }
            Ok(n)
        })
    }

    /// Every content hash some artifact record still refers to.
    pub fn artifact_hashes(&self) -> Result<std::collections::BTreeSet<String>> {
        self.with(|c| {
            let mut st = c.prepare("SELECT DISTINCT sha256 FROM pipeline_artifacts")?;
            let rows = st.query_map([], |r| r.get(0))?;
            rows.collect()
        })
    }

    /// What a trigger last saw (e.g. `git:<repo>#<branch>` → commit).
    pub fn trigger_state(
        &self,
        project: &str,
        pipeline: &str,
        key: &str,
    ) -> Result<Option<String>> {
        self.with(|c| {
            c.query_row(
                "SELECT value FROM pipeline_triggers WHERE project = ?1 AND pipeline = ?2 AND key = ?3",
                params![project, pipeline, key],
                |r| r.get(0),
            )
            .optional()
        })
    }

    pub fn set_trigger_state(
        &self,
        project: &str,
        pipeline: &str,
        key: &str,
        value: &str,
        now: i64,
    ) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO pipeline_triggers (project, pipeline, key, value, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(project, pipeline, key) DO UPDATE SET value = ?4, updated_at = ?5",
                params![project, pipeline, key, value, now],
            )
            .map(|_| ())
        })
    }

    /// Asks the process running `run_id` to cancel it; false when the run is not
    /// running (finished, interrupted or unknown).
    pub fn request_pipeline_cancel(&self, run_id: i64, now: i64) -> Result<bool> {
        self.with(|c| {
            let running: bool = c
                .query_row(
                    "SELECT status = 'running' FROM pipeline_runs WHERE id = ?1",
                    params![run_id],
                    |r| r.get(0),
                )
                .optional()?
                .unwrap_or(false);
            if running {
                c.execute(
                    "INSERT OR IGNORE INTO pipeline_cancels (run_id, requested_at) VALUES (?1, ?2)",
                    params![run_id, now],
                )?;
            }
            Ok(running)
        })
    }

    /// Whether someone asked to cancel `run_id`.
    pub fn pipeline_cancel_requested(&self, run_id: i64) -> Result<bool> {
        self.with(|c| {
            c.query_row(
                "SELECT 1 FROM pipeline_cancels WHERE run_id = ?1",
                params![run_id],
                |_| Ok(()),
            )
            .optional()
            .map(|r| r.is_some())
        })
    }

    /// Records a webhook delivery by its keys (its delivery id, its body's digest) and
    /// says whether it is new: false when any key was seen within `window_ms` (a replay).
    /// Keys older than the window are forgotten on the way.
    pub fn first_delivery(
        &self,
        project: &str,
        pipeline: &str,
        keys: &[&str],
        window_ms: i64,
        now: i64,
    ) -> Result<bool> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            tx.execute(
                "DELETE FROM webhook_deliveries WHERE seen_at < ?1",
                params![now.saturating_sub(window_ms)],
            )?;
            let mut new = true;
            for key in keys {
                let inserted = tx.execute(
                    "INSERT OR IGNORE INTO webhook_deliveries (project, pipeline, key, seen_at)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![project, pipeline, key, now],
                )?;
                new &= inserted == 1;
            }
            tx.commit()?;
            Ok(new)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_counts_by_pipeline_and_status_leave_runs_going_out() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let run = |pipeline: &str| PipelineRun {
            id: 0,
            project: "p".into(),
            pipeline: pipeline.into(),
            status: "running".into(),
            trigger: "manual".into(),
            vars: Default::default(),
            rerun_of: None,
            started_at: 10,
            finished_at: None,
        };
        for (pipeline, status) in [
            ("ci", "failed"),
            ("ci", "success"),
            ("ci", "success"),
            ("cd", ""),
        ] {
            let id = s.start_pipeline_run(&run(pipeline)).unwrap();
            if !status.is_empty() {
                s.finish_pipeline_run(id, status, 20).unwrap();
            }
        }
        assert_eq!(
            s.pipeline_run_counts().unwrap(),
            [
                ("ci".to_string(), "failed".to_string(), 1),
                ("ci".to_string(), "success".to_string(), 2)
            ],
            "a run still going is not counted"
        );
    }

    #[test]
    fn runs_jobs_artifacts_and_trigger_state_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let mut run = PipelineRun {
            id: 0,
            project: "p".into(),
            pipeline: "ci".into(),
            status: "running".into(),
            trigger: "manual".into(),
            vars: [("A".to_string(), "1".to_string())].into(),
            rerun_of: None,
            started_at: 10,
            finished_at: None,
        };
        let id = s.start_pipeline_run(&run).unwrap();
        let job = |name: &str, seq| PipelineJob {
            run_id: id,
            name: name.into(),
            kind: "job".into(),
            seq,
            status: "success".into(),
            attempts: 1,
            exit_code: Some(0),
            reason: None,
            log_file: format!("{name}.log"),
            started_at: Some(11),
            finished_at: Some(12),
        };
        s.save_pipeline_jobs(&[job("b", 2), job("a", 1)]).unwrap();
        let mut again = job("b", 2);
        again.status = "failed".into();
        s.save_pipeline_jobs(&[again]).unwrap();
        s.finish_pipeline_run(id, "failed", 20).unwrap();
        let jobs = s.pipeline_jobs(id).unwrap();
        assert_eq!(
            jobs.iter().map(|j| j.name.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(jobs[1].status, "failed");
        run.id = id;
        run.status = "failed".into();
        run.finished_at = Some(20);
        assert_eq!(s.pipeline_run(id).unwrap(), Some(run));
        assert_eq!(s.pipeline_runs("p", Some("ci"), 10).unwrap().len(), 1);
        assert!(s.pipeline_runs("p", Some("other"), 10).unwrap().is_empty());

        let art = |run_id, expires_at| ArtifactRecord {
            id: 0,
            project: "p".into(),
            pipeline: "ci".into(),
            run_id,
            job: "build".into(),
            path: "out/app".into(),
            sha256: format!("h{run_id}"),
            size: 3,
            created_at: 1,
            expires_at,
        };
        s.add_artifacts(&[art(1, None), art(2, None), art(3, None), art(4, Some(50))])
            .unwrap();
        assert_eq!(
            s.prune_artifacts("p", "ci", "build", Some(2), 10).unwrap(),
            2
        );
        assert_eq!(s.artifact_hashes().unwrap().len(), 2);
        assert_eq!(s.prune_artifacts("p", "ci", "build", None, 60).unwrap(), 1);
        assert_eq!(s.artifacts("p", None).unwrap()[0].sha256, "h3");

        // Owners: a running run is listed with its owner until interrupted.
        let mut r2 = s.pipeline_run(id).unwrap().unwrap();
        r2.status = "running".into();
        r2.finished_at = None;
        let id2 = s.start_pipeline_run(&r2).unwrap();
        let id3 = s.start_pipeline_run(&r2).unwrap();
        let owner = RunOwner {
            pid: 4242,
            start_ticks: 77,
        };
        s.set_pipeline_run_owner(id2, owner).unwrap();
        s.save_pipeline_jobs(&[PipelineJob {
            run_id: id2,
            status: "running".into(),
            ..job("a", 1)
        }])
        .unwrap();
        assert_eq!(
            s.running_pipeline_runs().unwrap(),
            [(id2, Some(owner)), (id3, None)]
        );
        assert!(s.interrupt_pipeline_run(id2).unwrap());
        assert!(!s.interrupt_pipeline_run(id2).unwrap());
        let gone = s.pipeline_run(id2).unwrap().unwrap();
        assert_eq!(
            (gone.status.as_str(), gone.finished_at),
            ("interrupted", None)
        );
        assert_eq!(s.pipeline_jobs(id2).unwrap()[0].status, "interrupted");
        assert_eq!(s.running_pipeline_runs().unwrap(), [(id3, None)]);

        assert_eq!(s.trigger_state("p", "ci", "git").unwrap(), None);
        s.set_trigger_state("p", "ci", "git", "abc", 1).unwrap();
        s.set_trigger_state("p", "ci", "git", "def", 2).unwrap();
        assert_eq!(
            s.trigger_state("p", "ci", "git").unwrap().as_deref(),
            Some("def")
        );
    }
}
