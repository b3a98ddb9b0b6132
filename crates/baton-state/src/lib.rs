//! baton's state store: one embedded SQLite database (WAL) per state directory holding
//! projects, spec revisions, service configurations, observed resources, actions and events.
//!
//! Architecture invariant: the store never invents timestamps; every write takes `now`
//! (Unix milliseconds) from the caller, so tests are exact. It knows nothing of Docker.

mod agents;
mod alerts;
mod audit;
mod fleet;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

mod pipeline;
pub mod private;
mod tokens;
mod vm;

use rusqlite::{params, Connection, OptionalExtension};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use alerts::{AlertTransition, NotificationRecord, SilenceRecord};
pub use audit::AuditRecord;
pub use fleet::{FileApplied, FileVersion, FleetHostSeen, FleetRun, HostFactsRecord, HostInRun};
pub use pipeline::{ArtifactRecord, PipelineJob, PipelineRun, RunOwner};
pub use tokens::TokenRecord;
pub use vm::{VmMigration, VmOp, VmRecord, VmSnapshot};

/// The file name of the database inside the state directory.
pub const DB_FILE: &str = "baton.db";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot create state directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("state database {path} has schema version {version}, written by a newer baton (this one knows up to {SCHEMA_VERSION}): upgrade baton or use another --state-dir")]
    Newer { path: PathBuf, version: i64 },
}

pub type Result<T> = std::result::Result<T, StateError>;

/// A spec revision: the resolved project as it was applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Revision {
    pub project: String,
    pub number: i64,
    pub spec_hash: String,
    pub created_at: i64,
}

/// The outcome of one recorded action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ActionStatus {
    /// Recorded before being carried out; still so if baton died meanwhile.
    Intent,
    Done,
    Failed,
    /// Found as `Intent` by a later run: the run that started it was killed.
    Interrupted,
}

impl ActionStatus {
    fn as_str(self) -> &'static str {
        match self {
            ActionStatus::Intent => "intent",
            ActionStatus::Done => "done",
            ActionStatus::Failed => "failed",
            ActionStatus::Interrupted => "interrupted",
        }
    }

    fn parse(s: &str) -> ActionStatus {
        match s {
            "done" => ActionStatus::Done,
            "failed" => ActionStatus::Failed,
            "interrupted" => ActionStatus::Interrupted,
            _ => ActionStatus::Intent,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ActionRecord {
    pub id: i64,
    pub project: String,
    pub revision: Option<i64>,
    pub kind: String,
    pub target: String,
    pub reason: String,
    pub status: ActionStatus,
    pub error: Option<String>,
    pub started_at: i64,
    pub finished_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Event {
    pub id: i64,
    pub project: String,
    pub at: i64,
    pub kind: String,
    pub subject: String,
    pub message: String,
}

/// Appends one event on `c` (a connection or a transaction): the one way a row gets
/// into the stream.
pub(crate) fn insert_event(
    c: &Connection,
    project: &str,
    at: i64,
    kind: &str,
    subject: &str,
    message: &str,
) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO events (project, at, kind, subject, message) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![project, at, kind, subject, message],
    )
    .map(|_| ())
}

fn event_row(r: &rusqlite::Row) -> rusqlite::Result<Event> {
    Ok(Event {
        id: r.get(0)?,
        project: r.get(1)?,
        at: r.get(2)?,
        kind: r.get(3)?,
        subject: r.get(4)?,
        message: r.get(5)?,
    })
}

/// Whether a project should be running, as the last `up`, `down`, `stop` or `start`
/// left it; the daemon keeps active projects running.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Desired {
    pub project: String,
    pub active: bool,
    /// Services stopped by hand (`baton stop`): the daemon leaves them stopped.
    pub stopped_services: Vec<String>,
}

/// What the daemon last concluded about one container (`crash-looping`, `backing off`…).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Supervision {
    pub container: String,
    pub status: String,
    pub restarts: u32,
    pub updated_at: i64,
}

/// Where a recorded rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RolloutStatus {
    /// The daemon is carrying it out.
    Running,
    /// Stopped by its failure action or analysis; `resume` or `abort` move it on.
    Paused,
    Completed,
    RolledBack,
    /// A newer rollout of the service took over before it finished.
    Superseded,
}

impl RolloutStatus {
    pub const ALL: [RolloutStatus; 5] = [
        RolloutStatus::Running,
        RolloutStatus::Paused,
        RolloutStatus::Completed,
        RolloutStatus::RolledBack,
        RolloutStatus::Superseded,
    ];

    /// The word the store keeps and people read.
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutStatus::Running => "running",
            RolloutStatus::Paused => "paused",
            RolloutStatus::Completed => "completed",
            RolloutStatus::RolledBack => "rolled-back",
            RolloutStatus::Superseded => "superseded",
        }
    }

    pub fn parse(text: &str) -> Option<RolloutStatus> {
        RolloutStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether nothing more happens to it without a request.
    pub fn is_finished(self) -> bool {
        !matches!(self, RolloutStatus::Running)
    }
}

impl std::fmt::Display for RolloutStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A manual request on a rollout, waiting for the daemon to carry it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RolloutRequest {
    /// Skip the remaining pauses and steps: go to 100 % now.
    Promote,
    /// Roll back the running or paused rollout.
    Abort,
    /// Go on with a paused rollout from where it stopped.
    Resume,
}

impl RolloutRequest {
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutRequest::Promote => "promote",
            RolloutRequest::Abort => "abort",
            RolloutRequest::Resume => "resume",
        }
    }

    pub fn parse(text: &str) -> Option<RolloutRequest> {
        [
            RolloutRequest::Promote,
            RolloutRequest::Abort,
            RolloutRequest::Resume,
        ]
        .into_iter()
        .find(|r| r.as_str() == text)
    }

    /// The statuses a rollout must have for the request to apply to it.
    pub fn applies_to(self) -> &'static [RolloutStatus] {
        match self {
            RolloutRequest::Promote => &[RolloutStatus::Running],
            RolloutRequest::Abort => &[RolloutStatus::Running, RolloutStatus::Paused],
            RolloutRequest::Resume => &[RolloutStatus::Paused],
        }
    }
}

