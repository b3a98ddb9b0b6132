//! SSH fleets: the inventory (`hosts:` or an Ansible inventory), target selectors, an
//! in-process SSH transport (russh), tasks and runbooks run with parallel, sequential or
//! rolling strategies, host facts, and managed files with versions, rollback and drift.
//!
//! Architecture invariant: typing (`inventory`, `select`, `runbook`, the `files` section and `validate`) and
//! scheduling decisions (`strategy`) are pure and tested without processes; only `ssh`,
//! `transport` and the runners touch the network. Remote commands are always built by
//! shell-quoting each argument: no user data is ever interpolated unquoted.

pub mod facts;
pub mod files;
pub mod inventory;
pub mod remote;
pub mod report;
pub mod run;
pub mod runbook;
pub mod select;
pub mod ssh;
pub mod strategy;
pub mod template;
pub mod transport;

pub use inventory::{Host, Inventory};
pub use report::{HostResult, HostStatus, RunReport, StepResult};
pub use run::{RunOptions, Task};
pub use strategy::{Batch, OnFailure, Strategy};

/// The last `n` lines of some output, for result tables.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    let from = lines.len().saturating_sub(n);
    lines[from..].join("\n")
}
