//! A project as the objects a swarm keeps: services (`ServiceSpec` in the Engine API's
//! own JSON), overlay networks, volumes' labels, and secrets and configs named after
//! their content's hash (a swarm's are immutable, so a change is a new object and the
//! service rolls over to it). Pure: the content of a secret is read here only to hash
//! it, and never leaves as part of a `Desired` (which the store keeps).

use std::collections::BTreeMap;

use baton_engine::hash::DigestKey;
use baton_engine::orchestrate::Desired;
use baton_spec::{FileObject, Project, Service};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// The label every object baton puts on a swarm carries, with the project's name.
pub const PROJECT: &str = "io.baton.swarm.project";
/// The file's service an object belongs to.
pub const SERVICE: &str = "io.baton.service";
/// The hash of the object's desired configuration.
pub const HASH: &str = "io.baton.config-hash";
/// The key of a secret or config in the file.
pub const KEY: &str = "io.baton.key";

/// How published ports reach the tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publish {
    /// Swarm's routing mesh: every node answers on the port.
    Ingress,
    /// Each node running a task answers on the port (the mesh does not work on this
    /// engine's kernel: no IPVS), at most one task per node.
    Host,
}

/// Label prefix of a port baton's proxy answers for a service (`io.baton.front.8080`
/// = `80/tcp/http`: the task's port, its protocol, the proxy's mode).
pub const FRONT: &str = "io.baton.front";

/// How one published port reaches the tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// The routing mesh (every node answers).
    Mesh,
    /// The node running a task answers (one task per node).
    Host,
    /// `baton serve` answers and forwards to each task's own port on its node.
    Front,
}

/// How `port` of service `s` is published: as written (`mode: host`), else the mesh
/// where it works; where it does not, a global service (one task per node) uses host
/// mode and a replicated one gets baton's proxy in front.
pub fn way(s: &Service, port: &baton_spec::Port, publish: Publish) -> Way {
    let global = s.deploy.as_ref().and_then(|d| d.mode.as_deref()) == Some("global");
    if port.published.is_some() && port.mode.is_none() && !global && switched(s).is_some() {
        // Blue-green and canary switch traffic between versions in baton's front.
        return Way::Front;
    }
    match (port.mode.as_deref(), publish) {
        (Some("host"), _) => Way::Host,
        (Some(_), _) | (None, Publish::Ingress) => Way::Mesh,
        (None, Publish::Host) if port.published.is_none() => Way::Host,
        (None, Publish::Host) if global => Way::Host,
        (None, Publish::Host) => Way::Front,
    }
}

/// The settings of a service that a swarm honours; the rest are listed by `plan`.
pub const SUPPORTED: &[&str] = &[
    "image",
    "command",
    "entrypoint",
    "environment",
    "ports",
    "expose",
    "volumes",
    "tmpfs",
    "networks",
    "healthcheck",
    "restart",
    "deploy.mode",
    "deploy.replicas",
    "deploy.labels",
    "deploy.resources",
    "deploy.restart_policy",
    "deploy.update_config",
    "deploy.rollback_config",
    "deploy.placement",
    "deploy.endpoint_mode",
    "labels",
    "working_dir",
    "user",
    "hostname",
    "stop_grace_period",
    "stop_signal",
    "init",
    "extra_hosts",
    "configs",
    "secrets",
    "read_only",
    "tty",
    "stdin_open",
    "cap_add",
    "cap_drop",
    "logging",
    "profiles",
    "depends_on",
    "x-baton.rollout",
];

/// Where the content of secrets and configs comes from, and the key their names'
/// digests are made with.
pub struct Sources<'a> {
    pub env: &'a BTreeMap<String, String>,
    pub key: &'a DigestKey,
}

