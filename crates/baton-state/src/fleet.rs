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

/// Migration 9: each host as the newest fleet run that reached it saw it, written with
/// the run; filled from the runs recorded before it (their reports' `hosts`).
pub(crate) const HOSTS: &str = "
CREATE TABLE IF NOT EXISTS fleet_hosts (
    project TEXT NOT NULL,
    host TEXT NOT NULL,
    address TEXT NOT NULL,
    status TEXT NOT NULL,
    run INTEGER NOT NULL,
    seen_at INTEGER NOT NULL,
    PRIMARY KEY (project, host)
);
INSERT OR REPLACE INTO fleet_hosts (project, host, address, status, run, seen_at)
SELECT project, host, address, status, max(run), seen_at FROM (
    SELECT r.project AS project,
           CASE WHEN h.type = 'object' THEN json_extract(h.value, '$.host') END AS host,
           CASE WHEN h.type = 'object'
                THEN coalesce(json_extract(h.value, '$.address'), '') END AS address,
           CASE WHEN h.type = 'object' THEN json_extract(h.value, '$.status') END AS status,
           r.id AS run,
           r.finished_at AS seen_at
    FROM fleet_runs r,
         json_each(CASE WHEN json_valid(r.report_json) THEN r.report_json ELSE '{}' END,
                   '$.hosts') h
)
WHERE typeof(host) = 'text' AND typeof(address) = 'text' AND typeof(status) = 'text'
      AND status <> 'skipped'
GROUP BY project, host;
";

/// A host as the newest recorded fleet run that reached it saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetHostSeen {
    pub project: String,
    pub host: String,
    pub address: String,
    /// Its status in that run: `ok`, `changed`, `failed` or `unreachable`.
    pub status: String,
    /// The run.
    pub run: i64,
    /// When that run finished.
    pub seen_at: i64,
}

impl FleetHostSeen {
    /// False when the newest run that tried could not connect.
    pub fn reachable(&self) -> bool {
        self.status != "unreachable"
    }
}

/// One host's result in a run being recorded: what `fleet_hosts` keeps of it.
#[derive(Debug, Clone, Copy)]
pub struct HostInRun<'a> {
    pub host: &'a str,
    pub address: &'a str,
    /// `ok`, `changed`, `failed`, `unreachable`; a `skipped` host was not reached and
    /// is not kept.
    pub status: &'a str,
}

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
    /// Records a finished run and, in the same transaction, where each host it reached
    /// stands now (`fleet_hosts`).
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
        hosts: &[HostInRun<'_>],
    ) -> Result<i64> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            tx.execute(
                "INSERT INTO fleet_runs (project, kind, task, target, strategy, outcome, started_at, finished_at, report_json)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![project, kind, task, target, strategy, outcome, started_at, finished_at, report_json],
            )?;
            let id = tx.last_insert_rowid();
            {
                let mut st = tx.prepare_cached(
                    "INSERT OR REPLACE INTO fleet_hosts (project, host, address, status, run, seen_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for h in hosts.iter().filter(|h| h.status != "skipped") {
                    st.execute(params![project, h.host, h.address, h.status, id, finished_at])?;
                }
            }
            tx.commit()?;
            Ok(id)
        })
    }

    /// Each host as the newest run that reached it saw it: a project's, or every
    /// project's (`None`), by project and host.
    pub fn fleet_hosts(&self, project: Option<&str>) -> Result<Vec<FleetHostSeen>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT project, host, address, status, run, seen_at FROM fleet_hosts
                 WHERE ?1 IS NULL OR project = ?1 ORDER BY project, host",
            )?;
            let rows = st.query_map(params![project], |r| {
                Ok(FleetHostSeen {
                    project: r.get(0)?,
                    host: r.get(1)?,
                    address: r.get(2)?,
                    status: r.get(3)?,
                    run: r.get(4)?,
                    seen_at: r.get(5)?,
                })
            })?;
            rows.collect()
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
                "p",
                "adhoc",
                "hostname",
                "all",
                "parallel",
                "ok",
                1,
                2,
                "{}",
                &[],
            )
            .unwrap();
        assert_eq!(s.fleet_runs("p", 10).unwrap()[0].id, id);
    }

    fn seen(host: &str, address: &str, status: &str, run: i64, seen_at: i64) -> FleetHostSeen {
        FleetHostSeen {
            project: "p".into(),
            host: host.into(),
            address: address.into(),
            status: status.into(),
            run,
            seen_at,
        }
    }

    #[test]
    fn a_host_is_kept_as_the_newest_run_that_reached_it_saw_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let h = |host, address, status| HostInRun {
            host,
            address,
            status,
        };
        let first = s
            .record_fleet_run(
                "p",
                "adhoc",
                "true",
                "all",
                "parallel",
                "failed",
                1,
                10,
                "{}",
                &[h("a", "10.0.0.1", "ok"), h("b", "10.0.0.2", "unreachable")],
            )
            .unwrap();
        // A later run that halted before b: b stays as the first run saw it.
        let second = s
            .record_fleet_run(
                "p",
                "adhoc",
                "true",
                "all",
                "serial",
                "halted",
                11,
                20,
                "{}",
                &[h("a", "10.0.0.9", "failed"), h("b", "10.0.0.2", "skipped")],
            )
            .unwrap();
        s.record_fleet_run(
            "q",
            "ping",
            "true",
            "all",
            "parallel",
            "ok",
            1,
            30,
            "{}",
            &[h("a", "192.0.2.1", "ok")],
        )
        .unwrap();
        assert_eq!(
            s.fleet_hosts(Some("p")).unwrap(),
            vec![
                seen("a", "10.0.0.9", "failed", second, 20),
                seen("b", "10.0.0.2", "unreachable", first, 10)
            ]
        );
        let all = s.fleet_hosts(None).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(
            (all[2].project.as_str(), all[2].status.as_str()),
            ("q", "ok")
        );
        assert!(s.fleet_hosts(Some("none")).unwrap().is_empty());
    }

    #[test]
    fn the_hosts_of_runs_recorded_before_the_table_are_filled_in() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        {
            // The database as migration 8 left it, with runs recorded then: reports
            // as baton wrote them, and one that is not JSON at all.
            let c = rusqlite::Connection::open(dir.path().join(crate::DB_FILE)).unwrap();
            c.execute_batch("DROP TABLE fleet_hosts; PRAGMA user_version = 8;")
                .unwrap();
            let run = |project: &str, finished: i64, report: &str| {
                c.execute(
                    "INSERT INTO fleet_runs (project, kind, task, target, strategy, outcome, started_at, finished_at, report_json)
                     VALUES (?1, 'adhoc', 'true', 'all', 'parallel', 'ok', 0, ?2, ?3)",
                    params![project, finished, report],
                )
                .unwrap();
            };
            run(
                "p",
                10,
                r#"{"hosts":[{"host":"a","address":"10.0.0.1","status":"ok"},{"host":"b","address":"10.0.0.2","status":"unreachable"}]}"#,
            );
            run("p", 15, "not json");
            run(
                "p",
                20,
                r#"{"hosts":[{"host":"a","address":"10.0.0.9","status":"changed"},{"host":"b","address":"10.0.0.2","status":"skipped"},7,{"host":3}]}"#,
            );
            run("q", 30, r#"{"hosts":{"host":"x","status":"ok"}}"#);
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(
            s.fleet_hosts(None).unwrap(),
            vec![
                seen("a", "10.0.0.9", "changed", 3, 20),
                seen("b", "10.0.0.2", "unreachable", 1, 10)
            ]
        );
    }
}
