//! The inventory: hosts with address, port, user, key, role, tags, vars and groups, typed
//! from the spec's `hosts:` section or read from an Ansible INI or YAML inventory.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use baton_spec::{ErrorKind, Project};
use serde::Serialize;
use serde_json::{Map, Value};

/// One machine baton reaches over SSH.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Host {
    pub id: String,
    pub address: String,
    pub port: u16,
    pub user: String,
    /// Private key file; `None` uses `--identity`, the ssh-agent or ~/.ssh/id_ed25519
    /// (see `ssh::auth_for`).
    pub key: Option<PathBuf>,
    /// `agent:` in `hosts:`: `true` insists on the ssh-agent, `false` never uses it,
    /// `None` uses it when `SSH_AUTH_SOCK` is set and no key is given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<bool>,
    pub role: Option<String>,
    pub tags: BTreeSet<String>,
    pub vars: Map<String, Value>,
    pub groups: BTreeSet<String>,
    /// Another host (by id) to reach this one through.
    pub jump: Option<String>,
}

impl Host {
    fn new(id: &str) -> Host {
        Host {
            id: id.to_string(),
            address: id.to_string(),
            port: 22,
            user: "root".to_string(),
            key: None,
            agent: None,
            role: None,
            tags: BTreeSet::new(),
            vars: Map::new(),
            groups: BTreeSet::new(),
            jump: None,
        }
    }
}

/// Hosts by id, plus the groups they form.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Inventory {
    pub hosts: BTreeMap<String, Host>,
}

