//! The QEMU backend: the argument vector of a VM (pure), disks made with qemu-img,
//! processes started daemonized in their own session with a pid file, QMP on a Unix
//! socket and the serial console to a log file, and the accelerator probe.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::host::Machine;
use crate::hypervisor::{Capabilities, Hypervisor, Incoming};
use crate::qmp::Qmp;
use crate::spec::{Accel, Boot};
use crate::VmError;

pub const QEMU: &str = "qemu-system-x86_64";
pub const QEMU_IMG: &str = "qemu-img";

/// The files of one VM's directory.
#[derive(Debug, Clone)]
pub struct Paths {
    pub dir: PathBuf,
    pub qmp: PathBuf,
    pub console_log: PathBuf,
    pub console_sock: PathBuf,
    /// The QEMU guest agent's channel (a VM whose health the agent answers).
    pub qga: PathBuf,
    pub pid: PathBuf,
}

impl Paths {
    pub fn new(dir: &Path) -> Paths {
        Paths {
            dir: dir.to_path_buf(),
            qmp: dir.join("qmp.sock"),
            console_log: dir.join("console.log"),
            console_sock: dir.join("console.sock"),
            qga: dir.join("qga.sock"),
            pid: dir.join("qemu.pid"),
        }
    }
}

/// A path inside a QEMU option value: commas are doubled.
fn opt_path(p: &Path) -> String {
    p.display().to_string().replace(',', ",,")
}

/// The full argument vector (without the program) for `machine` in `paths`.
pub fn argv(
    machine: &Machine,
    paths: &Paths,
    accel: &str,
    incoming: Option<&Incoming>,
) -> Vec<String> {
    let spec = &machine.spec;
    let mut a: Vec<String> = vec![
        "-name".into(),
        format!("guest={},process=baton-vm-{}", spec.name, spec.name),
        "-machine".into(),
        "pc".into(),
        "-accel".into(),
        accel.into(),
        "-m".into(),
        format!("{}M", spec.memory_mib),
        "-smp".into(),
        spec.cpus.to_string(),
        "-nodefaults".into(),
        "-no-user-config".into(),
        "-display".into(),
        "none".into(),
        "-chardev".into(),
        format!(
            "file,id=serial0,path={},append=on",
            opt_path(&paths.console_log)
        ),
        "-serial".into(),
        "chardev:serial0".into(),
        "-chardev".into(),
        format!(
            "socket,id=serial1,path={},server=on,wait=off",
            opt_path(&paths.console_sock)
        ),
        "-serial".into(),
        "chardev:serial1".into(),
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", opt_path(&paths.qmp)),
        "-pidfile".into(),
        paths.pid.display().to_string(),
        "-daemonize".into(),
        // A guest that powers off leaves QEMU in the `shutdown` state instead of ending
        // it, so that baton can tell a guest's own power-off from a process that died.
        "-no-shutdown".into(),
    ];
    if spec
        .healthcheck
        .as_ref()
        .is_some_and(|h| h.probe == crate::spec::Probe::Agent)
    {
        // The guest agent's port, by the name qemu-ga looks for.
        a.extend([
            "-chardev".into(),
            format!(
                "socket,id=qga0,path={},server=on,wait=off",
                opt_path(&paths.qga)
            ),
            "-device".into(),
            "virtio-serial-pci,id=vser0".into(),
            "-device".into(),
            "virtserialport,bus=vser0.0,chardev=qga0,name=org.qemu.guest_agent.0".into(),
        ]);
    }
    match &spec.boot {
        Boot::Kernel {
            kernel,
            initrd,
            cmdline,
        } => {
            a.extend(["-kernel".into(), kernel.display().to_string()]);
            if let Some(i) = initrd {
                a.extend(["-initrd".into(), i.display().to_string()]);
            }
            a.extend(["-append".into(), cmdline.clone()]);
        }
        Boot::Iso { path } => {
            a.extend([
                "-drive".into(),
                format!("media=cdrom,if=ide,readonly=on,file={}", opt_path(path)),
                "-boot".into(),
                "d".into(),
            ]);
        }
        Boot::Disk => a.extend(["-boot".into(), "c".into()]),
    }
    for d in &machine.disks {
        a.extend([
            "-blockdev".into(),
            format!(
                "driver=file,filename={},node-name={}-file",
                opt_path(Path::new(&d.path)),
                d.name
            ),
            "-blockdev".into(),
            format!("driver=qcow2,file={0}-file,node-name={0}", d.name),
            "-device".into(),
            format!("virtio-blk-pci,drive={0},id={0}-dev", d.name),
        ]);
    }
    if spec.network.mode == "user" {
        let mut net = "user,id=net0".to_string();
        for f in &spec.network.forwards {
            net.push_str(&format!(
                ",hostfwd={}:{}:{}-:{}",
                f.protocol, f.host_ip, f.host_port, f.guest_port
            ));
        }
        a.extend([
            "-netdev".into(),
            net,
            "-device".into(),
            "virtio-net-pci,netdev=net0,romfile=".into(),
        ]);
    }
    if let Some(i) = incoming {
        if i.paused {
            a.push("-S".into());
        }
        a.extend(["-incoming".into(), i.uri.clone()]);
    }
    a
}

