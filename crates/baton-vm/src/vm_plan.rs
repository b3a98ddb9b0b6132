//! The VM half of `plan`, `up` and `down`: the file's VMs and what this host has turned
//! into actions with their reasons, and which changes need a restart. Pure data, like
//! `baton_engine::plan`: no QEMU, no store, no clock.

use std::collections::BTreeSet;
use std::fmt;

use baton_spec::Project;
use serde::{Deserialize, Serialize};

use crate::spec::{Boot, DiskSource, VmSection, VmSpec};

/// A VM this host knows (its store's record), as the planner sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct HostVm {
    pub spec: VmSpec,
    /// The names of the disks it has (made or given) here.
    pub disks: Vec<String>,
    pub running: bool,
    /// The project whose `up` created it, if any.
    pub project: Option<String>,
}

/// One field of a VM that differs between the host's record and the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub field: String,
    pub from: String,
    pub to: String,
    /// Only a new QEMU process takes it (CPUs, memory, disks, boot, network, accelerator).
    pub restart: bool,
}

/// What `up` or `down` does to one VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum VmAction {
    /// Not on this host: record it, make its disks, start it.
    Create { vm: String },
    /// On this host but not running: take the file's spec (changes listed), start it.
    Start { vm: String, changes: Vec<Change> },
    /// Running, and a change needs a new process: stop (ACPI, then forced), start.
    Restart { vm: String, changes: Vec<Change> },
    /// Running; the changes need no restart: only the record changes.
    Update { vm: String, changes: Vec<Change> },
    /// Stop it and keep it (disks included): `down`.
    Stop { vm: String, reason: String },
    /// Forget it; with `disks`, delete the images baton made: `down -v`, orphans.
    Remove {
        vm: String,
        disks: bool,
        reason: String,
    },
}

impl VmAction {
    pub fn vm(&self) -> &str {
        match self {
            VmAction::Create { vm }
            | VmAction::Start { vm, .. }
            | VmAction::Restart { vm, .. }
            | VmAction::Update { vm, .. }
            | VmAction::Stop { vm, .. }
            | VmAction::Remove { vm, .. } => vm,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            VmAction::Create { .. } => "create vm",
            VmAction::Start { .. } => "start vm",
            VmAction::Restart { .. } => "restart vm",
            VmAction::Update { .. } => "update vm",
            VmAction::Stop { .. } => "stop vm",
            VmAction::Remove { .. } => "remove vm",
        }
    }

    /// Why, in words: the changed fields (each marked when it needs a restart).
    pub fn reason(&self) -> String {
        let listed = |changes: &[Change]| {
            changes
                .iter()
                .map(|c| {
                    let mark = if c.restart { " (restart)" } else { "" };
                    format!("{}: {} → {}{mark}", c.field, c.from, c.to)
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        match self {
            VmAction::Create { .. } => "not on this host".into(),
            VmAction::Start { changes, .. } if changes.is_empty() => "stopped".into(),
            VmAction::Start { changes, .. } => format!("stopped; {}", listed(changes)),
            VmAction::Restart { changes, .. } | VmAction::Update { changes, .. } => listed(changes),
            VmAction::Stop { reason, .. } => reason.clone(),
            VmAction::Remove { disks, reason, .. } => {
                let d = if *disks {
                    "with the disks baton made"
                } else {
                    "disks kept"
                };
                format!("{reason}, {d}")
            }
        }
    }
}

/// The VM plan of one project.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VmPlan {
    pub project: String,
    pub actions: Vec<VmAction>,
    /// VMs considered and found as the file says, running.
    pub up_to_date: Vec<String>,
    pub warnings: Vec<String>,
}

impl VmPlan {
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// Whether there is anything to say at all (a project without VMs says nothing).
    pub fn is_silent(&self) -> bool {
        self.actions.is_empty() && self.up_to_date.is_empty() && self.warnings.is_empty()
    }
}

impl fmt::Display for VmPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_silent() {
            return Ok(());
        }
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        if self.actions.is_empty() {
            let n = self.up_to_date.len();
            writeln!(
                f,
                "project {} VMs: nothing to do ({n} VM{} up to date)",
                self.project,
                plural(n)
            )?;
        } else {
            let n = self.actions.len();
            writeln!(f, "project {} VMs: {n} action{}", self.project, plural(n))?;
            for a in &self.actions {
                let sign = match a {
                    VmAction::Create { .. } => '+',
                    VmAction::Start { .. } => '>',
                    VmAction::Restart { .. } | VmAction::Update { .. } => '~',
                    VmAction::Stop { .. } | VmAction::Remove { .. } => '-',
                };
                writeln!(f, "  {sign} {:<15} {:<32} {}", a.kind(), a.vm(), a.reason())?;
            }
        }
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        Ok(())
    }
}

