//! The `vms:` and `snapshot_policies:` sections, typed and validated. Pure: host facts
//! (memory) and file existence are passed in, so every rule is tested without QEMU.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use baton_spec::{Condition, Dependency, ErrorKind, Project, SpecError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One virtual machine as the file declares it, with paths made absolute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmSpec {
    pub name: String,
    pub cpus: u32,
    pub memory_mib: u64,
    pub disks: Vec<DiskSpec>,
    pub boot: Boot,
    pub network: Network,
    pub autostart: bool,
    pub accel: Accel,
    pub labels: BTreeMap<String, String>,
    pub environment: Environment,
    pub ha: bool,
    /// What `baton serve` does when the VM ends without being asked to.
    #[serde(default)]
    pub restart: Restart,
    /// A check from the host to one of the VM's forwarded ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthCheck>,
    /// Services and VMs of the file that must be ready before this VM starts.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub depends_on: BTreeMap<String, Dependency>,
}

impl VmSpec {
    /// The host address and port the health check connects to: the host side of the
    /// forward of the check's guest port (the reader makes sure there is one).
    pub fn health_target(&self) -> Option<(String, u16)> {
        let port = self.healthcheck.as_ref()?.probe.guest_port()?;
        let f = self
            .network
            .forwards
            .iter()
            .find(|f| f.guest_port == port && f.protocol == "tcp")?;
        let ip = match f.host_ip.as_str() {
            "0.0.0.0" => "127.0.0.1",
            "::" => "::1",
            ip => ip,
        };
        Some((ip.to_string(), f.host_port))
    }
}

/// When `baton serve` brings a VM back after its process ended without baton asking
/// (killed, crashed) or its guest powered off by itself; as Compose's `restart:`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    #[default]
    No,
    Always,
    /// Only when the process ended without the guest powering off.
    OnFailure,
    /// As `always`; a VM stopped through baton stays stopped either way.
    UnlessStopped,
}

impl Restart {
    pub fn as_str(self) -> &'static str {
        match self {
            Restart::No => "no",
            Restart::Always => "always",
            Restart::OnFailure => "on-failure",
            Restart::UnlessStopped => "unless-stopped",
        }
    }
}

/// A health check from the host: a TCP connect or an HTTP GET (2xx or 3xx) to the host
/// side of a forwarded port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub probe: Probe,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    /// Failures in a row before a VM that answered counts as unhealthy.
    pub retries: u32,
    /// Failures during this time after the start do not count.
    pub start_period_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Probe {
    Tcp {
        guest_port: u16,
    },
    Http {
        guest_port: u16,
        path: String,
    },
    /// The QEMU guest agent answers `guest-sync` and `guest-ping` on its virtio-serial
    /// port (`org.qemu.guest_agent.0`, which the VM then has).
    Agent,
}

impl Probe {
    /// The guest port a TCP or HTTP check reaches through its forward.
    pub fn guest_port(&self) -> Option<u16> {
        match self {
            Probe::Tcp { guest_port } | Probe::Http { guest_port, .. } => Some(*guest_port),
            Probe::Agent => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskSpec {
    /// `disk0`, `disk1`, … unless named; also the QEMU node name.
    pub name: String,
    pub source: DiskSource,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum DiskSource {
    /// A new qcow2 made with qemu-img, optionally on a backing image, optionally at a
    /// chosen path (default: the VM's directory).
    New {
        size_bytes: Option<u64>,
        backing: Option<PathBuf>,
        path: Option<PathBuf>,
    },
    /// An existing image used as it is.
    Existing { path: PathBuf },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Boot {
    Kernel {
        kernel: PathBuf,
        initrd: Option<PathBuf>,
        cmdline: String,
    },
    Disk,
    Iso {
        path: PathBuf,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Network {
    /// `user` (QEMU's user-mode network) or `none`.
    pub mode: String,
    pub forwards: Vec<PortForward>,
}

/// A host → guest port forward of the user-mode network (`127.0.0.1:8080:80/tcp`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortForward {
    pub protocol: String,
    pub host_ip: String,
    pub host_port: u16,
    pub guest_port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// KVM when a probe guest really runs under it, else TCG.
    Auto,
    Kvm,
    Tcg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Dev,
    Test,
    Prod,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Dev => "dev",
            Environment::Test => "test",
            Environment::Prod => "prod",
        }
    }
}

/// How many snapshots a VM of one environment keeps and what they are called.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotPolicy {
    pub max_snapshots: Option<u32>,
    pub retention_days: Option<u32>,
    /// `{vm}`, `{date}` (YYYYMMDD), `{time}` (HHMMSS), `{type}`, `{seq}`.
    pub naming: String,
    /// When `baton serve` takes an `automated` snapshot: a cron expression (5 fields,
    /// or 6 with seconds first), in UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
}

pub const DEFAULT_NAMING: &str = "{vm}_{date}-{time}_{type}";

impl Default for SnapshotPolicy {
    fn default() -> Self {
        SnapshotPolicy {
            max_snapshots: None,
            retention_days: None,
            naming: DEFAULT_NAMING.to_string(),
            schedule: None,
        }
    }
}

/// What VM and disk names may be: one path component (a VM's directory, a disk's file)
/// and safe inside QEMU's comma-separated options.
pub const NAME_RULE: &str = "1-40 letters, digits, '-' or '_', not starting with '-'";

/// True when `name` follows [`NAME_RULE`].
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 40
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !name.starts_with('-')
}

/// Holds a spec that did not come through [`read`] (an agent's request, a lease file)
/// to the rules `read` applies to what ends up in QEMU's command line: names, CPUs,
/// memory, network mode and port forwards. Files are checked where they are used
/// (`crate::confine`).
pub fn check(spec: &VmSpec) -> Result<(), String> {
    if !valid_name(&spec.name) {
        return Err(format!("VM name {:?}: a VM name is {NAME_RULE}", spec.name));
    }
    let mut seen: Vec<&str> = Vec::new();
    for d in &spec.disks {
        if !valid_name(&d.name) {
            return Err(format!(
                "disk name {:?}: a disk name is {NAME_RULE}",
                d.name
            ));
        }
        if seen.contains(&d.name.as_str()) {
            return Err(format!("duplicate disk name {:?}", d.name));
        }
        seen.push(&d.name);
    }
    if !(1..=64).contains(&spec.cpus) {
        return Err(format!("{} CPUs: expected 1-64", spec.cpus));
    }
    if spec.memory_mib < 16 {
        return Err(format!("{} MiB of memory: at least 16", spec.memory_mib));
    }
    if spec.network.mode != "user" && spec.network.mode != "none" {
        return Err(format!(
            "network mode {:?}: expected user or none",
            spec.network.mode
        ));
    }
    for f in &spec.network.forwards {
        // The reader's own parser is the rule: a forward must survive a round trip.
        let text = format!(
            "{}:{}:{}/{}",
            f.host_ip, f.host_port, f.guest_port, f.protocol
        );
        if parse_forward(&text).as_ref() != Some(f) {
            return Err(format!(
                "port forward {text:?}: expected [HOST_IP:]HOST_PORT:GUEST_PORT[/tcp|/udp]"
            ));
        }
    }
    if spec.network.mode == "none" && !spec.network.forwards.is_empty() {
        return Err("port forwards need network mode user".into());
    }
    Ok(())
}

/// Both sections, typed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VmSection {
    pub vms: Vec<VmSpec>,
    pub policies: BTreeMap<Environment, SnapshotPolicy>,
    /// The project whose file this is (`None` for a section made by hand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
}

impl VmSection {
    pub fn vm(&self, name: &str) -> Option<&VmSpec> {
        self.vms.iter().find(|v| v.name == name)
    }

