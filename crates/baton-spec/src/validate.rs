//! Whole-project checks once every service is normalised: profiles, the implicit default
//! network, references to networks, volumes, secrets, configs and services, and cycles.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::error::{suggest, ErrorKind, SpecError};
use crate::model::{Network, Project};
use crate::normalize::Settings;
use crate::yaml::{Kind, Mark, Node};

type Result<T> = std::result::Result<T, SpecError>;

/// Where each service was written: its key's mark and its merged node (borrowed from
/// the tree, which outlives the checks: a copy would double a large project).
pub type ServiceNodes<'a> = BTreeMap<String, (Mark, &'a Node)>;

pub fn project(p: &mut Project, nodes: &ServiceNodes<'_>, settings: &Settings) -> Result<()> {
    check_dependencies(p, nodes)?;
    check_cycles(p, nodes)?;
    apply_profiles(p, nodes, settings)?;
    default_network(p);
    check_references(p, nodes)?;
    Ok(())
}

/// The mark of `item` inside the service's `key` (a list item or a mapping key).
fn mark_of(nodes: &ServiceNodes<'_>, service: &str, key: &str, item: &str) -> Option<Mark> {
    let (key_mark, node) = nodes.get(service)?;
    let Some(section) = node.get(key) else {
        return Some(key_mark.clone());
    };
    let found = match &section.kind {
        Kind::Map(entries) => entries
            .iter()
            .find(|e| e.key == item)
            .map(|e| e.key_mark.clone()),
        Kind::Seq(items) => items
            .iter()
            .find(|n| match &n.kind {
                Kind::Scalar { text, .. } => {
                    text == item
                        || text.starts_with(&format!("{item}:"))
                        || text.starts_with(&format!("{item}="))
                }
                Kind::Map(_) => n.get("source").and_then(Node::scalar) == Some(item),
                _ => false,
            })
            .map(|n| n.mark.clone()),
        _ => None,
    };
    Some(found.unwrap_or_else(|| section.mark.clone()))
}

fn located(e: SpecError, mark: Option<Mark>) -> SpecError {
    match mark {
        Some(m) => e.with_mark(&m),
        None => e,
    }
}

/// The names of the file's VMs (`vms:` keys, or `name:` of its entries): a service may
/// depend on one. Only the names: what a VM is belongs to `baton-vm`, which checks the
/// rest (its own dependencies, cycles through VMs).
pub fn vm_names(p: &Project) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    match p.baton.get("vms") {
        Some(serde_json::Value::Object(m)) => {
            for (key, v) in m {
                names.insert(key.clone());
                if let Some(n) = v.get("name").and_then(serde_json::Value::as_str) {
                    names.insert(n.to_string());
                }
            }
        }
        Some(serde_json::Value::Array(items)) => {
            for v in items {
                if let Some(n) = v.get("name").and_then(serde_json::Value::as_str) {
                    names.insert(n.to_string());
                }
            }
        }
        _ => {}
    }
    names
}

fn check_dependencies(p: &Project, nodes: &ServiceNodes<'_>) -> Result<()> {
    let vms = vm_names(p);
    for (name, s) in &p.services {
        for dep in s.depends_on.keys() {
            let path = format!("services.{name}.depends_on.{dep}");
            let mark = mark_of(nodes, name, "depends_on", dep);
            if dep == name {
                return Err(located(
                    SpecError::new(
                        ErrorKind::Cycle,
                        path,
                        format!("service \"{name}\" depends on itself"),
                    ),
                    mark,
                ));
            }
            if !p.services.contains_key(dep) && !vms.contains(dep) {
                let mut e = SpecError::new(
                    ErrorKind::Undefined,
                    path,
                    format!("service \"{name}\" depends on undefined service \"{dep}\""),
                );
                let known = p.services.keys().chain(vms.iter()).map(String::as_str);
                if let Some(h) = suggest(dep, known) {
                    e = e.with_hint(h);
                }
                return Err(located(e, mark));
            }
        }
    }
    Ok(())
}

fn check_cycles(p: &Project, nodes: &ServiceNodes<'_>) -> Result<()> {
    // Depth-first, with an explicit stack: a chain of thousands of services must not
    // take the thread's stack with it.
    let deps = |name: &str| p.services.get(name).map(|s| s.depends_on.keys());
    let mut done: HashSet<&str> = HashSet::new();
    for start in p.services.keys() {
        if done.contains(start.as_str()) {
            continue;
        }
        let mut path: Vec<&str> = vec![start];
        let mut on_path: HashSet<&str> = HashSet::from([start.as_str()]);
        let mut stack = vec![deps(start)];
        while let Some(top) = stack.last_mut() {
            let next = top.as_mut().and_then(Iterator::next);
            let Some(dep) = next else {
                stack.pop();
                if let Some(name) = path.pop() {
                    on_path.remove(name);
                    done.insert(name);
                }
                continue;
            };
            if on_path.contains(dep.as_str()) {
                let at = path.iter().position(|s| *s == dep.as_str()).unwrap_or(0);
                let mut cycle: Vec<&str> = path.get(at..).unwrap_or_default().to_vec();
                cycle.push(dep);
                let first = cycle.first().copied().unwrap_or_default();
                let second = cycle.get(1).copied().unwrap_or_default();
                return Err(located(
                    SpecError::new(
                        ErrorKind::Cycle,
                        format!("services.{first}.depends_on"),
                        format!("dependency cycle: {}", cycle.join(" -> ")),
                    ),
                    mark_of(nodes, first, "depends_on", second),
                ));
            }
            if !done.contains(dep.as_str()) {
                on_path.insert(dep);
                path.push(dep);
                stack.push(deps(dep));
            }
        }
    }
    Ok(())
}