/// The VMs an `up` of `services` covers: all of the file's when none are named; else
/// those the named services depend on, directly or through other services and VMs
/// (none with `no_deps`).
pub fn selected(
    project: &Project,
    section: &VmSection,
    services: &[String],
    no_deps: bool,
) -> BTreeSet<String> {
    if services.is_empty() {
        return section.vms.iter().map(|v| v.name.clone()).collect();
    }
    let mut out = BTreeSet::new();
    if no_deps {
        return out;
    }
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut todo: Vec<String> = services.to_vec();
    while let Some(n) = todo.pop() {
        if !seen.insert(n.clone()) {
            continue;
        }
        if let Some(vm) = section.vm(&n) {
            out.insert(n.clone());
            todo.extend(vm.depends_on.keys().cloned());
        } else if let Some(s) = project.services.get(&n) {
            todo.extend(s.depends_on.keys().cloned());
        }
    }
    out
}

/// Plans `up` for the VMs of `section` named in `selected`, against what the host has.
/// VMs of this project that left the file are warned about, or removed (disks kept)
/// with `remove_orphans`. `ha` VMs are left to their agents.
pub fn plan_up(
    project: &str,
    section: &VmSection,
    selected: &BTreeSet<String>,
    host: &[HostVm],
    remove_orphans: bool,
) -> VmPlan {
    let mut plan = VmPlan {
        project: project.to_string(),
        ..VmPlan::default()
    };
    for want in section.vms.iter().filter(|v| selected.contains(&v.name)) {
        if want.ha {
            plan.warnings.push(format!(
                "VM {} is ha: it runs on agents (`baton vm start {} --on ADDR`); up leaves it alone",
                want.name, want.name
            ));
            continue;
        }
        let Some(have) = host.iter().find(|h| h.spec.name == want.name) else {
            plan.actions.push(VmAction::Create {
                vm: want.name.clone(),
            });
            continue;
        };
        if let Some(other) = have.project.as_deref().filter(|p| *p != project) {
            plan.warnings.push(format!(
                "VM {} on this host belongs to project {other}: this project takes it over",
                want.name
            ));
        }
        let (changes, notes) = changes(&have.spec, &have.disks, want);
        plan.warnings.extend(notes);
        let vm = want.name.clone();
        if !have.running {
            plan.actions.push(VmAction::Start { vm, changes });
        } else if changes.iter().any(|c| c.restart) {
            plan.actions.push(VmAction::Restart { vm, changes });
        } else if !changes.is_empty() {
            plan.actions.push(VmAction::Update { vm, changes });
        } else {
            plan.up_to_date.push(vm);
        }
    }
    for have in host {
        let name = &have.spec.name;
        if have.project.as_deref() != Some(project) || section.vm(name).is_some() {
            continue;
        }
        if remove_orphans {
            plan.actions.push(VmAction::Remove {
                vm: name.clone(),
                disks: false,
                reason: "no longer in the file (--remove-orphans)".into(),
            });
        } else {
            let state = if have.running { "running" } else { "stopped" };
            plan.warnings.push(format!(
                "VM {name} ({state}) of this project is no longer in the file: `up --remove-orphans` removes it (disks kept)"
            ));
        }
    }
    plan
}

/// Plans `down` for the project's VMs on this host (those its `up` created, and those
/// of the file): stop each, keeping it and its disks; with `volumes`, remove each with
/// the disks baton made.
pub fn plan_down(project: &str, section: &VmSection, host: &[HostVm], volumes: bool) -> VmPlan {
    let mut plan = VmPlan {
        project: project.to_string(),
        ..VmPlan::default()
    };
    for have in host {
        let name = &have.spec.name;
        let ours = have.project.as_deref() == Some(project)
            || (have.project.is_none() && section.vm(name).is_some());
        if !ours || have.spec.ha {
            continue;
        }
        if volumes {
            plan.actions.push(VmAction::Remove {
                vm: name.clone(),
                disks: true,
                reason: "down -v".into(),
            });
        } else if have.running {
            plan.actions.push(VmAction::Stop {
                vm: name.clone(),
                reason: "down (disks kept; `down -v` removes them)".into(),
            });
        }
    }
    plan
}