    /// The policy of an environment (the default one when the file has none).
    pub fn policy(&self, env: Environment) -> SnapshotPolicy {
        self.policies.get(&env).cloned().unwrap_or_default()
    }
}

/// What validation needs to know about the host.
#[derive(Debug, Clone)]
pub struct HostFacts {
    pub memory_mib: u64,
}

const VM_KEYS: &[&str] = &[
    "name",
    "cpus",
    "memory",
    "disks",
    "boot",
    "network",
    "autostart",
    "accel",
    "labels",
    "environment",
    "ha",
    "restart",
    "healthcheck",
    "depends_on",
];
const HEALTH_KEYS: &[&str] = &[
    "tcp",
    "http",
    "agent",
    "interval",
    "timeout",
    "retries",
    "start_period",
];
const HTTP_KEYS: &[&str] = &["port", "path"];
const DISK_KEYS: &[&str] = &["name", "size", "backing", "path"];
const BOOT_KEYS: &[&str] = &["kernel", "initrd", "cmdline", "disk", "iso"];
const NET_KEYS: &[&str] = &["mode", "forwards"];
const POLICY_KEYS: &[&str] = &["max_snapshots", "retention_days", "naming", "schedule"];

struct Reader<'a> {
    project: &'a Project,
    exists: &'a dyn Fn(&Path) -> bool,
    errors: Vec<SpecError>,
    /// Where each VM read was written (`vms.web`, `vms[0]`), for later checks.
    vm_paths: BTreeMap<String, String>,
}

/// Reads and validates `vms:` and `snapshot_policies:`. Every error is reported (with
/// file, line and column when known), not just the first.
pub fn read(
    project: &Project,
    host: &HostFacts,
    exists: &dyn Fn(&Path) -> bool,
) -> Result<VmSection, Vec<SpecError>> {
    let mut r = Reader {
        project,
        exists,
        errors: Vec::new(),
        vm_paths: BTreeMap::new(),
    };
    let mut section = VmSection {
        project: Some(project.name.clone()),
        ..VmSection::default()
    };
    if let Some(v) = project.baton.get("vms") {
        let entries: Vec<(String, String, &Value)> = match v {
            Value::Object(m) => m
                .iter()
                .map(|(k, v)| (format!("vms.{k}"), k.clone(), v))
                .collect(),
            Value::Array(a) => a
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let name = v
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    (format!("vms[{i}]"), name, v)
                })
                .collect(),
            Value::Null => Vec::new(),
            _ => {
                r.err(
                    "vms",
                    "expected a map of VMs by name (or a list of VMs with `name`)",
                );
                Vec::new()
            }
        };
        let mut seen: Vec<String> = Vec::new();
        for (path, key_name, v) in entries {
            let name = v
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or(&key_name)
                .to_string();
            if seen.contains(&name) {
                r.err(
                    &format!("{path}.name"),
                    &format!("duplicate VM name {name:?}: each VM needs its own name"),
                );
                continue;
            }
            seen.push(name);
            if let Some(vm) = r.vm(&path, &key_name, v, host) {
                section.vms.push(vm);
            }
        }
    }
    r.dependencies(&section.vms);
    if let Some(v) = project.baton.get("snapshot_policies") {
        match v {
            Value::Object(m) => {
                for (env, p) in m {
                    let path = format!("snapshot_policies.{env}");
                    let Some(e) = parse_env(env) else {
                        r.err(&path, "unknown environment: expected dev, test or prod");
                        continue;
                    };
                    if let Some(p) = r.policy(&path, p) {
                        section.policies.insert(e, p);
                    }
                }
            }
            Value::Null => {}
            _ => r.err(
                "snapshot_policies",
                "expected a map keyed by environment (dev, test, prod)",
            ),
        }
    }
    if r.errors.is_empty() {
        Ok(section)
    } else {
        Err(r.errors)
    }
}

fn parse_env(s: &str) -> Option<Environment> {
    match s {
        "dev" => Some(Environment::Dev),
        "test" => Some(Environment::Test),
        "prod" => Some(Environment::Prod),
        _ => None,
    }
}

/// `512`, `512M`, `512MiB`, `2G`, `1T` → bytes (a bare number is MiB when `bare_mib`).
pub fn parse_size(s: &str, bare_mib: bool) -> Option<u64> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let n: u64 = t[..digits].parse().ok()?;
    let unit = t[digits..].trim().to_ascii_lowercase();
    let mult: u64 = match unit.as_str() {
        "" if bare_mib => 1 << 20,
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult)
}

