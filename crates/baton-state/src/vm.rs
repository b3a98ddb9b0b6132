//! The virtual machines of this state directory (one "host"): their resolved spec and
//! process, snapshot metadata, migration jobs and a log of operations.

use rusqlite::{params, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use crate::{Result, Store};

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS vms (
    name TEXT PRIMARY KEY,
    spec_json TEXT NOT NULL,
    dir TEXT NOT NULL,
    accel TEXT,
    pid INTEGER,
    started_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS vm_snapshots (
    vm TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    note TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (vm, name)
);
CREATE TABLE IF NOT EXISTS vm_migrations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    vm TEXT NOT NULL,
    kind TEXT NOT NULL,
    source TEXT NOT NULL,
    destination TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    finished_at INTEGER,
    bytes INTEGER,
    downtime_ms INTEGER,
    error TEXT
);
CREATE TABLE IF NOT EXISTS vm_ops (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    vm TEXT NOT NULL,
    op TEXT NOT NULL,
    outcome TEXT NOT NULL,
    message TEXT NOT NULL,
    at INTEGER NOT NULL
);
";

/// A VM known to this host: its resolved spec (JSON of `baton_vm::VmSpec`) and, while
/// it runs, the QEMU process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmRecord {
    pub name: String,
    pub spec_json: String,
    /// `<state_dir>/vms/<name>`: sockets, pid file, console log, default disks.
    pub dir: String,
    /// The accelerator the running process was started with (`kvm`, `tcg`).
    pub accel: Option<String>,
    pub pid: Option<i64>,
    pub started_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Metadata of one internal snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmSnapshot {
    pub vm: String,
    pub name: String,
    /// `manual`, `automated` or `pre-deploy`.
    pub kind: String,
    pub note: String,
    pub created_at: i64,
}

/// One migration job: `live`, `storage` or `failover`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmMigration {
    pub id: i64,
    pub vm: String,
    pub kind: String,
    pub source: String,
    pub destination: String,
    /// `running`, `completed`, `failed`.
    pub status: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub bytes: Option<i64>,
    pub downtime_ms: Option<i64>,
    pub error: Option<String>,
}

/// One recorded VM operation (start, stop, snapshot, prune, …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmOp {
    pub id: i64,
    pub vm: String,
    pub op: String,
    pub outcome: String,
    pub message: String,
    pub at: i64,
}

fn vm_row(r: &Row) -> rusqlite::Result<VmRecord> {
    Ok(VmRecord {
        name: r.get(0)?,
        spec_json: r.get(1)?,
        dir: r.get(2)?,
        accel: r.get(3)?,
        pid: r.get(4)?,
        started_at: r.get(5)?,
        created_at: r.get(6)?,
        updated_at: r.get(7)?,
    })
}

fn migration_row(r: &Row) -> rusqlite::Result<VmMigration> {
    Ok(VmMigration {
        id: r.get(0)?,
        vm: r.get(1)?,
        kind: r.get(2)?,
        source: r.get(3)?,
        destination: r.get(4)?,
        status: r.get(5)?,
        started_at: r.get(6)?,
        finished_at: r.get(7)?,
        bytes: r.get(8)?,
        downtime_ms: r.get(9)?,
        error: r.get(10)?,
    })
}

const VM_COLS: &str = "name, spec_json, dir, accel, pid, started_at, created_at, updated_at";
const MIG_COLS: &str =
    "id, vm, kind, source, destination, status, started_at, finished_at, bytes, downtime_ms, error";