fn apply_profiles(p: &mut Project, nodes: &ServiceNodes<'_>, settings: &Settings) -> Result<()> {
    let all = settings.profiles.iter().any(|s| s == "*");
    // VMs have no profiles: a service may always depend on one.
    let vms = vm_names(p);
    let mut active: BTreeSet<String> = p
        .services
        .iter()
        .filter(|(_, s)| {
            s.profiles.is_empty() || all || s.profiles.iter().any(|x| settings.profiles.contains(x))
        })
        .map(|(n, _)| n.clone())
        .collect();
    let mut queue: Vec<String> = Vec::new();
    for name in &settings.enable_services {
        if !p.services.contains_key(name) {
            let mut e = SpecError::new(
                ErrorKind::Undefined,
                "",
                format!("no such service: \"{name}\""),
            );
            if let Some(h) = suggest(name, p.services.keys().map(String::as_str)) {
                e = e.with_hint(h);
            }
            return Err(e);
        }
        queue.push(name.clone());
    }
    while let Some(name) = queue.pop() {
        if let Some(s) = p.services.get(&name) {
            queue.extend(
                s.depends_on
                    .keys()
                    .filter(|d| !active.contains(*d))
                    .cloned(),
            );
        }
        active.insert(name);
    }
    for (name, s) in &p.services {
        if !active.contains(name) {
            continue;
        }
        for (dep, d) in &s.depends_on {
            if d.required && !active.contains(dep) && !vms.contains(dep) {
                let profiles = p
                    .services
                    .get(dep)
                    .map(|x| x.profiles.join(", "))
                    .unwrap_or_default();
                return Err(located(
                    SpecError::new(
                        ErrorKind::Invalid,
                        format!("services.{name}.depends_on.{dep}"),
                        format!("service \"{name}\" depends on service \"{dep}\", which is not enabled by the selected profiles"),
                    )
                    .with_hint(format!("enable one of its profiles ({profiles}) or mark the dependency required: false")),
                    mark_of(nodes, name, "depends_on", dep),
                ));
            }
        }
    }
    let services = std::mem::take(&mut p.services);
    for (name, s) in services {
        if active.contains(&name) {
            p.services.insert(name, s);
        } else {
            p.disabled_services.insert(name, s);
        }
    }
    Ok(())
}

fn default_network(p: &mut Project) {
    let mut uses_default = false;
    for s in p
        .services
        .values_mut()
        .chain(p.disabled_services.values_mut())
    {
        if s.networks.is_empty() && s.network_mode.is_none() {
            s.networks.insert("default".into(), Default::default());
        }
    }
    for s in p.services.values() {
        uses_default |= s.networks.contains_key("default");
    }
    if uses_default && !p.networks.contains_key("default") {
        let name = format!("{}_default", p.name);
        p.networks.insert(
            "default".into(),
            Network {
                name,
                ..Default::default()
            },
        );
    }
}

fn check_references(p: &Project, nodes: &ServiceNodes<'_>) -> Result<()> {
    let undefined = |service: &str, key: &str, what: &str, item: &str, known: Vec<&str>| {
        let mut e = SpecError::new(
            ErrorKind::Undefined,
            format!("services.{service}.{key}"),
            format!("service \"{service}\" refers to undefined {what} \"{item}\""),
        );
        e = match suggest(item, known.iter().copied()) {
            Some(h) => e.with_hint(h),
            None => e.with_hint(format!("declare it under the top-level \"{key}:\" key")),
        };
        located(e, mark_of(nodes, service, key, item))
    };
    for (name, s) in &p.services {
        for net in s.networks.keys() {
            if !p.networks.contains_key(net) {
                return Err(undefined(
                    name,
                    "networks",
                    "network",
                    net,
                    p.networks.keys().map(String::as_str).collect(),
                ));
            }
        }
        for m in &s.volumes {
            if m.kind != "volume" {
                continue;
            }
            if let Some(src) = &m.source {
                if !p.volumes.contains_key(src) {
                    return Err(undefined(
                        name,
                        "volumes",
                        "volume",
                        src,
                        p.volumes.keys().map(String::as_str).collect(),
                    ));
                }
            }
        }
        for r in &s.secrets {
            if !p.secrets.contains_key(&r.source) {
                return Err(undefined(
                    name,
                    "secrets",
                    "secret",
                    &r.source,
                    p.secrets.keys().map(String::as_str).collect(),
                ));
            }
        }
        for r in &s.configs {
            if !p.configs.contains_key(&r.source) {
                return Err(undefined(
                    name,
                    "configs",
                    "config",
                    &r.source,
                    p.configs.keys().map(String::as_str).collect(),
                ));
            }
        }
    }
    Ok(())
}