/// Makes a qcow2 image: of `size_bytes`, and/or on `backing`.
pub async fn create_disk(
    path: &Path,
    size_bytes: Option<u64>,
    backing: Option<&Path>,
) -> Result<(), VmError> {
    let mut args: Vec<String> = vec!["create".into(), "-q".into(), "-f".into(), "qcow2".into()];
    if let Some(b) = backing {
        let fmt = image_format(b).await.unwrap_or_else(|| "raw".into());
        args.extend(["-b".into(), b.display().to_string(), "-F".into(), fmt]);
    }
    args.push(path.display().to_string());
    if let Some(s) = size_bytes {
        args.push(s.to_string());
    }
    run_tool(QEMU_IMG, &args).await.map(|_| ())
}

/// The virtual size of an image in bytes.
pub async fn image_size(path: &Path) -> Option<u64> {
    let out = run_tool(
        QEMU_IMG,
        &[
            "info".into(),
            "--output=json".into(),
            "-U".into(),
            path.display().to_string(),
        ],
    )
    .await
    .ok()?;
    let v: serde_json::Value = serde_json::from_str(&out).ok()?;
    v["virtual-size"].as_u64()
}

async fn image_format(path: &Path) -> Option<String> {
    let out = run_tool(
        QEMU_IMG,
        &[
            "info".into(),
            "--output=json".into(),
            "-U".into(),
            path.display().to_string(),
        ],
    )
    .await
    .ok()?;
    let v: serde_json::Value = serde_json::from_str(&out).ok()?;
    v["format"].as_str().map(str::to_string)
}

