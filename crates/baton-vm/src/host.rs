//! One host: a state directory, its store and its QEMU processes. Lifecycle, snapshots
//! with retention, live and storage migration, and the host report, as used by the CLI
//! and by the VM agent.

use std::path::{Path, PathBuf};
use std::time::Duration;

use baton_state::{Store, VmMigration, VmSnapshot};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::confine::DiskDirs;
use crate::hypervisor::Hypervisor;
use crate::qemu::{self, Paths, Qemu};
use crate::retention::{self, Aged};
use crate::spec::{Boot, DiskSource, SnapshotPolicy, VmSpec, NAME_RULE};
use crate::VmError;

/// A VM as this host runs it: the spec plus its concrete disk files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    pub spec: VmSpec,
    pub disks: Vec<MachineDisk>,
    /// The accelerator to use instead of choosing (an incoming migration must match
    /// its source).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accel: Option<String>,
    /// The snapshot policy of the VM's environment, as the file last gave it, so an
    /// agent can apply it on a schedule without the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<SnapshotPolicy>,
    /// The project whose file declared it (set by `up` and the `vm` commands): `down`
    /// and `baton serve` find a project's VMs by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineDisk {
    pub name: String,
    pub path: String,
    /// The file did not exist and baton made it (so `rm --disks` may remove it), as
    /// opposed to an image the user gave or a file that was already there.
    pub owned: bool,
}

/// What `ls` and `inspect` show for one VM.
#[derive(Debug, Clone, Serialize)]
pub struct VmStatus {
    pub name: String,
    pub state: String,
    pub pid: Option<i64>,
    pub accel: Option<String>,
    pub uptime_s: Option<f64>,
    pub cpu_seconds: Option<f64>,
    /// Average CPU use since start, in percent of one CPU.
    pub cpu_percent: Option<f64>,
    pub rss_mib: Option<f64>,
    pub cpus: u32,
    pub memory_mib: u64,
    pub environment: String,
    pub ha: bool,
    pub disks: Vec<MachineDisk>,
    pub dir: String,
}

/// Options of a live migration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MigrateOptions {
    /// Bytes per second (memory, and each disk's copy with `storage`).
    pub max_bandwidth: Option<u64>,
    /// Milliseconds.
    pub downtime_limit_ms: Option<u64>,
    /// Copy the disks to the destination while the guest runs (no shared storage).
    #[serde(default)]
    pub storage: bool,
}

/// How a host is opened.
#[derive(Debug, Clone, Default)]
pub struct HostOptions {
    /// How this host names itself in migration records (`local`, or the agent address).
    pub label: String,
    /// Directories its VMs' files may be in, besides `<state dir>/vms`.
    pub disk_dirs: Vec<PathBuf>,
    /// Kernels, initrds and ISOs must be in those directories too. An agent sets it (its
    /// specs come from the network); the CLI, running its user's own file, does not.
    pub confine_boot_files: bool,
    /// The address migrations (and disk copies) come in on: the agent's own, so that
    /// other hosts reach it. Loopback when none.
    pub address: Option<std::net::IpAddr>,
}

pub struct Host {
    pub state_dir: PathBuf,
    pub store: Store,
    pub qemu: Qemu,
    /// How this host names itself in migration records (`local`, or the agent address).
    pub label: String,
    /// Where this host's VM files may be: every disk path and backing image is resolved
    /// inside them before it is made, used or deleted.
    pub disk_dirs: DiskDirs,
    confine_boot_files: bool,
    /// Where incoming migrations listen (see [`HostOptions::address`]).
    pub address: std::net::IpAddr,
}

pub(crate) fn io(p: &Path) -> impl FnOnce(std::io::Error) -> VmError + '_ {
    move |e| VmError::Io(p.display().to_string(), e)
}

/// Makes `dir` (and missing parents) accessible to its owner only; an existing
/// directory is left as it is.
fn private_dir(dir: &Path) -> Result<(), VmError> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(dir))
}

/// Makes the empty file `p`, only if nothing is there (not even a dangling symlink):
/// true when made, false when something already was.
pub(crate) fn create_new(p: &Path) -> Result<bool, VmError> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(p)
    {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(io(p)(e)),
    }
}

/// Removes files this call made, after a later step failed.
pub(crate) fn remove_files(made: &[PathBuf]) {
    for p in made {
        let _ = std::fs::remove_file(p);
    }
}

fn bad_name(name: &str) -> VmError {
    VmError::Invalid(format!("VM name {name:?}: a VM name is {NAME_RULE}"))
}

/// A disk of a spec, its files resolved, before anything is made.
enum Planned {
    Existing(PathBuf),
    New {
        path: PathBuf,
        size_bytes: Option<u64>,
        backing: Option<PathBuf>,
    },
}