impl Reader<'_> {
    fn err(&mut self, path: &str, msg: &str) {
        self.errors
            .push(self.project.error_at(ErrorKind::Invalid, path, msg));
    }

    fn keys(&mut self, path: &str, m: &serde_json::Map<String, Value>, known: &[&str]) {
        for k in m.keys() {
            if !known.contains(&k.as_str()) {
                let mut e = self.project.error_at(
                    ErrorKind::UnknownKey,
                    &format!("{path}.{k}"),
                    format!("unknown key {k:?}"),
                );
                e.hint = baton_spec::suggest(k, known.iter().copied());
                self.errors.push(e);
            }
        }
    }

    fn path(&self, s: &str) -> PathBuf {
        let p = PathBuf::from(s);
        if p.is_absolute() {
            p
        } else {
            self.project.working_dir.join(p)
        }
    }

    fn file(&mut self, path: &str, v: &Value, what: &str) -> Option<PathBuf> {
        let Some(s) = v.as_str() else {
            self.err(path, &format!("expected the path of the {what}"));
            return None;
        };
        let p = self.path(s);
        if !(self.exists)(&p) {
            self.err(path, &format!("{what} {} does not exist", p.display()));
            return None;
        }
        Some(p)
    }

    fn vm(&mut self, path: &str, key_name: &str, v: &Value, host: &HostFacts) -> Option<VmSpec> {
        let Some(m) = v.as_object() else {
            self.err(path, "expected a map (cpus, memory, disks, boot, …)");
            return None;
        };
        let before = self.errors.len();
        self.keys(path, m, VM_KEYS);
        let name = m
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or(key_name)
            .to_string();
        let name_ok = valid_name(&name);
        if !name_ok {
            self.err(
                &format!("{path}.name"),
                &format!("a VM name is {NAME_RULE}"),
            );
        }
        let cpus = match m.get("cpus") {
            None => 1,
            Some(v) => match v.as_u64() {
                Some(n @ 1..=64) => n as u32,
                _ => {
                    self.err(&format!("{path}.cpus"), "expected a number of CPUs (1-64)");
                    1
                }
            },
        };
        let memory_mib = match m.get("memory") {
            None => 256,
            Some(v) => {
                let bytes = match v {
                    Value::Number(n) => n.as_u64().and_then(|n| n.checked_mul(1 << 20)),
                    Value::String(s) => parse_size(s, true),
                    _ => None,
                };
                match bytes {
                    Some(b) if b >= 16 << 20 => b >> 20,
                    _ => {
                        self.err(
                            &format!("{path}.memory"),
                            "expected a memory size of at least 16M (e.g. 256M, 1G; a bare number is MiB)",
                        );
                        256
                    }
                }
            }
        };
        if memory_mib > host.memory_mib {
            self.err(
                &format!("{path}.memory"),
                &format!(
                    "{memory_mib} MiB is more memory than this host has ({} MiB)",
                    host.memory_mib
                ),
            );
        }
        let disks = self.disks(path, m.get("disks"));
        let boot = self.boot(path, m.get("boot"));
        let network = self.network(path, m.get("network"));
        let autostart = self.boolean(&format!("{path}.autostart"), m.get("autostart"));
        let ha = self.boolean(&format!("{path}.ha"), m.get("ha"));
        let accel = match m.get("accel").map(|v| v.as_str()) {
            None => Accel::Auto,
            Some(Some("auto")) => Accel::Auto,
            Some(Some("kvm")) => Accel::Kvm,
            Some(Some("tcg")) => Accel::Tcg,
            Some(_) => {
                self.err(&format!("{path}.accel"), "expected auto, kvm or tcg");
                Accel::Auto
            }
        };
        let environment = match m.get("environment").map(|v| v.as_str()) {
            None => Environment::Dev,
            Some(Some(s)) if parse_env(s).is_some() => parse_env(s).unwrap_or(Environment::Dev),
            Some(_) => {
                self.err(&format!("{path}.environment"), "expected dev, test or prod");
                Environment::Dev
            }
        };
        let mut labels = BTreeMap::new();
        match m.get("labels") {
            None => {}
            Some(Value::Object(l)) => {
                for (k, v) in l {
                    let s = match v {
                        Value::String(s) => s.clone(),
                        Value::Number(_) | Value::Bool(_) => v.to_string(),
                        _ => {
                            self.err(&format!("{path}.labels.{k}"), "expected a string");
                            continue;
                        }
                    };
                    labels.insert(k.clone(), s);
                }
            }
            Some(_) => self.err(&format!("{path}.labels"), "expected a map of strings"),
        }
        if matches!(boot, Some(Boot::Disk)) && disks.is_empty() {
            self.err(
                &format!("{path}.boot"),
                "boot: disk needs at least one disk",
            );
        }
        let restart = match m.get("restart").map(|v| v.as_str()) {
            None | Some(Some("no")) => Restart::No,
            Some(Some("always")) => Restart::Always,
            Some(Some("on-failure")) => Restart::OnFailure,
            Some(Some("unless-stopped")) => Restart::UnlessStopped,
            Some(_) => {
                self.err(
                    &format!("{path}.restart"),
                    "expected no, always, on-failure or unless-stopped",
                );
                Restart::No
            }
        };
        let healthcheck = self.healthcheck(path, m.get("healthcheck"), &network);
        let depends_on = self.depends_on(path, m.get("depends_on"));
        if self.project.services.contains_key(&name)
            || self.project.disabled_services.contains_key(&name)
        {
            self.err(
                &format!("{path}.name"),
                &format!("a service is named {name:?} too: `depends_on` could not tell them apart"),
            );
        }
        if self.errors.len() > before || !name_ok {
            return None;
        }
        self.vm_paths.insert(name.clone(), path.to_string());
        Some(VmSpec {
            name,
            cpus,
            memory_mib,
            disks,
            boot: boot?,
            network,
            autostart,
            accel,
            labels,
            environment,
            ha,
            restart,
            healthcheck,
            depends_on,
        })
    }

    fn duration(&mut self, path: &str, v: Option<&Value>, default_ms: u64) -> u64 {
        match v {
            None => default_ms,
            Some(Value::String(s)) => match baton_spec::parse_duration(s) {
                Ok(d) => d.0,
                Err(e) => {
                    self.err(path, &e);
                    default_ms
                }
            },
            Some(_) => {
                self.err(path, "expected a duration such as 2s or 500ms");
                default_ms
            }
        }
    }

    /// `{tcp: PORT}`, `{http: {port: PORT, path: /health}}` (or `{http: PORT}`) or
    /// `{agent: true}`, with `interval`, `timeout`, `retries` and `start_period`. A port
    /// is the guest's and must be forwarded: the host checks the forward.
    fn healthcheck(
        &mut self,
        path: &str,
        v: Option<&Value>,
        network: &Network,
    ) -> Option<HealthCheck> {
        let p = format!("{path}.healthcheck");
        let v = v?;
        if v.is_null() {
            return None;
        }
        let Some(m) = v.as_object() else {
            self.err(
                &p,
                "expected {tcp: PORT}, {http: {port: PORT, path: /}} or {agent: true}",
            );
            return None;
        };
        self.keys(&p, m, HEALTH_KEYS);
        let port = |v: &Value| {
            v.as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .filter(|n| *n > 0)
        };
        let probe = match (m.get("tcp"), m.get("http")) {
            (None, None) if m.contains_key("agent") => match m.get("agent") {
                Some(Value::Bool(true)) => Probe::Agent,
                _ => {
                    self.err(
                        &format!("{p}.agent"),
                        "expected true (the QEMU guest agent answers for the guest)",
                    );
                    return None;
                }
            },
            (Some(t), None) if !m.contains_key("agent") => match port(t) {
                Some(guest_port) => Probe::Tcp { guest_port },
                None => {
                    self.err(&format!("{p}.tcp"), "expected the guest port to connect to");
                    return None;
                }
            },
            (None, Some(h)) if !m.contains_key("agent") => {
                let (port_v, path_v) = match h {
                    Value::Object(hm) => {
                        self.keys(&format!("{p}.http"), hm, HTTP_KEYS);
                        (hm.get("port"), hm.get("path"))
                    }
                    other => (Some(other), None),
                };
                let Some(guest_port) = port_v.and_then(port) else {
                    self.err(&format!("{p}.http.port"), "expected the guest port to ask");
                    return None;
                };
                let url_path = match path_v {
                    None => "/".to_string(),
                    Some(Value::String(s))
                        if s.starts_with('/') && s.chars().all(|c| c.is_ascii_graphic()) =>
                    {
                        s.clone()
                    }
                    Some(_) => {
                        self.err(
                            &format!("{p}.http.path"),
                            "expected a path starting with / (no spaces)",
                        );
                        return None;
                    }
                };
                Probe::Http {
                    guest_port,
                    path: url_path,
                }
            }
            _ => {
                self.err(
                    &p,
                    "expected one of tcp: PORT, http: {port: PORT, path: /} or agent: true",
                );
                return None;
            }
        };
        if let Some(guest_port) = probe.guest_port() {
            let forwarded = network
                .forwards
                .iter()
                .any(|f| f.guest_port == guest_port && f.protocol == "tcp");
            if !forwarded {
                self.err(
                    &p,
                    &format!(
                        "guest port {guest_port} is not forwarded: add a forward such as \"{}:{guest_port}\" to network.forwards (the host checks it there)",
                        20000 + u32::from(guest_port) % 40000,
                    ),
                );
            }
        }
        let retries = match m.get("retries") {
            None => 3,
            Some(v) => match v.as_u64() {
                Some(n @ 1..=1000) => n as u32,
                _ => {
                    self.err(&format!("{p}.retries"), "expected a number from 1 to 1000");
                    3
                }
            },
        };
        Some(HealthCheck {
            probe,
            interval_ms: self
                .duration(&format!("{p}.interval"), m.get("interval"), 2000)
                .max(100),
            timeout_ms: self
                .duration(&format!("{p}.timeout"), m.get("timeout"), 2000)
                .max(100),
            retries,
            start_period_ms: self.duration(&format!("{p}.start_period"), m.get("start_period"), 0),
        })
    }

    /// `[a, b]` (started) or `{a: {condition: service_healthy}}`, as for services.
    fn depends_on(&mut self, path: &str, v: Option<&Value>) -> BTreeMap<String, Dependency> {
        let p = format!("{path}.depends_on");
        let mut out = BTreeMap::new();
        let started = || Dependency {
            condition: Condition::ServiceStarted,
            required: true,
            restart: false,
        };
        match v {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    match item.as_str() {
                        Some(n) => {
                            out.insert(n.to_string(), started());
                        }
                        None => self.err(&format!("{p}[{i}]"), "expected a name"),
                    }
                }
            }
            Some(Value::Object(m)) => {
                for (n, d) in m {
                    let dp = format!("{p}.{n}");
                    let dep = match d {
                        Value::Null => Some(started()),
                        Value::Object(dm) => {
                            self.keys(&dp, dm, &["condition", "required"]);
                            let condition = match dm.get("condition").map(|c| c.as_str()) {
                                None | Some(Some("service_started")) => {
                                    Some(Condition::ServiceStarted)
                                }
                                Some(Some("service_healthy")) => Some(Condition::ServiceHealthy),
                                Some(Some("service_completed_successfully")) => {
                                    Some(Condition::ServiceCompletedSuccessfully)
                                }
                                Some(_) => {
                                    self.err(&format!("{dp}.condition"), "expected service_started, service_healthy or service_completed_successfully");
                                    None
                                }
                            };
                            let required = match dm.get("required") {
                                None => true,
                                Some(Value::Bool(b)) => *b,
                                Some(_) => {
                                    self.err(&format!("{dp}.required"), "expected true or false");
                                    true
                                }
                            };
                            condition.map(|condition| Dependency {
                                condition,
                                required,
                                restart: false,
                            })
                        }
                        _ => {
                            self.err(&dp, "expected {condition: service_started|service_healthy|service_completed_successfully}");
                            None
                        }
                    };
                    if let Some(d) = dep {
                        out.insert(n.clone(), d);
                    }
                }
            }
            Some(_) => self.err(&p, "expected a list of names or a map of name: {condition}"),
        }
        out
    }

    /// Every VM's `depends_on` names a service or another VM of the file, and no chain of
    /// dependencies through services and VMs comes back to where it started.
    fn dependencies(&mut self, vms: &[VmSpec]) {
        let vm_names: Vec<&str> = vms.iter().map(|v| v.name.as_str()).collect();
        for vm in vms {
            let path = self.vm_paths.get(&vm.name).cloned().unwrap_or_default();
            for (dep, d) in &vm.depends_on {
                let dp = format!("{path}.depends_on.{dep}");
                if dep == &vm.name {
                    self.err(&dp, &format!("VM {dep:?} depends on itself"));
                } else if self.project.disabled_services.contains_key(dep) {
                    if d.required {
                        self.err(
                            &dp,
                            &format!("service {dep:?} is not enabled by the selected profiles"),
                        );
                    }
                } else if !self.project.services.contains_key(dep)
                    && !vm_names.contains(&dep.as_str())
                {
                    let mut e = self.project.error_at(
                        ErrorKind::Undefined,
                        &dp,
                        format!(
                            "VM {:?} depends on {dep:?}, which is no service or VM of the file",
                            vm.name
                        ),
                    );
                    let known = self
                        .project
                        .services
                        .keys()
                        .map(String::as_str)
                        .chain(vm_names.iter().copied());
                    e.hint = baton_spec::suggest(dep, known);
                    self.errors.push(e);
                }
            }
        }
        if let Some(cycle) = dependency_cycle(self.project, vms) {
            let first = &cycle[0];
            let path = match self.vm_paths.get(first) {
                Some(p) => format!("{p}.depends_on"),
                None => format!("services.{first}.depends_on"),
            };
            self.err(&path, &format!("dependency cycle: {}", cycle.join(" -> ")));
        }
    }

    fn boolean(&mut self, path: &str, v: Option<&Value>) -> bool {
        match v {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                self.err(path, "expected true or false");
                false
            }
        }
    }

    fn disks(&mut self, path: &str, v: Option<&Value>) -> Vec<DiskSpec> {
        let items = match v {
            None | Some(Value::Null) => return Vec::new(),
            Some(Value::Array(a)) => a,
            Some(_) => {
                self.err(&format!("{path}.disks"), "expected a list of disks");
                return Vec::new();
            }
        };
        let mut out: Vec<DiskSpec> = Vec::new();
        for (i, d) in items.iter().enumerate() {
            let p = format!("{path}.disks[{i}]");
            let Some(m) = d.as_object() else {
                self.err(
                    &p,
                    "expected a map: {size: 1G} or {path: existing.qcow2} or {backing: base.qcow2}",
                );
                continue;
            };
            self.keys(&p, m, DISK_KEYS);
            let name = match m.get("name").and_then(Value::as_str) {
                Some(n) => n.to_string(),
                None => format!("disk{i}"),
            };
            if !valid_name(&name) {
                self.err(&format!("{p}.name"), &format!("a disk name is {NAME_RULE}"));
                continue;
            }
            if out.iter().any(|o| o.name == name) {
                self.err(
                    &format!("{p}.name"),
                    &format!("duplicate disk name {name:?}"),
                );
            }
            let size = match m.get("size") {
                None => None,
                Some(v) => {
                    let b = match v {
                        Value::String(s) => parse_size(s, true),
                        Value::Number(n) => n.as_u64().and_then(|n| n.checked_mul(1 << 20)),
                        _ => None,
                    };
                    if b.is_none() {
                        self.err(&format!("{p}.size"), "expected a size such as 64M or 10G");
                    }
                    b
                }
            };
            let backing = m
                .get("backing")
                .and_then(|b| self.file(&format!("{p}.backing"), b, "backing image"));
            let source = match (m.get("path"), size, &backing) {
                (Some(pv), None, None) => match self.file(&format!("{p}.path"), pv, "disk image") {
                    Some(path) => DiskSource::Existing { path },
                    None => continue,
                },
                (pv, s, b) => {
                    if s.is_none() && b.is_none() {
                        if m.contains_key("size") || m.contains_key("backing") {
                            continue; // already reported
                        }
                        self.err(
                            &p,
                            "a disk needs a size, a backing image or an existing path",
                        );
                        continue;
                    }
                    let path = pv.and_then(Value::as_str).map(|s| self.path(s));
                    DiskSource::New {
                        size_bytes: s,
                        backing: b.clone(),
                        path,
                    }
                }
            };
            out.push(DiskSpec { name, source });
        }
        out
    }

    fn boot(&mut self, path: &str, v: Option<&Value>) -> Option<Boot> {
        let p = format!("{path}.boot");
        let Some(v) = v else {
            self.err(
                &p,
                "missing boot: {kernel, initrd, cmdline} or {disk: true} or {iso: path}",
            );
            return None;
        };
        let Some(m) = v.as_object() else {
            self.err(
                &p,
                "expected {kernel, initrd, cmdline} or {disk: true} or {iso: path}",
            );
            return None;
        };
        self.keys(&p, m, BOOT_KEYS);
        if let Some(k) = m.get("kernel") {
            let kernel = self.file(&format!("{p}.kernel"), k, "kernel");
            let initrd = m
                .get("initrd")
                .and_then(|i| self.file(&format!("{p}.initrd"), i, "initrd"));
            let cmdline = match m.get("cmdline") {
                None => "console=ttyS0".to_string(),
                Some(Value::String(s)) => s.clone(),
                Some(_) => {
                    self.err(&format!("{p}.cmdline"), "expected a string");
                    String::new()
                }
            };
            return Some(Boot::Kernel {
                kernel: kernel?,
                initrd,
                cmdline,
            });
        }
        if let Some(i) = m.get("iso") {
            return self
                .file(&format!("{p}.iso"), i, "ISO image")
                .map(|path| Boot::Iso { path });
        }
        if m.get("disk") == Some(&Value::Bool(true)) {
            return Some(Boot::Disk);
        }
        self.err(
            &p,
            "expected {kernel, initrd, cmdline} or {disk: true} or {iso: path}",
        );
        None
    }

    fn network(&mut self, path: &str, v: Option<&Value>) -> Network {
        let mut n = Network {
            mode: "user".to_string(),
            forwards: Vec::new(),
        };
        let p = format!("{path}.network");
        let m = match v {
            None | Some(Value::Null) => return n,
            Some(Value::String(s)) => {
                if s == "user" || s == "none" {
                    n.mode = s.clone();
                } else {
                    self.err(&p, "expected user or none");
                }
                return n;
            }
            Some(Value::Object(m)) => m,
            Some(_) => {
                self.err(&p, "expected user, none or {mode, forwards}");
                return n;
            }
        };
        self.keys(&p, m, NET_KEYS);
        match m.get("mode").map(|v| v.as_str()) {
            None => {}
            Some(Some(s @ ("user" | "none"))) => n.mode = s.to_string(),
            Some(_) => self.err(&format!("{p}.mode"), "expected user or none"),
        }
        if let Some(f) = m.get("forwards") {
            let Some(items) = f.as_array() else {
                self.err(
                    &format!("{p}.forwards"),
                    "expected a list like [\"8080:80\"]",
                );
                return n;
            };
            for (i, f) in items.iter().enumerate() {
                let fp = format!("{p}.forwards[{i}]");
                match f.as_str().and_then(parse_forward) {
                    Some(pf) => n.forwards.push(pf),
                    None => self.err(
                        &fp,
                        "expected [HOST_IP:]HOST_PORT:GUEST_PORT[/tcp|/udp], e.g. \"8080:80\"",
                    ),
                }
            }
        }
        if n.mode == "none" && !n.forwards.is_empty() {
            self.err(&format!("{p}.forwards"), "port forwards need mode: user");
        }
        n
    }

    fn policy(&mut self, path: &str, v: &Value) -> Option<SnapshotPolicy> {
        let Some(m) = v.as_object() else {
            self.err(path, "expected {max_snapshots, retention_days, naming}");
            return None;
        };
        self.keys(path, m, POLICY_KEYS);
        let mut p = SnapshotPolicy::default();
        for (key, slot) in [
            ("max_snapshots", &mut p.max_snapshots),
            ("retention_days", &mut p.retention_days),
        ] {
            if let Some(v) = m.get(key) {
                match v.as_u64() {
                    Some(n @ 1..=100_000) => *slot = Some(n as u32),
                    _ => self.err(&format!("{path}.{key}"), "expected a positive number"),
                }
            }
        }
        if let Some(v) = m.get("schedule") {
            match v.as_str() {
                Some(expr) => match crate::schedule::parse(expr) {
                    Ok(_) => p.schedule = Some(expr.to_string()),
                    Err(e) => self.err(
                        &format!("{path}.schedule"),
                        &format!("{expr:?} is no cron expression: {e}"),
                    ),
                },
                None => self.err(
                    &format!("{path}.schedule"),
                    "expected a cron expression such as \"0 3 * * *\" (UTC)",
                ),
            }
        }
        if let Some(v) = m.get("naming") {
            match v.as_str() {
                Some(s) if crate::retention::check_template(s).is_ok() => p.naming = s.to_string(),
                Some(s) => {
                    let msg = crate::retention::check_template(s)
                        .err()
                        .unwrap_or_default();
                    self.err(&format!("{path}.naming"), &msg)
                }
                None => self.err(&format!("{path}.naming"), "expected a template string"),
            }
        }
        Some(p)
    }
}