/// The differences between the host's record (`old`, with its disks) and the file
/// (`new`), and notes on what cannot be applied.
pub fn changes(old: &VmSpec, old_disks: &[String], new: &VmSpec) -> (Vec<Change>, Vec<String>) {
    let mut out = Vec::new();
    let mut notes = Vec::new();
    let mut push = |field: &str, from: String, to: String, restart: bool| {
        if from != to {
            out.push(Change {
                field: field.into(),
                from,
                to,
                restart,
            });
        }
    };
    push("cpus", old.cpus.to_string(), new.cpus.to_string(), true);
    push(
        "memory",
        format!("{} MiB", old.memory_mib),
        format!("{} MiB", new.memory_mib),
        true,
    );
    push("boot", boot_text(&old.boot), boot_text(&new.boot), true);
    push(
        "accel",
        format!("{:?}", old.accel).to_lowercase(),
        format!("{:?}", new.accel).to_lowercase(),
        true,
    );
    push("network", network_text(old), network_text(new), true);
    let new_disks: Vec<String> = new.disks.iter().map(|d| d.name.clone()).collect();
    push(
        "disks",
        format!("[{}]", old_disks.join(", ")),
        format!("[{}]", new_disks.join(", ")),
        true,
    );
    for d in &new.disks {
        let Some(o) = old.disks.iter().find(|o| o.name == d.name) else {
            continue;
        };
        if o.source != d.source && old_disks.contains(&d.name) {
            notes.push(format!(
                "VM {}: disk {} changed in the file ({}); an existing disk is kept as it is (remove the VM with `baton vm rm --disks` to make it again)",
                new.name,
                d.name,
                disk_text(&d.source)
            ));
        }
    }
    push(
        "environment",
        old.environment.as_str().into(),
        new.environment.as_str().into(),
        false,
    );
    push(
        "restart",
        old.restart.as_str().into(),
        new.restart.as_str().into(),
        false,
    );
    // The guest agent's check needs its channel, a device of the machine: starting or
    // stopping to use it is a restart; other changes of the check are not.
    let agent = |v: &VmSpec| {
        v.healthcheck
            .as_ref()
            .is_some_and(|h| h.probe == crate::spec::Probe::Agent)
    };
    push(
        "healthcheck",
        json_text(&old.healthcheck),
        json_text(&new.healthcheck),
        agent(old) != agent(new),
    );
    push(
        "depends_on",
        keys_text(old.depends_on.keys()),
        keys_text(new.depends_on.keys()),
        false,
    );
    push(
        "labels",
        json_text(&old.labels),
        json_text(&new.labels),
        false,
    );
    push(
        "autostart",
        old.autostart.to_string(),
        new.autostart.to_string(),
        false,
    );
    (out, notes)
}

fn boot_text(b: &Boot) -> String {
    match b {
        Boot::Kernel {
            kernel,
            initrd,
            cmdline,
        } => format!(
            "kernel {}{} ({cmdline})",
            kernel.display(),
            initrd
                .as_ref()
                .map(|i| format!(" + {}", i.display()))
                .unwrap_or_default()
        ),
        Boot::Disk => "disk".into(),
        Boot::Iso { path } => format!("iso {}", path.display()),
    }
}

fn network_text(v: &VmSpec) -> String {
    let f: Vec<String> = v
        .network
        .forwards
        .iter()
        .map(|f| {
            format!(
                "{}:{}:{}/{}",
                f.host_ip, f.host_port, f.guest_port, f.protocol
            )
        })
        .collect();
    if f.is_empty() {
        v.network.mode.clone()
    } else {
        format!("{} [{}]", v.network.mode, f.join(", "))
    }
}

fn disk_text(d: &DiskSource) -> String {
    match d {
        DiskSource::New {
            size_bytes,
            backing,
            ..
        } => match (size_bytes, backing) {
            (_, Some(b)) => format!("on {}", b.display()),
            (Some(s), None) => format!("{} MiB", s >> 20),
            (None, None) => "new".into(),
        },
        DiskSource::Existing { path } => path.display().to_string(),
    }
}

fn json_text<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn keys_text<'a>(keys: impl Iterator<Item = &'a String>) -> String {
    format!("[{}]", keys.cloned().collect::<Vec<_>>().join(", "))
}
