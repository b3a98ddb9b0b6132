//! Fleet tables: orchestration runs (their report as JSON) and managed files — every
//! version's exact bytes, mode and hash, and which version each host last received.

use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::{Result, Store};

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS fleet_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project TEXT NOT NULL,
    kind TEXT NOT NULL,
    task TEXT NOT NULL,
    target TEXT NOT NULL,
    strategy TEXT NOT NULL,
    outcome TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    finished_at INTEGER NOT NULL,
    report_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS file_versions (
    project TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    hash TEXT NOT NULL,
    content BLOB NOT NULL,
    mode INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (project, name, version)
);
CREATE TABLE IF NOT EXISTS file_applied (
    project TEXT NOT NULL,
    name TEXT NOT NULL,
    host TEXT NOT NULL,
    path TEXT NOT NULL,
    version INTEGER NOT NULL,
    applied_at INTEGER NOT NULL,
    PRIMARY KEY (project, name, host)
);
";

/// Migration 7: each host's newest facts (`baton fleet facts`), per project.
pub(crate) const FACTS: &str = "
CREATE TABLE IF NOT EXISTS host_facts (
    project TEXT NOT NULL,
    host TEXT NOT NULL,
    facts_json TEXT,
    error TEXT,
    at INTEGER NOT NULL,
    PRIMARY KEY (project, host)
);
";

/// A host's newest facts: `facts_json` when it answered, else why not (`error`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostFactsRecord {
    pub project: String,
    pub host: String,
    pub facts_json: Option<String>,
    pub error: Option<String>,
    pub at: i64,
}

/// One recorded fleet run (its full report is `report_json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetRun {
    pub id: i64,
    pub project: String,
    pub kind: String,
    pub task: String,
    pub target: String,
    pub strategy: String,
    pub outcome: String,
    pub started_at: i64,
    pub finished_at: i64,
    pub report_json: String,
}

/// One version of a managed file: exact bytes and mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileVersion {
    pub name: String,
    pub version: i64,
    pub hash: String,
    #[serde(skip)]
    pub content: Vec<u8>,
    pub size: usize,
    pub mode: u32,
    pub created_at: i64,
}

/// Which version of a managed file a host last received, and where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileApplied {
    pub name: String,
    pub host: String,
    pub path: String,
    pub version: i64,
    pub applied_at: i64,
}

fn version_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<FileVersion> {
    let content: Vec<u8> = r.get(3)?;
    Ok(FileVersion {
        name: r.get(0)?,
        version: r.get(1)?,
        hash: r.get(2)?,
        size: content.len(),
        content,
        mode: r.get(4)?,
        created_at: r.get(5)?,
    })
}

