//! baton's virtual machines: the `vms:`/`snapshot_policies:` sections (`spec`), QEMU
//! processes supervised over QMP (`qemu`, `qmp`), one host's VMs with their snapshots
//! and migrations (`host`), where their files may be (`confine`), retention
//! (`retention`) and the VM agent (`agent`).
//!
//! Architecture invariant: spec reading and retention are pure; only `qemu`, `qmp`,
//! `host` and `agent` touch processes, sockets and the network. QEMU is always started
//! from an argument vector, never a shell string. Every file a VM uses goes through
//! `confine::DiskDirs` before the host creates, opens or deletes it.

pub mod agent;
pub mod confine;
pub mod facts;
pub mod ha;
pub mod health;
pub mod host;
pub mod hypervisor;
pub mod migrate;
pub mod qemu;
pub mod qmp;
pub mod retention;
pub mod schedule;
pub mod spec;
pub mod vm_plan;

pub use confine::DiskDirs;
pub use host::{Host, HostOptions, Machine, MachineDisk, VmStatus};
pub use spec::{read, HostFacts, SnapshotPolicy, VmSection, VmSpec};

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("no VM named {0:?} on this host (see `baton vm ls`)")]
    Unknown(String),
    #[error("VM {0:?} is not running: start it first")]
    NotRunning(String),
    #[error("VM {0:?} is already running")]
    Running(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{tool}: {message}")]
    Tool { tool: String, message: String },
    #[error(transparent)]
    Qmp(#[from] qmp::QmpError),
    #[error(transparent)]
    State(#[from] baton_state::StateError),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// A file outside the directories the host allows, or one that cannot be resolved.
    #[error("{path}: {reason}")]
    NotAllowed { path: String, reason: String },
    #[error("agent {addr}: {message}")]
    Agent { addr: String, message: String },
    #[error(transparent)]
    Http(#[from] baton_http::HttpError),
}