impl std::fmt::Display for RolloutRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One rollout of a service from one configuration to another, as the daemon runs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutRecord {
    pub id: i64,
    pub project: String,
    pub service: String,
    /// The spec revision being rolled out.
    pub revision: i64,
    pub from_hash: String,
    pub to_hash: String,
    pub strategy: String,
    pub status: RolloutStatus,
    /// The decider's state (`baton_engine::rollout::RolloutState`) as JSON.
    pub state_json: String,
    /// A manual request waiting for the daemon.
    pub requested: Option<RolloutRequest>,
    pub outcome: Option<String>,
    pub started_at: i64,
    pub finished_at: Option<i64>,
}

/// A project the store knows: where its file was, and when it was first and last
/// applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProjectRecord {
    pub name: String,
    pub working_dir: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A resource as last observed (container, network, volume).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    pub kind: String,
    pub name: String,
    pub id: String,
    pub service: Option<String>,
    pub replica: Option<u32>,
    pub config_hash: Option<String>,
    pub state: String,
}

/// An exclusive hold on one project: whoever holds it (a CLI command, or the daemon for
/// one tick) is the only one changing that project's containers. Released on drop, and
/// by the kernel when the holder dies, even by SIGKILL.
pub struct ProjectLock {
    _file: std::fs::File,
}

