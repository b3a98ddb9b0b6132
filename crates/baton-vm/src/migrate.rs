//! Live migration between hosts. The destination (`Host::accept_incoming`, asked by the
//! source through its agent) starts QEMU waiting on its own address; with storage it
//! first makes empty disks of the same sizes and exports them over NBD on that address.
//! The source (`Host::migrate`) mirrors each disk into its export while the guest runs,
//! migrates memory and devices under the bandwidth and downtime limits, completes the
//! mirrors with the guest paused, then tells the destination to run
//! (`Host::finish_incoming`). Whatever fails before the switch-over leaves the guest
//! running on the source and the destination's copy removed (`Host::abort_incoming`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use baton_state::VmMigration;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::host::{create_new, current_node, io, remove_files, Host, Machine, MigrateOptions};
use crate::hypervisor::Incoming;
use crate::qemu;
use crate::VmError;

/// What the source asks of the destination's agent (`POST /v1/incoming`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncomingRequest {
    pub machine: Machine,
    /// Copy these disks here (each as big as the source's) instead of sharing storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<Vec<DiskCopy>>,
}

/// One disk the destination makes for a migration with storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskCopy {
    pub name: String,
    /// The guest-visible size.
    pub size_bytes: u64,
}

/// Where the source sends the migration (and, with storage, the disks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncomingAnswer {
    /// `tcp:ADDR:PORT`.
    pub uri: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbd: Option<NbdTarget>,
}

/// The destination's NBD server: one writable export per disk, named as the disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NbdTarget {
    pub host: String,
    pub port: u16,
}

/// `tcp:` URIs name IPv6 addresses in brackets.
fn uri_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// A port nothing listens on at `ip` now (QEMU binds it right after).
fn free_port(ip: IpAddr, dir: &Path) -> Result<u16, VmError> {
    std::net::TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(io(dir))
}

/// The job and node names of a disk's copy to the destination.
fn mirror_id(disk: &str) -> String {
    format!("mig-{disk}")
}

impl Host {
    /// Takes in a VM migrating here. With shared storage its disks must already be
    /// inside [`Host::disk_dirs`]; with `storage`, new disks of the given sizes are made
    /// in the VM's directory and exported over NBD on [`Host::address`]. The VM is
    /// checked like [`Host::create`], recorded and started waiting on this host's
    /// address (paused once in, when disks come beside it). Returns where to send.
    pub async fn accept_incoming(
        &self,
        req: &IncomingRequest,
        now: i64,
    ) -> Result<IncomingAnswer, VmError> {
        let mut m = req.machine.clone();
        let name = m.spec.name.clone();
        let dir = self.vm_dir(&name)?;
        if self.pid(&name).is_some() {
            return Err(VmError::Running(name));
        }
        let mut made: Vec<PathBuf> = Vec::new();
        if let Some(copies) = &req.storage {
            if self.store.vm(&name)?.is_some() {
                return Err(VmError::Invalid(format!(
                    "VM {name:?} is already recorded on this host: remove it before moving it here with its disks"
                )));
            }
            // Checked before anything is made: the names become file names.
            crate::spec::check(&m.spec).map_err(VmError::Invalid)?;
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
            for d in &mut m.disks {
                let made_so_far = made.clone();
                let fail = |e: VmError| {
                    remove_files(&made_so_far);
                    e
                };
                if !crate::spec::valid_name(&d.name) {
                    return Err(fail(VmError::Invalid(format!(
                        "disk name {:?}: a disk name is {}",
                        d.name,
                        crate::spec::NAME_RULE
                    ))));
                }
                let Some(copy) = copies.iter().find(|c| c.name == d.name) else {
                    return Err(fail(VmError::Invalid(format!(
                        "no size given for disk {}",
                        d.name
                    ))));
                };
                let path = dir.join(format!("{}.qcow2", d.name));
                if !create_new(&path).map_err(&fail)? {
                    return Err(fail(VmError::Invalid(format!(
                        "{} already exists",
                        path.display()
                    ))));
                }
                made.push(path.clone());
                if let Err(e) = qemu::create_disk(&path, Some(copy.size_bytes), None).await {
                    remove_files(&made);
                    return Err(e);
                }
                d.path = path.display().to_string();
                d.owned = true;
            }
        }
        let undo = |made: &[PathBuf]| {
            remove_files(made);
            let _ = std::fs::remove_dir(&dir);
        };
        let m = match self.admit(&m) {
            Ok(m) => m,
            Err(e) => {
                undo(&made);
                return Err(e);
            }
        };
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        self.save(&m, now)?;
        let ip = self.address;
        let incoming = Incoming {
            uri: format!("tcp:{}:{}", uri_host(ip), free_port(ip, &dir)?),
            paused: req.storage.is_some(),
        };
        let r = async {
            self.start_with(&name, Some(&incoming), now).await?;
            if req.storage.is_none() {
                return Ok(None);
            }
            let port = free_port(ip, &dir)?;
            let mut q = self.qemu.qmp(&dir).await?;
            q.execute(
                "nbd-server-start",
                json!({"addr": {"type": "inet", "data": {"host": ip.to_string(), "port": port.to_string()}}}),
            )
            .await?;
            for d in &m.disks {
                q.execute(
                    "block-export-add",
                    json!({"type": "nbd", "id": mirror_id(&d.name), "node-name": d.name,
                           "name": d.name, "writable": true}),
                )
                .await?;
            }
            Ok::<_, VmError>(Some(NbdTarget {
                host: ip.to_string(),
                port,
            }))
        }
        .await;
        match r {
            Ok(nbd) => {
                self.op(&name, "incoming", "ok", &incoming.uri, now);
                Ok(IncomingAnswer {
                    uri: incoming.uri,
                    nbd,
                })
            }
            Err(e) => {
                let _ = self.kill(&name, now).await;
                let _ = self.store.remove_vm(&name);
                undo(&made);
                self.op(&name, "incoming", "failed", &e.to_string(), now);
                Err(e)
            }
        }
    }

