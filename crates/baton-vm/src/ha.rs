//! Failover of `ha: true` VMs between agents that share a directory (shared storage).
//! The owning agent renews a lease per VM (a small JSON file with an expiry, the QEMU
//! pid and the machine); every other agent watches the leases, and when one expires and
//! its owner's agent does not answer, it fences the VM (kills the recorded QEMU pid and
//! waits until it is gone), then takes the lease and starts the VM itself.
//!
//! Honest limits: on one machine "fencing" is a process kill plus the lease; QEMU's own
//! lock on the qcow2 image is the last guard (a second QEMU cannot open it for writing).
//! Across real machines fencing needs STONITH (IPMI, a PDU, a cloud API): a host that
//! stopped answering may still be writing to the disk.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::host::{Host, Machine};
use crate::VmError;

/// One VM's lease in `<shared>/leases/<vm>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    pub vm: String,
    /// The owning agent's address.
    pub owner: String,
    pub pid: i64,
    /// Unix ms after which the owner is presumed dead unless its agent still answers.
    pub expires_at: i64,
    pub machine: Machine,
}

/// What a watching agent does about one lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Ours and our VM runs: push the expiry forward.
    Renew,
    /// Ours but our VM is gone (stopped by hand or crashed): drop the lease.
    Release,
    /// Someone else's and still valid, or its owner still answers: leave it.
    Leave,
    /// Expired and the owner does not answer: fence it and start the VM here.
    TakeOver,
}

/// Pure: the decision for `lease` seen by agent `me` at `now`.
pub fn decide(
    lease: &Lease,
    me: &str,
    now: i64,
    ours_running: bool,
    owner_answers: bool,
) -> Decision {
    if lease.owner == me {
        return if ours_running {
            Decision::Renew
        } else {
            Decision::Release
        };
    }
    if lease.expires_at > now || owner_answers {
        Decision::Leave
    } else {
        Decision::TakeOver
    }
}

/// `<shared>/leases/<vm>.json`, for a VM name that is one safe path component.
pub fn lease_path(shared: &Path, vm: &str) -> Result<PathBuf, VmError> {
    if !crate::spec::valid_name(vm) {
        return Err(VmError::Invalid(format!(
            "lease of VM {vm:?}: a VM name is {}",
            crate::spec::NAME_RULE
        )));
    }
    Ok(shared.join("leases").join(format!("{vm}.json")))
}

pub fn read_lease(shared: &Path, vm: &str) -> Option<Lease> {
    serde_json::from_slice(&std::fs::read(lease_path(shared, vm).ok()?).ok()?).ok()
}

/// The leases in the shared directory. One whose VM name is not that of its file
/// (`<vm>.json`) is skipped: a name from a file's content never becomes a path.
pub fn leases(shared: &Path) -> Vec<Lease> {
    let Ok(rd) = std::fs::read_dir(shared.join("leases")) else {
        return Vec::new();
    };
    rd.filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| {
            let l: Lease = serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
            let named = lease_path(shared, &l.vm).is_ok_and(|p| p == e.path());
            named.then_some(l)
        })
        .collect()
}

/// Writes the lease atomically (temporary file, then rename).
pub fn write_lease(shared: &Path, l: &Lease) -> Result<(), VmError> {
    let p = lease_path(shared, &l.vm)?;
    let dir = shared.join("leases");
    std::fs::create_dir_all(&dir).map_err(|e| VmError::Io(dir.display().to_string(), e))?;
    let tmp = p.with_extension(format!("tmp{}", std::process::id()));
    let bytes = serde_json::to_vec(l).map_err(|e| VmError::Invalid(e.to_string()))?;
    std::fs::write(&tmp, bytes).map_err(|e| VmError::Io(tmp.display().to_string(), e))?;
    std::fs::rename(&tmp, &p).map_err(|e| VmError::Io(p.display().to_string(), e))
}

/// An exclusive claim on one VM's takeover, so two watching agents never both start it.
fn claim(shared: &Path, vm: &str) -> Option<std::fs::File> {
    let p = shared.join("leases").join(format!("{vm}.lock"));
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(p)
        .ok()?;
    f.try_lock().ok().map(|()| f)
}

