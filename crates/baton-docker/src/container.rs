//! The mapping from a `ContainerSpec` (normalised Compose service plus baton's resolved
//! names) to the Engine API's create body. Pure: no engine calls, tested without Docker.

use std::collections::HashMap;

use baton_engine::runtime::{ContainerSpec, NetworkAttachment, RuntimeError};
use baton_spec::{Healthcheck, Mount, Service};
use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, HealthConfig, HostConfig,
    HostConfigLogConfig, Mount as ApiMount, MountBindOptions, MountBindOptionsPropagationEnum,
    MountTmpfsOptions, MountTypeEnum, MountVolumeOptions, NetworkingConfig, PortBinding,
    ResourcesUlimits, RestartPolicy, RestartPolicyNameEnum,
};
use serde_json::Value;

/// Builds the create body. The first of `spec.networks` is attached here; the others
/// are connected by the caller after create (the Engine API takes only one at create).
pub(crate) fn create_body(spec: &ContainerSpec) -> Result<ContainerCreateBody, RuntimeError> {
    let svc = &spec.service;
    let invalid = |detail: String| RuntimeError::Failed {
        op: format!("create container {}", spec.name),
        detail,
    };

    let mut exposed: HashMap<String, HashMap<(), ()>> = HashMap::new();
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for port in &svc.ports {
        let key = format!("{}/{}", port.target, port.protocol);
        exposed.insert(key.clone(), HashMap::new());
        let binding = PortBinding {
            host_ip: port.host_ip.clone(),
            host_port: Some(port.published.map(|p| p.to_string()).unwrap_or_default()),
        };
        bindings
            .entry(key)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(binding);
    }
    for expose in &svc.expose {
        for key in expose_keys(expose).map_err(invalid)? {
            exposed.insert(key, HashMap::new());
        }
    }

    let (mounts, binds) = mounts(spec).map_err(invalid)?;
    let tmpfs: HashMap<String, String> = svc
        .tmpfs
        .iter()
        .map(|entry| match entry.split_once(':') {
            Some((path, opts)) => (path.to_string(), opts.to_string()),
            None => (entry.clone(), String::new()),
        })
        .collect();

    let mut host = HostConfig {
        mounts: non_empty(mounts),
        binds: non_empty(binds),
        tmpfs: (!tmpfs.is_empty()).then_some(tmpfs),
        port_bindings: (!bindings.is_empty()).then_some(bindings),
        restart_policy: restart_policy(svc).map_err(invalid)?,
        init: svc.init,
        cap_add: non_empty(svc.cap_add.clone()),
        cap_drop: non_empty(svc.cap_drop.clone()),
        ulimits: non_empty(
            svc.ulimits
                .iter()
                .map(|(name, u)| ResourcesUlimits {
                    name: Some(name.clone()),
                    soft: Some(u.soft),
                    hard: Some(u.hard),
                })
                .collect(),
        ),
        extra_hosts: non_empty(svc.extra_hosts.clone()),
        log_config: svc.logging.as_ref().map(|l| HostConfigLogConfig {
            typ: l.driver.clone(),
            config: (!l.options.is_empty()).then(|| {
                l.options
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            }),
        }),
        privileged: svc.privileged.then_some(true),
        readonly_rootfs: svc.read_only.then_some(true),
        dns: non_empty(svc.dns.clone()),
        dns_search: non_empty(svc.dns_search.clone()),
        sysctls: (!svc.sysctls.is_empty()).then(|| {
            svc.sysctls
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        }),
        network_mode: svc
            .network_mode
            .clone()
            .or_else(|| spec.networks.first().map(|n| n.network.clone())),
        ..Default::default()
    };
    apply_resources(svc, &mut host).map_err(invalid)?;
    apply_other(&svc.other, &mut host).map_err(invalid)?;

    let networking_config = match (&svc.network_mode, spec.networks.first()) {
        (None, Some(first)) => Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(first.network.clone(), endpoint(first))])),
        }),
        _ => None,
    };

    Ok(ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: svc.command.clone(),
        entrypoint: svc.entrypoint.clone(),
        working_dir: svc.working_dir.clone(),
        user: svc.user.clone(),
        hostname: spec.hostname.clone().or_else(|| svc.hostname.clone()),
        domainname: svc.domainname.clone(),
        env: non_empty(spec.env.clone()),
        labels: Some(
            spec.labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        healthcheck: svc.healthcheck.as_ref().map(health_config),
        stop_signal: svc.stop_signal.clone(),
        stop_timeout: svc
            .stop_grace_period
            .map(|d| i64::try_from(d.0.div_ceil(1000)).unwrap_or(i64::MAX)),
        tty: svc.tty.then_some(true),
        open_stdin: svc.stdin_open.then_some(true),
        host_config: Some(host),
        networking_config,
        ..Default::default()
    })
}

