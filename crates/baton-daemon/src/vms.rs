//! The VMs `baton serve` keeps, beside the containers: every VM of an active project on
//! this host gets its restart policy when its process ends without baton asking (or its
//! guest powers off), with backoff from `baton_engine::restart`; its snapshot schedule
//! with the policy's retention; its health checks. Everything it does is an event.
//!
//! Architecture invariant: decisions are pure (`baton_engine::restart`,
//! `baton_vm::schedule`, `baton_vm::health::Verdict`); time comes from the clock it is
//! given. It runs beside the container loop, so a slow snapshot never holds a container.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use baton_metrics::{Metrics, ProjectVmLabels};

use baton_engine::restart::{
    restart_decision, Condition, ExitInfo, RestartDecision, RestartHistory, RestartPolicy,
};
use baton_state::Store;
use baton_vm::health::{Health, Verdict};
use baton_vm::spec::Restart;
use baton_vm::{Host, HostOptions, Machine};

use crate::supervisor::log;

/// The exit code a VM's end counts as when its process died without baton asking (as
/// a container killed by SIGKILL), and when its guest powered off by itself.
const DIED: i64 = 137;
const POWERED_OFF: i64 = 0;

/// How often retention (`retention_days`) is applied besides after each snapshot.
const PRUNE_EVERY_MS: i64 = 60_000;

/// A VM that stopped without being asked counts as such (`baton_vm_stopped_unasked`,
/// the built-in rule `vm_stopped`) until it has run again this long.
const BACK_FOR_MS: i64 = 60_000;

/// A VM that stopped without baton asking: its project, and since when it runs again.
#[derive(Debug, Clone)]
struct Unasked {
    project: String,
    back_at: Option<i64>,
}

/// The engine's restart policy for a VM's `restart:`.
pub fn policy(r: Restart) -> RestartPolicy {
    RestartPolicy {
        condition: match r {
            Restart::No => Condition::Never,
            Restart::Always => Condition::Always,
            Restart::OnFailure => Condition::OnFailure,
            Restart::UnlessStopped => Condition::UnlessStopped,
        },
        delay_ms: None,
        max_attempts: None,
        window_ms: None,
    }
}

/// The VM loop's memory between ticks. In memory only: after a daemon restart,
/// backoff and schedules start over (a schedule does not make up runs it missed).
pub struct VmKeeper {
    state_dir: PathBuf,
    clock: fn() -> i64,
    host: Option<Host>,
    started_at: i64,
    histories: BTreeMap<String, RestartHistory>,
    /// Restarts decided for later: when, and the end they answer.
    pending: BTreeMap<String, (u64, ExitInfo)>,
    /// When each VM's schedule last ran (or was first seen).
    schedule_since: BTreeMap<String, i64>,
    verdicts: BTreeMap<String, (Verdict, i64)>,
    last_prune: i64,
    unasked: BTreeMap<String, Unasked>,
    metrics: Option<Arc<Metrics>>,
}

impl VmKeeper {
    pub fn new(state_dir: &Path, clock: fn() -> i64) -> VmKeeper {
        let now = clock();
        VmKeeper {
            state_dir: state_dir.to_path_buf(),
            clock,
            host: None,
            started_at: now,
            histories: BTreeMap::new(),
            pending: BTreeMap::new(),
            schedule_since: BTreeMap::new(),
            verdicts: BTreeMap::new(),
            last_prune: now,
            unasked: BTreeMap::new(),
            metrics: None,
        }
    }