/// Content of a secret or config, or why it cannot be had.
pub fn content(kind: &str, key: &str, o: &FileObject, src: &Sources) -> Result<Vec<u8>, String> {
    if let Some(c) = &o.content {
        return Ok(c.clone().into_bytes());
    }
    if let Some(var) = &o.environment {
        return src
            .env
            .get(var)
            .map(|v| v.clone().into_bytes())
            .ok_or_else(|| format!("{kind} {key}: environment variable {var} is not set"));
    }
    if let Some(path) = &o.file {
        let meta = std::fs::metadata(path)
            .map_err(|e| format!("{kind} {key}: {}: {e}", path.display()))?;
        // Swarm refuses more than 500 KB; say so before reading a large file.
        if meta.len() > 500 * 1024 {
            return Err(format!(
                "{kind} {key}: {} is {} bytes; a swarm {kind} holds at most 500 KB",
                path.display(),
                meta.len()
            ));
        }
        return std::fs::read(path).map_err(|e| format!("{kind} {key}: {}: {e}", path.display()));
    }
    Err(format!("{kind} {key}: no file, environment or content"))
}

/// `<project>_<key>_<digest>`: a name that changes with the content. The digest is
/// keyed (`DigestKey`), so a weak secret cannot be found again from its name.
pub fn file_object_name(
    project: &str,
    key: &str,
    o: &FileObject,
    data: &[u8],
    digest: &DigestKey,
) -> String {
    let base = o.name.clone().unwrap_or_else(|| format!("{project}_{key}"));
    format!("{base}_{}", digest.digest(data))
}

/// The swarm service's name: `<project>_<service>`, as `docker stack deploy` names it.
pub fn service_name(project: &str, service: &str) -> String {
    format!("{project}_{service}")
}

fn ns(d: &baton_spec::Duration) -> Value {
    json!(d.0.saturating_mul(1_000_000))
}

fn labels(extra: &BTreeMap<String, String>, project: &str) -> Map<String, Value> {
    let mut m: Map<String, Value> = extra.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    m.insert(PROJECT.into(), json!(project));
    m
}

/// Every object of the project, in the order they must exist: networks, secrets and
/// configs, then services. Secrets and configs the file marks `external` are the
/// swarm's and only referred to.
pub fn desired(project: &Project, publish: Publish, src: &Sources) -> Result<Vec<Desired>, String> {
    let p = &project.name;
    let mut out = Vec::new();
    let used_networks: std::collections::BTreeSet<&String> = project
        .services
        .values()
        .flat_map(|s| s.networks.keys())
        .collect();
    for (key, n) in &project.networks {
        if n.external || !used_networks.contains(key) {
            continue;
        }
        let mut l = labels(&n.labels, p);
        l.insert("com.docker.stack.namespace".into(), json!(p));
        out.push(Desired {
            kind: "network".into(),
            name: n.name.clone(),
            service: None,
            config: json!({
                "Name": n.name,
                "Driver": n.driver.clone().unwrap_or_else(|| "overlay".into()),
                "Attachable": n.attachable,
                "Internal": n.internal,
                "Options": n.driver_opts,
                "Labels": l,
            }),
        });
    }
    let mut file_names: BTreeMap<(&str, &str), String> = BTreeMap::new();
    for (kind, objects) in [("secret", &project.secrets), ("config", &project.configs)] {
        for (key, o) in objects {
            if o.external {
                let name = o.name.clone().unwrap_or_else(|| key.clone());
                file_names.insert((kind, key.as_str()), name);
                continue;
            }
            let used = project.services.values().any(|s| {
                let refs = if kind == "secret" {
                    &s.secrets
                } else {
                    &s.configs
                };
                refs.iter().any(|r| &r.source == key)
            });
            if !used {
                continue;
            }
            let data = content(kind, key, o, src)?;
            let name = file_object_name(p, key, o, &data, src.key);
            let mut l = labels(&o.labels, p);
            l.insert(KEY.into(), json!(key));
            file_names.insert((kind, key.as_str()), name.clone());
            out.push(Desired {
                kind: kind.into(),
                name: name.clone(),
                service: None,
                // The content's hash is in the name; the content itself never is here.
                config: json!({"Name": name, "Labels": l}),
            });
        }
    }
    for (name, s) in &project.services {
        let mut config = service_spec(project, name, s, publish, &file_names)?;
        let name_on_swarm = match switched(s) {
            // Each version is a service of its own, named after what shapes its tasks
            // (not its replica count, which changes in place).
            Some(strategy) => {
                let mut shape = config.clone();
                if let Some(m) = shape.as_object_mut() {
                    m.remove("Mode");
                    m.remove("Name");
                }
                let revision = hex::encode(&Sha256::digest(shape.to_string().as_bytes())[..4]);
                let full = format!("{}-{revision}", service_name(p, name));
                config["Name"] = json!(full);
                config["Labels"][REVISION] = json!(revision);
                config["Labels"][STRATEGY] = json!(strategy);
                full
            }
            None => service_name(p, name),
        };
        out.push(Desired {
            kind: "service".into(),
            name: name_on_swarm,
            service: Some(name.clone()),
            config,
        });
    }
    Ok(out)
}