impl Inventory {
    /// Group name → member ids (from each host's `groups`).
    pub fn groups(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for h in self.hosts.values() {
            for name in &h.groups {
                g.entry(name.clone()).or_default().insert(h.id.clone());
            }
        }
        g
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error(transparent)]
    Spec(#[from] baton_spec::SpecError),
    #[error("{file}:{line}: {message}")]
    Ini {
        file: String,
        line: usize,
        message: String,
    },
    #[error("{file}: {message}")]
    Yaml { file: String, message: String },
}

const HOST_KEYS: &[&str] = &[
    "address", "port", "user", "key", "agent", "role", "tags", "vars", "groups", "jump",
];

fn did_you_mean(word: &str, known: &[&str]) -> String {
    baton_spec::closest(word, known.iter().copied())
        .map(|k| format!(" (did you mean `{k}`?)"))
        .unwrap_or_default()
}

/// Types the spec's `hosts:` section; relative key paths resolve against the project dir.
pub fn from_project(project: &Project) -> Result<Inventory, InventoryError> {
    let mut inv = Inventory::default();
    let Some(section) = project.baton.get("hosts") else {
        return Ok(inv);
    };
    let err = |path: &str, msg: String| project.error_at(ErrorKind::Invalid, path, msg);
    let Value::Object(hosts) = section else {
        return Err(err("hosts", "must be a mapping of host id to host".into()).into());
    };
    for (id, v) in hosts {
        let p = format!("hosts.{id}");
        if !valid_id(id) {
            return Err(err(
                &p,
                "a host id may only hold letters, digits, `-`, `_` and `.`".into(),
            )
            .into());
        }
        let mut h = Host::new(id);
        let fields = match v {
            Value::Null => Map::new(),
            Value::String(addr) => {
                h.address = addr.clone();
                Map::new()
            }
            Value::Object(m) => m.clone(),
            _ => return Err(err(&p, "must be a mapping (address, port, user, ...)".into()).into()),
        };
        for (k, v) in &fields {
            let kp = format!("{p}.{k}");
            match k.as_str() {
                "address" => {
                    h.address = string(v).ok_or_else(|| err(&kp, "must be a string".into()))?
                }
                "port" => {
                    h.port = v
                        .as_u64()
                        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                        .and_then(|n| u16::try_from(n).ok())
                        .filter(|n| *n > 0)
                        .ok_or_else(|| err(&kp, "must be a port number (1-65535)".into()))?
                }
                "user" => h.user = string(v).ok_or_else(|| err(&kp, "must be a string".into()))?,
                "key" => {
                    let s = string(v)
                        .ok_or_else(|| err(&kp, "must be a path to a private key".into()))?;
                    h.key = Some(project.working_dir.join(s));
                }
                "agent" => {
                    h.agent = Some(v.as_bool().ok_or_else(|| {
                        err(&kp, "must be true (use the ssh-agent) or false".into())
                    })?)
                }
                "role" => {
                    h.role = Some(string(v).ok_or_else(|| err(&kp, "must be a string".into()))?)
                }
                "jump" => {
                    h.jump = Some(string(v).ok_or_else(|| err(&kp, "must be a host id".into()))?)
                }
                "tags" => {
                    h.tags =
                        strings(v).ok_or_else(|| err(&kp, "must be a list of strings".into()))?
                }
                "groups" => {
                    h.groups =
                        strings(v).ok_or_else(|| err(&kp, "must be a list of strings".into()))?
                }
                "vars" => match v {
                    Value::Object(m) => h.vars = m.clone(),
                    Value::Null => {}
                    _ => return Err(err(&kp, "must be a mapping".into()).into()),
                },
                other => {
                    return Err(err(
                        &kp,
                        format!("unknown key `{other}`{}", did_you_mean(other, HOST_KEYS)),
                    )
                    .into())
                }
            }
        }
        if h.address.is_empty() {
            return Err(err(&format!("{p}.address"), "must not be empty".into()).into());
        }
        if h.agent == Some(true) && h.key.is_some() {
            return Err(err(
                &format!("{p}.agent"),
                "`agent: true` and `key` exclude each other: give one".into(),
            )
            .into());
        }
        inv.hosts.insert(id.clone(), h);
    }
    for h in inv.hosts.values() {
        if let Some(j) = &h.jump {
            if !inv.hosts.contains_key(j) || j == &h.id {
                return Err(err(
                    &format!("hosts.{}.jump", h.id),
                    format!("`{j}` is not another host of this inventory"),
                )
                .into());
            }
            if inv.hosts[j].jump.is_some() {
                return Err(err(
                    &format!("hosts.{}.jump", h.id),
                    format!("`{j}` has a jump host itself: one hop only"),
                )
                .into());
            }
        }
    }
    Ok(inv)
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn strings(v: &Value) -> Option<BTreeSet<String>> {
    match v {
        Value::Null => Some(BTreeSet::new()),
        Value::String(s) => Some(BTreeSet::from([s.clone()])),
        Value::Array(a) => a.iter().map(string).collect(),
        _ => None,
    }
}

/// Applies Ansible's connection variables to a host; the rest become vars.
fn ansible_var(h: &mut Host, k: &str, v: Value, base: &Path) {
    let s = string(&v).unwrap_or_default();
    match k {
        "ansible_host" | "ansible_ssh_host" => h.address = s,
        "ansible_port" | "ansible_ssh_port" => {
            if let Ok(p) = s.parse() {
                h.port = p
            }
        }
        "ansible_user" | "ansible_ssh_user" => h.user = s,
        "ansible_ssh_private_key_file" | "ansible_private_key_file" => h.key = Some(base.join(s)),
        "role" => h.role = Some(s),
        _ => {
            h.vars.insert(k.to_string(), v);
        }
    }
}

fn ini_value(raw: &str) -> Value {
    let raw = raw.trim();
    let unq = raw
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .or_else(|| raw.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')));
    match unq {
        Some(s) => Value::String(s.to_string()),
        None => raw
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(raw.to_string())),
    }
}

/// Reads an Ansible INI inventory: `[group]`, `[group:vars]`, `[group:children]`, host
/// lines with `key=value` pairs (`ansible_host`, `ansible_port`, `ansible_user`,
/// `ansible_ssh_private_key_file`; others become vars).
pub fn from_ansible_ini(text: &str, file: &str, base: &Path) -> Result<Inventory, InventoryError> {
    #[derive(PartialEq)]
    enum Sec {
        Hosts,
        Vars,
        Children,
    }
    let mut inv = Inventory::default();
    let mut group = "ungrouped".to_string();
    let mut sec = Sec::Hosts;
    let mut group_vars: BTreeMap<String, Vec<(String, Value)>> = BTreeMap::new();
    let mut children: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let bad = |message: String| InventoryError::Ini {
            file: file.to_string(),
            line: i + 1,
            message,
        };
        if let Some(head) = line.strip_prefix('[') {
            let head = head
                .strip_suffix(']')
                .ok_or_else(|| bad("a section header must end with `]`".into()))?;
            let (g, kind) = head.split_once(':').unwrap_or((head, ""));
            group = g.to_string();
            sec = match kind {
                "" => Sec::Hosts,
                "vars" => Sec::Vars,
                "children" => Sec::Children,
                other => return Err(bad(format!("unknown section kind `:{other}`"))),
            };
            continue;
        }
        let words = shell_words::split(line).map_err(|e| bad(format!("cannot read line: {e}")))?;
        match sec {
            Sec::Vars => {
                let (k, v) = line
                    .split_once('=')
                    .ok_or_else(|| bad("expected `key=value`".into()))?;
                group_vars
                    .entry(group.clone())
                    .or_default()
                    .push((k.trim().to_string(), ini_value(v)));
            }
            Sec::Children => children
                .entry(group.clone())
                .or_default()
                .push(line.to_string()),
            Sec::Hosts => {
                let Some((id, rest)) = words.split_first() else {
                    continue;
                };
                if !valid_id(id) {
                    return Err(bad(format!(
                        "`{id}` is not a valid host id (ranges are not supported)"
                    )));
                }
                let h = inv.hosts.entry(id.clone()).or_insert_with(|| Host::new(id));
                if group != "ungrouped" && group != "all" {
                    h.groups.insert(group.clone());
                }
                for w in rest {
                    let (k, v) = w
                        .split_once('=')
                        .ok_or_else(|| bad(format!("expected `key=value`, found `{w}`")))?;
                    ansible_var(h, k, ini_value(v), base);
                }
            }
        }
    }
    // Children: members of a child group belong to the parent too (one level per pass).
    for _ in 0..8 {
        let groups = inv.groups();
        for (parent, kids) in &children {
            for kid in kids {
                for id in groups.get(kid).into_iter().flatten() {
                    if let Some(h) = inv.hosts.get_mut(id) {
                        h.groups.insert(parent.clone());
                    }
                }
            }
        }
    }
    apply_group_vars(&mut inv, &group_vars, base);
    Ok(inv)
}

fn apply_group_vars(
    inv: &mut Inventory,
    group_vars: &BTreeMap<String, Vec<(String, Value)>>,
    base: &Path,
) {
    for h in inv.hosts.values_mut() {
        for (g, vars) in group_vars {
            if g == "all" || h.groups.contains(g) {
                for (k, v) in vars {
                    // Host-level values win over group values.
                    if !h.vars.contains_key(k) {
                        ansible_var(h, k, v.clone(), base);
                    }
                }
            }
        }
    }
}

/// Reads an Ansible YAML inventory (`all: {hosts, vars, children}` nested).
pub fn from_ansible_yaml(text: &str, file: &str, base: &Path) -> Result<Inventory, InventoryError> {
    let bad = |message: String| InventoryError::Yaml {
        file: file.to_string(),
        message,
    };
    let root: Value = serde_yaml::from_str(text).map_err(|e| bad(e.to_string()))?;
    let Value::Object(top) = root else {
        return Err(bad("the inventory must be a mapping of groups".into()));
    };
    let mut inv = Inventory::default();
    let mut group_vars = BTreeMap::new();
    for (g, body) in &top {
        walk_yaml_group(g, body, &[], &mut inv, &mut group_vars, base).map_err(bad)?;
    }
    apply_group_vars(&mut inv, &group_vars, base);
    Ok(inv)
}

fn walk_yaml_group(
    name: &str,
    body: &Value,
    parents: &[String],
    inv: &mut Inventory,
    group_vars: &mut BTreeMap<String, Vec<(String, Value)>>,
    base: &Path,
) -> Result<(), String> {
    if parents.len() > 16 {
        return Err(format!("group `{name}`: children nested too deep"));
    }
    let mut lineage: Vec<String> = parents.to_vec();
    if name != "all" && name != "ungrouped" {
        lineage.push(name.to_string());
    }
    let Value::Object(body) = body else {
        return if body.is_null() {
            Ok(())
        } else {
            Err(format!("group `{name}` must be a mapping"))
        };
    };
    for (k, v) in body {
        match (k.as_str(), v) {
            ("hosts", Value::Object(hosts)) => {
                for (id, hv) in hosts {
                    if !valid_id(id) {
                        return Err(format!("`{id}` is not a valid host id"));
                    }
                    let h = inv.hosts.entry(id.clone()).or_insert_with(|| Host::new(id));
                    h.groups.extend(lineage.iter().cloned());
                    if let Value::Object(vars) = hv {
                        for (k, v) in vars {
                            ansible_var(h, k, v.clone(), base);
                        }
                    }
                }
            }
            ("vars", Value::Object(vars)) => {
                let e = group_vars.entry(name.to_string()).or_default();
                e.extend(vars.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            ("children", Value::Object(kids)) => {
                for (kid, kb) in kids {
                    walk_yaml_group(kid, kb, &lineage, inv, group_vars, base)?;
                }
            }
            (_, Value::Null) => {}
            (other, _) => return Err(format!("group `{name}`: unexpected `{other}`")),
        }
    }
    Ok(())
}

/// Reads an inventory file, INI or YAML by its content (YAML when it parses as a mapping).
pub fn from_file(path: &Path) -> Result<Inventory, InventoryError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| InventoryError::Yaml {
        file: file.clone(),
        message: format!("cannot read: {e}"),
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let looks_ini = text.lines().map(str::trim).any(|l| l.starts_with('['));
    let yaml_ext = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yml" | "yaml")
    );
    if yaml_ext || !looks_ini {
        from_ansible_yaml(&text, &file, base)
    } else {
        from_ansible_ini(&text, &file, base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_inventory_reads_groups_children_and_vars() {
        let text = "\
web1 ansible_host=10.0.0.1 ansible_port=2222 ansible_user=deploy
[web]
web1
web2 ansible_host=10.0.0.2 color=blue
[db]
db1 ansible_host=10.0.0.3
[prod:children]
web
db
[web:vars]
color=red
http_port=80
";
        let inv = from_ansible_ini(text, "inv", Path::new("/x")).unwrap();
        let w1 = &inv.hosts["web1"];
        assert_eq!(
            (w1.address.as_str(), w1.port, w1.user.as_str()),
            ("10.0.0.1", 2222, "deploy")
        );
        assert_eq!(w1.vars["color"], "red");
        assert_eq!(w1.vars["http_port"], 80);
        assert_eq!(inv.hosts["web2"].vars["color"], "blue");
        let g = inv.groups();
        assert_eq!(g["prod"].len(), 3);
        assert_eq!(g["web"].len(), 2);
        assert!(from_ansible_ini("[web\n", "inv", Path::new("/")).is_err());
    }

    #[test]
    fn yaml_inventory_reads_nested_groups() {
        let text = "
all:
  vars: {env: prod}
  hosts:
    a: {ansible_host: 1.1.1.1}
  children:
    web:
      hosts:
        b: {ansible_port: 2200}
      children:
        edge:
          hosts: {c: null}
";
        let inv = from_ansible_yaml(text, "inv", Path::new("/")).unwrap();
        assert_eq!(inv.hosts.len(), 3);
        assert_eq!(inv.hosts["b"].port, 2200);
        assert_eq!(inv.hosts["a"].vars["env"], "prod");
        assert!(inv.hosts["c"].groups.contains("web") && inv.hosts["c"].groups.contains("edge"));
        assert!(from_ansible_yaml("- a", "inv", Path::new("/")).is_err());
    }

    fn load(yaml: &str) -> Result<Inventory, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        std::fs::write(dir.path().join("baton.yaml"), yaml).map_err(|e| e.to_string())?;
        let p = baton_spec::load(&baton_spec::LoadOptions {
            working_dir: dir.path().to_path_buf(),
            ..Default::default()
        })
        .map_err(|e| e.to_string())?;
        from_project(&p).map_err(|e| e.to_string())
    }

    #[test]
    fn a_jump_host_is_another_host_with_no_jump_of_its_own() {
        let inv = load(
            "hosts:\n  bastion: {address: 1.2.3.4}\n  web3: {address: 10.0.0.5, jump: bastion}\n",
        )
        .unwrap();
        assert_eq!(inv.hosts["web3"].jump.as_deref(), Some("bastion"));
        let e = load("hosts:\n  a: {}\n  b:\n    jump: nope\n").unwrap_err();
        assert!(
            e.contains("hosts.b.jump: `nope` is not another host"),
            "{e}"
        );
        let e = load("hosts:\n  a: {}\n  b: {jump: a}\n  c:\n    jump: b\n").unwrap_err();
        assert!(
            e.contains("hosts.c.jump: `b` has a jump host itself: one hop only"),
            "{e}"
        );
    }

    #[test]
    fn agent_is_a_boolean_exclusive_with_key() {
        let inv = load(
            "hosts:\n  a: {agent: true}\n  b: {agent: false, key: k}\n  c: {address: 10.0.0.3}\n",
        )
        .unwrap();
        assert_eq!(inv.hosts["a"].agent, Some(true));
        assert_eq!(inv.hosts["b"].agent, Some(false));
        assert!(inv.hosts["b"]
            .key
            .as_ref()
            .is_some_and(|k| k.ends_with("k")));
        assert_eq!((inv.hosts["c"].agent, &inv.hosts["c"].key), (None, &None));
        let e = load("hosts:\n  a:\n    agent: yes please\n").unwrap_err();
        assert!(
            e.contains(":3:") && e.contains("hosts.a.agent: must be true"),
            "{e}"
        );
        let e = load("hosts:\n  a:\n    key: k\n    agent: true\n").unwrap_err();
        assert!(
            e.contains("hosts.a.agent: `agent: true` and `key` exclude each other"),
            "{e}"
        );
        let e = load("hosts:\n  a:\n    agnet: true\n").unwrap_err();
        assert!(e.contains("did you mean `agent`"), "{e}");
    }
}