    /// Publishes which VMs stopped without being asked in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> VmKeeper {
        self.metrics = Some(metrics);
        self
    }

    /// `baton_vm_stopped_unasked{project,vm}` as the keeper knows it now.
    fn publish(&self) {
        let Some(m) = &self.metrics else {
            return;
        };
        let family = &m.vms.stopped_unasked;
        family.retain(|l| {
            self.unasked
                .get(&l.vm)
                .is_some_and(|u| u.project == l.project)
        });
        for (vm, u) in &self.unasked {
            family
                .get(&ProjectVmLabels::new(u.project.as_str(), vm.as_str()))
                .set(1.0);
        }
    }

    /// Runs a tick every `tick` until `stop` says so.
    pub async fn run(mut self, tick: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            self.tick().await;
            if crate::unless_stopped(tokio::time::sleep(tick), &mut stop)
                .await
                .is_none()
            {
                return;
            }
        }
    }

    /// The host, opened once the store has VMs at all (a daemon of containers alone
    /// makes no `vms/` directory).
    fn host(&mut self) -> Option<&Host> {
        if self.host.is_none() {
            let store = Store::open(&self.state_dir).ok()?;
            if store.vms().ok()?.is_empty() {
                return None;
            }
            match Host::open(
                &self.state_dir,
                HostOptions {
                    label: "local".into(),
                    ..HostOptions::default()
                },
            ) {
                Ok(h) => self.host = Some(h),
                Err(e) => {
                    log(&format!("cannot open this host's VMs: {e}"));
                    return None;
                }
            }
        }
        self.host.as_ref()
    }

    /// One look at every VM of the active projects.
    pub async fn tick(&mut self) {
        let clock = self.clock;
        if self.host().is_none() {
            return;
        }
        let Some(host) = self.host.take() else {
            return;
        };
        let active = host.store.active_projects().unwrap_or_default();
        let records = host.store.vms().unwrap_or_default();
        let mut kept = std::collections::BTreeSet::new();
        for rec in records {
            let Ok(m) = host.machine(&rec.name) else {
                continue;
            };
            let Some(project) = m.project.clone() else {
                continue;
            };
            if !active.contains(&project) || m.spec.ha {
                continue;
            }
            kept.insert(rec.name.clone());
            // A CLI command is changing the project (up, down): look again next tick.
            let Ok(Some(_lock)) = host.store.try_lock_project(&project) else {
                continue;
            };
            let desired = host.store.desired(&project).unwrap_or_default();
            if desired.stopped_services.contains(&rec.name) {
                // Stopped through baton: no longer a stop nobody asked for.
                self.unasked.remove(&rec.name);
                continue;
            }
            self.keep(&host, &m, rec.pid, rec.started_at).await;
            self.back(&host, &rec.name);
            if host.pid(&rec.name).is_some() {
                self.schedule(&host, &m).await;
                self.check_health(&host, &m, rec.started_at.unwrap_or(0))
                    .await;
            }
        }
        self.unasked.retain(|vm, _| kept.contains(vm));
        self.publish();
        let now = clock();
        if now - self.last_prune >= PRUNE_EVERY_MS {
            self.last_prune = now;
            if let Ok(gone) = host.prune_all(now).await {
                for (vm, snap) in gone {
                    event(
                        &host,
                        &vm,
                        &format!("snapshot {snap} pruned (retention)"),
                        now,
                    );
                }
            }
        }
        self.host = Some(host);
    }

    /// The restart policy: a VM recorded as running whose process is gone, or whose
    /// guest powered off, is brought back (now or after backoff) or left stopped.
    async fn keep(
        &mut self,
        host: &Host,
        m: &Machine,
        recorded_pid: Option<i64>,
        started: Option<i64>,
    ) {
        let name = m.spec.name.as_str();
        let now = (self.clock)();
        let now_u = u64::try_from(now).unwrap_or(0);
        if let Some((at, exit)) = self.pending.get(name).copied() {
            if now_u >= at {
                self.pending.remove(name);
                self.restart(host, m, exit, "after backoff").await;
            }
            return;
        }
        // Stopped through baton (the record says so): not ours to bring back.
        if recorded_pid.is_none() {
            return;
        }
        let ended = match host.pid(name) {
            None => Some(DIED),
            Some(_) => {
                let dir = host.vm_dir(name).ok();
                let state = match &dir {
                    Some(d) => {
                        use baton_vm::hypervisor::Hypervisor;
                        host.qemu.state(d).await
                    }
                    None => String::new(),
                };
                (state == "shutdown").then_some(POWERED_OFF)
            }
        };
        let Some(code) = ended else {
            return;
        };
        self.unasked.insert(
            name.to_string(),
            Unasked {
                project: m.project.clone().unwrap_or_default(),
                back_at: None,
            },
        );
        let ran_ms = started.map_or(0, |s| u64::try_from(now - s).unwrap_or(0));
        let exit = ExitInfo {
            code,
            ran_ms,
            stopped_by_user: false,
            daemon_start: false,
        };
        let how = if code == POWERED_OFF {
            "its guest powered off"
        } else {
            "its process ended without baton asking"
        };
        let history = self.histories.entry(name.to_string()).or_default();
        let rule = format!("restart: {}", m.spec.restart.as_str());
        match restart_decision(&policy(m.spec.restart), history, exit, now_u) {
            RestartDecision::RestartNow => {
                self.restart(host, m, exit, &format!("{how} ({rule})"))
                    .await;
            }
            RestartDecision::RestartAt { at_ms } => {
                self.pending.insert(name.to_string(), (at_ms, exit));
                event(
                    host,
                    name,
                    &format!(
                        "{how}; restarting in {} ms ({rule}, backoff)",
                        at_ms.saturating_sub(now_u)
                    ),
                    now,
                );
            }
            RestartDecision::GiveUp { reason } => {
                let _ = host.kill(name, now).await;
                event(host, name, &format!("{how}; {reason}"), now);
            }
            RestartDecision::Leave => {
                // Recorded as stopped, and a powered-off QEMU ended.
                let _ = host.kill(name, now).await;
                event(host, name, &format!("{how}; left stopped ({rule})"), now);
            }
        }
    }

    /// A VM that stopped unasked and runs again (restarted here, or started by someone)
    /// stops counting once it has run for `BACK_FOR_MS`.
    fn back(&mut self, host: &Host, name: &str) {
        let now = (self.clock)();
        let running = host.pid(name).is_some();
        let Some(u) = self.unasked.get_mut(name) else {
            return;
        };
        match (running, u.back_at) {
            (false, _) => u.back_at = None,
            (true, None) => u.back_at = Some(now),
            (true, Some(at)) if now - at >= BACK_FOR_MS => {
                self.unasked.remove(name);
            }
            (true, Some(_)) => {}
        }
    }

    async fn restart(&mut self, host: &Host, m: &Machine, exit: ExitInfo, why: &str) {
        let name = m.spec.name.as_str();
        let now = (self.clock)();
        // A guest that powered off leaves its QEMU waiting: a new process replaces it.
        let r = host.start(name, now).await;
        let history = self.histories.entry(name.to_string()).or_default();
        history.record(&exit, u64::try_from(now).unwrap_or(0), None);
        self.verdicts.remove(name);
        match r {
            Ok(pid) => event(host, name, &format!("{why}: restarted (pid {pid})"), now),
            Err(e) => {
                event(host, name, &format!("{why}: restart failed: {e}"), now);
                // Tried again by the policy's backoff, as after another end.
                let next = restart_decision(
                    &policy(m.spec.restart),
                    history,
                    exit,
                    u64::try_from(now).unwrap_or(0),
                );
                if let RestartDecision::RestartAt { at_ms } = next {
                    self.pending.insert(name.to_string(), (at_ms, exit));
                }
            }
        }
    }

    /// The policy's schedule: an `automated` snapshot when it fired since the last one
    /// (or since this daemon started), then the policy's retention.
    async fn schedule(&mut self, host: &Host, m: &Machine) {
        let Some(policy) = &m.policy else {
            return;
        };
        let Some(expr) = &policy.schedule else {
            return;
        };
        let name = m.spec.name.as_str();
        let Ok(cron) = baton_vm::schedule::parse(expr) else {
            return;
        };
        let now = (self.clock)();
        let since = *self
            .schedule_since
            .entry(name.to_string())
            .or_insert(self.started_at);
        if !baton_vm::schedule::due(&cron, since, now) {
            return;
        }
        self.schedule_since.insert(name.to_string(), now);
        let message = match host
            .snapshot(name, "automated", "schedule", None, policy, now)
            .await
        {
            Ok((snap, pruned)) if pruned.is_empty() => {
                format!("snapshot {snap} taken (schedule {expr:?})")
            }
            Ok((snap, pruned)) => format!(
                "snapshot {snap} taken (schedule {expr:?}); pruned {}",
                pruned.join(", ")
            ),
            Err(e) => format!("scheduled snapshot failed: {e}"),
        };
        event(host, name, &message, (self.clock)());
    }

    /// One health check when the VM's interval has passed; an event when its health
    /// changes.
    async fn check_health(&mut self, host: &Host, m: &Machine, started_at: i64) {
        let Some(check) = &m.spec.healthcheck else {
            return;
        };
        let name = m.spec.name.as_str();
        let now = (self.clock)();
        let (_, last) = self
            .verdicts
            .entry(name.to_string())
            .or_insert((Verdict::default(), 0));
        if now - *last < check.interval_ms as i64 {
            return;
        }
        let result = host.probe(&m.spec).await;
        let now = (self.clock)();
        let Some((verdict, last)) = self.verdicts.get_mut(name) else {
            return;
        };
        *last = now;
        if verdict.record(check, result, started_at, now) {
            let message = match verdict.health {
                Health::Healthy => "healthy".to_string(),
                Health::Unhealthy => format!(
                    "unhealthy: {}",
                    verdict.last_error.clone().unwrap_or_default()
                ),
                Health::Starting => "starting".to_string(),
            };
            event(host, name, &message, now);
        }
    }
}

fn event(host: &Host, vm: &str, message: &str, now: i64) {
    log(&format!("vm {vm}: {message}"));
    host.event(vm, message, now);
}
