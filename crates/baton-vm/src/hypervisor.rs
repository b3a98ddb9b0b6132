//! The seam between baton and a hypervisor: what a backend must do for one VM. QEMU
//! (`crate::qemu::Qemu`) is the one backend; a Hyper-V one (PowerShell over SSH) could
//! implement the same trait later and is not built.

use std::path::Path;

use crate::host::Machine;
use crate::VmError;

/// What a backend can do, so callers ask instead of failing late.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Capabilities {
    pub live_snapshots: bool,
    pub live_migration: bool,
    pub storage_migration: bool,
    pub acpi_shutdown: bool,
}

/// One hypervisor backend, shaped on a VM's lifecycle. `recover` re-attaches to a VM
/// started by an earlier baton process (from its pid file and control socket).
#[allow(async_fn_in_trait)] // used with concrete types only; no Send bound needed
pub trait Hypervisor {
    fn capabilities(&self) -> Capabilities;
    /// Starts the machine; `incoming` makes it wait for a live migration at that URI.
    /// Returns the pid and the accelerator used.
    async fn launch(
        &self,
        machine: &Machine,
        dir: &Path,
        incoming: Option<&str>,
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
