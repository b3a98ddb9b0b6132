//! What the host has (CPUs, memory, free storage) and what a QEMU process uses, read
//! from /proc and statvfs.

use std::path::Path;

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Capabilities {
    pub cpus: usize,
    pub memory_mib: u64,
    pub memory_available_mib: u64,
    pub storage_path: String,
    pub storage_total_mib: u64,
    pub storage_free_mib: u64,
    pub kvm_device: bool,
    pub qemu: Option<String>,
}

fn meminfo(key: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kib| kib / 1024)
}

/// Total memory of the host in MiB (0 when /proc/meminfo cannot be read).
pub fn memory_mib() -> u64 {
    meminfo("MemTotal").unwrap_or(0)
}

pub fn capabilities(storage: &Path) -> Capabilities {
    let (total, free) = nix::sys::statvfs::statvfs(storage)
        .map(|s| {
            let f = s.fragment_size().max(1);
            (
                s.blocks() * f / (1 << 20),
                s.blocks_available() * f / (1 << 20),
            )
        })
        .unwrap_or((0, 0));
    let qemu = std::process::Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string));
    Capabilities {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_mib: memory_mib(),
        memory_available_mib: meminfo("MemAvailable").unwrap_or(0),
        storage_path: storage.display().to_string(),
        storage_total_mib: total,
        storage_free_mib: free,
        kvm_device: Path::new("/dev/kvm").exists(),
        qemu,
    }
}

/// CPU time and resident memory of a live process.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ProcessUse {
    pub cpu_seconds: f64,
    pub rss_mib: f64,
}

/// True when `pid` is a live (not zombie) process whose command line mentions `marker`
/// (the VM's QMP socket), so a recycled pid is never mistaken for the VM.
pub fn is_live(pid: i64, marker: &str) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or("Z");
    if state == "Z" || state == "X" {
        return false;
    }
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains(marker))
        .unwrap_or(false)
}

pub fn process_use(pid: i64) -> Option<ProcessUse> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3, utime 14 and stime 15 (1-based) → 11, 12 here.
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    Some(ProcessUse {
        cpu_seconds: ticks / hz,
        rss_mib: rss_kib / 1024.0,
    })
}
