//! `baton serve`: the long-running side of baton. Today it supervises: every active
//! project in the store is kept running as its last applied revision says, its
//! containers and its VMs (restart policies, snapshot schedules, health).
//!
//! Architecture invariant: decisions come from `baton_engine::supervise` (pure); this
//! crate only loops, talks to the `Runtime` and the store, and survives both its own
//! restart (it adopts what runs: a healthy container is never touched) and a dockerd
//! restart (errors are retried; the next tick converges).

pub mod acme;
pub mod agents;
pub mod alerts;
pub mod api;
pub mod autoscale;
pub mod certs;
pub mod edge;
pub mod fronts;
pub mod probe;
pub mod supervisor;
pub mod telemetry;
pub mod traffic;
pub mod vms;

pub use supervisor::{Supervisor, SupervisorConfig};