/// The store. Cheap to share by reference; calls are short and serialised on one
/// connection.
pub struct Store {
    path: PathBuf,
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS projects (
    name TEXT PRIMARY KEY,
    working_dir TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS revisions (
    project TEXT NOT NULL,
    number INTEGER NOT NULL,
    spec_hash TEXT NOT NULL,
    spec_json TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (project, number)
);
CREATE TABLE IF NOT EXISTS service_configs (
    hash TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    service TEXT NOT NULL,
    config_json TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS resources (
    project TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    id TEXT NOT NULL,
    service TEXT,
    replica INTEGER,
    config_hash TEXT,
    state TEXT NOT NULL,
    observed_at INTEGER NOT NULL,
    PRIMARY KEY (project, kind, name)
);
CREATE TABLE IF NOT EXISTS actions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project TEXT NOT NULL,
    revision INTEGER,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    reason TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    started_at INTEGER NOT NULL,
    finished_at INTEGER
);
CREATE INDEX IF NOT EXISTS actions_project ON actions (project, id);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project TEXT NOT NULL,
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_project ON events (project, id);
CREATE TABLE IF NOT EXISTS desired (
    project TEXT PRIMARY KEY,
    active INTEGER NOT NULL,
    stopped_services TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS rollouts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project TEXT NOT NULL,
    service TEXT NOT NULL,
    revision INTEGER NOT NULL,
    from_hash TEXT NOT NULL,
    to_hash TEXT NOT NULL,
    strategy TEXT NOT NULL,
    status TEXT NOT NULL,
    state_json TEXT NOT NULL,
    requested TEXT,
    outcome TEXT,
    started_at INTEGER NOT NULL,
    finished_at INTEGER
);
CREATE INDEX IF NOT EXISTS rollouts_service ON rollouts (project, service, id);
CREATE TABLE IF NOT EXISTS probe_health (
    project TEXT NOT NULL,
    container_id TEXT NOT NULL,
    health TEXT NOT NULL,
    detail TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (project, container_id)
);
CREATE TABLE IF NOT EXISTS supervision (
    project TEXT NOT NULL,
    container TEXT NOT NULL,
    status TEXT NOT NULL,
    restarts INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (project, container)
);
";

/// The schema, as ordered migrations: the database's `user_version` says how many have
/// run. A migration is never edited once released; a change is a new one at the end.
/// The first is the schema as it was before versions (every statement `IF NOT EXISTS`,
/// so it is a no-op on such a database).
const MIGRATIONS: &[&[&str]] = &[
    &[SCHEMA, pipeline::SCHEMA, fleet::SCHEMA, vm::SCHEMA],
    &[pipeline::DELIVERIES],
    &[pipeline::CANCELS],
    &[tokens::SCHEMA],
    &[audit::SCHEMA],
    &[alerts::SCHEMA],
    &[fleet::FACTS],
    &[agents::SCHEMA],
    &[fleet::HOSTS],
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// WAL journal, then the migrations the database lacks, in one write transaction.
fn set_up(conn: &Connection) -> std::result::Result<(), SetUpError> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(SetUpError::Newer(version));
    }
    for migration in MIGRATIONS
        .iter()
        .skip(usize::try_from(version).unwrap_or(0))
    {
        for sql in *migration {
            conn.execute_batch(sql)?;
        }
    }
    if version != SCHEMA_VERSION {
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    }
    conn.execute_batch("COMMIT")?;
    Ok(())
}

enum SetUpError {
    Sqlite(rusqlite::Error),
    /// The database was written by a newer baton: its schema version.
    Newer(i64),
}

impl From<rusqlite::Error> for SetUpError {
    fn from(e: rusqlite::Error) -> Self {
        SetUpError::Sqlite(e)
    }
}

impl Store {
    /// Opens (creating if needed) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Store> {
        let dir_error = |source| StateError::Dir {
            path: dir.to_path_buf(),
            source,
        };
        private::create_dir(dir).map_err(dir_error)?;
        let path = dir.join(DB_FILE);
        // A state directory an older release made 0755 (it holds our database) is
        // tightened; any other existing directory is the user's and left alone.
        if path.exists() {
            private::tighten(dir, private::DIR_MODE).map_err(dir_error)?;
        }
        let sql = |source| StateError::Sqlite {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(sql)?;
        // SQLite creates the database 0644 (and later its -wal and -shm files with the
        // database's mode), so it is made 0600 before anything is written to it, inside
        // a directory that is already 0700; files an older release left open are
        // tightened. Only by path: closing any other descriptor of the database would
        // drop every POSIX lock this process's connections hold on it, and another
        // process would then take the WAL away from under them.
        for suffix in ["", "-wal", "-shm"] {
            let file = PathBuf::from(format!("{}{suffix}", path.display()));
            match private::tighten(&file, private::FILE_MODE) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(dir_error(e)),
                _ => {}
            }
        }
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(sql)?;
        // Two processes opening a new store at once can get SQLITE_BUSY here without the
        // busy handler being asked (switching to WAL, or a read upgraded to a write), so
        // the setup takes the write lock up front and is tried again while it is busy.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let Err(e) = set_up(&conn) else { break };
            // Whatever step failed, no transaction stays open.
            let _ = conn.execute_batch("ROLLBACK");
            let e = match e {
                SetUpError::Newer(version) => {
                    return Err(StateError::Newer {
                        path: path.clone(),
                        version,
                    })
                }
                SetUpError::Sqlite(e) => e,
            };
            if e.sqlite_error_code() != Some(rusqlite::ErrorCode::DatabaseBusy)
                || std::time::Instant::now() >= deadline
            {
                return Err(sql(e));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(Store {
            path,
            conn: Mutex::new(conn),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock_file(&self, project: &str) -> std::io::Result<std::fs::File> {
        let dir = self.path.with_file_name("locks");
        private::create_dir(&dir)?;
        private::open_or_create(&dir.join(format!("{project}.lock")))
    }

    /// Waits for and takes the project's lock.
    pub fn lock_project(&self, project: &str) -> Result<ProjectLock> {
        let file = self.lock_file(project).map_err(|source| StateError::Dir {
            path: self.path.with_file_name("locks"),
            source,
        })?;
        file.lock().map_err(|source| StateError::Dir {
            path: self.path.with_file_name("locks"),
            source,
        })?;
        Ok(ProjectLock { _file: file })
    }

    /// Takes the project's lock if nobody holds it.
    pub fn try_lock_project(&self, project: &str) -> Result<Option<ProjectLock>> {
        let file = self.lock_file(project).map_err(|source| StateError::Dir {
            path: self.path.with_file_name("locks"),
            source,
        })?;
        match file.try_lock() {
            Ok(()) => Ok(Some(ProjectLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(source)) => Err(StateError::Dir {
                path: self.path.with_file_name("locks"),
                source,
            }),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        // A poisoned lock only means another thread panicked mid-call; SQLite's own
        // transactions keep the data consistent, so carry on with the connection.
        let conn = match self.conn.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&conn).map_err(|source| StateError::Sqlite {
            path: self.path.clone(),
            source,
        })
    }

    pub fn upsert_project(&self, name: &str, working_dir: &Path, now: i64) -> Result<()> {
        let wd = working_dir.to_string_lossy();
        self.with(|c| {
            c.execute(
                "INSERT INTO projects (name, working_dir, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?3)
                 ON CONFLICT(name) DO UPDATE SET working_dir = ?2, updated_at = ?3",
                params![name, wd, now],
            )
            .map(|_| ())
        })
    }

    /// Records the resolved spec as a new revision unless it equals the latest one.
    /// Returns the revision and whether it is new.
    pub fn record_revision(
        &self,
        project: &str,
        spec_hash: &str,
        spec_json: &str,
        now: i64,
    ) -> Result<(Revision, bool)> {
        if let Some(latest) = self.latest_revision(project)? {
            if latest.spec_hash == spec_hash {
                return Ok((latest, false));
            }
        }
        self.with(|c| {
            let number: i64 = c.query_row(
                "SELECT COALESCE(MAX(number), 0) + 1 FROM revisions WHERE project = ?1",
                params![project],
                |r| r.get(0),
            )?;
            c.execute(
                "INSERT INTO revisions (project, number, spec_hash, spec_json, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![project, number, spec_hash, spec_json, now],
            )?;
            Ok((
                Revision {
                    project: project.to_string(),
                    number,
                    spec_hash: spec_hash.to_string(),
                    created_at: now,
                },
                true,
            ))
        })
    }

    pub fn latest_revision(&self, project: &str) -> Result<Option<Revision>> {
        self.with(|c| {
            c.query_row(
                "SELECT number, spec_hash, created_at FROM revisions
                 WHERE project = ?1 ORDER BY number DESC LIMIT 1",
                params![project],
                |r| {
                    Ok(Revision {
                        project: project.to_string(),
                        number: r.get(0)?,
                        spec_hash: r.get(1)?,
                        created_at: r.get(2)?,
                    })
                },
            )
            .optional()
        })
    }

    /// Keeps the effective configuration behind a config hash, so a later plan can say
    /// which fields changed.
    pub fn save_service_config(
        &self,
        hash: &str,
        project: &str,
        service: &str,
        config_json: &str,
        now: i64,
    ) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT OR IGNORE INTO service_configs (hash, project, service, config_json, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![hash, project, service, config_json, now],
            )
            .map(|_| ())
        })
    }

    pub fn service_config(&self, hash: &str) -> Result<Option<String>> {
        self.with(|c| {
            c.query_row(
                "SELECT config_json FROM service_configs WHERE hash = ?1",
                params![hash],
                |r| r.get(0),
            )
            .optional()
        })
    }

    /// Records an action before it is carried out. Returns its id.
    pub fn action_intent(
        &self,
        project: &str,
        revision: Option<i64>,
        kind: &str,
        target: &str,
        reason: &str,
        now: i64,
    ) -> Result<i64> {
        self.with(|c| {
            c.execute(
                "INSERT INTO actions (project, revision, kind, target, reason, status, started_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'intent', ?6)",
                params![project, revision, kind, target, reason, now],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    /// Records how an action ended: `Ok` or the error text.
    pub fn action_outcome(
        &self,
        id: i64,
        outcome: std::result::Result<(), &str>,
        now: i64,
    ) -> Result<()> {
        let (status, error) = match outcome {
            Ok(()) => (ActionStatus::Done, None),
            Err(e) => (ActionStatus::Failed, Some(e)),
        };
        self.with(|c| {
            c.execute(
                "UPDATE actions SET status = ?2, error = ?3, finished_at = ?4 WHERE id = ?1",
                params![id, status.as_str(), error, now],
            )
            .map(|_| ())
        })
    }

    /// Marks the actions a killed run left as intents; returns them.
    pub fn mark_interrupted(&self, project: &str, now: i64) -> Result<Vec<ActionRecord>> {
        let open: Vec<ActionRecord> = self
            .actions(project, i64::MAX)?
            .into_iter()
            .filter(|a| a.status == ActionStatus::Intent)
            .collect();
        self.with(|c| {
            c.execute(
                "UPDATE actions SET status = 'interrupted', finished_at = ?2
                 WHERE project = ?1 AND status = 'intent'",
                params![project, now],
            )
            .map(|_| ())
        })?;
        Ok(open)
    }

    /// The newest `limit` actions of a project, oldest first.
    pub fn actions(&self, project: &str, limit: i64) -> Result<Vec<ActionRecord>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT id, project, revision, kind, target, reason, status, error, started_at, finished_at
                 FROM (SELECT * FROM actions WHERE project = ?1 ORDER BY id DESC LIMIT ?2)
                 ORDER BY id",
            )?;
            let rows = stmt.query_map(params![project, limit], |r| {
                Ok(ActionRecord {
                    id: r.get(0)?,
                    project: r.get(1)?,
                    revision: r.get(2)?,
                    kind: r.get(3)?,
                    target: r.get(4)?,
                    reason: r.get(5)?,
                    status: ActionStatus::parse(&r.get::<_, String>(6)?),
                    error: r.get(7)?,
                    started_at: r.get(8)?,
                    finished_at: r.get(9)?,
                })
            })?;
            rows.collect()
        })
    }

    pub fn event(
        &self,
        project: &str,
        kind: &str,
        subject: &str,
        message: &str,
        now: i64,
    ) -> Result<()> {
        self.with(|c| insert_event(c, project, now, kind, subject, message))
    }

    /// The newest `limit` events of a project, oldest first.
    pub fn events(&self, project: &str, limit: i64) -> Result<Vec<Event>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT id, project, at, kind, subject, message
                 FROM (SELECT * FROM events WHERE project = ?1 ORDER BY id DESC LIMIT ?2)
                 ORDER BY id",
            )?;
            let rows = stmt.query_map(params![project, limit], event_row)?;
            rows.collect()
        })
    }

    /// Up to `limit` events after id `after`, oldest first; only those of `project`
    /// when given. What the event stream reads.
    pub fn events_after(
        &self,
        after: i64,
        project: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Event>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT id, project, at, kind, subject, message FROM events
                 WHERE id > ?1 AND (?2 IS NULL OR project = ?2) ORDER BY id LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![after, project, limit], event_row)?;
            rows.collect()
        })
    }

    /// Up to `limit` events older than id `before` (all when `None`), newest first;
    /// only those of `project` when given.
    pub fn events_page(
        &self,
        project: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Event>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT id, project, at, kind, subject, message FROM events
                 WHERE (?1 IS NULL OR project = ?1) AND (?2 IS NULL OR id < ?2)
                 ORDER BY id DESC LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![project, before, limit], event_row)?;
            rows.collect()
        })
    }

    /// The newest event's id (0 when there is none).
    pub fn last_event_id(&self) -> Result<i64> {
        self.with(|c| c.query_row("SELECT COALESCE(MAX(id), 0) FROM events", [], |r| r.get(0)))
    }

    /// Every project the store knows, by name.
    pub fn projects(&self) -> Result<Vec<ProjectRecord>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT name, working_dir, created_at, updated_at FROM projects ORDER BY name",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(ProjectRecord {
                    name: r.get(0)?,
                    working_dir: r.get(1)?,
                    created_at: r.get(2)?,
                    updated_at: r.get(3)?,
                })
            })?;
            rows.collect()
        })
    }

    /// A project's revisions, oldest first.
    pub fn revisions(&self, project: &str) -> Result<Vec<Revision>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT number, spec_hash, created_at FROM revisions
                 WHERE project = ?1 ORDER BY number",
            )?;
            let rows = stmt.query_map(params![project], |r| {
                Ok(Revision {
                    project: project.to_string(),
                    number: r.get(0)?,
                    spec_hash: r.get(1)?,
                    created_at: r.get(2)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Replaces the observed resources of a project with `resources`.
    pub fn replace_resources(&self, project: &str, resources: &[Resource], now: i64) -> Result<()> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            tx.execute("DELETE FROM resources WHERE project = ?1", params![project])?;
            {
                let mut stmt = tx.prepare(
                    "INSERT OR REPLACE INTO resources
                     (project, kind, name, id, service, replica, config_hash, state, observed_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )?;
                for r in resources {
                    stmt.execute(params![
                        project,
                        r.kind,
                        r.name,
                        r.id,
                        r.service,
                        r.replica,
                        r.config_hash,
                        r.state,
                        now
                    ])?;
                }
            }
            tx.commit()
        })
    }

    pub fn set_desired(&self, desired: &Desired, now: i64) -> Result<()> {
        let stopped = serde_json::to_string(&desired.stopped_services).unwrap_or_default();
        self.with(|c| {
            c.execute(
                "INSERT INTO desired (project, active, stopped_services, updated_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(project) DO UPDATE SET active = ?2, stopped_services = ?3, updated_at = ?4",
                params![desired.project, desired.active, stopped, now],
            )
            .map(|_| ())
        })
    }

    /// The desired run state of a project; inactive with nothing stopped when unknown.
    pub fn desired(&self, project: &str) -> Result<Desired> {
        let row: Option<(bool, String)> = self.with(|c| {
            c.query_row(
                "SELECT active, stopped_services FROM desired WHERE project = ?1",
                params![project],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
        })?;
        Ok(match row {
            Some((active, stopped)) => Desired {
                project: project.to_string(),
                active,
                stopped_services: serde_json::from_str(&stopped).unwrap_or_default(),
            },
            None => Desired {
                project: project.to_string(),
                ..Default::default()
            },
        })
    }

    /// Projects that should be running.
    pub fn active_projects(&self) -> Result<Vec<String>> {
        self.with(|c| {
            let mut stmt =
                c.prepare("SELECT project FROM desired WHERE active = 1 ORDER BY project")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect()
        })
    }

    /// The resolved spec of a revision, as JSON.
    pub fn revision_spec(&self, project: &str, number: i64) -> Result<Option<String>> {
        self.with(|c| {
            c.query_row(
                "SELECT spec_json FROM revisions WHERE project = ?1 AND number = ?2",
                params![project, number],
                |r| r.get(0),
            )
            .optional()
        })
    }

    pub fn set_supervision(&self, project: &str, s: &Supervision) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO supervision (project, container, status, restarts, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(project, container) DO UPDATE SET status = ?3, restarts = ?4, updated_at = ?5",
                params![project, s.container, s.status, s.restarts, s.updated_at],
            )
            .map(|_| ())
        })
    }

    /// Records the verdict of baton's own health check on one container (by id: names
    /// are reused by replacements), and forgets containers not in `live`.
    pub fn set_probe_health(
        &self,
        project: &str,
        container_id: &str,
        health: &str,
        detail: &str,
        live: &[&str],
        now: i64,
    ) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO probe_health (project, container_id, health, detail, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(project, container_id) DO UPDATE SET health = ?3, detail = ?4, updated_at = ?5",
                params![project, container_id, health, detail, now],
            )?;
            let ids: Vec<String> = {
                let mut stmt =
                    c.prepare("SELECT container_id FROM probe_health WHERE project = ?1")?;
                let rows = stmt.query_map(params![project], |r| r.get(0))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            for id in ids.iter().filter(|id| !live.contains(&id.as_str())) {
                c.execute(
                    "DELETE FROM probe_health WHERE project = ?1 AND container_id = ?2",
                    params![project, id],
                )?;
            }
            Ok(())
        })
    }

    /// baton's health-check verdicts by container id: (health, detail, updated_at).
    pub fn probe_health(
        &self,
        project: &str,
    ) -> Result<std::collections::BTreeMap<String, (String, String, i64)>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT container_id, health, detail, updated_at FROM probe_health WHERE project = ?1",
            )?;
            let rows = stmt.query_map(params![project], |r| {
                Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?)))
            })?;
            rows.collect()
        })
    }

    pub fn supervision(&self, project: &str) -> Result<Vec<Supervision>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT container, status, restarts, updated_at FROM supervision
                 WHERE project = ?1 ORDER BY container",
            )?;
            let rows = stmt.query_map(params![project], |r| {
                Ok(Supervision {
                    container: r.get(0)?,
                    status: r.get(1)?,
                    restarts: r.get(2)?,
                    updated_at: r.get(3)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Records a new running rollout; returns its id.
    pub fn start_rollout(&self, r: &RolloutRecord) -> Result<i64> {
        self.with(|c| {
            c.execute(
                "INSERT INTO rollouts (project, service, revision, from_hash, to_hash, strategy, status, state_json, started_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'running', ?7, ?8)",
                params![r.project, r.service, r.revision, r.from_hash, r.to_hash, r.strategy, r.state_json, r.started_at],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    /// Saves a rollout's progress; `finished` with its final status and outcome.
    pub fn update_rollout(
        &self,
        id: i64,
        status: RolloutStatus,
        state_json: &str,
        outcome: Option<&str>,
        finished_at: Option<i64>,
    ) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE rollouts SET status = ?2, state_json = ?3, outcome = COALESCE(?4, outcome),
                 finished_at = COALESCE(?5, finished_at) WHERE id = ?1",
                params![id, status.as_str(), state_json, outcome, finished_at],
            )
            .map(|_| ())
        })
    }

    /// Puts a manual request on the newest rollout of a service when its status is one
    /// the request applies to. A paused one goes back to `running`, its outcome and
    /// finish time cleared, so the daemon steps it again. Returns the newest rollout as
    /// it was before, and whether it took the request; `None` when the service has had
    /// no rollout.
    pub fn request_newest_rollout(
        &self,
        project: &str,
        service: &str,
        action: RolloutRequest,
    ) -> Result<Option<(RolloutRecord, bool)>> {
        let Some(newest) = self.rollouts(project, Some(service))?.pop() else {
            return Ok(None);
        };
        if !action.applies_to().contains(&newest.status) {
            return Ok(Some((newest, false)));
        }
        // Only if the daemon did not change its status in between.
        let taken = self.with(|c| {
            c.execute(
                "UPDATE rollouts SET requested = ?2, status = 'running', outcome = NULL, finished_at = NULL
                 WHERE id = ?1 AND status = ?3",
                params![newest.id, action.as_str(), newest.status.as_str()],
            )
            .map(|n| n > 0)
        })?;
        Ok(Some((newest, taken)))
    }

    /// Takes (and clears) a pending manual request.
    pub fn take_rollout_request(&self, id: i64) -> Result<Option<RolloutRequest>> {
        self.with(|c| {
            let r: Option<Option<String>> = c
                .query_row(
                    "SELECT requested FROM rollouts WHERE id = ?1",
                    params![id],
                    |r| r.get(0),
                )
                .optional()?;
            c.execute(
                "UPDATE rollouts SET requested = NULL WHERE id = ?1",
                params![id],
            )?;
            Ok(r.flatten().as_deref().and_then(RolloutRequest::parse))
        })
    }

    /// A service's rollouts, newest last.
    pub fn rollouts(&self, project: &str, service: Option<&str>) -> Result<Vec<RolloutRecord>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT id, project, service, revision, from_hash, to_hash, strategy, status, state_json,
                        requested, outcome, started_at, finished_at
                 FROM rollouts WHERE project = ?1 AND (?2 IS NULL OR service = ?2) ORDER BY id",
            )?;
            let rows = stmt.query_map(params![project, service], |r| {
                Ok(RolloutRecord {
                    id: r.get(0)?,
                    project: r.get(1)?,
                    service: r.get(2)?,
                    revision: r.get(3)?,
                    from_hash: r.get(4)?,
                    to_hash: r.get(5)?,
                    strategy: r.get(6)?,
                    status: {
                        let text: String = r.get(7)?;
                        RolloutStatus::parse(&text).ok_or_else(|| {
                            rusqlite::Error::FromSqlConversionFailure(
                                7,
                                rusqlite::types::Type::Text,
                                format!("unknown rollout status {text:?}").into(),
                            )
                        })?
                    },
                    state_json: r.get(8)?,
                    requested: r
                        .get::<_, Option<String>>(9)?
                        .as_deref()
                        .and_then(RolloutRequest::parse),
                    outcome: r.get(10)?,
                    started_at: r.get(11)?,
                    finished_at: r.get(12)?,
                })
            })?;
            rows.collect()
        })
    }

    pub fn resources(&self, project: &str) -> Result<Vec<Resource>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT kind, name, id, service, replica, config_hash, state FROM resources
                 WHERE project = ?1 ORDER BY kind, name",
            )?;
            let rows = stmt.query_map(params![project], |r| {
                Ok(Resource {
                    kind: r.get(0)?,
                    name: r.get(1)?,
                    id: r.get(2)?,
                    service: r.get(3)?,
                    replica: r.get(4)?,
                    config_hash: r.get(5)?,
                    state: r.get(6)?,
                })
            })?;
            rows.collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        (dir, store)
    }

    #[test]
    fn each_pipelines_newest_finished_run_and_each_hosts_newest_facts() {
        let (_d, s) = store();
        let run = |project: &str, pipeline: &str, status: &str| {
            let id = s
                .start_pipeline_run(&PipelineRun {
                    id: 0,
                    project: project.into(),
                    pipeline: pipeline.into(),
                    status: "running".into(),
                    trigger: "manual".into(),
                    vars: Default::default(),
                    rerun_of: None,
                    started_at: 1,
                    finished_at: None,
                })
                .unwrap();
            if status != "running" {
                s.finish_pipeline_run(id, status, 2).unwrap();
            }
        };
        run("p", "ci", "failed");
        run("p", "ci", "success");
        run("p", "deploy", "success");
        run("p", "deploy", "failed");
        run("p", "deploy", "running");
        run("q", "ci", "timed_out");
        let got = s.pipeline_last_results().unwrap();
        let want = [
            ("p", "ci", "success"),
            ("p", "deploy", "failed"),
            ("q", "ci", "timed_out"),
        ];
        let got: Vec<(&str, &str, &str)> = got
            .iter()
            .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
            .collect();
        assert_eq!(got, want);

        let facts = |host: &str, error: Option<&str>, at| HostFactsRecord {
            project: "p".into(),
            host: host.into(),
            facts_json: error.is_none().then(|| "{}".to_string()),
            error: error.map(str::to_string),
            at,
        };
        s.record_host_facts(&[facts("a", None, 1), facts("b", None, 1)])
            .unwrap();
        s.record_host_facts(&[facts("b", Some("refused"), 2)])
            .unwrap();
        let rows = s.host_facts().unwrap();
        assert_eq!(
            rows,
            vec![facts("a", None, 1), facts("b", Some("refused"), 2)]
        );
    }

    #[test]
    fn a_database_from_before_schema_versions_is_upgraded_and_used() {
        let tmp = tempfile::tempdir().expect("tempdir");
        {
            let old = Connection::open(tmp.path().join(DB_FILE)).unwrap();
            old.execute_batch(include_str!("../tests/fixtures/unversioned.sql"))
                .unwrap();
        }
        let s = Store::open(tmp.path()).expect("open the old database");
        // What the old release wrote is all there.
        assert_eq!(s.latest_revision("p").unwrap().unwrap().spec_hash, "h1");
        assert_eq!(s.events("p", 10).unwrap()[0].message, "started");
        assert_eq!(
            s.pipeline_runs("p", Some("ci"), 10).unwrap()[0].status,
            "success"
        );
        // And what this one adds works on it.
        assert!(s.first_delivery("p", "ci", &["d1"], 1000, 5).unwrap());
        let version: i64 = s
            .with(|c| c.query_row("PRAGMA user_version", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        drop(s);
        // Opening again runs nothing twice.
        let s = Store::open(tmp.path()).expect("reopen");
        assert!(!s.first_delivery("p", "ci", &["d1"], 1000, 6).unwrap());
    }

    #[test]
    fn an_old_open_state_directory_is_tightened_a_foreign_one_left_alone() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().expect("tempdir");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let open = |p: &Path| std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755));
        let old = tmp.path().join("old");
        drop(Store::open(&old).unwrap());
        open(&old).unwrap();
        std::fs::set_permissions(old.join(DB_FILE), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        drop(Store::open(&old).unwrap());
        assert_eq!(mode(&old), 0o700);
        assert_eq!(mode(&old.join(DB_FILE)), 0o600);
        let foreign = tmp.path().join("foreign");
        std::fs::create_dir(&foreign).unwrap();
        open(&foreign).unwrap();
        drop(Store::open(&foreign).unwrap());
        assert_eq!(mode(&foreign), 0o755);
        assert_eq!(mode(&foreign.join(DB_FILE)), 0o600);
    }

    #[test]
    fn a_database_from_a_newer_baton_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        drop(Store::open(tmp.path()).unwrap());
        let c = Connection::open(tmp.path().join(DB_FILE)).unwrap();
        c.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(c);
        let e = Store::open(tmp.path()).err().expect("refused").to_string();
        assert!(e.contains("written by a newer baton"), "{e}");
    }

    #[test]
    fn a_webhook_delivery_is_new_once_within_its_window() {
        let (_d, s) = store();
        assert!(s
            .first_delivery("p", "ci", &["id:1", "sha:a"], 100, 1000)
            .unwrap());
        // The same id, or the same signed body under a new id, is a replay.
        assert!(!s
            .first_delivery("p", "ci", &["id:1", "sha:b"], 100, 1010)
            .unwrap());
        assert!(!s
            .first_delivery("p", "ci", &["id:2", "sha:a"], 100, 1020)
            .unwrap());
        // Another pipeline has its own deliveries.
        assert!(s
            .first_delivery("p", "cd", &["id:1", "sha:a"], 100, 1030)
            .unwrap());
        // After the window it is forgotten.
        assert!(s
            .first_delivery("p", "ci", &["id:1", "sha:a"], 100, 1200)
            .unwrap());
    }

    #[test]
    fn the_state_directory_and_database_are_private_from_the_start() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("state");
        let s = Store::open(&dir).expect("open");
        s.upsert_project("p", std::path::Path::new("/w"), 1)
            .unwrap();
        drop(s.lock_project("p").unwrap());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        for f in [DB_FILE, "baton.db-wal", "baton.db-shm", "locks/p.lock"] {
            assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
        }
        assert_eq!(mode(&dir.join("locks")), 0o700);
    }

    #[test]
    fn revisions_are_recorded_only_when_the_spec_changes() {
        let (_d, s) = store();
        let (r1, new1) = s.record_revision("p", "h1", "{}", 10).unwrap();
        let (r2, new2) = s.record_revision("p", "h1", "{}", 20).unwrap();
        let (r3, new3) = s.record_revision("p", "h2", "{}", 30).unwrap();
        assert_eq!((r1.number, new1), (1, true));
        assert_eq!((r2.number, new2), (1, false));
        assert_eq!((r3.number, new3), (2, true));
        assert_eq!(s.latest_revision("p").unwrap().unwrap().spec_hash, "h2");
        assert!(s.latest_revision("other").unwrap().is_none());
    }

    #[test]
    fn actions_go_from_intent_to_outcome_and_leftovers_are_interrupted() {
        let (_d, s) = store();
        let a = s
            .action_intent("p", Some(1), "create", "web-1", "new", 1)
            .unwrap();
        let b = s
            .action_intent("p", Some(1), "create", "db-1", "new", 2)
            .unwrap();
        s.action_outcome(a, Ok(()), 3).unwrap();
        let c = s
            .action_intent("p", Some(1), "start", "x-1", "new", 4)
            .unwrap();
        s.action_outcome(c, Err("boom"), 5).unwrap();
        let left = s.mark_interrupted("p", 6).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].id, b);
        let all = s.actions("p", 10).unwrap();
        let statuses: Vec<_> = all.iter().map(|a| a.status).collect();
        assert_eq!(
            statuses,
            vec![
                ActionStatus::Done,
                ActionStatus::Interrupted,
                ActionStatus::Failed
            ]
        );
        assert_eq!(all[2].error.as_deref(), Some("boom"));
    }

    #[test]
    fn service_configs_and_resources_round_trip() {
        let (_d, s) = store();
        s.save_service_config("abc", "p", "web", "{\"a\":1}", 1)
            .unwrap();
        s.save_service_config("abc", "p", "web", "{\"a\":2}", 2)
            .unwrap();
        assert_eq!(
            s.service_config("abc").unwrap().as_deref(),
            Some("{\"a\":1}")
        );
        let r = Resource {
            kind: "container".into(),
            name: "p-web-1".into(),
            id: "123".into(),
            service: Some("web".into()),
            replica: Some(1),
            config_hash: Some("abc".into()),
            state: "running".into(),
        };
        s.replace_resources("p", std::slice::from_ref(&r), 5)
            .unwrap();
        assert_eq!(s.resources("p").unwrap(), vec![r]);
        s.replace_resources("p", &[], 6).unwrap();
        assert!(s.resources("p").unwrap().is_empty());
    }

    #[test]
    fn events_keep_order_and_limit() {
        let (_d, s) = store();
        for i in 0..5 {
            s.event("p", "container", "web-1", &format!("m{i}"), i)
                .unwrap();
        }
        let ev = s.events("p", 2).unwrap();
        let msgs: Vec<_> = ev.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(msgs, vec!["m3", "m4"]);
    }

    #[test]
    fn events_page_backwards_and_stream_forwards() {
        let (_d, s) = store();
        for i in 0..6 {
            let p = if i % 2 == 0 { "a" } else { "b" };
            s.event(p, "supervise", "web-1", &format!("m{i}"), i)
                .unwrap();
        }
        let msgs = |v: Vec<Event>| v.into_iter().map(|e| e.message).collect::<Vec<_>>();
        let page = s.events_page(None, None, 4).unwrap();
        assert_eq!(msgs(page.clone()), ["m5", "m4", "m3", "m2"]);
        let older = s.events_page(None, Some(page[3].id), 4).unwrap();
        assert_eq!(msgs(older), ["m1", "m0"]);
        assert_eq!(
            msgs(s.events_page(Some("a"), None, 2).unwrap()),
            ["m4", "m2"]
        );
        let last = s.last_event_id().unwrap();
        assert_eq!(
            msgs(s.events_after(last - 2, None, 10).unwrap()),
            ["m4", "m5"]
        );
        assert_eq!(msgs(s.events_after(0, Some("b"), 2).unwrap()), ["m1", "m3"]);
        assert!(s.events_after(last, None, 10).unwrap().is_empty());
    }

    #[test]
    fn desired_state_and_supervision_round_trip() {
        let (_d, s) = store();
        assert!(!s.desired("p").unwrap().active);
        let d = Desired {
            project: "p".into(),
            active: true,
            stopped_services: vec!["db".into()],
        };
        s.set_desired(&d, 1).unwrap();
        assert_eq!(s.desired("p").unwrap(), d);
        assert_eq!(s.active_projects().unwrap(), vec!["p"]);
        s.set_desired(&Desired { active: false, ..d }, 2).unwrap();
        assert!(s.active_projects().unwrap().is_empty());
        let sup = Supervision {
            container: "p-web-1".into(),
            status: "crash-looping".into(),
            restarts: 7,
            updated_at: 3,
        };
        s.set_supervision("p", &sup).unwrap();
        assert_eq!(s.supervision("p").unwrap(), vec![sup]);
        s.record_revision("p", "h", "{\"x\":1}", 4).unwrap();
        assert_eq!(
            s.revision_spec("p", 1).unwrap().as_deref(),
            Some("{\"x\":1}")
        );
    }

    #[test]
    fn a_project_lock_excludes_others_until_dropped() {
        let (_d, s) = store();
        let held = s.lock_project("p").unwrap();
        assert!(s.try_lock_project("p").unwrap().is_none());
        assert!(s.try_lock_project("q").unwrap().is_some());
        drop(held);
        assert!(s.try_lock_project("p").unwrap().is_some());
    }

    #[test]
    fn rollouts_run_take_requests_and_finish() {
        let (_d, s) = store();
        let r = RolloutRecord {
            id: 0,
            project: "p".into(),
            service: "web".into(),
            revision: 2,
            from_hash: "a".into(),
            to_hash: "b".into(),
            strategy: "canary".into(),
            status: RolloutStatus::Running,
            state_json: "{}".into(),
            requested: None,
            outcome: None,
            started_at: 10,
            finished_at: None,
        };
        let id = s.start_rollout(&r).unwrap();
        let promote = |s: &Store| {
            s.request_newest_rollout("p", "web", RolloutRequest::Promote)
                .unwrap()
                .is_some_and(|(_, taken)| taken)
        };
        assert!(promote(&s));
        assert_eq!(
            s.take_rollout_request(id).unwrap(),
            Some(RolloutRequest::Promote)
        );
        assert_eq!(s.take_rollout_request(id).unwrap(), None);
        s.update_rollout(
            id,
            RolloutStatus::Completed,
            "{\"x\":1}",
            Some("completed"),
            Some(20),
        )
        .unwrap();
        assert!(!promote(&s), "nothing running");
        let all = s.rollouts("p", Some("web")).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(
            (all[0].status.as_str(), all[0].finished_at),
            ("completed", Some(20))
        );
        assert!(s.rollouts("p", Some("db")).unwrap().is_empty());
    }

    #[test]
    fn a_paused_rollout_takes_abort_and_resume_and_runs_again() {
        let (_d, s) = store();
        let mut r = RolloutRecord {
            id: 0,
            project: "p".into(),
            service: "web".into(),
            revision: 2,
            from_hash: "a".into(),
            to_hash: "b".into(),
            strategy: "rolling".into(),
            status: RolloutStatus::Running,
            state_json: "{}".into(),
            requested: None,
            outcome: None,
            started_at: 10,
            finished_at: None,
        };
        assert_eq!(
            s.request_newest_rollout("p", "web", RolloutRequest::Resume)
                .unwrap(),
            None
        );
        let first = s.start_rollout(&r).unwrap();
        s.update_rollout(
            first,
            RolloutStatus::Paused,
            "{}",
            Some("paused: n1"),
            Some(20),
        )
        .unwrap();
        r.started_at = 30;
        let id = s.start_rollout(&r).unwrap();
        s.update_rollout(
            id,
            RolloutStatus::Paused,
            "{}",
            Some("paused: n2"),
            Some(40),
        )
        .unwrap();
        // not paused → refused, nothing changed
        let (rec, taken) = s
            .request_newest_rollout("p", "web", RolloutRequest::Promote)
            .unwrap()
            .unwrap();
        assert_eq!((rec.id, rec.status.as_str(), taken), (id, "paused", false));
        assert_eq!(s.take_rollout_request(id).unwrap(), None);
        // paused → running again with the request, outcome and finish cleared; only the
        // newest rollout
        let (rec, taken) = s
            .request_newest_rollout("p", "web", RolloutRequest::Resume)
            .unwrap()
            .unwrap();
        assert_eq!((rec.id, rec.status.as_str(), taken), (id, "paused", true));
        let all = s.rollouts("p", Some("web")).unwrap();
        assert_eq!(all[0].status, RolloutStatus::Paused);
        let now = &all[1];
        assert_eq!(
            (now.status.as_str(), now.outcome.as_deref(), now.finished_at),
            ("running", None, None)
        );
        assert_eq!(now.requested, Some(RolloutRequest::Resume));
        // running → abort taken too
        let (_, taken) = s
            .request_newest_rollout("p", "web", RolloutRequest::Abort)
            .unwrap()
            .unwrap();
        assert!(taken);
        assert_eq!(
            s.take_rollout_request(id).unwrap(),
            Some(RolloutRequest::Abort)
        );
    }

    #[test]
    fn reopening_keeps_data() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            s.upsert_project("p", Path::new("/x"), 1).unwrap();
            s.record_revision("p", "h", "{}", 1).unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.latest_revision("p").unwrap().unwrap().number, 1);
    }
}