async fn run_tool(program: &str, args: &[String]) -> Result<String, VmError> {
    let out = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| VmError::Tool {
            tool: program.to_string(),
            message: format!("cannot run it ({e}); run scripts/ensure-vm.sh"),
        })?;
    if !out.status.success() {
        return Err(VmError::Tool {
            tool: program.to_string(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Decides the accelerator: `kvm`/`tcg` as asked; for `auto`, KVM only when a probe
/// guest really runs under it (the kernel must start printing on the serial port
/// within a few seconds), else TCG. `/dev/kvm` existing is not enough: on some hosts
/// KVM guests hang. The answer is cached in `cache` (one file per host).
pub async fn choose_accel(accel: Accel, probe_kernel: Option<&Path>, cache: &Path) -> String {
    match accel {
        Accel::Kvm => return "kvm".into(),
        Accel::Tcg => return "tcg".into(),
        Accel::Auto => {}
    }
    if let Ok(s) = std::fs::read_to_string(cache) {
        let s = s.trim();
        if s == "kvm" || s == "tcg" {
            return s.to_string();
        }
    }
    let answer = if probe_kvm(probe_kernel).await {
        "kvm"
    } else {
        "tcg"
    };
    let _ = std::fs::write(cache, answer);
    answer.to_string()
}

async fn probe_kvm(kernel: Option<&Path>) -> bool {
    if !Path::new("/dev/kvm").exists() {
        return false;
    }
    let Ok(dir) = tempfile_dir() else {
        return false;
    };
    let log = dir.join("probe.log");
    let mut args: Vec<String> = vec![
        "-accel".into(),
        "kvm".into(),
        "-nodefaults".into(),
        "-no-user-config".into(),
        "-display".into(),
        "none".into(),
        "-m".into(),
        "128M".into(),
        "-no-reboot".into(),
    ];
    let needle: &str = match kernel {
        Some(k) => {
            args.extend([
                "-kernel".into(),
                k.display().to_string(),
                "-append".into(),
                "console=ttyS0 panic=-1".into(),
                "-serial".into(),
                format!("file:{}", log.display()),
            ]);
            "Linux version"
        }
        None => {
            // No kernel to try: SeaBIOS's debug port is the weaker test.
            args.extend([
                "-debugcon".into(),
                format!("file:{}", log.display()),
                "-global".into(),
                "isa-debugcon.iobase=0x402".into(),
            ]);
            "SeaBIOS"
        }
    };
    let Ok(mut child) = tokio::process::Command::new(QEMU)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
    else {
        return false;
    };
    let mut ok = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if std::fs::read_to_string(&log).is_ok_and(|s| s.contains(needle)) {
            ok = true;
            break;
        }
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
    }
    let _ = child.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
    ok
}

fn tempfile_dir() -> std::io::Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("baton-kvm-probe-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

/// The QEMU backend. Stateless: everything lives in the VM's directory.
#[derive(Debug, Clone, Default)]
pub struct Qemu {
    /// Where the accelerator probe's answer is cached.
    pub accel_cache: PathBuf,
}

impl Qemu {
    /// One argument-less QMP command to the VM in `dir`.
    async fn command(&self, dir: &Path, name: &str) -> Result<(), VmError> {
        self.qmp(dir)
            .await?
            .execute(name, serde_json::Value::Null)
            .await?;
        Ok(())
    }

    pub async fn qmp(&self, dir: &Path) -> Result<Qmp, VmError> {
        Ok(Qmp::connect_timeout(&Paths::new(dir).qmp, Duration::from_secs(10)).await?)
    }

    pub fn pid(&self, dir: &Path) -> Option<i64> {
        let p = Paths::new(dir);
        let pid: i64 = std::fs::read_to_string(&p.pid).ok()?.trim().parse().ok()?;
        crate::facts::is_live(pid, &p.qmp.display().to_string()).then_some(pid)
    }

    /// Sends SIGKILL to the VM's process if it still runs.
    pub fn kill(&self, dir: &Path) {
        if let Some(pid) = self.pid(dir) {
            if let Ok(pid) = i32::try_from(pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }

    /// Waits until the VM's process is gone or its guest has powered off (QEMU's
    /// `shutdown` state); false on timeout.
    pub async fn wait_down(&self, dir: &Path, timeout: Duration) -> bool {
        let end = tokio::time::Instant::now() + timeout;
        loop {
            if self.pid(dir).is_none() || self.state(dir).await == "shutdown" {
                return true;
            }
            if tokio::time::Instant::now() >= end {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until the VM's process is gone; false on timeout.
    pub async fn wait_gone(&self, dir: &Path, timeout: Duration) -> bool {
        let end = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < end {
            if self.pid(dir).is_none() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.pid(dir).is_none()
    }
}

/// The QMP commands each capability needs.
const LIVE_MIGRATION: &[&str] = &["migrate", "migrate-set-parameters", "query-migrate"];
const STORAGE_MIGRATION: &[&str] = &[
    "blockdev-add",
    "blockdev-mirror",
    "nbd-server-start",
    "block-export-add",
    "block-job-cancel",
];
const LIVE_SNAPSHOTS: &[&str] = &["human-monitor-command"];
const ACPI: &[&str] = &["system_powerdown"];
/// The machine type baton starts (`-machine pc`).
const MACHINE: &str = "pc";

/// Pure: capabilities from what QEMU answered to `query-commands` and
/// `query-machines` (or why it could not be asked).
pub fn capabilities_from(
    version: Option<&str>,
    commands: &[String],
    machines: &serde_json::Value,
) -> Capabilities {
    let mut measured = Vec::new();
    let Some(version) = version else {
        measured.push(format!("{QEMU} did not answer QMP: nothing is possible"));
        return Capabilities {
            measured,
            ..Capabilities::default()
        };
    };
    measured.push(format!("{QEMU} {version} answered QMP"));
    let has = |needed: &[&str], what: &str, measured: &mut Vec<String>| {
        let missing: Vec<&&str> = needed
            .iter()
            .filter(|c| !commands.iter().any(|have| have == **c))
            .collect();
        if missing.is_empty() {
            measured.push(format!("{what}: commands {} present", needed.join(", ")));
            true
        } else {
            measured.push(format!("{what}: no {missing:?} in query-commands"));
            false
        }
    };
    // Migration needs a versioned machine type (its layout is fixed per version):
    // `pc` must be an alias of one such as pc-i440fx-7.2.
    let machine = machines.as_array().and_then(|ms| {
        ms.iter().find(|m| {
            m["alias"] == serde_json::json!(MACHINE) || m["name"] == serde_json::json!(MACHINE)
        })
    });
    let versioned = machine
        .and_then(|m| m["name"].as_str())
        .filter(|n| n.rsplit('-').next().is_some_and(|v| v.contains('.')))
        .map(str::to_string);
    match &versioned {
        Some(n) => measured.push(format!(
            "machine type {MACHINE} is {n}, versioned: its state migrates"
        )),
        None => measured.push(format!(
            "machine type {MACHINE} is not a versioned machine type here: no migration"
        )),
    }
    let live_migration =
        has(LIVE_MIGRATION, "live migration", &mut measured) && versioned.is_some();
    let storage_migration =
        has(STORAGE_MIGRATION, "storage migration", &mut measured) && live_migration;
    Capabilities {
        live_snapshots: has(LIVE_SNAPSHOTS, "live snapshots (savevm)", &mut measured),
        acpi_shutdown: has(ACPI, "ACPI power button", &mut measured) && machine.is_some(),
        live_migration,
        storage_migration,
        measured,
    }
}

/// Starts QEMU with no machine and asks it over QMP on stdio what it has.
async fn probe_capabilities() -> Capabilities {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let child = tokio::process::Command::new(QEMU)
        .args([
            "-machine",
            "none",
            "-nodefaults",
            "-display",
            "none",
            "-S",
            "-qmp",
            "stdio",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let Ok(mut child) = child else {
        return capabilities_from(None, &[], &serde_json::Value::Null);
    };
    let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return capabilities_from(None, &[], &serde_json::Value::Null);
    };
    let talk = async {
        let script = concat!(
            "{\"execute\":\"qmp_capabilities\"}\n",
            "{\"execute\":\"query-commands\",\"id\":1}\n",
            "{\"execute\":\"query-machines\",\"id\":2}\n",
            "{\"execute\":\"quit\",\"id\":3}\n"
        );
        stdin.write_all(script.as_bytes()).await.ok()?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let (mut version, mut commands, mut machines) = (None, Vec::new(), serde_json::Value::Null);
        while let Ok(Some(line)) = lines.next_line().await {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if let Some(q) = v.get("QMP") {
                let ver = &q["version"]["qemu"];
                version = Some(format!(
                    "{}.{}.{}",
                    ver["major"], ver["minor"], ver["micro"]
                ));
            }
            match v["id"].as_i64() {
                Some(1) => {
                    commands = v["return"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|c| c["name"].as_str().map(str::to_string))
                        .collect()
                }
                Some(2) => machines = v["return"].clone(),
                Some(3) => break,
                _ => {}
            }
        }
        Some((version, commands, machines))
    };
    let answer = tokio::time::timeout(Duration::from_secs(10), talk).await;
    let _ = child.kill().await;
    match answer {
        Ok(Some((version, commands, machines))) => {
            capabilities_from(version.as_deref(), &commands, &machines)
        }
        _ => capabilities_from(None, &[], &serde_json::Value::Null),
    }
}

impl Hypervisor for Qemu {
    /// Measured once per process: QEMU does not change under a running baton.
    async fn capabilities(&self) -> Capabilities {
        static MEASURED: tokio::sync::OnceCell<Capabilities> = tokio::sync::OnceCell::const_new();
        MEASURED.get_or_init(probe_capabilities).await.clone()
    }

    async fn launch(
        &self,
        machine: &Machine,
        dir: &Path,
        incoming: Option<&Incoming>,
    ) -> Result<(i64, String), VmError> {
        let paths = Paths::new(dir);
        std::fs::create_dir_all(dir).map_err(|e| VmError::Io(dir.display().to_string(), e))?;
        for stale in [&paths.qmp, &paths.console_sock, &paths.pid] {
            let _ = std::fs::remove_file(stale);
        }
        let probe_kernel = match &machine.spec.boot {
            Boot::Kernel { kernel, .. } => Some(kernel.as_path()),
            _ => None,
        };
        let accel = match &machine.accel {
            Some(a) => a.clone(),
            None => choose_accel(machine.spec.accel, probe_kernel, &self.accel_cache).await,
        };
        let args = argv(machine, &paths, &accel, incoming);
        let out = tokio::process::Command::new(QEMU)
            .args(&args)
            .stdin(std::process::Stdio::null())
            // QEMU daemonizes itself (setsid); the process group keeps the short-lived
            // parent out of the caller's terminal signals as well.
            .process_group(0)
            .output()
            .await
            .map_err(|e| VmError::Tool {
                tool: QEMU.into(),
                message: format!("cannot run it ({e}); run scripts/ensure-vm.sh"),
            })?;
        if !out.status.success() {
            return Err(VmError::Tool {
                tool: QEMU.into(),
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        let pid = self.pid(dir).ok_or_else(|| VmError::Tool {
            tool: QEMU.into(),
            message: "started but wrote no pid file".into(),
        })?;
        Ok((pid, accel))
    }

    async fn recover(&self, dir: &Path) -> Option<i64> {
        let pid = self.pid(dir)?;
        self.qmp(dir).await.ok().map(|_| pid)
    }

    async fn state(&self, dir: &Path) -> String {
        if self.pid(dir).is_none() {
            return "stopped".into();
        }
        match self.qmp(dir).await {
            Ok(mut q) => q.status().await.unwrap_or_else(|_| "unknown".into()),
            Err(_) => "unreachable".into(),
        }
    }

    async fn powerdown(&self, dir: &Path) -> Result<(), VmError> {
        self.command(dir, "system_powerdown").await
    }

    async fn pause(&self, dir: &Path) -> Result<(), VmError> {
        self.command(dir, "stop").await
    }

    async fn resume(&self, dir: &Path) -> Result<(), VmError> {
        self.command(dir, "cont").await
    }

    async fn snapshot_save(&self, dir: &Path, name: &str) -> Result<(), VmError> {
        self.qmp(dir).await?.hmp(&format!("savevm {name}")).await?;
        Ok(())
    }

    async fn snapshot_load(&self, dir: &Path, name: &str) -> Result<(), VmError> {
        let mut q = self.qmp(dir).await?;
        q.hmp(&format!("loadvm {name}")).await?;
        // loadvm leaves a paused VM paused; a running one keeps running.
        if q.status().await? == "paused" {
            let _ = q.execute("cont", json!(null)).await;
        }
        Ok(())
    }

    async fn snapshot_delete(&self, dir: &Path, name: &str) -> Result<(), VmError> {
        self.qmp(dir).await?.hmp(&format!("delvm {name}")).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::MachineDisk;
    use crate::spec::*;

    #[test]
    fn capabilities_follow_what_qemu_answered() {
        let all: Vec<String> = LIVE_MIGRATION
            .iter()
            .chain(STORAGE_MIGRATION)
            .chain(LIVE_SNAPSHOTS)
            .chain(ACPI)
            .map(|s| s.to_string())
            .collect();
        let machines = serde_json::json!([
            {"name": "pc-i440fx-7.2", "alias": "pc"}, {"name": "none"}
        ]);
        let c = capabilities_from(Some("7.2.22"), &all, &machines);
        assert!(c.live_migration && c.storage_migration && c.live_snapshots && c.acpi_shutdown);
        assert!(
            c.measured.iter().any(|m| m.contains("pc-i440fx-7.2")),
            "{:?}",
            c.measured
        );
        // No NBD export command: no storage migration, the rest stays.
        let fewer: Vec<String> = all
            .iter()
            .filter(|c| *c != "block-export-add")
            .cloned()
            .collect();
        let c = capabilities_from(Some("5.0.0"), &fewer, &machines);
        assert!(c.live_migration && !c.storage_migration);
        assert!(
            c.measured.iter().any(|m| m.contains("block-export-add")),
            "{:?}",
            c.measured
        );
        // An unversioned pc: no migration at all.
        let c = capabilities_from(Some("7.2.22"), &all, &serde_json::json!([{"name": "pc"}]));
        assert!(!c.live_migration && !c.storage_migration && c.live_snapshots);
        // No QEMU: nothing.
        let c = capabilities_from(None, &[], &serde_json::Value::Null);
        assert_eq!(
            (c.live_migration, c.live_snapshots, c.acpi_shutdown),
            (false, false, false)
        );
    }

    #[test]
    fn argv_is_a_vector_with_escaped_paths() {
        let m = Machine {
            spec: VmSpec {
                name: "web".into(),
                cpus: 2,
                memory_mib: 256,
                disks: vec![],
                boot: Boot::Kernel {
                    kernel: "/k".into(),
                    initrd: None,
                    cmdline: "console=ttyS0 quiet".into(),
                },
                network: Network {
                    mode: "user".into(),
                    forwards: vec![parse_forward("8080:80").unwrap()],
                },
                autostart: false,
                accel: Accel::Tcg,
                labels: Default::default(),
                environment: Environment::Dev,
                ha: false,
                restart: Restart::No,
                healthcheck: None,
                depends_on: Default::default(),
            },
            disks: vec![MachineDisk {
                name: "disk0".into(),
                path: "/a,b/d.qcow2".into(),
                owned: true,
            }],
            accel: None,
            policy: None,
            project: None,
        };
        let a = argv(
            &m,
            &Paths::new(Path::new("/s/vms/web")),
            "tcg",
            Some(&Incoming {
                uri: "tcp:127.0.0.1:4444".into(),
                paused: false,
            }),
        );
        assert!(a.contains(&"console=ttyS0 quiet".to_string()));
        assert!(a.contains(&"driver=file,filename=/a,,b/d.qcow2,node-name=disk0-file".to_string()));
        assert!(a
            .iter()
            .any(|x| x.contains("hostfwd=tcp:127.0.0.1:8080-:80")));
        assert_eq!(
            a[a.len() - 2..],
            ["-incoming".to_string(), "tcp:127.0.0.1:4444".to_string()]
        );
    }
}