    /// The migration is in. With storage (`resume`), the disks are complete too: stop
    /// serving them and let the guest run here. Without, the guest already runs as it
    /// ran on the source (a paused one stays paused): the arrival is recorded.
    pub async fn finish_incoming(&self, vm: &str, resume: bool, now: i64) -> Result<(), VmError> {
        let dir = self.running_dir(vm)?;
        let mut q = self.qemu.qmp(&dir).await?;
        let mut status = q.status().await?;
        // Without storage the guest switches over by itself, a moment after the
        // source saw the migration complete.
        let deadline = Instant::now() + Duration::from_secs(2);
        while !resume && status == "inmigrate" && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            status = q.status().await?;
        }
        if status == "inmigrate" {
            return Err(VmError::Invalid(format!(
                "the migration of {vm} has not arrived yet"
            )));
        }
        // The exports go with the server (none when it was not started).
        let _ = q.execute("nbd-server-stop", Value::Null).await;
        if resume && status != "running" {
            q.execute("cont", Value::Null).await?;
        }
        self.op(vm, "incoming", "ok", "running", now);
        self.event(vm, "arrived by live migration, running", now);
        Ok(())
    }

    /// Drops a migration that did not happen: the waiting (or paused) copy is ended and
    /// forgotten, with the disks made for it. A running guest is refused.
    pub async fn abort_incoming(&self, vm: &str, now: i64) -> Result<(), VmError> {
        let dir = self.vm_dir(vm)?;
        self.machine(vm)?;
        if self.qemu.pid(&dir).is_some() {
            let state = {
                use crate::hypervisor::Hypervisor;
                self.qemu.state(&dir).await
            };
            if state == "running" {
                return Err(VmError::Invalid(format!(
                    "VM {vm:?} runs here: it is not an unfinished incoming migration"
                )));
            }
        }
        self.remove(vm, true, now).await?;
        self.op(vm, "incoming", "aborted", "", now);
        Ok(())
    }

    /// Live-migrates a running VM to the agent at `dest`: the destination starts QEMU
    /// waiting on its address, this side sets bandwidth and downtime limits and
    /// migrates (after mirroring the disks there, with `opts.storage`), `progress` sees
    /// each `query-migrate` and `query-block-jobs` answer, and the source process ends
    /// once the destination runs. With storage, the source's images baton made are
    /// deleted afterwards (it is a move); without, disks stay where they are (shared).
    pub async fn migrate(
        &self,
        vm: &str,
        dest: &str,
        agents: &crate::agent::Client,
        opts: &MigrateOptions,
        mut progress: impl FnMut(&Value),
        clock: impl Fn() -> i64,
    ) -> Result<VmMigration, VmError> {
        let dir = self.running_dir(vm)?;
        let rec = self
            .store
            .vm(vm)?
            .ok_or_else(|| VmError::Unknown(vm.into()))?;
        let mut m = self.machine(vm)?;
        m.accel = rec.accel.clone();
        if m.spec.ha {
            return Err(VmError::Invalid(format!(
                "VM {vm} is ha: its lease is held here, so its agents move it (failover); make it a plain VM to migrate it"
            )));
        }
        let blockers = self.migration_blockers(&dir).await?;
        if !blockers.is_empty() {
            return Err(VmError::Invalid(format!(
                "QEMU cannot migrate {vm}: {}",
                blockers.join("; ")
            )));
        }
        let kind = if opts.storage { "live-storage" } else { "live" };
        let id = self
            .store
            .start_vm_migration(vm, kind, &self.label, dest, clock())?;
        let result = self
            .migrate_inner(&dir, &m, dest, agents, opts, &mut progress)
            .await;
        let now = clock();
        match result {
            Ok((bytes, downtime)) => {
                // No longer this host's to run: recorded before the source process ends,
                // so no supervisor takes its end for a crash.
                self.store.set_vm_process(vm, None, None, None, now)?;
                self.store
                    .finish_vm_migration(id, "completed", bytes, downtime, None, now)?;
                if let Ok(mut q) = self.qemu.qmp(&dir).await {
                    let _ = q.execute("quit", Value::Null).await;
                }
                if !self.qemu.wait_gone(&dir, Duration::from_secs(10)).await {
                    self.qemu.kill(&dir);
                }
                self.cleanup_runtime(&dir);
                if opts.storage {
                    for d in m.disks.iter().filter(|d| d.owned) {
                        if self.disk_dirs.may_delete(Path::new(&d.path)) {
                            let _ = std::fs::remove_file(&d.path);
                        }
                    }
                }
                self.event(
                    vm,
                    &format!(
                        "migrated to {dest} ({kind}): downtime {} ms",
                        downtime.unwrap_or(0)
                    ),
                    now,
                );
                self.store.remove_vm(vm)?;
                self.op(vm, "migrate", "ok", &format!("to {dest}"), now);
            }
            Err(e) => {
                self.store.finish_vm_migration(
                    id,
                    "failed",
                    None,
                    None,
                    Some(&e.to_string()),
                    now,
                )?;
                self.op(vm, "migrate", "failed", &e.to_string(), now);
                self.event(vm, &format!("migration to {dest} failed: {e}"), now);
                return Err(e);
            }
        }
        self.migration(id)
    }

    /// Why QEMU would refuse to migrate the VM in `dir` now (its devices, its state),
    /// as QEMU itself says (`query-migrate`'s `blocked-reasons`).
    pub async fn migration_blockers(&self, dir: &Path) -> Result<Vec<String>, VmError> {
        let st = self
            .qemu
            .qmp(dir)
            .await?
            .execute("query-migrate", Value::Null)
            .await?;
        Ok(st["blocked-reasons"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str().map(str::to_string))
            .collect())
    }

    async fn migrate_inner(
        &self,
        dir: &Path,
        m: &Machine,
        dest: &str,
        agents: &crate::agent::Client,
        opts: &MigrateOptions,
        progress: &mut impl FnMut(&Value),
    ) -> Result<(Option<i64>, Option<i64>), VmError> {
        let storage = if opts.storage {
            let mut copies = Vec::new();
            for d in &m.disks {
                let size = qemu::image_size(Path::new(&d.path)).await.ok_or_else(|| {
                    VmError::Invalid(format!("cannot read the size of {}", d.path))
                })?;
                copies.push(DiskCopy {
                    name: d.name.clone(),
                    size_bytes: size,
                });
            }
            Some(copies)
        } else {
            None
        };
        let answer = agents
            .incoming(
                dest,
                &IncomingRequest {
                    machine: m.clone(),
                    storage,
                },
            )
            .await?;
        let mut q = self.qemu.qmp(dir).await?;
        let moved = self.send(&mut q, m, &answer, opts, progress).await;
        let (bytes, downtime, switched) = match moved {
            Ok(done) => done,
            Err(e) => {
                // Not switched over: the guest goes on here; the destination's copy,
                // which never ran, goes.
                let _ = q.execute("migrate_cancel", Value::Null).await;
                for d in &m.disks {
                    let _ = q
                        .execute(
                            "block-job-cancel",
                            json!({"device": mirror_id(&d.name), "force": true}),
                        )
                        .await;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                for d in &m.disks {
                    let _ = q
                        .execute("blockdev-del", json!({"node-name": mirror_id(&d.name)}))
                        .await;
                }
                if q.status()
                    .await
                    .is_ok_and(|s| s == "postmigrate" || s == "paused")
                {
                    let _ = q.execute("cont", Value::Null).await;
                }
                let _ = agents.abort_incoming(dest, &m.spec.name).await;
                return Err(e);
            }
        };
        if answer.nbd.is_none() {
            // The guest runs there already; the destination records its arrival. Only
            // the record is at stake.
            if let Err(e) = agents.finish_incoming(dest, &m.spec.name, false).await {
                tracing::warn!("{dest} did not record the arrival of {}: {e}", m.spec.name);
            }
            return Ok((bytes, downtime));
        }
        // Memory is there and the disks are complete, the guest paused on both sides:
        // the destination runs it now. If it does not confirm, neither side is resumed
        // (it may have run already): a person decides.
        if let Err(e) = agents.finish_incoming(dest, &m.spec.name, true).await {
            return Err(VmError::Invalid(format!(
                "the destination did not confirm that {} runs ({e}); the guest is paused on both hosts: check {dest} and resume one by hand (`cont` on its QMP socket)",
                m.spec.name
            )));
        }
        let extra = i64::try_from(switched.elapsed().as_millis()).unwrap_or(i64::MAX);
        Ok((bytes, Some(downtime.unwrap_or(0).saturating_add(extra))))
    }

    /// Sends the disks (when the destination exports them) and the memory; returns the
    /// bytes sent, QEMU's downtime and when the switch-over began. With storage, the
    /// mirrors are completed (the guest paused) before this returns.
    async fn send(
        &self,
        q: &mut crate::qmp::Qmp,
        m: &Machine,
        answer: &IncomingAnswer,
        opts: &MigrateOptions,
        progress: &mut impl FnMut(&Value),
    ) -> Result<(Option<i64>, Option<i64>, Instant), VmError> {
        let mut disk_bytes = 0i64;
        if let Some(nbd) = &answer.nbd {
            for d in &m.disks {
                let node = current_node(q, &d.name).await?;
                let id = mirror_id(&d.name);
                q.execute(
                    "blockdev-add",
                    json!({"driver": "nbd", "node-name": id, "export": d.name,
                           "server": {"type": "inet", "host": nbd.host, "port": nbd.port.to_string()}}),
                )
                .await?;
                let mut args = json!({"job-id": id, "device": node, "target": id, "sync": "full"});
                if let Some(b) = opts.max_bandwidth {
                    args["speed"] = json!(b);
                }
                q.execute("blockdev-mirror", args).await?;
            }
            // Every disk copied once, and kept in step while the guest writes.
            loop {
                let jobs = q.execute("query-block-jobs", Value::Null).await?;
                progress(&json!({"status": "copying disks", "jobs": jobs}));
                let mine: Vec<&Value> = jobs
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|j| {
                        m.disks
                            .iter()
                            .any(|d| j["device"] == json!(mirror_id(&d.name)))
                    })
                    .collect();
                if mine.len() < m.disks.len() {
                    return Err(VmError::Invalid(
                        "a disk copy ended before it was complete".into(),
                    ));
                }
                if mine.iter().all(|j| j["ready"] == json!(true)) {
                    disk_bytes = mine.iter().filter_map(|j| j["len"].as_i64()).sum();
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let mut params = json!({});
        if let Some(b) = opts.max_bandwidth {
            params["max-bandwidth"] = json!(b);
        }
        if let Some(d) = opts.downtime_limit_ms {
            params["downtime-limit"] = json!(d);
        }
        if params.as_object().is_some_and(|o| !o.is_empty()) {
            q.execute("migrate-set-parameters", params).await?;
        }
        q.execute("migrate", json!({"uri": answer.uri})).await?;
        let (ram, downtime) = loop {
            let st = q.execute("query-migrate", Value::Null).await?;
            progress(&st);
            match st["status"].as_str().unwrap_or("") {
                "completed" => break (st["ram"]["transferred"].as_i64(), st["downtime"].as_i64()),
                "failed" | "cancelled" => {
                    return Err(VmError::Invalid(format!(
                        "migration {}: {}",
                        st["status"].as_str().unwrap_or(""),
                        st["error-desc"].as_str().unwrap_or("no reason given")
                    )))
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        let switched = Instant::now();
        if answer.nbd.is_some() {
            // The guest is paused here: what the mirrors still hold goes out, then they
            // end (a cancel of a ready mirror completes it without switching to it).
            for d in &m.disks {
                q.execute("block-job-cancel", json!({"device": mirror_id(&d.name)}))
                    .await?;
            }
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let jobs = q.execute("query-block-jobs", Value::Null).await?;
                let left = jobs.as_array().into_iter().flatten().any(|j| {
                    m.disks
                        .iter()
                        .any(|d| j["device"] == json!(mirror_id(&d.name)))
                });
                if !left {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(VmError::Invalid(
                        "the disk copies did not finish within 60 s of the switch-over".into(),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // A mirror that failed instead of completing leaves an event saying so.
            if let Some(e) = q.events.iter().find(|e| {
                e["event"] == json!("BLOCK_JOB_COMPLETED") && e["data"]["error"].is_string()
            }) {
                return Err(VmError::Invalid(format!(
                    "a disk copy failed: {}",
                    e["data"]["error"].as_str().unwrap_or("")
                )));
            }
            for d in &m.disks {
                let _ = q
                    .execute("blockdev-del", json!({"node-name": mirror_id(&d.name)}))
                    .await;
            }
        }
        let bytes = ram.map(|r| r + disk_bytes);
        Ok((bytes, downtime, switched))
    }
}