impl Store {
    #[allow(clippy::too_many_arguments)]
    pub fn record_fleet_run(
        &self,
        project: &str,
        kind: &str,
        task: &str,
        target: &str,
        strategy: &str,
        outcome: &str,
        started_at: i64,
        finished_at: i64,
        report_json: &str,
    ) -> Result<i64> {
        self.with(|c| {
            c.execute(
                "INSERT INTO fleet_runs (project, kind, task, target, strategy, outcome, started_at, finished_at, report_json)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![project, kind, task, target, strategy, outcome, started_at, finished_at, report_json],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    /// Keeps each host's newest facts (one row per project and host).
    pub fn record_host_facts(&self, rows: &[HostFactsRecord]) -> Result<()> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            {
                let mut st = tx.prepare_cached(
                    "INSERT OR REPLACE INTO host_facts (project, host, facts_json, error, at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for r in rows {
                    st.execute(params![r.project, r.host, r.facts_json, r.error, r.at])?;
                }
            }
            tx.commit()
        })
    }

    /// Every host's newest facts, by project and host.
    pub fn host_facts(&self) -> Result<Vec<HostFactsRecord>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT project, host, facts_json, error, at FROM host_facts ORDER BY project, host",
            )?;
            let rows = st.query_map([], |r| {
                Ok(HostFactsRecord {
                    project: r.get(0)?,
                    host: r.get(1)?,
                    facts_json: r.get(2)?,
                    error: r.get(3)?,
                    at: r.get(4)?,
                })
            })?;
            rows.collect()
        })
    }

    /// The project's newest runs first.
    pub fn fleet_runs(&self, project: &str, limit: i64) -> Result<Vec<FleetRun>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT id, project, kind, task, target, strategy, outcome, started_at, finished_at, report_json
                 FROM fleet_runs WHERE project = ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = st.query_map(params![project, limit], |r| {
                Ok(FleetRun {
                    id: r.get(0)?,
                    project: r.get(1)?,
                    kind: r.get(2)?,
                    task: r.get(3)?,
                    target: r.get(4)?,
                    strategy: r.get(5)?,
                    outcome: r.get(6)?,
                    started_at: r.get(7)?,
                    finished_at: r.get(8)?,
                    report_json: r.get(9)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Stores `content` as a new version unless it equals the newest one (same hash and
    /// mode); returns the version and whether it is new.
    pub fn record_file_version(
        &self,
        project: &str,
        name: &str,
        hash: &str,
        content: &[u8],
        mode: u32,
        now: i64,
    ) -> Result<(i64, bool)> {
        self.with(|c| {
            let last: Option<(i64, String, u32)> = c
                .query_row(
                    "SELECT version, hash, mode FROM file_versions WHERE project = ?1 AND name = ?2
                     ORDER BY version DESC LIMIT 1",
                    params![project, name],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            if let Some((v, h, m)) = &last {
                if h == hash && *m == mode {
                    return Ok((*v, false));
                }
            }
            let v = last.map(|l| l.0).unwrap_or(0) + 1;
            c.execute(
                "INSERT INTO file_versions (project, name, version, hash, content, mode, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![project, name, v, hash, content, mode, now],
            )?;
            Ok((v, true))
        })
    }

    /// The names of a project's managed files that have at least one version.
    pub fn managed_files(&self, project: &str) -> Result<Vec<String>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT DISTINCT name FROM file_versions WHERE project = ?1 ORDER BY name",
            )?;
            let rows = st.query_map(params![project], |r| r.get(0))?;
            rows.collect()
        })
    }

    pub fn file_versions(&self, project: &str, name: &str) -> Result<Vec<FileVersion>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT name, version, hash, content, mode, created_at FROM file_versions
                 WHERE project = ?1 AND name = ?2 ORDER BY version",
            )?;
            let rows = st.query_map(params![project, name], version_row)?;
            rows.collect()
        })
    }

    pub fn file_version(
        &self,
        project: &str,
        name: &str,
        version: i64,
    ) -> Result<Option<FileVersion>> {
        self.with(|c| {
            c.query_row(
                "SELECT name, version, hash, content, mode, created_at FROM file_versions
                 WHERE project = ?1 AND name = ?2 AND version = ?3",
                params![project, name, version],
                version_row,
            )
            .optional()
        })
    }

    pub fn record_file_applied(&self, project: &str, a: &FileApplied) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO file_applied (project, name, host, path, version, applied_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (project, name, host) DO UPDATE SET path = ?4, version = ?5, applied_at = ?6",
                params![project, a.name, a.host, a.path, a.version, a.applied_at],
            )?;
            Ok(())
        })
    }

    pub fn files_applied(&self, project: &str, name: &str) -> Result<Vec<FileApplied>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT name, host, path, version, applied_at FROM file_applied
                 WHERE project = ?1 AND name = ?2 ORDER BY host",
            )?;
            let rows = st.query_map(params![project, name], |r| {
                Ok(FileApplied {
                    name: r.get(0)?,
                    host: r.get(1)?,
                    path: r.get(2)?,
                    version: r.get(3)?,
                    applied_at: r.get(4)?,
                })
            })?;
            rows.collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_versions_keep_bytes_and_skip_repeats() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(
            s.record_file_version("p", "f", "h1", b"a\x00b", 0o640, 1)
                .unwrap(),
            (1, true)
        );
        assert_eq!(
            s.record_file_version("p", "f", "h1", b"a\x00b", 0o640, 2)
                .unwrap(),
            (1, false)
        );
        assert_eq!(
            s.record_file_version("p", "f", "h2", b"c", 0o600, 3)
                .unwrap(),
            (2, true)
        );
        let v1 = s.file_version("p", "f", 1).unwrap().unwrap();
        assert_eq!((v1.content.as_slice(), v1.mode), (&b"a\x00b"[..], 0o640));
        assert_eq!(s.file_versions("p", "f").unwrap().len(), 2);
        s.record_file_applied(
            "p",
            &FileApplied {
                name: "f".into(),
                host: "h".into(),
                path: "/x".into(),
                version: 2,
                applied_at: 4,
            },
        )
        .unwrap();
        s.record_file_applied(
            "p",
            &FileApplied {
                name: "f".into(),
                host: "h".into(),
                path: "/x".into(),
                version: 1,
                applied_at: 5,
            },
        )
        .unwrap();
        assert_eq!(s.files_applied("p", "f").unwrap()[0].version, 1);
        let id = s
            .record_fleet_run(
                "p", "adhoc", "hostname", "all", "parallel", "ok", 1, 2, "{}",
            )
            .unwrap();
        assert_eq!(s.fleet_runs("p", 10).unwrap()[0].id, id);
    }
}