/// Label of a revision service: the short hash its name ends with.
pub const REVISION: &str = "io.baton.revision";
/// Label of a revision service: `blue-green` or `canary`.
pub const STRATEGY: &str = "io.baton.strategy";
/// Label of a revision service: its share of the front's traffic, in percent (absent:
/// an equal share).
pub const WEIGHT: &str = "io.baton.front.weight";

/// The strategy of a service whose versions baton switches itself, behind its front
/// (`x-baton.rollout.strategy: blue-green | canary`); `None` for the swarm's own rolling
/// update.
pub fn switched(s: &Service) -> Option<&'static str> {
    match baton_engine::rollout::rollout_spec(s).ok()?.strategy {
        baton_engine::rollout::Strategy::BlueGreen(_) if has_rollout(s) => Some("blue-green"),
        baton_engine::rollout::Strategy::Canary(_) => Some("canary"),
        _ => None,
    }
}

fn has_rollout(s: &Service) -> bool {
    s.baton
        .as_ref()
        .and_then(|b| serde_json::to_value(b).ok())
        .is_some_and(|v| v.get("rollout").is_some())
}

/// Whether another service waits for this one to complete (a one-shot job).
fn is_job(project: &Project, key: &str) -> bool {
    project.services.values().any(|s| {
        s.depends_on
            .get(key)
            .is_some_and(|d| d.condition == baton_spec::Condition::ServiceCompletedSuccessfully)
    })
}

fn restart_condition(project: &Project, key: &str, s: &Service) -> (&'static str, Option<u32>) {
    if let Some(c) = s
        .deploy
        .as_ref()
        .and_then(|d| d.restart_policy.as_ref())
        .and_then(|r| r.condition.as_deref())
    {
        return (
            match c {
                "none" => "none",
                "on-failure" => "on-failure",
                _ => "any",
            },
            None,
        );
    }
    match s.restart.as_deref() {
        Some("no") => ("none", None),
        // Compose's default is `no`, Swarm's `any`: a service others wait to complete
        // runs once; any other service is kept running, as `docker stack deploy` does.
        None if is_job(project, key) => ("none", None),
        Some(r) if r.starts_with("on-failure") => (
            "on-failure",
            r.strip_prefix("on-failure:").and_then(|n| n.parse().ok()),
        ),
        _ => ("any", None),
    }
}

fn update_config(u: Option<&baton_spec::UpdateConfig>, rollback: bool) -> Value {
    let mut m = Map::new();
    let u = u.cloned().unwrap_or_default();
    m.insert("Parallelism".into(), json!(u.parallelism.unwrap_or(1)));
    if let Some(d) = &u.delay {
        m.insert("Delay".into(), ns(d));
    }
    // baton's default is to roll a failed update back (Swarm's own is to pause).
    let default_failure = if rollback { "pause" } else { "rollback" };
    m.insert(
        "FailureAction".into(),
        json!(u.failure_action.as_deref().unwrap_or(default_failure)),
    );
    m.insert(
        "Monitor".into(),
        u.monitor
            .as_ref()
            .map(ns)
            .unwrap_or(json!(5_000_000_000u64)),
    );
    if let Some(r) = u.max_failure_ratio {
        m.insert("MaxFailureRatio".into(), json!(r));
    }
    m.insert(
        "Order".into(),
        json!(u.order.as_deref().unwrap_or("stop-first")),
    );
    Value::Object(m)
}

