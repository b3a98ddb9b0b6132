//! The seam between baton and a hypervisor: what a backend must do for one VM. QEMU
//! (`crate::qemu::Qemu`) is the one backend; a Hyper-V one (PowerShell over SSH) could
//! implement the same trait later and is not built.

use std::path::Path;

use crate::host::Machine;
use crate::VmError;

/// How a VM starts to take in a live migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// `tcp:ADDR:PORT`, where QEMU listens for the stream.
    pub uri: String,
    /// Stay paused once the migration is in (`-S`), until told to run: disks copied
    /// beside the migration must be complete first.
    pub paused: bool,
}

/// What a backend can do, so callers ask instead of failing late. Measured on this
/// host, never assumed: `measured` says how each answer was found.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Capabilities {
    pub live_snapshots: bool,
    pub live_migration: bool,
    pub storage_migration: bool,
    pub acpi_shutdown: bool,
    /// What was asked of the hypervisor and what it said (or why it could not be
    /// asked).
    pub measured: Vec<String>,
}

/// One hypervisor backend, shaped on a VM's lifecycle. `recover` re-attaches to a VM
/// started by an earlier baton process (from its pid file and control socket).
#[allow(async_fn_in_trait)] // used with concrete types only; no Send bound needed
pub trait Hypervisor {
    /// Asks the hypervisor installed here what it can do.
    async fn capabilities(&self) -> Capabilities;
    /// Starts the machine; `incoming` makes it wait for a live migration. Returns the
    /// pid and the accelerator used.
    async fn launch(
        &self,
        machine: &Machine,
        dir: &Path,
        incoming: Option<&Incoming>,
    ) -> Result<(i64, String), VmError>;
    /// The pid of a VM still running from an earlier process, if any.
    async fn recover(&self, dir: &Path) -> Option<i64>;
    /// The run state (`running`, `paused`, `stopped`, …).
    async fn state(&self, dir: &Path) -> String;
    async fn powerdown(&self, dir: &Path) -> Result<(), VmError>;
    async fn pause(&self, dir: &Path) -> Result<(), VmError>;
    async fn resume(&self, dir: &Path) -> Result<(), VmError>;
    async fn snapshot_save(&self, dir: &Path, name: &str) -> Result<(), VmError>;
    async fn snapshot_load(&self, dir: &Path, name: &str) -> Result<(), VmError>;
    async fn snapshot_delete(&self, dir: &Path, name: &str) -> Result<(), VmError>;
}