/// A chain of `depends_on` through services and VMs that comes back to where it
/// started, if any (starting from a VM: cycles of services alone are the spec reader's).
fn dependency_cycle(project: &Project, vms: &[VmSpec]) -> Option<Vec<String>> {
    let deps = |name: &str| -> Vec<&str> {
        if let Some(vm) = vms.iter().find(|v| v.name == name) {
            return vm.depends_on.keys().map(String::as_str).collect();
        }
        project
            .services
            .get(name)
            .map(|s| s.depends_on.keys().map(String::as_str).collect())
            .unwrap_or_default()
    };
    let mut done: std::collections::BTreeSet<&str> = Default::default();
    for start in vms.iter().map(|v| v.name.as_str()) {
        if done.contains(start) {
            continue;
        }
        // Depth-first with an explicit stack of (node, its dependencies left to visit).
        let mut path: Vec<&str> = vec![start];
        let mut stack: Vec<Vec<&str>> = vec![deps(start)];
        while let Some(top) = stack.last_mut() {
            let Some(next) = top.pop() else {
                stack.pop();
                if let Some(n) = path.pop() {
                    done.insert(n);
                }
                continue;
            };
            if let Some(at) = path.iter().position(|n| *n == next) {
                let mut cycle: Vec<String> = path[at..].iter().map(|s| s.to_string()).collect();
                cycle.push(next.to_string());
                return Some(cycle);
            }
            if !done.contains(next) {
                path.push(next);
                stack.push(deps(next));
            }
        }
    }
    None
}

