//! VMs as the front doors drive them on this host: the file's `vms:` section read and
//! validated against the host, which VMs an operation covers, create-then-start,
//! stop, restart, and snapshots with the policy of the VM's environment.

use std::path::PathBuf;
use std::time::Duration;

use baton_spec::Project;
use baton_vm::{Host, HostOptions, SnapshotPolicy, VmSection, VmSpec};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::converge::refused;
use crate::{Control, Result};

/// A VM started, and its QEMU process.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Deserialize, JsonSchema)]
pub struct VmStarted {
    pub name: String,
    pub pid: i64,
}

/// A VM stopped, and whether it powered off by itself (else it was forced).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Deserialize, JsonSchema)]
pub struct VmStopped {
    pub name: String,
    pub graceful: bool,
}

/// A snapshot taken, and those its policy pruned after it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Deserialize, JsonSchema)]
pub struct SnapshotTaken {
    pub vm: String,
    pub snapshot: String,
    pub pruned: Vec<String>,
}

/// One VM of a project as `ps` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct VmRow {
    /// Always `vm`, so rows can sit beside containers.
    pub kind: &'static str,
    pub name: String,
    pub state: String,
    /// `healthy` or `unhealthy` from one check now; none without a healthcheck or
    /// while stopped.
    pub health: Option<String>,
    pub pid: Option<i64>,
    pub uptime_s: Option<f64>,
    /// The forwards, `HOST_IP:HOST_PORT->GUEST_PORT/PROTO`.
    pub ports: Vec<String>,
}

/// The file's `vms:` and `snapshot_policies:`, validated against this host (its
/// memory, the files the VMs name); `..` in paths is resolved by the OS here, since
/// hosts refuse it in the paths they get. Without a project, an empty section.
pub fn vm_section(project: Option<&Project>) -> Result<VmSection> {
    let Some(project) = project else {
        return Ok(VmSection::default());
    };
    let facts = baton_vm::HostFacts {
        memory_mib: baton_vm::facts::memory_mib(),
    };
    let mut section = baton_vm::read(project, &facts, &|p| p.exists()).map_err(|errs| {
        refused(
            errs.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\nerror: "),
        )
    })?;
    for vm in &mut section.vms {
        baton_vm::confine::canonical_files(vm);
    }
    Ok(section)
}

/// The VMs `names` designates: those, or every VM of the file (only the autostart ones
/// when `autostart_only`).
pub fn pick<'a>(
    section: &'a VmSection,
    names: &[String],
    autostart_only: bool,
) -> Result<Vec<&'a VmSpec>> {
    if names.is_empty() {
        return Ok(section
            .vms
            .iter()
            .filter(|v| !autostart_only || v.autostart)
            .collect());
    }
    names
        .iter()
        .map(|n| {
            section
                .vm(n)
                .ok_or_else(|| refused(format!("no VM named {n:?} in the file's vms: section")))
        })
        .collect()
}

/// The file's policy for the VM's environment; without VMs in the file, the one
/// remembered when the VM was created or started.
pub fn policy_for(host: &Host, section: &VmSection, vm: &str) -> Result<SnapshotPolicy> {
    let m = host.machine(vm)?;
    if section.policies.is_empty() && section.vms.is_empty() {
        return Ok(m.policy.unwrap_or_default());
    }
    Ok(section.policy(m.spec.environment))
}

impl<R> Control<R> {
    /// This machine as a VM host, over the control plane's state directory; VM files
    /// may be in `<state>/vms`, the project's directory and `disk_dirs`.
    pub fn vm_host(&self, project: Option<&Project>, mut disk_dirs: Vec<PathBuf>) -> Result<Host> {
        if let Some(p) = project {
            disk_dirs.push(p.working_dir.clone());
        }
        Ok(Host::open(
            &self.state_dir,
            HostOptions {
                label: "local".into(),
                disk_dirs,
                confine_boot_files: false,
                address: None,
            },
        )?)
    }