/// The endpoint settings of one network attachment (aliases, static addresses).
pub(crate) fn endpoint(attachment: &NetworkAttachment) -> EndpointSettings {
    let ipam =
        (attachment.ipv4_address.is_some() || attachment.ipv6_address.is_some()).then(|| {
            EndpointIpamConfig {
                ipv4_address: attachment.ipv4_address.clone(),
                ipv6_address: attachment.ipv6_address.clone(),
                ..Default::default()
            }
        });
    EndpointSettings {
        aliases: non_empty(attachment.aliases.clone()),
        ipam_config: ipam,
        ..Default::default()
    }
}

fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

/// `expose:` entries: `80`, `80/udp`, `8000-8002/tcp`.
fn expose_keys(entry: &str) -> Result<Vec<String>, String> {
    let (ports, proto) = entry.split_once('/').unwrap_or((entry, "tcp"));
    let bad = || format!("invalid expose entry {entry:?}, expected PORT[-PORT][/PROTO]");
    let parse = |s: &str| s.trim().parse::<u16>().map_err(|_| bad());
    let (lo, hi) = match ports.split_once('-') {
        Some((lo, hi)) => (parse(lo)?, parse(hi)?),
        None => (parse(ports)?, parse(ports)?),
    };
    if hi < lo {
        return Err(bad());
    }
    Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

/// Service mounts and config/secret files. Binds that ask for `create_host_path` go
/// through the legacy `Binds` list, the only form for which the engine creates a
/// missing host directory; everything else uses the `Mounts` API.
fn mounts(spec: &ContainerSpec) -> Result<(Vec<ApiMount>, Vec<String>), String> {
    let mut mounts = Vec::new();
    let mut binds = Vec::new();
    for m in &spec.mounts {
        match m.kind.as_str() {
            "bind" if bool_opt(&m.bind, "create_host_path") == Some(true) => {
                binds.push(bind_string(m)?);
            }
            "bind" => mounts.push(ApiMount {
                typ: Some(MountTypeEnum::BIND),
                source: Some(bind_source(m)?),
                target: Some(m.target.clone()),
                read_only: m.read_only.then_some(true),
                consistency: m.consistency.clone(),
                bind_options: propagation(m)?.map(|p| MountBindOptions {
                    propagation: Some(p),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            "volume" => mounts.push(ApiMount {
                typ: Some(MountTypeEnum::VOLUME),
                source: m.source.clone(),
                target: Some(m.target.clone()),
                read_only: m.read_only.then_some(true),
                volume_options: m.volume.as_ref().map(|opts| MountVolumeOptions {
                    no_copy: opts.get("nocopy").and_then(Value::as_bool),
                    subpath: opts
                        .get("subpath")
                        .and_then(Value::as_str)
                        .map(String::from),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            "tmpfs" => mounts.push(ApiMount {
                typ: Some(MountTypeEnum::TMPFS),
                target: Some(m.target.clone()),
                read_only: m.read_only.then_some(true),
                tmpfs_options: m
                    .tmpfs
                    .as_ref()
                    .map(|opts| -> Result<MountTmpfsOptions, String> {
                        Ok(MountTmpfsOptions {
                            size_bytes: opts.get("size").map(bytes_value).transpose()?,
                            mode: opts.get("mode").and_then(Value::as_i64),
                            ..Default::default()
                        })
                    })
                    .transpose()?,
                ..Default::default()
            }),
            "npipe" => mounts.push(ApiMount {
                typ: Some(MountTypeEnum::NPIPE),
                source: m.source.clone(),
                target: Some(m.target.clone()),
                read_only: m.read_only.then_some(true),
                ..Default::default()
            }),
            other => {
                return Err(format!(
                    "mount type {other:?} at {} is not supported by the docker backend",
                    m.target
                ))
            }
        }
    }
    // Configs and secrets: bind the resolved file read-only. The engine cannot change a
    // bind's mode, so `mode` is not applied.
    for f in &spec.files {
        mounts.push(ApiMount {
            typ: Some(MountTypeEnum::BIND),
            source: Some(f.source.to_string_lossy().into_owned()),
            target: Some(f.target.clone()),
            read_only: Some(true),
            ..Default::default()
        });
    }
    Ok((mounts, binds))
}

fn bind_source(m: &Mount) -> Result<String, String> {
    m.source
        .clone()
        .ok_or_else(|| format!("bind mount at {} has no source", m.target))
}

/// `src:dst[:opts]` for the legacy `Binds` list.
fn bind_string(m: &Mount) -> Result<String, String> {
    let mut opts = Vec::new();
    if m.read_only {
        opts.push("ro".to_string());
    }
    if let Some(p) = m
        .bind
        .as_ref()
        .and_then(|b| b.get("propagation"))
        .and_then(Value::as_str)
    {
        opts.push(p.to_string());
    }
    if let Some(s) = m
        .bind
        .as_ref()
        .and_then(|b| b.get("selinux"))
        .and_then(Value::as_str)
    {
        opts.push(s.to_string());
    }
    let mut out = format!("{}:{}", bind_source(m)?, m.target);
    if !opts.is_empty() {
        out.push(':');
        out.push_str(&opts.join(","));
    }
    Ok(out)
}

fn bool_opt(opts: &Option<std::collections::BTreeMap<String, Value>>, key: &str) -> Option<bool> {
    opts.as_ref()?.get(key)?.as_bool()
}

fn propagation(m: &Mount) -> Result<Option<MountBindOptionsPropagationEnum>, String> {
    let Some(p) = m
        .bind
        .as_ref()
        .and_then(|b| b.get("propagation"))
        .and_then(Value::as_str)
    else {
        return Ok(None);
    };
    Ok(Some(match p {
        "private" => MountBindOptionsPropagationEnum::PRIVATE,
        "rprivate" => MountBindOptionsPropagationEnum::RPRIVATE,
        "shared" => MountBindOptionsPropagationEnum::SHARED,
        "rshared" => MountBindOptionsPropagationEnum::RSHARED,
        "slave" => MountBindOptionsPropagationEnum::SLAVE,
        "rslave" => MountBindOptionsPropagationEnum::RSLAVE,
        other => {
            return Err(format!(
                "unknown bind propagation {other:?} at {}",
                m.target
            ))
        }
    }))
}

/// Durations are milliseconds in the model and nanoseconds in the Engine API.
fn nanos(d: baton_spec::Duration) -> i64 {
    i64::try_from(d.0)
        .unwrap_or(i64::MAX)
        .saturating_mul(1_000_000)
}

pub(crate) fn health_config(h: &Healthcheck) -> HealthConfig {
    let test = if h.disable {
        Some(vec!["NONE".to_string()])
    } else {
        non_empty(h.test.clone())
    };
    HealthConfig {
        test,
        interval: h.interval.map(nanos),
        timeout: h.timeout.map(nanos),
        retries: h.retries.map(i64::from),
        start_period: h.start_period.map(nanos),
        start_interval: h.start_interval.map(nanos),
    }
}

/// `deploy.restart_policy` wins over `restart:`, as in Compose.
fn restart_policy(svc: &Service) -> Result<Option<RestartPolicy>, String> {
    if let Some(p) = svc.deploy.as_ref().and_then(|d| d.restart_policy.as_ref()) {
        let (name, retries) = match p.condition.as_deref().unwrap_or("any") {
            "none" => (RestartPolicyNameEnum::NO, None),
            "on-failure" => (
                RestartPolicyNameEnum::ON_FAILURE,
                p.max_attempts.map(i64::from),
            ),
            "any" => (RestartPolicyNameEnum::ALWAYS, None),
            other => {
                return Err(format!(
                    "unknown deploy.restart_policy.condition {other:?}, expected none, on-failure or any"
                ))
            }
        };
        return Ok(Some(RestartPolicy {
            name: Some(name),
            maximum_retry_count: retries,
        }));
    }
    let Some(restart) = svc.restart.as_deref() else {
        return Ok(None);
    };
    let (name, retries) = match restart.split_once(':') {
        Some(("on-failure", n)) => {
            let n = n
                .parse::<i64>()
                .map_err(|_| format!("invalid restart {restart:?}: {n:?} is not a number"))?;
            (RestartPolicyNameEnum::ON_FAILURE, Some(n))
        }
        _ => match restart {
            "no" | "" => (RestartPolicyNameEnum::NO, None),
            "always" => (RestartPolicyNameEnum::ALWAYS, None),
            "on-failure" => (RestartPolicyNameEnum::ON_FAILURE, None),
            "unless-stopped" => (RestartPolicyNameEnum::UNLESS_STOPPED, None),
            other => {
                return Err(format!(
                "unknown restart policy {other:?}, expected no, always, on-failure[:N] or unless-stopped"
            ))
            }
        },
    };
    Ok(Some(RestartPolicy {
        name: Some(name),
        maximum_retry_count: retries,
    }))
}

fn apply_resources(svc: &Service, host: &mut HostConfig) -> Result<(), String> {
    let Some(res) = svc.deploy.as_ref().and_then(|d| d.resources.as_ref()) else {
        return Ok(());
    };
    if let Some(limits) = &res.limits {
        if let Some(cpus) = limits.cpus {
            host.nano_cpus = Some(nano_cpus(cpus)?);
        }
        if let Some(memory) = limits.memory {
            host.memory = Some(to_i64(memory)?);
        }
        host.pids_limit = limits.pids.or(host.pids_limit);
    }
    if let Some(memory) = res.reservations.as_ref().and_then(|r| r.memory) {
        host.memory_reservation = Some(to_i64(memory)?);
    }
    Ok(())
}

fn to_i64(n: u64) -> Result<i64, String> {
    i64::try_from(n).map_err(|_| format!("{n} is too large"))
}

fn nano_cpus(cpus: f64) -> Result<i64, String> {
    if !(cpus.is_finite() && cpus >= 0.0) {
        return Err(format!("invalid cpus value {cpus}"));
    }
    #[allow(clippy::cast_possible_truncation)]
    Ok((cpus * 1e9).round() as i64)
}

/// Keys of `service.other` whose mapping is a single field.
fn apply_other(
    other: &std::collections::BTreeMap<String, Value>,
    host: &mut HostConfig,
) -> Result<(), String> {
    let string = |key: &str| -> Result<Option<String>, String> {
        match other.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(v) => Err(format!("{key}: expected a string, got {v}")),
        }
    };
    let strings = |key: &str| -> Result<Option<Vec<String>>, String> {
        match other.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    Value::Number(n) => Ok(n.to_string()),
                    v => Err(format!("{key}: expected strings, got {v}")),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(v) => Err(format!("{key}: expected a list, got {v}")),
        }
    };
    let int = |key: &str| -> Result<Option<i64>, String> {
        match other.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| format!("{key}: expected an integer, got {n}")),
            Some(Value::String(s)) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| format!("{key}: expected an integer, got {s:?}")),
            Some(v) => Err(format!("{key}: expected an integer, got {v}")),
        }
    };
    let bytes = |key: &str| -> Result<Option<i64>, String> {
        other
            .get(key)
            .filter(|v| !v.is_null())
            .map(bytes_value)
            .transpose()
            .map_err(|e| format!("{key}: {e}"))
    };

    if let Some(v) = bytes("shm_size")? {
        host.shm_size = Some(v);
    }
    if let Some(v) = bytes("mem_limit")? {
        host.memory = Some(v);
    }
    if let Some(v) = bytes("mem_reservation")? {
        host.memory_reservation = Some(v);
    }
    if let Some(v) = bytes("memswap_limit")? {
        host.memory_swap = Some(v);
    }
    if let Some(v) = string("cpus")? {
        let cpus: f64 = v
            .trim()
            .parse()
            .map_err(|_| format!("cpus: expected a number, got {v:?}"))?;
        host.nano_cpus = Some(nano_cpus(cpus)?);
    }
    if let Some(v) = int("cpu_shares")? {
        host.cpu_shares = Some(v);
    }
    if let Some(v) = string("cpuset")? {
        host.cpuset_cpus = Some(v);
    }
    if let Some(v) = int("pids_limit")? {
        host.pids_limit = Some(v);
    }
    if let Some(v) = int("oom_score_adj")? {
        host.oom_score_adj = Some(v);
    }
    if let Some(v) = string("ipc")? {
        host.ipc_mode = Some(v);
    }
    if let Some(v) = string("pid")? {
        host.pid_mode = Some(v);
    }
    if let Some(v) = string("userns_mode")? {
        host.userns_mode = Some(v);
    }
    if let Some(v) = string("cgroup_parent")? {
        host.cgroup_parent = Some(v);
    }
    if let Some(v) = string("runtime")? {
        host.runtime = Some(v);
    }
    if let Some(v) = strings("security_opt")? {
        host.security_opt = Some(v);
    }
    if let Some(v) = strings("group_add")? {
        host.group_add = Some(v);
    }
    Ok(())
}

/// A byte size as Compose writes it: a number, or `512m`, `1g`, `64mb`, `100k`, `10b`.
pub(crate) fn bytes_value(v: &Value) -> Result<i64, String> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| format!("expected a byte size, got {n}")),
        Value::String(s) => parse_bytes(s),
        v => Err(format!("expected a byte size, got {v}")),
    }
}

fn parse_bytes(s: &str) -> Result<i64, String> {
    let t = s.trim().to_ascii_lowercase();
    let bad = || format!("invalid byte size {s:?}, expected a number with b, k, m or g");
    let digits_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(digits_end);
    let num: f64 = num.parse().map_err(|_| bad())?;
    let mult: f64 = match unit.trim() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(bad()),
    };
    #[allow(clippy::cast_possible_truncation)]
    Ok((num * mult).round() as i64)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use baton_engine::runtime::FileMount;
    use baton_spec::{Deploy, Port, ResourceSpec, Resources};

    use super::*;

    fn spec(service: Service) -> ContainerSpec {
        ContainerSpec {
            name: "p-web-1".into(),
            project: "p".into(),
            service_name: "web".into(),
            replica: 1,
            image: "img:1".into(),
            service,
            labels: BTreeMap::from([("a".into(), "b".into())]),
            env: vec!["A=1".into()],
            networks: vec![
                NetworkAttachment {
                    network: "p_front".into(),
                    aliases: vec!["web".into()],
                    ipv4_address: Some("10.9.0.5".into()),
                    ipv6_address: None,
                },
                NetworkAttachment {
                    network: "p_back".into(),
                    aliases: vec![],
                    ipv4_address: None,
                    ipv6_address: None,
                },
            ],
            mounts: vec![],
            files: vec![FileMount {
                source: "/tmp/cfg".into(),
                target: "/etc/cfg".into(),
                mode: None,
            }],
            hostname: Some("web".into()),
        }
    }

    #[test]
    fn maps_ports_health_restart_and_first_network() {
        let svc = Service {
            ports: vec![
                Port {
                    target: 80,
                    published: Some(8080),
                    host_ip: Some("127.0.0.1".into()),
                    protocol: "tcp".into(),
                    mode: None,
                    name: None,
                    app_protocol: None,
                },
                Port {
                    target: 53,
                    published: None,
                    host_ip: None,
                    protocol: "udp".into(),
                    mode: None,
                    name: None,
                    app_protocol: None,
                },
            ],
            expose: vec!["9000-9001".into()],
            healthcheck: Some(Healthcheck {
                test: vec!["CMD".into(), "true".into()],
                interval: Some(baton_spec::Duration(1500)),
                retries: Some(3),
                ..Default::default()
            }),
            restart: Some("on-failure:4".into()),
            stop_grace_period: Some(baton_spec::Duration(1500)),
            tmpfs: vec!["/run:size=1m".into()],
            deploy: Some(Deploy {
                resources: Some(Resources {
                    limits: Some(ResourceSpec {
                        cpus: Some(0.5),
                        memory: Some(1 << 20),
                        pids: Some(10),
                        ..Default::default()
                    }),
                    reservations: None,
                }),
                ..Default::default()
            }),
            other: BTreeMap::from([("shm_size".into(), Value::String("64m".into()))]),
            ..Default::default()
        };
        let body = create_body(&spec(svc)).unwrap();
        let host = body.host_config.unwrap();
        let ports = host.port_bindings.unwrap();
        let web = ports["80/tcp"].as_ref().unwrap();
        assert_eq!(web[0].host_port.as_deref(), Some("8080"));
        assert_eq!(web[0].host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(
            ports["53/udp"].as_ref().unwrap()[0].host_port.as_deref(),
            Some("")
        );
        let exposed = body.exposed_ports.unwrap();
        assert!(exposed.contains_key("9001/tcp") && exposed.contains_key("53/udp"));
        let hc = body.healthcheck.unwrap();
        assert_eq!(hc.interval, Some(1_500_000_000));
        assert_eq!(hc.retries, Some(3));
        let rp = host.restart_policy.unwrap();
        assert_eq!(rp.name, Some(RestartPolicyNameEnum::ON_FAILURE));
        assert_eq!(rp.maximum_retry_count, Some(4));
        assert_eq!(body.stop_timeout, Some(2));
        assert_eq!(host.nano_cpus, Some(500_000_000));
        assert_eq!(host.memory, Some(1 << 20));
        assert_eq!(host.pids_limit, Some(10));
        assert_eq!(host.shm_size, Some(64 << 20));
        assert_eq!(host.tmpfs.unwrap()["/run"], "size=1m");
        assert_eq!(host.network_mode.as_deref(), Some("p_front"));
        let eps = body.networking_config.unwrap().endpoints_config.unwrap();
        assert_eq!(eps.len(), 1);
        let ep = &eps["p_front"];
        assert_eq!(ep.aliases.as_deref(), Some(&["web".to_string()][..]));
        assert_eq!(
            ep.ipam_config.as_ref().unwrap().ipv4_address.as_deref(),
            Some("10.9.0.5")
        );
        let cfg = &host.mounts.unwrap()[0];
        assert_eq!(cfg.read_only, Some(true));
        assert_eq!(cfg.target.as_deref(), Some("/etc/cfg"));
    }

    #[test]
    fn disabled_healthcheck_is_none_test() {
        let hc = health_config(&Healthcheck {
            disable: true,
            ..Default::default()
        });
        assert_eq!(hc.test, Some(vec!["NONE".to_string()]));
    }

    #[test]
    fn binds_with_create_host_path_use_legacy_binds() {
        let mut s = spec(Service::default());
        s.mounts = vec![Mount {
            kind: "bind".into(),
            source: Some("/srv/data".into()),
            target: "/data".into(),
            read_only: true,
            consistency: None,
            bind: Some(BTreeMap::from([(
                "create_host_path".into(),
                Value::Bool(true),
            )])),
            volume: None,
            tmpfs: None,
        }];
        let host = create_body(&s).unwrap().host_config.unwrap();
        assert_eq!(host.binds, Some(vec!["/srv/data:/data:ro".to_string()]));
    }

    #[test]
    fn bad_restart_is_an_error() {
        let svc = Service {
            restart: Some("sometimes".into()),
            ..Default::default()
        };
        let err = create_body(&spec(svc)).unwrap_err().to_string();
        assert!(err.contains("unknown restart policy"), "{err}");
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("1g"), Ok(1 << 30));
        assert_eq!(parse_bytes("512MB"), Ok(512 << 20));
        assert_eq!(parse_bytes("100"), Ok(100));
        assert!(parse_bytes("lots").is_err());
    }
}