/// Kills the QEMU process recorded in the lease and waits until it is gone. The pid is
/// only signalled when its command line is this VM's QEMU (`guest=<vm>,`).
pub async fn fence(lease: &Lease) -> bool {
    let marker = format!("guest={},", lease.vm);
    let alive = || is_vm_process(lease.pid, &marker);
    if alive() {
        if let Ok(pid) = i32::try_from(lease.pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    for _ in 0..100 {
        if !alive() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn is_vm_process(pid: i64, marker: &str) -> bool {
    crate::facts::is_live(pid, marker)
}

/// Timing of the lease protocol.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub ttl_ms: i64,
    pub tick: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            ttl_ms: 3000,
            tick: Duration::from_millis(500),
        }
    }
}

/// Takes the lease for a VM this agent just started.
pub fn acquire(host: &Host, shared: &Path, vm: &str, t: Timing, now: i64) -> Result<(), VmError> {
    let machine = host.machine(vm)?;
    let pid = host
        .pid(vm)
        .ok_or_else(|| VmError::NotRunning(vm.to_string()))?;
    write_lease(
        shared,
        &Lease {
            vm: vm.to_string(),
            owner: host.label.clone(),
            pid,
            expires_at: now + t.ttl_ms,
            machine,
        },
    )
}

/// One round of the controller: renew our leases, take over dead hosts' VMs. Returns
/// the VMs taken over.
pub async fn tick(
    host: &Host,
    shared: &Path,
    peers: &crate::agent::Client,
    t: Timing,
    clock: &(dyn Fn() -> i64 + Sync),
) -> Vec<String> {
    let mut taken = Vec::new();
    for lease in leases(shared) {
        let now = clock();
        let ours_running = lease.owner == host.label && host.pid(&lease.vm).is_some();
        let owner_answers = if lease.owner != host.label && lease.expires_at <= now {
            peers.answers(&lease.owner).await
        } else {
            true
        };
        match decide(&lease, &host.label, now, ours_running, owner_answers) {
            Decision::Renew => {
                let mut l = lease.clone();
                l.expires_at = now + t.ttl_ms;
                if let Some(pid) = host.pid(&l.vm) {
                    l.pid = pid;
                }
                let _ = write_lease(shared, &l);
            }
            Decision::Release => {
                if let Ok(p) = lease_path(shared, &lease.vm) {
                    let _ = std::fs::remove_file(p);
                }
            }
            Decision::Leave => {}
            Decision::TakeOver => {
                let Some(_claim) = claim(shared, &lease.vm) else {
                    continue;
                };
                // Re-read under the claim: another agent may have taken it meanwhile.
                if read_lease(shared, &lease.vm).as_ref() != Some(&lease) {
                    continue;
                }
                if let Ok(name) = take_over(host, shared, &lease, t, clock).await {
                    taken.push(name);
                }
            }
        }
    }
    taken
}

async fn take_over(
    host: &Host,
    shared: &Path,
    lease: &Lease,
    t: Timing,
    clock: &(dyn Fn() -> i64 + Sync),
) -> Result<String, VmError> {
    let vm = &lease.vm;
    let job = host
        .store
        .start_vm_migration(vm, "failover", &lease.owner, &host.label, clock())?;
    if !fence(lease).await {
        let msg = format!("cannot fence pid {} of {vm}: not restarting it", lease.pid);
        host.store
            .finish_vm_migration(job, "failed", None, None, Some(&msg), clock())?;
        return Err(VmError::Invalid(msg));
    }
    let mut m = lease.machine.clone();
    m.accel = None;
    let r = host.adopt(&m, clock()).await;
    let now = clock();
    match r {
        Ok(pid) => {
            write_lease(
                shared,
                &Lease {
                    vm: vm.clone(),
                    owner: host.label.clone(),
                    pid,
                    expires_at: now + t.ttl_ms,
                    machine: host.machine(vm)?,
                },
            )?;
            // Downtime here: from the lease's expiry to the restart.
            let down = (now - lease.expires_at).max(0);
            host.store
                .finish_vm_migration(job, "completed", None, Some(down), None, now)?;
            let _ = host.store.add_vm_op(
                vm,
                "failover",
                "ok",
                &format!("from {} (fenced pid {})", lease.owner, lease.pid),
                now,
            );
            Ok(vm.clone())
        }
        Err(e) => {
            host.store
                .finish_vm_migration(job, "failed", None, None, Some(&e.to_string()), now)?;
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::Machine;

    fn lease(owner: &str, expires_at: i64) -> Lease {
        let spec: crate::VmSpec = serde_json::from_value(serde_json::json!({
            "name": "a", "cpus": 1, "memory_mib": 128, "disks": [],
            "boot": {"kind": "disk"}, "network": {"mode": "none", "forwards": []},
            "autostart": false, "accel": "tcg", "labels": {}, "environment": "dev", "ha": true
        }))
        .unwrap();
        Lease {
            vm: "a".into(),
            owner: owner.into(),
            pid: 1,
            expires_at,
            machine: Machine {
                spec,
                disks: vec![],
                accel: None,
                policy: None,
                project: None,
            },
        }
    }

    #[test]
    fn a_lease_names_its_own_file_or_is_ignored() {
        let shared = tempfile::tempdir().unwrap();
        let l = lease("b", 5);
        write_lease(shared.path(), &l).unwrap();
        assert_eq!(leases(shared.path()), vec![l.clone()]);
        // A lease file whose VM is not its file name, or no path component at all.
        for (file, vm) in [("other.json", "a"), ("x.json", "../../x")] {
            let mut forged = l.clone();
            forged.vm = vm.into();
            let bytes = serde_json::to_vec(&forged).unwrap();
            std::fs::write(shared.path().join("leases").join(file), bytes).unwrap();
        }
        assert_eq!(leases(shared.path()), vec![l.clone()]);
        let mut bad = l;
        bad.vm = "../x".into();
        assert!(write_lease(shared.path(), &bad).is_err());
        assert!(lease_path(shared.path(), "../x").is_err());
        assert!(read_lease(shared.path(), "../x").is_none());
    }

    #[test]
    fn only_an_expired_lease_of_a_silent_owner_is_taken_over() {
        assert_eq!(
            decide(&lease("me", 0), "me", 10, true, true),
            Decision::Renew
        );
        assert_eq!(
            decide(&lease("me", 0), "me", 10, false, true),
            Decision::Release
        );
        assert_eq!(
            decide(&lease("b", 100), "me", 10, false, false),
            Decision::Leave
        );
        assert_eq!(
            decide(&lease("b", 5), "me", 10, false, true),
            Decision::Leave
        );
        assert_eq!(
            decide(&lease("b", 5), "me", 10, false, false),
            Decision::TakeOver
        );
    }
}