impl Store {
    /// Records a VM (or replaces its spec), keeping its process fields.
    pub fn upsert_vm(&self, name: &str, spec_json: &str, dir: &str, now: i64) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO vms (name, spec_json, dir, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?4)
                 ON CONFLICT(name) DO UPDATE SET spec_json = ?2, dir = ?3, updated_at = ?4",
                params![name, spec_json, dir, now],
            )
            .map(|_| ())
        })
    }

    pub fn vm(&self, name: &str) -> Result<Option<VmRecord>> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {VM_COLS} FROM vms WHERE name = ?1"),
                params![name],
                vm_row,
            )
            .optional()
        })
    }

    pub fn vms(&self) -> Result<Vec<VmRecord>> {
        self.with(|c| {
            let mut st = c.prepare(&format!("SELECT {VM_COLS} FROM vms ORDER BY name"))?;
            let rows = st.query_map([], vm_row)?;
            rows.collect()
        })
    }

    /// Records the running process (`pid` `None` once it is gone).
    pub fn set_vm_process(
        &self,
        name: &str,
        pid: Option<i64>,
        accel: Option<&str>,
        started_at: Option<i64>,
        now: i64,
    ) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE vms SET pid = ?2, accel = ?3, started_at = ?4, updated_at = ?5 WHERE name = ?1",
                params![name, pid, accel, started_at, now],
            )
            .map(|_| ())
        })
    }

    /// Forgets a VM and its snapshot metadata (migrations and operations stay as history).
    pub fn remove_vm(&self, name: &str) -> Result<()> {
        self.with(|c| {
            c.execute("DELETE FROM vm_snapshots WHERE vm = ?1", params![name])?;
            c.execute("DELETE FROM vms WHERE name = ?1", params![name])
                .map(|_| ())
        })
    }

    pub fn add_vm_snapshot(&self, s: &VmSnapshot) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO vm_snapshots (vm, name, kind, note, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![s.vm, s.name, s.kind, s.note, s.created_at],
            )
            .map(|_| ())
        })
    }

    pub fn remove_vm_snapshot(&self, vm: &str, name: &str) -> Result<bool> {
        self.with(|c| {
            c.execute(
                "DELETE FROM vm_snapshots WHERE vm = ?1 AND name = ?2",
                params![vm, name],
            )
            .map(|n| n > 0)
        })
    }

    /// Snapshots of one VM (all when `vm` is `None`), oldest first.
    pub fn vm_snapshots(&self, vm: Option<&str>) -> Result<Vec<VmSnapshot>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT vm, name, kind, note, created_at FROM vm_snapshots
                 WHERE ?1 IS NULL OR vm = ?1 ORDER BY created_at, rowid",
            )?;
            let rows = st.query_map(params![vm], |r| {
                Ok(VmSnapshot {
                    vm: r.get(0)?,
                    name: r.get(1)?,
                    kind: r.get(2)?,
                    note: r.get(3)?,
                    created_at: r.get(4)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Starts a migration job; returns its id.
    pub fn start_vm_migration(
        &self,
        vm: &str,
        kind: &str,
        source: &str,
        destination: &str,
        now: i64,
    ) -> Result<i64> {
        self.with(|c| {
            c.execute(
                "INSERT INTO vm_migrations (vm, kind, source, destination, status, started_at)
                 VALUES (?1, ?2, ?3, ?4, 'running', ?5)",
                params![vm, kind, source, destination, now],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    /// Ends a migration job with its outcome and figures.
    pub fn finish_vm_migration(
        &self,
        id: i64,
        status: &str,
        bytes: Option<i64>,
        downtime_ms: Option<i64>,
        error: Option<&str>,
        now: i64,
    ) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE vm_migrations SET status = ?2, bytes = ?3, downtime_ms = ?4, error = ?5,
                 finished_at = ?6 WHERE id = ?1",
                params![id, status, bytes, downtime_ms, error, now],
            )
            .map(|_| ())
        })
    }

    /// Migration jobs, newest first.
    pub fn vm_migrations(&self, limit: i64) -> Result<Vec<VmMigration>> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {MIG_COLS} FROM vm_migrations ORDER BY id DESC LIMIT ?1"
            ))?;
            let rows = st.query_map(params![limit], migration_row)?;
            rows.collect()
        })
    }

    pub fn add_vm_op(
        &self,
        vm: &str,
        op: &str,
        outcome: &str,
        message: &str,
        now: i64,
    ) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO vm_ops (vm, op, outcome, message, at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![vm, op, outcome, message, now],
            )
            .map(|_| ())
        })
    }

    /// How many `op` operations with `outcome` the VM has had (numbers snapshots).
    pub fn vm_op_count(&self, vm: &str, op: &str, outcome: &str) -> Result<i64> {
        self.with(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM vm_ops WHERE vm = ?1 AND op = ?2 AND outcome = ?3",
                params![vm, op, outcome],
                |r| r.get(0),
            )
        })
    }

    /// Recorded operations, newest first.
    pub fn vm_ops(&self, limit: i64) -> Result<Vec<VmOp>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT id, vm, op, outcome, message, at FROM vm_ops ORDER BY id DESC LIMIT ?1",
            )?;
            let rows = st.query_map(params![limit], |r| {
                Ok(VmOp {
                    id: r.get(0)?,
                    vm: r.get(1)?,
                    op: r.get(2)?,
                    outcome: r.get(3)?,
                    message: r.get(4)?,
                    at: r.get(5)?,
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
    fn vms_snapshots_and_migrations_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.upsert_vm("a", "{}", "/x", 1).unwrap();
        s.set_vm_process("a", Some(42), Some("tcg"), Some(5), 6)
            .unwrap();
        let v = s.vm("a").unwrap().unwrap();
        assert_eq!(
            (v.pid, v.accel.as_deref(), v.started_at),
            (Some(42), Some("tcg"), Some(5))
        );
        for (i, n) in ["s1", "s2"].iter().enumerate() {
            s.add_vm_snapshot(&VmSnapshot {
                vm: "a".into(),
                name: n.to_string(),
                kind: "automated".into(),
                note: String::new(),
                created_at: i as i64,
            })
            .unwrap();
        }
        assert!(s.remove_vm_snapshot("a", "s1").unwrap());
        assert_eq!(s.vm_snapshots(Some("a")).unwrap().len(), 1);
        let id = s.start_vm_migration("a", "live", "h1", "h2", 10).unwrap();
        s.finish_vm_migration(id, "completed", Some(9), Some(3), None, 11)
            .unwrap();
        let m = &s.vm_migrations(10).unwrap()[0];
        assert_eq!(
            (m.status.as_str(), m.downtime_ms, m.finished_at),
            ("completed", Some(3), Some(11))
        );
        s.remove_vm("a").unwrap();
        assert!(s.vm("a").unwrap().is_none());
        assert!(s.vm_snapshots(None).unwrap().is_empty());
    }
}