    /// The project's VMs on this host (those its file or its `up` declared), with their
    /// state and one health check each; empty without opening anything when it has none.
    pub async fn vm_ps(&self, project: Option<&Project>, name: &str) -> Result<Vec<VmRow>> {
        let section = vm_section(project).unwrap_or_default();
        let mine = |m: &baton_vm::Machine| {
            m.project.as_deref() == Some(name)
                || (m.project.is_none() && section.vm(&m.spec.name).is_some())
        };
        let any = self.store.vms()?.iter().any(|r| {
            serde_json::from_str::<baton_vm::Machine>(&r.spec_json).is_ok_and(|m| mine(&m))
        });
        if !any {
            return Ok(Vec::new());
        }
        let host = self.vm_host(project, Vec::new())?;
        let now = (self.clock)();
        let mut rows = Vec::new();
        for r in host.store.vms()? {
            let Ok(m) = host.machine(&r.name) else {
                continue;
            };
            if !mine(&m) {
                continue;
            }
            let st = host.status(&r.name, now).await?;
            let health = match (&m.spec.healthcheck, st.pid) {
                (Some(_), Some(_)) => Some(
                    match host.probe(&m.spec).await {
                        Ok(()) => "healthy",
                        Err(_) => "unhealthy",
                    }
                    .to_string(),
                ),
                _ => None,
            };
            rows.push(VmRow {
                kind: "vm",
                name: r.name.clone(),
                state: st.state,
                health,
                pid: st.pid,
                uptime_s: st.uptime_s,
                ports: m
                    .spec
                    .network
                    .forwards
                    .iter()
                    .map(|f| {
                        format!(
                            "{}:{}->{}/{}",
                            f.host_ip, f.host_port, f.guest_port, f.protocol
                        )
                    })
                    .collect(),
            });
        }
        Ok(rows)
    }

    /// Records the named VMs of the file (all when none) and makes their disks.
    pub async fn vm_create(
        &self,
        host: &Host,
        section: &VmSection,
        names: &[String],
    ) -> Result<Vec<String>> {
        let mut created = Vec::new();
        for s in pick(section, names, false)? {
            host.create(s, (self.clock)()).await?;
            host.set_policy(&s.name, &section.policy(s.environment), (self.clock)())?;
            host.set_project(&s.name, section.project.as_deref(), (self.clock)())?;
            created.push(s.name.clone());
        }
        Ok(created)
    }

    /// Starts the named VMs (every autostart VM of the file when none), creating from
    /// the file those it has first.
    pub async fn vm_start(
        &self,
        host: &Host,
        section: &VmSection,
        names: &[String],
    ) -> Result<Vec<VmStarted>> {
        let targets: Vec<String> = if names.is_empty() {
            pick(section, &[], true)?
                .iter()
                .map(|s| s.name.clone())
                .collect()
        } else {
            names.to_vec()
        };
        let mut started = Vec::new();
        for n in targets {
            if let Some(s) = section.vm(&n) {
                host.create(s, (self.clock)()).await?;
                host.set_policy(&n, &section.policy(s.environment), (self.clock)())?;
                host.set_project(&n, section.project.as_deref(), (self.clock)())?;
            }
            let pid = host.start(&n, (self.clock)()).await?;
            started.push(VmStarted { name: n, pid });
        }
        Ok(started)
    }

    /// ACPI power-down of the named VMs; after `timeout`, forced.
    pub async fn vm_stop(
        &self,
        host: &Host,
        names: &[String],
        timeout: Duration,
    ) -> Result<Vec<VmStopped>> {
        let mut out = Vec::new();
        for n in names {
            let graceful = host.stop(n, timeout, (self.clock)()).await?;
            out.push(VmStopped {
                name: n.clone(),
                graceful,
            });
        }
        Ok(out)
    }

    /// Stops (ACPI, then forced) and starts again.
    pub async fn vm_restart(
        &self,
        host: &Host,
        names: &[String],
        timeout: Duration,
    ) -> Result<Vec<VmStarted>> {
        let mut out = Vec::new();
        for n in names {
            host.stop(n, timeout, (self.clock)()).await?;
            let pid = host.start(n, (self.clock)()).await?;
            out.push(VmStarted {
                name: n.clone(),
                pid,
            });
        }
        Ok(out)
    }

    /// Takes a live snapshot (`kind`: manual, automated, pre-deploy), then applies the
    /// policy of the VM's environment.
    pub async fn vm_snapshot(
        &self,
        host: &Host,
        section: &VmSection,
        vm: &str,
        kind: &str,
        note: &str,
        name: Option<&str>,
    ) -> Result<SnapshotTaken> {
        let policy = policy_for(host, section, vm)?;
        let (snapshot, pruned) = host
            .snapshot(vm, kind, note, name, &policy, (self.clock)())
            .await?;
        Ok(SnapshotTaken {
            vm: vm.to_string(),
            snapshot,
            pruned,
        })
    }

    /// Brings a VM back to a snapshot (memory and disks).
    pub async fn vm_restore(&self, host: &Host, vm: &str, snapshot: &str) -> Result<()> {
        host.restore(vm, snapshot, (self.clock)()).await?;
        Ok(())
    }
}
