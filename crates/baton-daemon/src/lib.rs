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

/// Waits for `wake` unless `stop` says stop first: `None` when told to stop (also when
/// `wake` is ready but stop is set by then), else what `wake` gave. The daemon's loops
/// (VMs, agents, sampling, alerts, autoscaling) wait between looks through it.
pub(crate) async fn unless_stopped<F: std::future::Future>(
    wake: F,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Option<F::Output> {
    let woke = tokio::select! {
        out = wake => out,
        _ = stop.changed() => return None,
    };
    (!*stop.borrow()).then_some(woke)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[tokio::test]
    async fn a_loop_waits_for_its_wake_unless_told_to_stop() {
        let (tx, mut stop) = tokio::sync::watch::channel(false);
        assert_eq!(super::unless_stopped(async { 7 }, &mut stop).await, Some(7));
        let never = std::future::pending::<()>();
        tx.send(true).unwrap();
        assert_eq!(super::unless_stopped(never, &mut stop).await, None);
        // Already told: a wake that is ready is not taken.
        assert_eq!(super::unless_stopped(async { 7 }, &mut stop).await, None);
        drop(tx);
        let pause = tokio::time::sleep(Duration::from_secs(3600));
        assert_eq!(super::unless_stopped(pause, &mut stop).await, None);
    }
}
