//! Fixtures for the VM tests: the tiny guest built by scripts/make-guest.sh, scratch
//! hosts (state directories) whose QEMU processes are killed on drop, VM agents, and
//! readers of the guest's serial log.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::baton_bin;

/// The guest's kernel and initramfs, or `None` (skip) when QEMU or the guest is
/// missing; with `BATON_REQUIRE_VM` set that is a failure instead.
pub fn guest() -> Option<(PathBuf, PathBuf)> {
    let dir = std::env::var_os("BATON_GUEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::repo_root().join(".guest"));
    let k = dir.join("vmlinuz");
    let i = dir.join("initramfs.gz");
    let qemu = Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let img = Command::new("qemu-img")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if qemu && img && k.exists() && i.exists() {
        return Some((k, i));
    }
    assert!(
        std::env::var_os("BATON_REQUIRE_VM").is_none(),
        "BATON_REQUIRE_VM is set but QEMU or the guest is missing: run scripts/ensure-vm.sh"
    );
    eprintln!("skipped: QEMU or the test guest is missing (scripts/ensure-vm.sh)");
    None
}

/// A VM name unique to this test process.
pub fn vm_name(tag: &str) -> String {
    format!("t{}{tag}", std::process::id())
}

/// The pids of live QEMU processes of VM `name` (found by the `-name` baton gives).
pub fn vm_processes(name: &str) -> Vec<u32> {
    let needle = format!("guest={name},process=baton-vm-{name}");
    let me = std::process::id();
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let zombie = std::fs::read_to_string(e.path().join("stat"))
            .map(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
            })
            .unwrap_or(true);
        if !zombie && cmd.split(|b| *b == 0).any(|a| a == needle.as_bytes()) {
            out.push(pid);
        }
    }
    out
}

/// Kills every QEMU process of the named VMs (SIGKILL).
pub fn kill_vms(names: &[String]) {
    for n in names {
        for pid in vm_processes(n) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).output();
        }
    }
}

/// One scratch host: a project directory and a state directory. Every VM registered
/// with [`VmHost::vm`] is killed when dropped, even when the test failed.
pub struct VmHost {
    pub dir: tempfile::TempDir,
    pub state: tempfile::TempDir,
    pub names: std::cell::RefCell<Vec<String>>,
}

impl Default for VmHost {
    fn default() -> Self {
        Self::new()
    }
}

impl VmHost {
    pub fn new() -> VmHost {
        VmHost {
            dir: tempfile::tempdir().expect("tempdir"),
            state: tempfile::tempdir().expect("tempdir"),
            names: Default::default(),
        }
    }

    /// Registers a VM name for cleanup and returns it.
    pub fn vm(&self, tag: &str) -> String {
        let n = vm_name(tag);
        self.names.borrow_mut().push(n.clone());
        n
    }

    pub fn write(&self, name: &str, content: &str) {
        std::fs::write(self.dir.path().join(name), content).expect("write");
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(baton_bin());
        c.current_dir(self.dir.path())
            .env("BATON_STATE_DIR", self.state.path())
            .env_remove("COMPOSE_PROJECT_NAME");
        c
    }

    pub fn baton(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run baton")
    }

    /// Runs baton and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        crate::succeeded(args, &self.baton(args))
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        serde_json::from_str(&self.ok(&a)).expect("json output")
    }

    /// `<state>/vms/<name>`.
    pub fn vm_dir(&self, name: &str) -> PathBuf {
        self.state.path().join("vms").join(name)
    }

    /// Sends a line to the guest's shell through `baton vm console`.
    pub fn guest_run(&self, name: &str, line: &str) {
        use std::io::Write;
        let mut child = self
            .cmd()
            .args(["vm", "console", name])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("baton vm console");
        if let Some(mut i) = child.stdin.take() {
            let _ = writeln!(i, "{line}");
        }
        let _ = child.wait();
    }
}

impl Drop for VmHost {
    fn drop(&mut self) {
        kill_vms(&self.names.borrow());
    }
}

/// A `baton vm agent` on its own state directory, killed (SIGKILL) when dropped.
pub struct Agent {
    pub child: Child,
    pub addr: String,
    pub state: tempfile::TempDir,
}

impl Agent {
    pub fn start(shared: Option<&Path>, lease_ms: u64) -> Agent {
        let state = tempfile::tempdir().expect("tempdir");
        let addr = format!("127.0.0.1:{}", crate::free_port());
        let mut c = Command::new(baton_bin());
        c.env("BATON_STATE_DIR", state.path())
            .args([
                "vm",
                "agent",
                "--listen",
                &addr,
                "--lease-ms",
                &lease_ms.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(s) = shared {
            c.arg("--shared").arg(s);
        }
        let child = c.spawn().expect("baton vm agent");
        let a = Agent { child, addr, state };
        let up = wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(&a.addr).is_ok()
        });
        assert!(up.is_some(), "agent on {} did not listen", a.addr);
        a
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A baton command on this agent's state directory (its store).
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(baton_bin());
        c.env("BATON_STATE_DIR", self.state.path());
        c
    }

    pub fn vm_dir(&self, name: &str) -> PathBuf {
        self.state.path().join("vms").join(name)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

pub use crate::within as wait_until;

/// The serial log of a VM directory.
pub fn console_log(vm_dir: &Path) -> String {
    std::fs::read_to_string(vm_dir.join("console.log")).unwrap_or_default()
}

/// The `baton-guest: tick N mark=M` lines of a serial log, in order.
pub fn ticks(log: &str) -> Vec<(u64, String)> {
    log.lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("baton-guest: tick ")?;
            let (n, m) = rest.split_once(" mark=")?;
            Some((n.parse().ok()?, m.trim().to_string()))
        })
        .collect()
}

/// A `vms:` entry for the test guest.
pub fn guest_vm(name: &str, kernel: &Path, initrd: &Path, extra: &str) -> String {
    format!(
        "  {name}:\n    memory: 128M\n    accel: auto\n    boot:\n      kernel: {}\n      initrd: {}\n      cmdline: console=ttyS0 quiet panic=-1\n{extra}",
        kernel.display(),
        initrd.display()
    )
}