impl Host {
    /// Opens the host in `state_dir`. A new state directory (and its `vms/`) is made
    /// accessible to its owner only.
    pub fn open(state_dir: &Path, options: HostOptions) -> Result<Host, VmError> {
        private_dir(state_dir)?;
        let store = Store::open(state_dir)?;
        let vms = state_dir.join("vms");
        private_dir(&vms)?;
        let mut dirs = vec![vms.clone()];
        dirs.extend(options.disk_dirs);
        Ok(Host {
            state_dir: state_dir.to_path_buf(),
            store,
            qemu: Qemu {
                accel_cache: vms.join("accel-probe"),
            },
            label: options.label,
            disk_dirs: DiskDirs::new(&dirs)?,
            confine_boot_files: options.confine_boot_files,
            address: options
                .address
                .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)),
        })
    }

    /// One health check of a VM of this host, as its `healthcheck:` says (the guest
    /// agent's channel is in the VM's directory).
    pub async fn probe(&self, spec: &crate::spec::VmSpec) -> Result<(), String> {
        let dir = self.vm_dir(&spec.name).map_err(|e| e.to_string())?;
        crate::health::probe(spec, &dir).await
    }

    /// `<state dir>/vms/<name>`, for a name that is one safe path component.
    pub fn vm_dir(&self, name: &str) -> Result<PathBuf, VmError> {
        if !crate::spec::valid_name(name) {
            return Err(bad_name(name));
        }
        Ok(self.state_dir.join("vms").join(name))
    }

    pub fn machine(&self, name: &str) -> Result<Machine, VmError> {
        let rec = self
            .store
            .vm(name)?
            .ok_or_else(|| VmError::Unknown(name.to_string()))?;
        serde_json::from_str(&rec.spec_json)
            .map_err(|e| VmError::Invalid(format!("stored spec of {name:?} is unreadable: {e}")))
    }

    pub(crate) fn save(&self, m: &Machine, now: i64) -> Result<(), VmError> {
        let json = serde_json::to_string(m).map_err(|e| VmError::Invalid(e.to_string()))?;
        let dir = self.vm_dir(&m.spec.name)?;
        self.store
            .upsert_vm(&m.spec.name, &json, &dir.display().to_string(), now)?;
        Ok(())
    }

    pub(crate) fn op(&self, vm: &str, op: &str, outcome: &str, message: &str, now: i64) {
        let _ = self.store.add_vm_op(vm, op, outcome, message, now);
    }

    /// Records the VM and makes its disks. An existing VM keeps the disks it has and
    /// takes the new spec: a disk the spec adds is made, one it no longer names is
    /// detached (its file kept). Every name and file is checked first (names, disk
    /// paths and backing images inside [`Host::disk_dirs`]): a refused spec leaves
    /// nothing behind. A disk is `owned` only when this call made its file.
    pub async fn create(&self, spec: &VmSpec, now: i64) -> Result<Machine, VmError> {
        crate::spec::check(spec).map_err(VmError::Invalid)?;
        let dir = self.vm_dir(&spec.name)?;
        let spec = self.admit_boot(spec)?;
        let existing = self.machine(&spec.name).ok();
        let kept = |name: &str| {
            existing
                .as_ref()
                .and_then(|m| m.disks.iter().find(|d| d.name == name).cloned())
        };
        let mut planned = Vec::new();
        for d in &spec.disks {
            if kept(&d.name).is_none() {
                planned.push(self.plan_disk(&d.source, &d.name, &dir)?);
            }
        }
        let new_dir = !dir.exists();
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let mut made: Vec<PathBuf> = Vec::new();
        let mut disks = Vec::new();
        let mut planned = planned.into_iter();
        for d in &spec.disks {
            if let Some(k) = kept(&d.name) {
                disks.push(k);
                continue;
            }
            let Some(plan) = planned.next() else { break };
            match self.make_disk(plan, &mut made).await {
                Ok((path, owned)) => disks.push(MachineDisk {
                    name: d.name.clone(),
                    path: path.display().to_string(),
                    owned,
                }),
                Err(e) => {
                    remove_files(&made);
                    if new_dir {
                        let _ = std::fs::remove_dir(&dir);
                    }
                    return Err(e);
                }
            }
        }
        let m = match existing {
            Some(mut m) => {
                m.spec = spec;
                m.disks = disks;
                m
            }
            None => Machine {
                spec,
                disks,
                accel: None,
                policy: None,
                project: None,
            },
        };
        self.save(&m, now)?;
        if made.is_empty() && !new_dir {
            return Ok(m);
        }
        self.op(&m.spec.name, "create", "ok", "", now);
        Ok(m)
    }

    /// Where a disk of the spec goes, its files resolved, before anything is made.
    fn plan_disk(&self, source: &DiskSource, name: &str, dir: &Path) -> Result<Planned, VmError> {
        let dirs = &self.disk_dirs;
        Ok(match source {
            DiskSource::Existing { path } => {
                Planned::Existing(dirs.resolve_existing("disk path", path)?)
            }
            DiskSource::New {
                size_bytes,
                backing,
                path,
            } => Planned::New {
                // The default, in the VM's own directory, is resolved once that
                // directory exists.
                path: match path {
                    Some(p) => dirs.resolve("disk path", p)?,
                    None => dir.join(format!("{name}.qcow2")),
                },
                size_bytes: *size_bytes,
                backing: match backing {
                    Some(b) => Some(dirs.resolve_existing("backing image", b)?),
                    None => None,
                },
            },
        })
    }

    /// Records which project's file declares the VM (`None`: none).
    pub fn set_project(&self, vm: &str, project: Option<&str>, now: i64) -> Result<(), VmError> {
        let mut m = self.machine(vm)?;
        if m.project.as_deref() != project {
            m.project = project.map(str::to_string);
            self.save(&m, now)?;
        }
        Ok(())
    }

    /// The VMs of this host as the planner sees them (`crate::vm_plan`).
    pub fn planned_view(&self) -> Result<Vec<crate::vm_plan::HostVm>, VmError> {
        let mut out = Vec::new();
        for r in self.store.vms()? {
            let Ok(m) = self.machine(&r.name) else {
                continue;
            };
            out.push(crate::vm_plan::HostVm {
                running: self.pid(&r.name).is_some(),
                disks: m.disks.iter().map(|d| d.name.clone()).collect(),
                project: m.project.clone(),
                spec: m.spec,
            });
        }
        Ok(out)
    }

    /// Records a VM event in the store's event stream, under the VM's project (`vms`
    /// for a VM no project declared).
    pub fn event(&self, vm: &str, message: &str, now: i64) {
        let project = self
            .machine(vm)
            .ok()
            .and_then(|m| m.project)
            .unwrap_or_else(|| "vms".to_string());
        let _ = self.store.event(&project, "vm", vm, message, now);
    }

    /// Makes a planned disk's file unless something is already there; its path and
    /// whether this call made it (also pushed on `made`).
    async fn make_disk(
        &self,
        plan: Planned,
        made: &mut Vec<PathBuf>,
    ) -> Result<(PathBuf, bool), VmError> {
        let (path, size_bytes, backing) = match plan {
            Planned::Existing(p) => return Ok((p, false)),
            Planned::New {
                path,
                size_bytes,
                backing,
            } => (path, size_bytes, backing),
        };
        let path = self.disk_dirs.resolve("disk path", &path)?;
        if !create_new(&path)? {
            return Ok((path, false));
        }
        made.push(path.clone());
        qemu::create_disk(&path, size_bytes, backing.as_deref()).await?;
        Ok((path, true))
    }

    /// The spec with its kernel, initrd or ISO resolved inside [`Host::disk_dirs`] when
    /// this host confines boot files; as it is otherwise.
    fn admit_boot(&self, spec: &VmSpec) -> Result<VmSpec, VmError> {
        let mut spec = spec.clone();
        if !self.confine_boot_files {
            return Ok(spec);
        }
        let dirs = &self.disk_dirs;
        match &mut spec.boot {
            Boot::Kernel { kernel, initrd, .. } => {
                *kernel = dirs.resolve_existing("kernel", kernel)?;
                if let Some(i) = initrd {
                    *i = dirs.resolve_existing("initrd", i)?;
                }
            }
            Boot::Iso { path } => *path = dirs.resolve_existing("ISO image", path)?,
            Boot::Disk => {}
        }
        Ok(spec)
    }

    /// A machine that comes from elsewhere (a migrating VM, a peer's lease) held to the
    /// rules of [`Host::create`]: its names, accelerator, snapshot naming, boot files
    /// and disk files (which must exist, inside [`Host::disk_dirs`]). Disks keep their
    /// `owned` mark: the image was made by baton on the host the VM comes from.
    pub(crate) fn admit(&self, m: &Machine) -> Result<Machine, VmError> {
        crate::spec::check(&m.spec).map_err(VmError::Invalid)?;
        if let Some(p) = &m.policy {
            // Snapshot names from the template end up in monitor commands.
            retention::check_template(&p.naming).map_err(VmError::Invalid)?;
        }
        if let Some(a) = &m.accel {
            if a != "kvm" && a != "tcg" {
                return Err(VmError::Invalid(format!(
                    "accelerator {a:?}: expected kvm or tcg"
                )));
            }
        }
        let mut out = m.clone();
        out.spec = self.admit_boot(&m.spec)?;
        let mut seen: Vec<&str> = Vec::new();
        for (d, o) in m.disks.iter().zip(out.disks.iter_mut()) {
            if !crate::spec::valid_name(&d.name) || seen.contains(&d.name.as_str()) {
                return Err(VmError::Invalid(format!(
                    "disk name {:?}: a disk name is {NAME_RULE}, once per VM",
                    d.name
                )));
            }
            seen.push(&d.name);
            o.path = self
                .disk_dirs
                .resolve_existing("disk path", Path::new(&d.path))?
                .display()
                .to_string();
        }
        Ok(out)
    }

    /// The pid of the VM's live process, if any.
    pub fn pid(&self, name: &str) -> Option<i64> {
        self.qemu.pid(&self.vm_dir(name).ok()?)
    }

    pub async fn start(&self, name: &str, now: i64) -> Result<i64, VmError> {
        self.start_with(name, None, now).await
    }

    /// Starts the VM (waiting for an incoming migration when given).
    pub async fn start_with(
        &self,
        name: &str,
        incoming: Option<&crate::hypervisor::Incoming>,
        now: i64,
    ) -> Result<i64, VmError> {
        let m = self.machine(name)?;
        let dir = self.vm_dir(name)?;
        if self.qemu.pid(&dir).is_some() {
            if self.qemu.state(&dir).await != "shutdown" {
                return Err(VmError::Running(name.to_string()));
            }
            // The guest powered off and QEMU waits (`-no-shutdown`): a new process.
            self.kill(name, now).await?;
        }
        let r = self.qemu.launch(&m, &dir, incoming).await;
        match r {
            Ok((pid, accel)) => {
                self.store
                    .set_vm_process(name, Some(pid), Some(&accel), Some(now), now)?;
                self.op(name, "start", "ok", &format!("pid {pid}, {accel}"), now);
                Ok(pid)
            }
            Err(e) => {
                self.op(name, "start", "failed", &e.to_string(), now);
                Err(e)
            }
        }
    }

    /// Re-attaches to VMs whose QEMU outlived an earlier baton: refreshes their pid,
    /// clears the pid of those gone. Returns the names of running VMs.
    pub async fn recover(&self, now: i64) -> Result<Vec<String>, VmError> {
        let mut running = Vec::new();
        for rec in self.store.vms()? {
            // A record whose name is no path component (left by an older baton) has
            // no directory to look in.
            let Ok(dir) = self.vm_dir(&rec.name) else {
                continue;
            };
            let live = self.qemu.recover(&dir).await;
            if live != rec.pid {
                let started = if live.is_some() { rec.started_at } else { None };
                let accel = if live.is_some() {
                    rec.accel.as_deref()
                } else {
                    None
                };
                self.store
                    .set_vm_process(&rec.name, live, accel, started, now)?;
            }
            if live.is_some() {
                running.push(rec.name);
            }
        }
        Ok(running)
    }

    pub async fn status(&self, name: &str, now: i64) -> Result<VmStatus, VmError> {
        let rec = self
            .store
            .vm(name)?
            .ok_or_else(|| VmError::Unknown(name.to_string()))?;
        let m = self.machine(name)?;
        let dir = self.vm_dir(name)?;
        let pid = self.qemu.pid(&dir);
        let state = self.qemu.state(&dir).await;
        let usage = pid.and_then(crate::facts::process_use);
        let uptime = match (pid, rec.started_at) {
            (Some(_), Some(s)) => Some(((now - s).max(0) as f64) / 1000.0),
            _ => None,
        };
        Ok(VmStatus {
            name: name.to_string(),
            state,
            pid,
            accel: pid.and(rec.accel),
            uptime_s: uptime,
            cpu_seconds: usage.map(|u| u.cpu_seconds),
            cpu_percent: match (usage, uptime) {
                (Some(u), Some(t)) if t > 0.0 => Some((u.cpu_seconds / t * 1000.0).round() / 10.0),
                _ => None,
            },
            rss_mib: usage.map(|u| (u.rss_mib * 10.0).round() / 10.0),
            cpus: m.spec.cpus,
            memory_mib: m.spec.memory_mib,
            environment: m.spec.environment.as_str().to_string(),
            ha: m.spec.ha,
            disks: m.disks,
            dir: dir.display().to_string(),
        })
    }

    /// ACPI power-down, then `quit` after `timeout`, then SIGKILL. Returns whether the
    /// guest shut down by itself.
    pub async fn stop(&self, name: &str, timeout: Duration, now: i64) -> Result<bool, VmError> {
        self.machine(name)?;
        let dir = self.vm_dir(name)?;
        // Recorded as stopped first: a supervisor that sees the process end (or the
        // guest power off) knows it was asked to.
        self.store.set_vm_process(name, None, None, None, now)?;
        if self.qemu.pid(&dir).is_none() {
            return Ok(true);
        }
        let graceful = match self.qemu.powerdown(&dir).await {
            Ok(()) => self.qemu.wait_down(&dir, timeout).await,
            Err(_) => false,
        };
        // A guest that powered off leaves QEMU waiting (`-no-shutdown`): end it.
        if let Ok(mut q) = self.qemu.qmp(&dir).await {
            let _ = q.execute("quit", Value::Null).await;
        }
        if !self.qemu.wait_gone(&dir, Duration::from_secs(5)).await {
            self.qemu.kill(&dir);
            self.qemu.wait_gone(&dir, Duration::from_secs(5)).await;
        }
        self.cleanup_runtime(&dir);
        self.store.set_vm_process(name, None, None, None, now)?;
        let how = if graceful {
            "acpi power-down"
        } else {
            "forced after timeout"
        };
        self.op(name, "stop", "ok", how, now);
        Ok(graceful)
    }

    /// Ends the VM's process at once (`quit`, then SIGKILL).
    pub async fn kill(&self, name: &str, now: i64) -> Result<(), VmError> {
        let dir = self.vm_dir(name)?;
        if self.store.vm(name)?.is_some() {
            self.store.set_vm_process(name, None, None, None, now)?;
        }
        if let Ok(mut q) = self.qemu.qmp(&dir).await {
            let _ = q.execute("quit", Value::Null).await;
        }
        if !self.qemu.wait_gone(&dir, Duration::from_secs(3)).await {
            self.qemu.kill(&dir);
            self.qemu.wait_gone(&dir, Duration::from_secs(5)).await;
        }
        self.cleanup_runtime(&dir);
        self.store.set_vm_process(name, None, None, None, now)?;
        Ok(())
    }

    pub(crate) fn cleanup_runtime(&self, dir: &Path) {
        let p = Paths::new(dir);
        for f in [&p.qmp, &p.console_sock, &p.pid] {
            let _ = std::fs::remove_file(f);
        }
    }

    pub async fn pause(&self, name: &str, now: i64) -> Result<(), VmError> {
        let dir = self.running_dir(name)?;
        self.qemu.pause(&dir).await?;
        self.op(name, "pause", "ok", "", now);
        Ok(())
    }

    pub async fn resume(&self, name: &str, now: i64) -> Result<(), VmError> {
        let dir = self.running_dir(name)?;
        self.qemu.resume(&dir).await?;
        self.op(name, "resume", "ok", "", now);
        Ok(())
    }

    pub(crate) fn running_dir(&self, name: &str) -> Result<PathBuf, VmError> {
        self.machine(name)?;
        let dir = self.vm_dir(name)?;
        if self.qemu.pid(&dir).is_none() {
            return Err(VmError::NotRunning(name.to_string()));
        }
        Ok(dir)
    }

    /// Forgets the VM: its process is ended, its directory removed, and with `disks`
    /// the images baton made. Only a file marked `owned` that is still a regular file
    /// inside [`Host::disk_dirs`] is deleted; returns the disks kept, each with why.
    pub async fn remove(&self, name: &str, disks: bool, now: i64) -> Result<Vec<String>, VmError> {
        let m = self.machine(name)?;
        let Ok(dir) = self.vm_dir(name) else {
            // Recorded by an older baton under a name that is no path component: forget
            // it, touch no file.
            self.store.remove_vm(name)?;
            self.op(name, "rm", "ok", "record only (invalid name)", now);
            return Ok(m
                .disks
                .into_iter()
                .map(|d| format!("{}: not touched", d.path))
                .collect());
        };
        self.kill(name, now).await?;
        let mut kept = Vec::new();
        if disks {
            for d in &m.disks {
                let path = Path::new(&d.path);
                if !d.owned {
                    kept.push(format!("{}: not made by baton", d.path));
                } else if !self.disk_dirs.may_delete(path) {
                    kept.push(format!(
                        "{}: not a file inside the directories this host allows for VM files",
                        d.path
                    ));
                } else {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
        let _ = std::fs::remove_file(Paths::new(&dir).console_log);
        // Only an empty directory goes: a file baton did not make stays, and so does
        // its directory.
        let _ = std::fs::remove_dir(&dir);
        self.store.remove_vm(name)?;
        self.op(name, "rm", "ok", if disks { "with disks" } else { "" }, now);
        Ok(kept)
    }

    /// Takes a live internal snapshot named by `name` or the policy's template, then
    /// applies the policy. Returns the snapshot's name and the names pruned.
    pub async fn snapshot(
        &self,
        vm: &str,
        kind: &str,
        note: &str,
        name: Option<&str>,
        policy: &SnapshotPolicy,
        now: i64,
    ) -> Result<(String, Vec<String>), VmError> {
        if !retention::KINDS.contains(&kind) {
            return Err(VmError::Invalid(format!(
                "unknown snapshot type {kind:?}: use manual, automated or pre-deploy"
            )));
        }
        let dir = self.running_dir(vm)?;
        let existing: Vec<String> = self
            .store
            .vm_snapshots(Some(vm))?
            .into_iter()
            .map(|s| s.name)
            .collect();
        let snap = match name {
            Some(n) => {
                if n.is_empty()
                    || !n
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
                {
                    return Err(VmError::Invalid(format!(
                        "snapshot name {n:?}: use letters, digits, '_', '-', '.'"
                    )));
                }
                n.to_string()
            }
            None => retention::snapshot_name(
                &policy.naming,
                vm,
                kind,
                now,
                self.store.vm_op_count(vm, "snapshot", "ok")? as usize + 1,
                &existing,
            ),
        };
        if let Err(e) = self.qemu.snapshot_save(&dir, &snap).await {
            self.op(vm, "snapshot", "failed", &e.to_string(), now);
            return Err(e);
        }
        self.store.add_vm_snapshot(&VmSnapshot {
            vm: vm.to_string(),
            name: snap.clone(),
            kind: kind.to_string(),
            note: note.to_string(),
            created_at: now,
        })?;
        self.op(vm, "snapshot", "ok", &format!("{snap} ({kind})"), now);
        let pruned = self.prune(vm, policy, now).await?;
        Ok((snap, pruned))
    }

    /// Remembers the policy that governs the VM's snapshots (see [`Host::prune_all`]).
    pub fn set_policy(&self, vm: &str, policy: &SnapshotPolicy, now: i64) -> Result<(), VmError> {
        let mut m = self.machine(vm)?;
        if m.policy.as_ref() != Some(policy) {
            m.policy = Some(policy.clone());
            self.save(&m, now)?;
        }
        Ok(())
    }

    /// Applies every VM's remembered policy: what the agent runs on a schedule.
    /// Returns (VM, snapshot) pairs removed.
    pub async fn prune_all(&self, now: i64) -> Result<Vec<(String, String)>, VmError> {
        let mut out = Vec::new();
        for r in self.store.vms()? {
            let Some(policy) = self.machine(&r.name)?.policy else {
                continue;
            };
            for s in self.prune(&r.name, &policy, now).await? {
                out.push((r.name.clone(), s));
            }
        }
        Ok(out)
    }

    /// Applies `policy` to the VM's snapshots; returns the names removed.
    pub async fn prune(
        &self,
        vm: &str,
        policy: &SnapshotPolicy,
        now: i64,
    ) -> Result<Vec<String>, VmError> {
        let snaps: Vec<Aged> = self
            .store
            .vm_snapshots(Some(vm))?
            .into_iter()
            .map(|s| Aged {
                name: s.name,
                kind: s.kind,
                created_at: s.created_at,
            })
            .collect();
        let gone = retention::prune(&snaps, policy, now);
        for n in &gone {
            self.delete_snapshot(vm, n, now).await?;
        }
        if !gone.is_empty() {
            self.op(vm, "prune", "ok", &gone.join(", "), now);
        }
        Ok(gone)
    }

    pub async fn restore(&self, vm: &str, snap: &str, now: i64) -> Result<(), VmError> {
        let dir = self.running_dir(vm)?;
        self.known_snapshot(vm, snap)?;
        self.qemu.snapshot_load(&dir, snap).await?;
        self.op(vm, "restore", "ok", snap, now);
        Ok(())
    }

    fn known_snapshot(&self, vm: &str, snap: &str) -> Result<(), VmError> {
        if self
            .store
            .vm_snapshots(Some(vm))?
            .iter()
            .any(|s| s.name == snap)
        {
            Ok(())
        } else {
            Err(VmError::Invalid(format!(
                "VM {vm:?} has no snapshot {snap:?} (see `baton vm snapshot ls {vm}`)"
            )))
        }
    }

    /// Deletes a snapshot: live through QMP, or with qemu-img on a stopped VM's disks.
    pub async fn delete_snapshot(&self, vm: &str, snap: &str, now: i64) -> Result<(), VmError> {
        self.known_snapshot(vm, snap)?;
        let dir = self.vm_dir(vm)?;
        if self.qemu.pid(&dir).is_some() {
            self.qemu.snapshot_delete(&dir, snap).await?;
        } else {
            for d in self.machine(vm)?.disks {
                let _ = tokio::process::Command::new(qemu::QEMU_IMG)
                    .args(["snapshot", "-d", snap, &d.path])
                    .output()
                    .await;
            }
        }
        self.store.remove_vm_snapshot(vm, snap)?;
        self.op(vm, "snapshot-rm", "ok", snap, now);
        Ok(())
    }

    /// Records a machine as it is (disks already made, on shared storage): how a
    /// failover takes a VM over before starting it here. The machine is held to the
    /// rules of [`Host::create`] first (it comes from a peer).
    pub fn adopt(&self, m: &Machine, now: i64) -> Result<Machine, VmError> {
        let m = self.admit(m)?;
        let dir = self.vm_dir(&m.spec.name)?;
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        self.save(&m, now)?;
        Ok(m)
    }

    pub(crate) fn migration(&self, id: i64) -> Result<VmMigration, VmError> {
        self.store
            .vm_migrations(100)?
            .into_iter()
            .find(|j| j.id == id)
            .ok_or_else(|| VmError::Invalid("migration record vanished".into()))
    }

    /// Moves a running VM's disk to `target` (a new qcow2) with a mirror job, then
    /// switches the VM to it; the guest keeps running. The old file stays (removed
    /// when baton made it).
    pub async fn move_storage(
        &self,
        vm: &str,
        disk: Option<&str>,
        target: &Path,
        clock: impl Fn() -> i64,
    ) -> Result<VmMigration, VmError> {
        let dir = self.running_dir(vm)?;
        let mut m = self.machine(vm)?;
        let idx = match disk {
            Some(d) => m.disks.iter().position(|x| x.name == d),
            None => (!m.disks.is_empty()).then_some(0),
        }
        .ok_or_else(|| VmError::Invalid(format!("VM {vm:?} has no such disk")))?;
        let target = &self.disk_dirs.resolve("storage target", target)?;
        // Made empty here, so it is ours (a file already there is never overwritten).
        if !create_new(target)? {
            return Err(VmError::Invalid(format!(
                "{} already exists",
                target.display()
            )));
        }
        let old = m.disks[idx].clone();
        let id = match self.store.start_vm_migration(
            vm,
            "storage",
            &old.path,
            &target.display().to_string(),
            clock(),
        ) {
            Ok(id) => id,
            Err(e) => {
                let _ = std::fs::remove_file(target);
                return Err(e.into());
            }
        };
        let r = self.mirror(&dir, &old, target).await;
        let now = clock();
        match r {
            Ok(bytes) => {
                self.store
                    .finish_vm_migration(id, "completed", Some(bytes), None, None, now)?;
                if old.owned && self.disk_dirs.may_delete(Path::new(&old.path)) {
                    let _ = std::fs::remove_file(&old.path);
                }
                m.disks[idx].path = target.display().to_string();
                m.disks[idx].owned = true;
                self.save(&m, now)?;
                self.op(
                    vm,
                    "move-storage",
                    "ok",
                    &format!("{} → {}", old.path, target.display()),
                    now,
                );
            }
            Err(e) => {
                let _ = std::fs::remove_file(target);
                self.store.finish_vm_migration(
                    id,
                    "failed",
                    None,
                    None,
                    Some(&e.to_string()),
                    now,
                )?;
                return Err(e);
            }
        }
        self.migration(id)
    }

    async fn mirror(&self, dir: &Path, old: &MachineDisk, target: &Path) -> Result<i64, VmError> {
        let size = qemu::image_size(Path::new(&old.path))
            .await
            .ok_or_else(|| VmError::Invalid(format!("cannot read the size of {}", old.path)))?;
        qemu::create_disk(target, Some(size), None).await?;
        let mut q = self.qemu.qmp(dir).await?;
        // The live node is `<disk>` for the disk as started; after an earlier move it is
        // the node the mirror switched to: ask QEMU which node the device uses now.
        let node = current_node(&mut q, &old.name).await?;
        let new_node = format!("{}-m{}", old.name, std::process::id() ^ (size as u32));
        q.execute(
            "blockdev-add",
            json!({"driver": "qcow2", "node-name": new_node,
                   "file": {"driver": "file", "filename": target.display().to_string()}}),
        )
        .await?;
        let job = format!("mirror-{}", old.name);
        q.execute(
            "blockdev-mirror",
            json!({"job-id": job, "device": node, "target": new_node, "sync": "full"}),
        )
        .await?;
        let bytes = loop {
            let jobs = q.execute("query-block-jobs", Value::Null).await?;
            let j = jobs
                .as_array()
                .and_then(|a| a.iter().find(|j| j["device"] == json!(job)).cloned())
                .ok_or_else(|| VmError::Invalid("the mirror job ended early".into()))?;
            if j["ready"] == json!(true) {
                break j["len"].as_i64().unwrap_or(0);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        q.execute("job-complete", json!({"id": job})).await?;
        for _ in 0..100 {
            let jobs = q.execute("query-block-jobs", Value::Null).await?;
            if jobs
                .as_array()
                .is_none_or(|a| a.iter().all(|j| j["device"] != json!(job)))
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let now_node = current_node(&mut q, &old.name).await?;
        if now_node != new_node {
            return Err(VmError::Invalid(format!(
                "the mirror did not switch {} to the new file",
                old.name
            )));
        }
        // Release the old file (its format and protocol nodes).
        let _ = q.execute("blockdev-del", json!({"node-name": node})).await;
        let _ = q
            .execute(
                "blockdev-del",
                json!({"node-name": format!("{}-file", old.name)}),
            )
            .await;
        Ok(bytes)
    }

    /// Everything this host knows, for `baton vm report`.
    pub async fn report(&self, now: i64) -> Result<Value, VmError> {
        let mut vms = Vec::new();
        for r in self.store.vms()? {
            vms.push(self.status(&r.name, now).await?);
        }
        let snaps = self.store.vm_snapshots(None)?;
        let hypervisor = {
            use crate::hypervisor::Hypervisor;
            self.qemu.capabilities().await
        };
        Ok(json!({
            "host": self.label,
            "capabilities": crate::facts::capabilities(&self.state_dir),
            "hypervisor": hypervisor,
            "vms": vms,
            "snapshots": snapshot_stats(&snaps),
            "migrations": migration_stats(&self.store.vm_migrations(1000)?),
            "recent_operations": self.store.vm_ops(20)?,
        }))
    }
}

pub(crate) async fn current_node(q: &mut crate::qmp::Qmp, disk: &str) -> Result<String, VmError> {
    let blocks = q.execute("query-block", Value::Null).await?;
    let dev = format!("/machine/peripheral/{disk}-dev/virtio-backend");
    blocks
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|b| b["qdev"] == json!(dev) || b["qdev"] == json!(format!("{disk}-dev")))
        })
        .and_then(|b| b["inserted"]["node-name"].as_str())
        .map(str::to_string)
        .ok_or_else(|| VmError::Invalid(format!("QEMU shows no block device for {disk}")))
}

/// Totals, per VM, oldest and newest.
pub fn snapshot_stats(snaps: &[VmSnapshot]) -> Value {
    let mut per_vm: std::collections::BTreeMap<&str, usize> = Default::default();
    let mut per_kind: std::collections::BTreeMap<&str, usize> = Default::default();
    for s in snaps {
        *per_vm.entry(&s.vm).or_default() += 1;
        *per_kind.entry(&s.kind).or_default() += 1;
    }
    let oldest = snaps.iter().min_by_key(|s| s.created_at);
    let newest = snaps.iter().max_by_key(|s| s.created_at);
    json!({
        "total": snaps.len(),
        "per_vm": per_vm,
        "per_type": per_kind,
        "oldest": oldest,
        "newest": newest,
    })
}

/// Counts by kind and status, average downtime and duration of completed live ones.
pub fn migration_stats(jobs: &[VmMigration]) -> Value {
    let mut by: std::collections::BTreeMap<String, usize> = Default::default();
    for j in jobs {
        *by.entry(format!("{} {}", j.kind, j.status)).or_default() += 1;
    }
    let live: Vec<&VmMigration> = jobs
        .iter()
        .filter(|j| j.kind == "live" && j.status == "completed")
        .collect();
    let avg = |f: &dyn Fn(&VmMigration) -> Option<i64>| -> Option<f64> {
        let v: Vec<i64> = live.iter().filter_map(|j| f(j)).collect();
        (!v.is_empty()).then(|| v.iter().sum::<i64>() as f64 / v.len() as f64)
    };
    json!({
        "total": jobs.len(),
        "by_kind_and_status": by,
        "live_avg_downtime_ms": avg(&|j| j.downtime_ms),
        "live_avg_duration_ms": avg(&|j| j.finished_at.map(|f| f - j.started_at)),
        "max_downtime_ms": live.iter().filter_map(|j| j.downtime_ms).max(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A host in `<tmp>/state` (not there before) allowing `<tmp>/images` besides its
    /// own `vms/`, with a kernel in `images/`, and `<tmp>/outside` beside them.
    struct Fixture {
        tmp: tempfile::TempDir,
        host: Host,
    }

    impl Fixture {
        fn new() -> Fixture {
            let tmp = tempfile::tempdir().unwrap();
            let root = tmp.path();
            for d in ["images", "outside"] {
                std::fs::create_dir(root.join(d)).unwrap();
            }
            std::fs::write(root.join("images/vmlinuz"), "kernel").unwrap();
            std::fs::write(root.join("outside/victim"), "precious").unwrap();
            let host = Host::open(
                &root.join("state"),
                HostOptions {
                    label: "test".into(),
                    disk_dirs: vec![root.join("images")],
                    confine_boot_files: true,
                    address: None,
                },
            )
            .unwrap();
            Fixture { tmp, host }
        }

        fn path(&self, rel: &str) -> PathBuf {
            self.tmp.path().canonicalize().unwrap().join(rel)
        }

        /// A spec booting the fixture's kernel, with `change` applied to its JSON.
        fn spec(&self, change: impl FnOnce(&mut Value)) -> VmSpec {
            let mut v = json!({
                "name": "vm1", "cpus": 1, "memory_mib": 128, "disks": [],
                "boot": {"kind": "kernel", "kernel": self.path("images/vmlinuz"),
                         "initrd": null, "cmdline": "console=ttyS0"},
                "network": {"mode": "none", "forwards": []},
                "autostart": false, "accel": "tcg", "labels": {}, "environment": "dev",
                "ha": false
            });
            change(&mut v);
            serde_json::from_value(v).unwrap()
        }

        /// Every path under the fixture's directory, for "nothing was made" checks.
        fn tree(&self) -> Vec<String> {
            fn walk(d: &Path, out: &mut Vec<String>) {
                for e in std::fs::read_dir(d).unwrap().flatten() {
                    out.push(e.path().display().to_string());
                    if e.file_type().unwrap().is_dir() {
                        walk(&e.path(), out);
                    }
                }
            }
            let mut out = Vec::new();
            walk(self.tmp.path(), &mut out);
            out.sort();
            out
        }
    }

    fn disk(v: &mut Value, d: Value) {
        v["disks"] = json!([d]);
    }

    #[tokio::test]
    async fn refused_specs_leave_nothing_behind() {
        let f = Fixture::new();
        let before = f.tree();
        let outside = f.path("outside");
        let images = f.path("images");
        std::os::unix::fs::symlink(&outside, images.join("door")).unwrap();
        let before_with_link = f.tree();
        assert_eq!(before_with_link.len(), before.len() + 1);
        let new = |path: Option<PathBuf>, backing: Option<&str>| {
            json!({"name": "disk0", "source": {"kind": "new", "size_bytes": 1048576,
                                               "backing": backing, "path": path}})
        };
        let cases: Vec<(&str, VmSpec)> = vec![
            ("VM name", f.spec(|v| v["name"] = json!("../x"))),
            ("VM name", f.spec(|v| v["name"] = json!("a,b"))),
            (
                "disk name",
                f.spec(|v| {
                    disk(
                        v,
                        json!({"name": "d,file=/etc/shadow",
                                         "source": {"kind": "new", "size_bytes": 1,
                                                    "backing": null, "path": null}}),
                    )
                }),
            ),
            (
                "disk path",
                f.spec(|v| disk(v, new(Some(outside.join("disk.qcow2")), None))),
            ),
            (
                "disk path",
                f.spec(|v| disk(v, new(Some(images.join("door/disk.qcow2")), None))),
            ),
            (
                "disk path",
                f.spec(|v| disk(v, new(Some(images.join("../outside/d.qcow2")), None))),
            ),
            (
                "backing image",
                f.spec(|v| disk(v, new(None, Some("/etc/shadow")))),
            ),
            (
                "disk path",
                f.spec(|v| {
                    disk(
                        v,
                        json!({"name": "disk0",
                                         "source": {"kind": "existing", "path": "/etc/passwd"}}),
                    )
                }),
            ),
            (
                "kernel",
                f.spec(|v| v["boot"]["kernel"] = json!("/etc/shadow")),
            ),
            (
                "ISO image",
                f.spec(|v| v["boot"] = json!({"kind": "iso", "path": "/etc/shadow"})),
            ),
            (
                "port forward",
                f.spec(|v| {
                    v["network"] = json!({"mode": "user", "forwards": [{"protocol": "tcp",
                        "host_ip": "127.0.0.1,tftp=/", "host_port": 8080, "guest_port": 80}]})
                }),
            ),
        ];
        for (what, spec) in cases {
            let e = f.host.create(&spec, 1).await.unwrap_err().to_string();
            assert!(e.contains(what), "{what}: {e}");
            assert_eq!(f.tree(), before_with_link, "{what}: something was made");
        }
        assert!(f.host.store.vms().unwrap().is_empty());
        let e = f
            .host
            .create(&f.spec(|v| disk(v, new(None, Some("/etc/shadow")))), 1)
            .await
            .unwrap_err();
        assert!(matches!(e, VmError::NotAllowed { .. }), "{e:?}");
        assert!(
            e.to_string()
                .starts_with("backing image /etc/shadow: outside"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn only_files_baton_made_inside_the_allowed_dirs_are_deleted() {
        let f = Fixture::new();
        // A new disk at a path where a file already is: used, but not baton's.
        let there = f.path("images/there.qcow2");
        std::fs::write(&there, "user's image").unwrap();
        let spec = f.spec(|v| {
            disk(
                v,
                json!({"name": "disk0", "source": {"kind": "new", "size_bytes": 1,
                                                      "backing": null, "path": there}}),
            )
        });
        let m = f.host.create(&spec, 1).await.unwrap();
        assert_eq!(m.disks[0].path, there.display().to_string());
        assert!(!m.disks[0].owned, "the file was there before");
        let kept = f.host.remove("vm1", true, 2).await.unwrap();
        assert!(there.exists());
        assert_eq!(
            kept,
            vec![format!("{}: not made by baton", there.display())]
        );

        // A record claiming a file outside (as an older baton let an agent write): kept.
        // One inside that baton made: deleted.
        let victim = f.path("outside/victim");
        let mine = f.path("images/mine.qcow2");
        std::fs::write(&mine, "made by baton").unwrap();
        let forged = Machine {
            spec: f.spec(|_| {}),
            disks: vec![
                MachineDisk {
                    name: "disk0".into(),
                    path: victim.display().to_string(),
                    owned: true,
                },
                MachineDisk {
                    name: "disk1".into(),
                    path: mine.display().to_string(),
                    owned: true,
                },
            ],
            accel: None,
            policy: None,
            project: None,
        };
        f.host.save(&forged, 3).unwrap();
        let kept = f.host.remove("vm1", true, 4).await.unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert!(kept[0].contains("not a file inside"), "{kept:?}");
        assert!(!mine.exists(), "baton's own image goes");
        assert!(!f.host.vm_dir("vm1").unwrap().exists());
    }

    #[tokio::test]
    async fn incoming_machines_are_held_to_the_same_rules() {
        let f = Fixture::new();
        let before = f.tree();
        let machine = |name: &str, path: PathBuf, accel: Option<&str>| Machine {
            spec: f.spec(|v| v["name"] = json!(name)),
            disks: vec![MachineDisk {
                name: "disk0".into(),
                path: path.display().to_string(),
                owned: true,
            }],
            accel: accel.map(str::to_string),
            policy: None,
            project: None,
        };
        let inside = f.path("images/vmlinuz");
        let mut odd_policy = machine("vm1", inside.clone(), None);
        odd_policy.policy = Some(SnapshotPolicy {
            naming: "{vm} x; quit".into(),
            ..SnapshotPolicy::default()
        });
        for (m, what) in [
            (machine("../x", inside.clone(), None), "VM name"),
            (odd_policy, "naming template"),
            (
                machine("vm1", f.path("outside/victim"), None),
                "outside the directories",
            ),
            (
                machine("vm1", inside.clone(), Some("kvm,x=y")),
                "accelerator",
            ),
        ] {
            let req = crate::migrate::IncomingRequest {
                machine: m.clone(),
                storage: None,
            };
            let e = f
                .host
                .accept_incoming(&req, 1)
                .await
                .unwrap_err()
                .to_string();
            assert!(e.contains(what), "{e}");
            let e = f.host.adopt(&m, 1).unwrap_err().to_string();
            assert!(e.contains(what), "{e}");
        }
        assert_eq!(f.tree(), before);
        assert!(f.host.store.vms().unwrap().is_empty());
    }

    #[test]
    fn a_new_state_dir_is_private_an_existing_one_is_left_alone() {
        let f = Fixture::new();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&f.host.state_dir), 0o700);
        assert_eq!(mode(&f.host.state_dir.join("vms")), 0o700);
        let open = f.tmp.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        let h = Host::open(&open, HostOptions::default()).unwrap();
        assert_eq!(mode(&h.state_dir), 0o755);
        assert_eq!(mode(&h.state_dir.join("vms")), 0o700);
    }

    #[test]
    fn names_become_paths_only_when_valid() {
        let f = Fixture::new();
        assert!(f.host.vm_dir("web-1").unwrap().ends_with("vms/web-1"));
        for bad in ["../x", "a/b", "", ".", "-x", "a,b"] {
            assert!(f.host.vm_dir(bad).is_err(), "{bad:?}");
        }
    }
}