/// `8080:80`, `127.0.0.1:8080:80`, `5353:53/udp`.
pub fn parse_forward(s: &str) -> Option<PortForward> {
    let (spec, protocol) = match s.rsplit_once('/') {
        Some((a, p @ ("tcp" | "udp"))) => (a, p),
        Some(_) => return None,
        None => (s, "tcp"),
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (ip, h, g) = match parts.as_slice() {
        [h, g] => ("127.0.0.1", *h, *g),
        [ip, h, g] if ip.parse::<std::net::IpAddr>().is_ok() => (*ip, *h, *g),
        _ => return None,
    };
    let host_port: u16 = h.parse().ok().filter(|p| *p > 0)?;
    let guest_port: u16 = g.parse().ok().filter(|p| *p > 0)?;
    Some(PortForward {
        protocol: protocol.to_string(),
        host_ip: ip.to_string(),
        host_port,
        guest_port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(yaml_like: Value) -> Project {
        let mut p = Project {
            name: "t".into(),
            working_dir: PathBuf::from("/proj"),
            ..Default::default()
        };
        if let Value::Object(m) = yaml_like {
            for (k, v) in m {
                p.baton.insert(k, v);
            }
        }
        p
    }

    fn read_with(v: Value, files: &[&str]) -> Result<VmSection, Vec<SpecError>> {
        let files: Vec<PathBuf> = files.iter().map(PathBuf::from).collect();
        read(&project(v), &HostFacts { memory_mib: 4096 }, &|p: &Path| {
            files.iter().any(|f| f == p)
        })
    }

    fn messages(e: Vec<SpecError>) -> String {
        e.iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn a_full_vm_reads() {
        let s = read_with(
            serde_json::json!({
                "vms": {"web": {
                    "cpus": 2, "memory": "512M",
                    "disks": [{"size": "1G"}, {"path": "data.qcow2"}],
                    "boot": {"kernel": "k", "initrd": "/abs/i", "cmdline": "console=ttyS0"},
                    "network": {"forwards": ["8080:80", "0.0.0.0:5353:53/udp"]},
                    "environment": "prod", "ha": true, "labels": {"tier": "web"}
                }},
                "snapshot_policies": {"prod": {"max_snapshots": 5, "naming": "{vm}_{date}_{type}"}}
            }),
            &["/proj/k", "/abs/i", "/proj/data.qcow2"],
        )
        .unwrap();
        let vm = s.vm("web").unwrap();
        assert_eq!(vm.memory_mib, 512);
        assert_eq!(
            vm.disks[1].source,
            DiskSource::Existing {
                path: "/proj/data.qcow2".into()
            }
        );
        assert_eq!(vm.network.forwards[1].protocol, "udp");
        assert_eq!(vm.environment, Environment::Prod);
        assert_eq!(s.policy(Environment::Prod).max_snapshots, Some(5));
        assert_eq!(s.policy(Environment::Dev).naming, DEFAULT_NAMING);
    }

    #[test]
    fn bad_specs_say_what_and_where() {
        let e = messages(
            read_with(
                serde_json::json!({"vms": [
                    {"name": "a", "memory": "64G", "boot": {"kernel": "missing"}},
                    {"name": "b", "boot": {"disk": true}, "disks": [{"size": "1G"}], "cpu": 2},
                    {"name": "b", "boot": {"disk": true}, "disks": [{"size": "1G"}]}
                ]}),
                &[],
            )
            .unwrap_err(),
        );
        assert!(
            e.contains("vms[0].memory: 65536 MiB is more memory than this host has (4096 MiB)"),
            "{e}"
        );
        assert!(
            e.contains("vms[0].boot.kernel: kernel /proj/missing does not exist"),
            "{e}"
        );
        assert!(e.contains("vms[1].cpu: unknown key \"cpu\""), "{e}");
        assert!(e.contains("did you mean \"cpus\"?"), "{e}");
        assert!(e.contains("vms[2].name: duplicate VM name \"b\""), "{e}");
    }

    #[test]
    fn names_are_one_safe_path_component() {
        for ok in ["web", "web-1", "a_b", "W9", &"x".repeat(40)] {
            assert!(valid_name(ok), "{ok:?}");
        }
        for bad in [
            "",
            "..",
            "../x",
            "a/b",
            "-x",
            "a,b",
            "a b",
            "\u{e9}",
            &"x".repeat(41),
        ] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        let e = messages(
            read_with(
                serde_json::json!({"vms": {
                    "../up": {"boot": {"disk": true}, "disks": [{"size": "1G"}]},
                    "ok": {"boot": {"disk": true}, "disks": [{"size": "1G", "name": "d,file=/x"}]}
                }}),
                &[],
            )
            .unwrap_err(),
        );
        assert!(
            e.contains("vms.../up.name: a VM name is 1-40 letters"),
            "{e}"
        );
        assert!(
            e.contains("vms.ok.disks[0].name: a disk name is 1-40 letters"),
            "{e}"
        );
    }

    #[test]
    fn specs_from_elsewhere_are_held_to_the_reader_rules() {
        let s = read_with(
            serde_json::json!({"vms": {"web": {
                "boot": {"disk": true}, "disks": [{"size": "1G"}],
                "network": {"forwards": ["8080:80", "0.0.0.0:5353:53/udp"]}
            }}}),
            &[],
        )
        .unwrap();
        let good = s.vm("web").unwrap().clone();
        assert_eq!(check(&good), Ok(()));
        let bad = |f: &dyn Fn(&mut VmSpec)| {
            let mut v = good.clone();
            f(&mut v);
            check(&v).unwrap_err()
        };
        assert!(bad(&|v| v.name = "../x".into()).starts_with("VM name \"../x\""));
        assert!(bad(&|v| v.disks[0].name = "x,file=/etc/shadow".into()).starts_with("disk name"));
        assert!(bad(&|v| v.disks.push(v.disks[0].clone())).starts_with("duplicate disk name"));
        assert!(
            bad(&|v| v.network.forwards[0].host_ip = "127.0.0.1,tftp=/".into())
                .starts_with("port forward")
        );
        assert!(
            bad(&|v| v.network.forwards[0].protocol = "tcp,smb=/".into())
                .starts_with("port forward")
        );
        assert!(bad(&|v| v.network.mode = "user,tftp=/".into()).starts_with("network mode"));
        assert!(bad(&|v| v.network.mode = "none".into()).contains("need network mode user"));
        assert!(bad(&|v| v.cpus = 0).contains("CPUs"));
        assert!(bad(&|v| v.memory_mib = 1).contains("memory"));
    }

    fn project_with(services: &[(&str, &[&str])], v: Value) -> Project {
        let mut p = project(v);
        for (name, deps) in services {
            let mut svc = baton_spec::Service::default();
            for d in *deps {
                svc.depends_on.insert(
                    d.to_string(),
                    Dependency {
                        condition: Condition::ServiceStarted,
                        required: true,
                        restart: false,
                    },
                );
            }
            p.services.insert(name.to_string(), svc);
        }
        p
    }

    fn read_project(p: &Project) -> Result<VmSection, Vec<SpecError>> {
        read(p, &HostFacts { memory_mib: 4096 }, &|_: &Path| true)
    }

    #[test]
    fn restart_healthcheck_and_dependencies_read() {
        let p = project_with(
            &[("api", &["db"])],
            serde_json::json!({"vms": {
                "db": {"boot": {"disk": true}, "disks": [{"size": "1G"}],
                       "network": {"forwards": ["127.0.0.1:18080:80"]},
                       "restart": "on-failure",
                       "healthcheck": {"http": {"port": 80, "path": "/health"}, "interval": "500ms"}},
                "cache": {"boot": {"disk": true}, "disks": [{"size": "1G"}],
                          "network": {"forwards": ["0.0.0.0:16379:6379"]},
                          "healthcheck": {"tcp": 6379},
                          "depends_on": {"db": {"condition": "service_healthy"}, "api": null}}
            }, "snapshot_policies": {"prod": {"schedule": "*/5 * * * * *", "max_snapshots": 3}}}),
        );
        let s = read_project(&p).unwrap();
        let db = s.vm("db").unwrap();
        assert_eq!(db.restart, Restart::OnFailure);
        let h = db.healthcheck.as_ref().unwrap();
        assert_eq!(
            h.probe,
            Probe::Http {
                guest_port: 80,
                path: "/health".into()
            }
        );
        assert_eq!((h.interval_ms, h.timeout_ms, h.retries), (500, 2000, 3));
        assert_eq!(db.health_target(), Some(("127.0.0.1".into(), 18080)));
        let cache = s.vm("cache").unwrap();
        assert_eq!(cache.restart, Restart::No);
        assert_eq!(cache.health_target(), Some(("127.0.0.1".into(), 16379)));
        assert_eq!(cache.depends_on["db"].condition, Condition::ServiceHealthy);
        assert_eq!(cache.depends_on["api"].condition, Condition::ServiceStarted);
        assert_eq!(
            s.policy(Environment::Prod).schedule.as_deref(),
            Some("*/5 * * * * *")
        );
    }

    #[test]
    fn bad_dependencies_checks_and_schedules_are_located() {
        let e = |services: &[(&str, &[&str])], v: Value| {
            messages(read_project(&project_with(services, v)).unwrap_err())
        };
        let vm = |extra: Value| {
            let mut v = serde_json::json!({"boot": {"disk": true}, "disks": [{"size": "1G"}]});
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            v
        };
        let msg = e(
            &[("api", &["db"])],
            serde_json::json!({"vms": {"db": vm(serde_json::json!({"depends_on": ["api"]}))}}),
        );
        assert!(
            msg.contains("vms.db.depends_on: dependency cycle: db -> api -> db"),
            "{msg}"
        );
        let msg = e(
            &[("api", &[])],
            serde_json::json!({"vms": {"db": vm(serde_json::json!({"depends_on": ["apx", "db"]}))}}),
        );
        assert!(msg.contains("vms.db.depends_on.apx: VM \"db\" depends on \"apx\", which is no service or VM of the file"), "{msg}");
        assert!(msg.contains("did you mean \"api\"?"), "{msg}");
        assert!(
            msg.contains("vms.db.depends_on.db: VM \"db\" depends on itself"),
            "{msg}"
        );
        let msg = e(
            &[("db", &[])],
            serde_json::json!({"vms": {"db": vm(serde_json::json!({
                "restart": "sometimes",
                "healthcheck": {"tcp": 80}
            }))}}),
        );
        assert!(
            msg.contains("vms.db.name: a service is named \"db\" too"),
            "{msg}"
        );
        assert!(
            msg.contains("vms.db.restart: expected no, always, on-failure or unless-stopped"),
            "{msg}"
        );
        assert!(
            msg.contains("vms.db.healthcheck: guest port 80 is not forwarded"),
            "{msg}"
        );
        let msg = e(
            &[],
            serde_json::json!({"vms": {"db": vm(serde_json::json!({
                "network": {"forwards": ["8080:80"]},
                "healthcheck": {"http": {"port": 80, "path": "no slash"}, "interval": "soon"}
            }))}, "snapshot_policies": {"dev": {"schedule": "every night"}}}),
        );
        assert!(
            msg.contains("vms.db.healthcheck.http.path: expected a path starting with /"),
            "{msg}"
        );
        assert!(
            msg.contains("snapshot_policies.dev.schedule: \"every night\" is no cron expression"),
            "{msg}"
        );
    }

    #[test]
    fn the_guest_agent_as_a_healthcheck() {
        let e = |v: Value| messages(read_project(&project_with(&[], v)).unwrap_err());
        let vm = |extra: Value| {
            let mut v = serde_json::json!({"boot": {"disk": true}, "disks": [{"size": "1G"}]});
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            v
        };
        let p = project_with(
            &[],
            serde_json::json!({"vms": {"db": vm(serde_json::json!({
                "healthcheck": {"agent": true, "interval": "1s"}
            }))}}),
        );
        let s = read_project(&p).unwrap();
        let db = s.vm("db").unwrap();
        assert_eq!(db.healthcheck.as_ref().unwrap().probe, Probe::Agent);
        assert_eq!(db.health_target(), None, "no forward is needed");
        for (bad, says) in [
            (serde_json::json!({"agent": "yes"}), "vms.db.healthcheck.agent: expected true"),
            (
                serde_json::json!({"agent": true, "tcp": 22}),
                "vms.db.healthcheck: expected one of tcp: PORT, http: {port: PORT, path: /} or agent: true",
            ),
        ] {
            let msg = e(serde_json::json!({"vms": {"db": vm(serde_json::json!({"healthcheck": bad}))}}));
            assert!(msg.contains(says), "{msg}");
        }
    }

    #[test]
    fn sizes_and_forwards_parse() {
        assert_eq!(parse_size("64M", false), Some(64 << 20));
        assert_eq!(parse_size("2", true), Some(2 << 20));
        assert_eq!(parse_size("1GiB", false), Some(1 << 30));
        assert_eq!(parse_size("x", false), None);
        assert!(parse_forward("8080:80/sctp").is_none());
        assert!(parse_forward("0:80").is_none());
        assert_eq!(parse_forward("8080:80").unwrap().host_ip, "127.0.0.1");
    }
}