fn service_spec(
    project: &Project,
    key: &str,
    s: &Service,
    publish: Publish,
    files: &BTreeMap<(&str, &str), String>,
) -> Result<Value, String> {
    let p = &project.name;
    let here = |what: &str| format!("service {key}: {what}");
    let image = s
        .image
        .clone()
        .ok_or_else(|| here("a swarm service needs an image (build it and push it first)"))?;
    let mut c = Map::new();
    c.insert("Image".into(), json!(image));
    let mut clabels: Map<String, Value> = s
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    clabels.insert("io.baton.swarm.service".into(), json!(service_name(p, key)));
    c.insert("Labels".into(), Value::Object(clabels));
    if let Some(e) = &s.entrypoint {
        c.insert("Command".into(), json!(e));
    }
    if let Some(a) = &s.command {
        c.insert("Args".into(), json!(a));
    }
    let env: Vec<String> = s
        .environment
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
        .collect();
    if !env.is_empty() {
        c.insert("Env".into(), json!(env));
    }
    for (field, v) in [
        ("Dir", &s.working_dir),
        ("User", &s.user),
        ("Hostname", &s.hostname),
        ("StopSignal", &s.stop_signal),
    ] {
        if let Some(v) = v {
            c.insert(field.into(), json!(v));
        }
    }
    if let Some(g) = &s.stop_grace_period {
        c.insert("StopGracePeriod".into(), ns(g));
    }
    if let Some(i) = s.init {
        c.insert("Init".into(), json!(i));
    }
    if s.read_only {
        c.insert("ReadOnly".into(), json!(true));
    }
    if s.tty {
        c.insert("TTY".into(), json!(true));
    }
    if !s.cap_add.is_empty() {
        c.insert("CapabilityAdd".into(), json!(s.cap_add));
    }
    if !s.cap_drop.is_empty() {
        c.insert("CapabilityDrop".into(), json!(s.cap_drop));
    }
    if !s.extra_hosts.is_empty() {
        // Compose's `host:ip`; the task spec wants `ip host`.
        let hosts: Vec<String> = s
            .extra_hosts
            .iter()
            .filter_map(|h| h.rsplit_once(':').map(|(n, ip)| format!("{ip} {n}")))
            .collect();
        c.insert("Hosts".into(), json!(hosts));
    }
    if let Some(h) = &s.healthcheck {
        let mut m = Map::new();
        if h.disable {
            m.insert("Test".into(), json!(["NONE"]));
        } else {
            if !h.test.is_empty() {
                m.insert("Test".into(), json!(h.test));
            }
            for (field, d) in [
                ("Interval", &h.interval),
                ("Timeout", &h.timeout),
                ("StartPeriod", &h.start_period),
                ("StartInterval", &h.start_interval),
            ] {
                if let Some(d) = d {
                    m.insert(field.into(), ns(d));
                }
            }
            if let Some(r) = h.retries {
                m.insert("Retries".into(), json!(r));
            }
        }
        c.insert("HealthCheck".into(), Value::Object(m));
    }
    let mut mounts = Vec::new();
    for m in &s.volumes {
        let mut o = Map::new();
        o.insert("Target".into(), json!(m.target));
        o.insert("ReadOnly".into(), json!(m.read_only));
        match m.kind.as_str() {
            "volume" => {
                o.insert("Type".into(), json!("volume"));
                if let Some(src) = &m.source {
                    let name = project
                        .volumes
                        .get(src)
                        .map(|v| v.name.clone())
                        .unwrap_or_else(|| src.clone());
                    o.insert("Source".into(), json!(name));
                    let vlabels = project
                        .volumes
                        .get(src)
                        .map(|v| labels(&v.labels, p))
                        .unwrap_or_default();
                    let mut vo = json!({"Labels": vlabels});
                    if let Some(d) = project.volumes.get(src).and_then(|v| v.driver.as_ref()) {
                        vo["DriverConfig"] = json!({"Name": d,
                            "Options": project.volumes[src].driver_opts});
                    }
                    o.insert("VolumeOptions".into(), vo);
                }
            }
            "bind" => {
                o.insert("Type".into(), json!("bind"));
                o.insert("Source".into(), json!(m.source));
            }
            "tmpfs" => {
                o.insert("Type".into(), json!("tmpfs"));
            }
            other => return Err(here(&format!("a {other} mount cannot go to a swarm"))),
        }
        mounts.push(Value::Object(o));
    }
    for t in &s.tmpfs {
        let target = t.split(':').next().unwrap_or(t);
        mounts.push(json!({"Type": "tmpfs", "Target": target}));
    }
    if !mounts.is_empty() {
        c.insert("Mounts".into(), json!(mounts));
    }
    for (kind, refs, field) in [
        ("secret", &s.secrets, "Secrets"),
        ("config", &s.configs, "Configs"),
    ] {
        if refs.is_empty() {
            continue;
        }
        let mut list = Vec::new();
        for r in refs {
            let name = files
                .get(&(kind, r.source.as_str()))
                .ok_or_else(|| here(&format!("{kind} {} is not defined", r.source)))?;
            let mut file = json!({
                "Name": r.target,
                "UID": r.uid.clone().unwrap_or_else(|| "0".into()),
                "GID": r.gid.clone().unwrap_or_else(|| "0".into()),
                "Mode": r.mode.unwrap_or(0o444),
            });
            if kind == "secret" {
                // The secret's file name under /run/secrets, or an absolute path.
                if let Some(rel) = r.target.strip_prefix("/run/secrets/") {
                    file["Name"] = json!(rel);
                }
            }
            // The id is looked up when the service is put; the name is what is desired.
            list.push(json!({ format!("{}Name", capitalize(kind)): name, "File": file }));
        }
        c.insert(field.into(), json!(list));
    }

    let mut task = Map::new();
    task.insert("ContainerSpec".into(), Value::Object(c));
    let (condition, attempts) = restart_condition(project, key, s);
    let mut rp = json!({"Condition": condition});
    if let Some(a) = attempts {
        rp["MaxAttempts"] = json!(a);
    }
    let deploy = s.deploy.clone().unwrap_or_default();
    if let Some(r) = &deploy.restart_policy {
        if let Some(d) = &r.delay {
            rp["Delay"] = ns(d);
        }
        if let Some(a) = r.max_attempts {
            rp["MaxAttempts"] = json!(a);
        }
        if let Some(w) = &r.window {
            rp["Window"] = ns(w);
        }
    }
    task.insert("RestartPolicy".into(), rp);
    if let Some(r) = &deploy.resources {
        let mut res = Map::new();
        for (field, spec) in [("Limits", &r.limits), ("Reservations", &r.reservations)] {
            if let Some(spec) = spec {
                let mut m = Map::new();
                if let Some(c) = spec.cpus {
                    m.insert("NanoCPUs".into(), json!((c * 1e9).round() as i64));
                }
                if let Some(b) = spec.memory {
                    m.insert("MemoryBytes".into(), json!(b));
                }
                if field == "Limits" {
                    if let Some(n) = spec.pids {
                        m.insert("Pids".into(), json!(n));
                    }
                }
                res.insert(field.into(), Value::Object(m));
            }
        }
        task.insert("Resources".into(), Value::Object(res));
    }
    let global = deploy.mode.as_deref() == Some("global");
    let mut placement = Map::new();
    if let Some(pl) = deploy.other.get("placement") {
        if let Some(cs) = pl.get("constraints") {
            placement.insert("Constraints".into(), cs.clone());
        }
        if let Some(Value::Array(prefs)) = pl.get("preferences") {
            let prefs: Vec<Value> = prefs
                .iter()
                .filter_map(|p| p.get("spread"))
                .map(|s| json!({"Spread": {"SpreadDescriptor": s}}))
                .collect();
            placement.insert("Preferences".into(), json!(prefs));
        }
        if let Some(m) = pl.get("max_replicas_per_node") {
            placement.insert("MaxReplicas".into(), m.clone());
        }
    }
    let ways: Vec<Way> = s.ports.iter().map(|p| way(s, p, publish)).collect();
    if ways.contains(&Way::Host) && !placement.contains_key("MaxReplicas") && !global {
        // A port published on the node itself can be bound by one task per node.
        placement.insert("MaxReplicas".into(), json!(1));
    }
    if !placement.is_empty() {
        task.insert("Placement".into(), Value::Object(placement));
    }
    let nets: Vec<Value> = s
        .networks
        .iter()
        .map(|(k, n)| {
            let target = project
                .networks
                .get(k)
                .map(|n| n.name.clone())
                .unwrap_or_else(|| k.clone());
            let mut aliases = vec![key.to_string()];
            aliases.extend(n.aliases.iter().cloned());
            json!({"Target": target, "Aliases": aliases})
        })
        .collect();
    if !nets.is_empty() {
        task.insert("Networks".into(), json!(nets));
    }
    if let Some(l) = &s.logging {
        if let Some(d) = &l.driver {
            task.insert("LogDriver".into(), json!({"Name": d, "Options": l.options}));
        }
    }

    let mut spec = Map::new();
    spec.insert("Name".into(), json!(service_name(p, key)));
    let mut sl = labels(&deploy.labels, p);
    sl.insert(SERVICE.into(), json!(key));
    sl.insert("com.docker.stack.namespace".into(), json!(p));
    spec.insert("Labels".into(), Value::Object(sl));
    spec.insert("TaskTemplate".into(), Value::Object(task));
    spec.insert(
        "Mode".into(),
        if global {
            json!({"Global": {}})
        } else {
            json!({"Replicated": {"Replicas": s.replicas()}})
        },
    );
    spec.insert(
        "UpdateConfig".into(),
        update_config(deploy.update_config.as_ref(), false),
    );
    spec.insert(
        "RollbackConfig".into(),
        update_config(deploy.rollback_config.as_ref(), true),
    );
    let mut fronts = Map::new();
    let ports: Vec<Value> = s
        .ports
        .iter()
        .zip(&ways)
        .map(|(port, way)| {
            let mut m = json!({
                "Protocol": port.protocol,
                "TargetPort": port.target,
                "PublishMode": if *way == Way::Mesh { "ingress" } else { "host" },
            });
            match (way, port.published) {
                // Each task gets a port of its own on its node; baton's proxy answers
                // on the published one.
                (Way::Front, Some(pp)) => {
                    let app = match port.app_protocol.as_deref() {
                        Some(a) if a.starts_with("http") => "http",
                        _ => "tcp",
                    };
                    fronts.insert(
                        format!("{FRONT}.{pp}"),
                        json!(format!("{}/{}/{app}", port.target, port.protocol)),
                    );
                }
                (_, Some(pp)) => m["PublishedPort"] = json!(pp),
                (_, None) => {}
            }
            m
        })
        .collect();
    if let Some(Value::Object(l)) = spec.get_mut("Labels") {
        l.extend(fronts);
    }
    let mut endpoint = Map::new();
    if let Some(m) = deploy.other.get("endpoint_mode") {
        endpoint.insert("Mode".into(), m.clone());
    } else if dnsrr(s, publish) {
        endpoint.insert("Mode".into(), json!("dnsrr"));
    }
    if !ports.is_empty() {
        endpoint.insert("Ports".into(), json!(ports));
    }
    if !endpoint.is_empty() {
        spec.insert("EndpointSpec".into(), Value::Object(endpoint));
    }
    Ok(Value::Object(spec))
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Whether the service's name resolves to its tasks' addresses rather than a virtual
/// IP: where the kernel has no IPVS, a swarm's virtual IPs answer nothing, so other
/// services could not reach it by name. Not with a port on the mesh (the engine refuses
/// both), nor when the file chose an endpoint mode.
fn dnsrr(s: &Service, publish: Publish) -> bool {
    publish == Publish::Host
        && s.deploy
            .as_ref()
            .is_none_or(|d| !d.other.contains_key("endpoint_mode"))
        && s.ports.iter().all(|p| way(s, p, publish) != Way::Mesh)
}

/// One line for `plan` per published port, saying how it is published.
pub fn publish_notes(project: &Project, publish: Publish) -> Vec<String> {
    let mut out = Vec::new();
    for (name, s) in &project.services {
        for port in s.ports.iter() {
            let Some(pp) = port.published else { continue };
            let line = match (way(s, port, publish), port.mode.as_deref()) {
                (Way::Host, Some("host")) => format!(
                    "{pp} is published in host mode (as written): on each node running a \
                     task, one task per node"
                ),
                (Way::Host, _) => format!(
                    "{pp} is published in host mode on each node (a global service): this \
                     swarm's routing mesh accepts nothing (the kernel has no IPVS)"
                ),
                (Way::Front, _) => format!(
                    "{pp} is answered by baton's proxy in `baton serve` for this target, in \
                     front of each task's own port: this swarm's routing mesh accepts \
                     nothing (the kernel has no IPVS)"
                ),
                (Way::Mesh, Some("ingress")) if publish == Publish::Host => format!(
                    "{pp} asks for the routing mesh, which accepts nothing on this swarm (no \
                     IPVS); leave `mode` out to have baton's proxy answer"
                ),
                (Way::Mesh, _) => continue,
            };
            out.push(format!("services.{name}.ports: {line}"));
        }
    }
    let by_dns: Vec<&str> = project
        .services
        .iter()
        .filter(|(_, s)| dnsrr(s, publish))
        .map(|(n, _)| n.as_str())
        .collect();
    if !by_dns.is_empty() {
        out.push(format!(
            "services {} are found by DNS round robin (endpoint_mode: dnsrr): this swarm's \
             virtual IPs answer nothing (the kernel has no IPVS)",
            by_dns.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    static KEY: std::sync::LazyLock<DigestKey> =
        std::sync::LazyLock::new(|| DigestKey::new([7; 32]));

    fn load(yaml: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("compose.yaml");
        std::fs::write(&file, yaml).unwrap();
        baton_spec::load(&baton_spec::LoadOptions {
            files: vec![file],
            working_dir: dir.path().to_path_buf(),
            project_name: Some("shop".into()),
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn a_service_becomes_a_swarm_service_spec_with_secrets_by_content_hash() {
        let p = load(
            r#"
services:
  web:
    image: web:1
    command: ["httpd", "-f"]
    environment: {A: "1"}
    ports: ["8080:80"]
    healthcheck: {test: ["CMD", "true"], interval: 2s, retries: 3}
    secrets: [token]
    deploy:
      replicas: 3
      resources: {limits: {cpus: "0.5", memory: 64M}}
      placement: {constraints: ["node.role==worker"]}
      update_config: {parallelism: 2, order: start-first}
secrets:
  token: {environment: TOKEN}
"#,
        );
        let env = BTreeMap::from([("TOKEN".to_string(), "s3cret".to_string())]);
        let all = desired(
            &p,
            Publish::Host,
            &Sources {
                env: &env,
                key: &KEY,
            },
        )
        .unwrap();
        let kinds: Vec<(&str, &str)> = all
            .iter()
            .map(|d| (d.kind.as_str(), d.name.as_str()))
            .collect();
        assert_eq!(kinds[0], ("network", "shop_default"));
        assert_eq!(kinds[1].0, "secret");
        assert!(kinds[1].1.starts_with("shop_token_"), "{kinds:?}");
        let secret = all[1].clone();
        assert!(!secret.config.to_string().contains("s3cret"));
        let web = &all[2].config;
        assert_eq!(web["Name"], "shop_web");
        assert_eq!(web["Mode"]["Replicated"]["Replicas"], 3);
        let c = &web["TaskTemplate"]["ContainerSpec"];
        assert_eq!(c["Args"], json!(["httpd", "-f"]));
        assert_eq!(c["Env"], json!(["A=1"]));
        assert_eq!(c["HealthCheck"]["Interval"], 2_000_000_000u64);
        assert_eq!(c["Secrets"][0]["SecretName"], json!(secret.name));
        assert_eq!(c["Secrets"][0]["File"]["Name"], "token");
        let t = &web["TaskTemplate"];
        assert_eq!(t["Resources"]["Limits"]["NanoCPUs"], 500_000_000);
        assert_eq!(t["Placement"]["Constraints"], json!(["node.role==worker"]));
        // No mesh here: each task publishes a port of its own, baton's proxy answers
        // on 8080, and nothing limits the tasks per node.
        assert_eq!(t["Placement"].get("MaxReplicas"), None);
        let port = &web["EndpointSpec"]["Ports"][0];
        assert_eq!(port["PublishMode"], "host");
        assert_eq!(port.get("PublishedPort"), None);
        assert_eq!(web["Labels"]["io.baton.front.8080"], "80/tcp/tcp");
        assert_eq!(web["UpdateConfig"]["Order"], "start-first");
        assert_eq!(web["UpdateConfig"]["FailureAction"], "rollback");
        // A new secret value is a new name, so the service changes and rolls over.
        let env2 = BTreeMap::from([("TOKEN".to_string(), "other".to_string())]);
        let again = desired(
            &p,
            Publish::Ingress,
            &Sources {
                env: &env2,
                key: &KEY,
            },
        )
        .unwrap();
        assert_ne!(again[1].name, secret.name);
        let port = &again[2].config["EndpointSpec"]["Ports"][0];
        assert_eq!(port["PublishMode"], "ingress");
        assert_eq!(port["PublishedPort"], 8080);
    }

    #[test]
    fn settings_a_swarm_ignores_are_each_listed() {
        let p = load(
            r#"
services:
  web:
    image: web:1
    privileged: true
    container_name: fixed
    depends_on: [db]
  db: {image: db}
"#,
        );
        let lines = baton_engine::orchestrate::ignored_settings(&p, "staging (swarm)", SUPPORTED);
        assert_eq!(
            lines,
            vec![
                "services.web.container_name: ignored by target staging (swarm)",
                "services.web.privileged: ignored by target staging (swarm)",
            ],
            "depends_on is kept: baton waits for dependencies before putting a service"
        );
    }

    #[test]
    fn rollout_settings_a_target_does_not_carry_out_are_each_a_line() {
        use baton_engine::rollout::StrategyKind::{BlueGreen, Canary, Rolling};
        let p = load(
            r#"
services:
  web:
    image: a
    x-baton: {rollout: {strategy: canary, steps: [{weight: 10}], analysis: {max_error_rate: 0.01}}}
  api:
    image: b
    x-baton: {rollout: {strategy: blue-green}}
  plain: {image: c}
"#,
        );
        let swarm = baton_engine::orchestrate::rollout_warnings(
            &p,
            "staging (swarm)",
            &[Rolling, BlueGreen, Canary],
            "",
        );
        assert_eq!(
            swarm,
            vec!["services.web.x-baton.rollout.analysis: not judged by target staging (swarm) (baton's proxy does not carry its traffic there): each step waits for the new version to be ready, then for its pause"]
        );
        let kube = baton_engine::orchestrate::rollout_warnings(
            &p,
            "prod (kubernetes)",
            &[Rolling, Canary],
            "it rolls",
        );
        assert_eq!(kube.len(), 2, "{kube:?}");
        assert!(kube.iter().any(|l| l
            == "services.api.x-baton.rollout.strategy: blue-green is not carried out by target prod (kubernetes): it rolls"));
    }

    #[test]
    fn a_missing_secret_source_is_an_error_naming_it() {
        let p = load(
            "services:\n  web: {image: a, secrets: [k]}\nsecrets:\n  k: {environment: NOPE}\n",
        );
        let e = desired(
            &p,
            Publish::Host,
            &Sources {
                env: &BTreeMap::new(),
                key: &KEY,
            },
        )
        .unwrap_err();
        assert!(e.contains("secret k: environment variable NOPE"), "{e}");
    }
}
