//! From the merged node tree to the model: every key checked against the specification,
//! every value type-checked with its position, every short syntax expanded.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use crate::error::{suggest, ErrorKind, SpecError};
use crate::limits::{Budget, MAX_SERVICES};
use crate::load::{read_env_file, Env};
use crate::model::*;
use crate::schema;
use crate::validate;
use crate::yaml::{Kind, Mark, Node};

/// What the loader decided before normalising.
pub struct Settings {
    pub project_name: Option<String>,
    pub project_dir: PathBuf,
    pub files: Vec<PathBuf>,
    pub profiles: Vec<String>,
    pub enable_services: Vec<String>,
}

type Result<T> = std::result::Result<T, SpecError>;

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Records where `node` (at dotted `path`) and everything under it was written. The
/// paths are text the project keeps, so they are charged to the budget.
fn record_marks(
    path: &str,
    key_mark: &Mark,
    node: &Node,
    out: &mut BTreeMap<String, crate::model::Location>,
    budget: &Budget,
) -> Result<()> {
    budget
        .text(path.len())
        .map_err(|m| SpecError::at(ErrorKind::Limit, key_mark, "", m))?;
    let loc = |m: &Mark| crate::model::Location {
        file: m.source.display.clone(),
        line: u32::try_from(m.line).unwrap_or(u32::MAX),
        column: u32::try_from(m.column).unwrap_or(u32::MAX),
    };
    // A scalar or a nested block is best pointed at by its key; the value's own mark
    // only when it has no key (sequence items).
    out.insert(path.to_string(), loc(key_mark));
    match &node.kind {
        Kind::Map(entries) => {
            for e in entries {
                let p = format!("{path}.{}", e.key);
                record_marks(&p, &e.key_mark, &e.value, out, budget)?;
            }
        }
        Kind::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                // A block mapping's own mark is where the parser saw its first ":";
                // its first key is where a reader looks.
                let mark = match &item.kind {
                    Kind::Map(entries) if !entries.is_empty() => &entries[0].key_mark,
                    _ => &item.mark,
                };
                record_marks(&format!("{path}[{i}]"), mark, item, out, budget)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn type_error(node: &Node, path: &str, expected: &str) -> SpecError {
    let found = match &node.kind {
        Kind::Scalar { text, .. } => format!("\"{text}\""),
        _ => node.type_name().to_string(),
    };
    SpecError::at(
        ErrorKind::Type,
        &node.mark,
        path,
        format!("expected {expected}, found {found}"),
    )
}

/// Reject keys not in `allowed` (and not `x-*` when `allow_x`), with a did-you-mean hint.
pub(crate) fn check_keys(node: &Node, allowed: &[&str], path: &str, allow_x: bool) -> Result<()> {
    let Some(entries) = node.as_map() else {
        return Err(type_error(node, path, "a mapping"));
    };
    for e in entries {
        if allowed.contains(&e.key.as_str()) || (allow_x && e.key.starts_with("x-")) {
            continue;
        }
        let mut err = SpecError::at(
            ErrorKind::UnknownKey,
            &e.key_mark,
            child(path, &e.key),
            format!("unknown key \"{}\"", e.key),
        );
        if let Some(h) = suggest(&e.key, allowed.iter().copied()) {
            err = err.with_hint(h);
        }
        return Err(err);
    }
    Ok(())
}

pub(crate) fn string(node: &Node, path: &str) -> Result<String> {
    match &node.kind {
        Kind::Scalar { text, .. } => Ok(text.clone()),
        _ => Err(type_error(node, path, "a string")),
    }
}

fn opt_string(node: &Node, key: &str, path: &str) -> Result<Option<String>> {
    match node.get(key) {
        None => Ok(None),
        Some(n) if n.is_null() => Ok(None),
        Some(n) => string(n, &child(path, key)).map(Some),
    }
}

pub(crate) fn string_or_list(node: &Node, path: &str) -> Result<Vec<String>> {
    match &node.kind {
        Kind::Scalar { text, .. } => Ok(vec![text.clone()]),
        Kind::Null => Ok(Vec::new()),
        Kind::Seq(_) => list_of_strings(node, path),
        _ => Err(type_error(node, path, "a string or a list of strings")),
    }
}

fn list_of_strings(node: &Node, path: &str) -> Result<Vec<String>> {
    match &node.kind {
        Kind::Seq(items) => items
            .iter()
            .enumerate()
            .map(|(i, n)| string(n, &format!("{path}[{i}]")))
            .collect(),
        Kind::Null => Ok(Vec::new()),
        _ => Err(type_error(node, path, "a list of strings")),
    }
}

fn boolean(node: &Node, path: &str) -> Result<bool> {
    match node.scalar().map(str::to_ascii_lowercase).as_deref() {
        Some("true" | "yes" | "on" | "y") => Ok(true),
        Some("false" | "no" | "off" | "n") => Ok(false),
        _ => Err(type_error(node, path, "a boolean")),
    }
}

fn opt_bool(node: &Node, key: &str, path: &str) -> Result<Option<bool>> {
    match node.get(key) {
        None => Ok(None),
        Some(n) if n.is_null() => Ok(None),
        Some(n) => boolean(n, &child(path, key)).map(Some),
    }
}

fn integer<T: TryFrom<i64>>(node: &Node, path: &str) -> Result<T> {
    node.scalar()
        .and_then(|s| parse_int(s.trim()))
        .and_then(|i| T::try_from(i).ok())
        .ok_or_else(|| type_error(node, path, "an integer"))
}

fn parse_int(s: &str) -> Option<i64> {
    if let Some(o) = s.strip_prefix("0o") {
        return i64::from_str_radix(o, 8).ok();
    }
    if let Some(h) = s.strip_prefix("0x") {
        return i64::from_str_radix(h, 16).ok();
    }
    s.parse().ok()
}

fn opt_int<T: TryFrom<i64>>(node: &Node, key: &str, path: &str) -> Result<Option<T>> {
    match node.get(key) {
        None => Ok(None),
        Some(n) if n.is_null() => Ok(None),
        Some(n) => integer(n, &child(path, key)).map(Some),
    }
}

fn float(node: &Node, path: &str) -> Result<f64> {
    node.scalar()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|f| f.is_finite())
        .ok_or_else(|| type_error(node, path, "a number"))
}

fn opt_float(node: &Node, key: &str, path: &str) -> Result<Option<f64>> {
    match node.get(key) {
        None => Ok(None),
        Some(n) if n.is_null() => Ok(None),
        Some(n) => float(n, &child(path, key)).map(Some),
    }
}

fn opt_duration(node: &Node, key: &str, path: &str) -> Result<Option<Duration>> {
    match node.get(key) {
        None => Ok(None),
        Some(n) if n.is_null() => Ok(None),
        Some(n) => {
            let p = child(path, key);
            let s = string(n, &p)?;
            parse_duration(&s)
                .map(Some)
                .map_err(|m| SpecError::at(ErrorKind::Invalid, &n.mark, p, m))
        }
    }
}

fn opt_bytes(node: &Node, key: &str, path: &str) -> Result<Option<u64>> {
    match node.get(key) {
        None => Ok(None),
        Some(n) if n.is_null() => Ok(None),
        Some(n) => {
            let p = child(path, key);
            let s = string(n, &p)?;
            parse_bytes(&s)
                .map(Some)
                .map_err(|m| SpecError::at(ErrorKind::Invalid, &n.mark, p, m))
        }
    }
}

/// `1m30s`, `500ms`, `1.5h`, `10` (seconds) into milliseconds.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let bad = || format!("invalid duration \"{s}\"");
    let t = s.trim();
    if t.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = t.parse::<u64>() {
        return secs.checked_mul(1000).map(Duration).ok_or_else(bad);
    }
    let mut total = 0f64;
    let mut rest = t;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_len);
        let value: f64 = num.parse().map_err(|_| bad())?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let ms = match unit {
            "ns" => 1e-6,
            "us" | "µs" => 1e-3,
            "ms" => 1.0,
            "s" => 1000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            "d" => 86_400_000.0,
            _ => return Err(bad()),
        };
        total += value * ms;
        rest = next;
    }
    if !total.is_finite() || total > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(Duration(total.round() as u64))
}

/// `512m`, `1gb`, `1024`, `1.5k` into bytes (binary multiples, as Docker does).
pub fn parse_bytes(s: &str) -> std::result::Result<u64, String> {
    let bad = || format!("invalid size \"{s}\"");
    let t = s.trim().to_ascii_lowercase();
    let num_len = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(num_len);
    let value: f64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    let bytes = value * mult as f64;
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes.round() as u64)
}

/// `KEY=VAL` list or mapping; null values stay `None`.
fn list_or_dict(node: &Node, path: &str) -> Result<BTreeMap<String, Option<String>>> {
    let mut out = BTreeMap::new();
    match &node.kind {
        Kind::Null => {}
        Kind::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                let s = string(item, &format!("{path}[{i}]"))?;
                match s.split_once('=') {
                    Some((k, v)) => out.insert(k.to_string(), Some(v.to_string())),
                    None => out.insert(s, None),
                };
            }
        }
        Kind::Map(entries) => {
            for e in entries {
                let v = match &e.value.kind {
                    Kind::Null => None,
                    Kind::Scalar { text, .. } => Some(text.clone()),
                    _ => {
                        return Err(type_error(
                            &e.value,
                            &child(path, &e.key),
                            "a string, a number or a boolean",
                        ))
                    }
                };
                out.insert(e.key.clone(), v);
            }
        }
        _ => Err(type_error(node, path, "a list or a mapping"))?,
    }
    Ok(out)
}

fn string_map(node: &Node, path: &str) -> Result<BTreeMap<String, String>> {
    Ok(list_or_dict(node, path)?
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect())
}

fn opt_string_map(node: &Node, key: &str, path: &str) -> Result<BTreeMap<String, String>> {
    match node.get(key) {
        None => Ok(BTreeMap::new()),
        Some(n) => string_map(n, &child(path, key)),
    }
}

fn resolve_path(node: &Node, raw: &str, env: &Env) -> String {
    if let Some(rest) = raw
        .strip_prefix("~/")
        .or(if raw == "~" { Some("") } else { None })
    {
        if let Some(home) = env.get("HOME") {
            return Path::new(&home).join(rest).display().to_string();
        }
    }
    if is_windows_abs(raw) || raw.contains("://") || raw.starts_with("git@") {
        return raw.to_string();
    }
    let p = Path::new(raw);
    if p.is_absolute() {
        return raw.to_string();
    }
    clean(&node.mark.source.base_dir.join(p))
        .display()
        .to_string()
}

/// Lexically drop `.` and `..` components.
fn clean(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

fn is_windows_abs(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && (b[2] == b'\\' || b[2] == b'/')
}

fn extensions(node: &Node) -> BTreeMap<String, Json> {
    node.as_map()
        .map(|m| {
            m.iter()
                .filter(|e| e.key.starts_with("x-") && e.key != "x-baton")
                .map(|e| (e.key.clone(), e.value.to_json()))
                .collect()
        })
        .unwrap_or_default()
}

/// The whole project.
pub fn project(root: &Node, settings: &Settings, env: &Env, budget: &Budget) -> Result<Project> {
    let empty = Node::new(Kind::Map(Vec::new()), root.mark.clone());
    let root = if root.is_null() { &empty } else { root };
    let allowed: Vec<&str> = schema::TOP
        .iter()
        .chain(schema::BATON_TOP)
        .copied()
        .collect();
    check_keys(root, &allowed, "", true)?;

    let raw_name = match settings.project_name.clone() {
        Some(n) => n,
        None => match opt_string(root, "name", "")? {
            Some(n) if !n.is_empty() => n,
            _ => settings
                .project_dir
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        },
    };
    let name = normalize_project_name(&raw_name);
    if name.is_empty() {
        let mut e = SpecError::new(
            ErrorKind::Invalid,
            "name",
            format!("project name \"{raw_name}\" has no usable characters"),
        )
        .with_hint("use lowercase letters, digits, \"_\" and \"-\", or pass -p");
        if let Some(n) = root.get("name") {
            e = e.with_mark(&n.mark);
        }
        return Err(e);
    }

    let mut baton: BTreeMap<String, Json> = BTreeMap::new();
    let mut baton_marks = BTreeMap::new();
    if let Some(xb) = root.get("x-baton") {
        match &xb.kind {
            Kind::Map(entries) => {
                for e in entries {
                    baton.insert(e.key.clone(), e.value.to_json());
                    record_marks(&e.key, &e.key_mark, &e.value, &mut baton_marks, budget)?;
                }
            }
            Kind::Null => {}
            _ => return Err(type_error(xb, "x-baton", "a mapping")),
        }
    }
    for key in schema::BATON_TOP {
        if let Some(e) = root.entry(key) {
            record_marks(key, &e.key_mark, &e.value, &mut baton_marks, budget)?;
            let v = e.value.to_json();
            match (baton.get_mut(*key), v) {
                (Some(Json::Object(existing)), Json::Object(more)) => existing.extend(more),
                (_, v) => {
                    baton.insert(key.to_string(), v);
                }
            }
        }
    }

    let mut networks = BTreeMap::new();
    if let Some(n) = root.get("networks") {
        for e in map_entries(n, "networks")? {
            let p = format!("networks.{}", e.key);
            networks.insert(e.key.clone(), network(&e.value, &e.key, &name, &p)?);
        }
    }
    let mut volumes = BTreeMap::new();
    if let Some(n) = root.get("volumes") {
        for e in map_entries(n, "volumes")? {
            let p = format!("volumes.{}", e.key);
            volumes.insert(e.key.clone(), volume(&e.value, &e.key, &name, &p)?);
        }
    }
    let mut configs = BTreeMap::new();
    if let Some(n) = root.get("configs") {
        for e in map_entries(n, "configs")? {
            let p = format!("configs.{}", e.key);
            configs.insert(
                e.key.clone(),
                file_object(&e.value, schema::CONFIG, &p, env)?,
            );
        }
    }
    let mut secrets = BTreeMap::new();
    if let Some(n) = root.get("secrets") {
        for e in map_entries(n, "secrets")? {
            let p = format!("secrets.{}", e.key);
            secrets.insert(
                e.key.clone(),
                file_object(&e.value, schema::SECRET, &p, env)?,
            );
        }
    }
    let mut models = BTreeMap::new();
    if let Some(n) = root.get("models") {
        for e in map_entries(n, "models")? {
            models.insert(e.key.clone(), e.value.to_json());
        }
    }

    let mut services = BTreeMap::new();
    let mut marks = BTreeMap::new();
    let mut env_files = EnvFiles::new();
    if let Some(n) = root.get("services") {
        let entries = map_entries(n, "services")?;
        if let Some(e) = entries.get(MAX_SERVICES) {
            return Err(SpecError::at(
                ErrorKind::Limit,
                &e.key_mark,
                format!("services.{}", e.key),
                format!("more than {MAX_SERVICES} services"),
            ));
        }
        for e in entries {
            let p = format!("services.{}", e.key);
            services.insert(
                e.key.clone(),
                service(&e.value, &p, env, budget, &mut env_files)?,
            );
            // The engine reads a service's `x-baton` and `deploy` settings after this.
            for key in ["x-baton", "deploy"] {
                if let Some(section) = e.value.entry(key) {
                    let path = format!("{p}.{key}");
                    record_marks(
                        &path,
                        &section.key_mark,
                        &section.value,
                        &mut baton_marks,
                        budget,
                    )?;
                }
            }
            marks.insert(e.key.clone(), (e.key_mark.clone(), &e.value));
        }
    }

    let mut project = Project {
        name,
        working_dir: settings.project_dir.clone(),
        files: settings.files.clone(),
        services,
        disabled_services: BTreeMap::new(),
        networks,
        volumes,
        configs,
        secrets,
        models,
        baton,
        extensions: extensions(root),
        baton_marks,
    };
    validate::project(&mut project, &marks, settings)?;
    if project.services.is_empty()
        && project.disabled_services.is_empty()
        // `targets:` says where a project runs, not what: alone it defines nothing.
        && project.baton.keys().all(|k| k == "targets")
    {
        return Err(SpecError::new(
            ErrorKind::Invalid,
            "",
            "the project defines nothing: no services and no baton section",
        )
        .with_file(root.mark.source.display.clone())
        .with_hint(format!(
            "define \"services:\" or one of {}",
            schema::BATON_TOP
                .iter()
                .filter(|k| **k != "targets")
                .map(|k| format!("\"{k}:\""))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(project)
}

/// Lowercase, keep `[a-z0-9_-]`, and start with a letter or digit.
pub fn normalize_project_name(raw: &str) -> String {
    let s: String = raw
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')
        .collect();
    s.trim_start_matches(['_', '-']).to_string()
}

fn map_entries<'a>(node: &'a Node, path: &str) -> Result<&'a [crate::yaml::Entry]> {
    match &node.kind {
        Kind::Map(m) => Ok(m),
        Kind::Null => Ok(&[]),
        _ => Err(type_error(node, path, "a mapping")),
    }
}

fn others(node: &Node, known: &[&str]) -> BTreeMap<String, Json> {
    node.as_map()
        .map(|m| {
            m.iter()
                .filter(|e| !known.contains(&e.key.as_str()))
                .map(|e| (e.key.clone(), e.value.to_json()))
                .collect()
        })
        .unwrap_or_default()
}

fn external(node: &Node, path: &str) -> Result<(bool, Option<String>)> {
    match node.get("external") {
        None => Ok((false, None)),
        Some(n) => match &n.kind {
            Kind::Map(_) => Ok((true, opt_string(n, "name", &child(path, "external"))?)),
            Kind::Null => Ok((false, None)),
            _ => Ok((boolean(n, &child(path, "external"))?, None)),
        },
    }
}

fn network(node: &Node, key: &str, project: &str, path: &str) -> Result<Network> {
    if node.is_null() {
        return Ok(Network {
            name: format!("{project}_{key}"),
            ..Default::default()
        });
    }
    check_keys(node, schema::NETWORK, path, true)?;
    let (ext, ext_name) = external(node, path)?;
    let explicit = opt_string(node, "name", path)?.or(ext_name);
    let name = match (explicit, ext) {
        (Some(n), _) => n,
        (None, true) => key.to_string(),
        (None, false) => format!("{project}_{key}"),
    };
    let ipam = match node.get("ipam") {
        None => None,
        Some(n) => {
            let p = child(path, "ipam");
            check_keys(n, schema::IPAM, &p, true)?;
            let mut config = Vec::new();
            if let Some(c) = n.get("config") {
                let Kind::Seq(items) = &c.kind else {
                    return Err(type_error(c, &child(&p, "config"), "a list"));
                };
                for (i, item) in items.iter().enumerate() {
                    let ip = format!("{p}.config[{i}]");
                    check_keys(item, schema::IPAM_POOL, &ip, true)?;
                    config.push(IpamPool {
                        subnet: opt_string(item, "subnet", &ip)?,
                        ip_range: opt_string(item, "ip_range", &ip)?,
                        gateway: opt_string(item, "gateway", &ip)?,
                        aux_addresses: opt_string_map(item, "aux_addresses", &ip)?,
                    });
                }
            }
            Some(Ipam {
                driver: opt_string(n, "driver", &p)?,
                config,
                options: opt_string_map(n, "options", &p)?,
            })
        }
    };
    Ok(Network {
        name,
        driver: opt_string(node, "driver", path)?,
        driver_opts: opt_string_map(node, "driver_opts", path)?,
        external: ext,
        internal: opt_bool(node, "internal", path)?.unwrap_or(false),
        attachable: opt_bool(node, "attachable", path)?.unwrap_or(false),
        enable_ipv6: opt_bool(node, "enable_ipv6", path)?.unwrap_or(false),
        ipam,
        labels: opt_string_map(node, "labels", path)?,
        other: others(
            node,
            &[
                "name",
                "driver",
                "driver_opts",
                "external",
                "internal",
                "attachable",
                "enable_ipv6",
                "ipam",
                "labels",
            ],
        ),
    })
}

fn volume(node: &Node, key: &str, project: &str, path: &str) -> Result<Volume> {
    if node.is_null() {
        return Ok(Volume {
            name: format!("{project}_{key}"),
            ..Default::default()
        });
    }
    check_keys(node, schema::VOLUME, path, true)?;
    let (ext, ext_name) = external(node, path)?;
    let explicit = opt_string(node, "name", path)?.or(ext_name);
    let name = match (explicit, ext) {
        (Some(n), _) => n,
        (None, true) => key.to_string(),
        (None, false) => format!("{project}_{key}"),
    };
    Ok(Volume {
        name,
        driver: opt_string(node, "driver", path)?,
        driver_opts: opt_string_map(node, "driver_opts", path)?,
        external: ext,
        labels: opt_string_map(node, "labels", path)?,
        other: others(
            node,
            &["name", "driver", "driver_opts", "external", "labels"],
        ),
    })
}

fn file_object(node: &Node, allowed: &[&str], path: &str, env: &Env) -> Result<FileObject> {
    if node.is_null() {
        return Ok(FileObject::default());
    }
    check_keys(node, allowed, path, true)?;
    let (ext, ext_name) = external(node, path)?;
    let file = match node.get("file") {
        None => None,
        Some(n) => Some(PathBuf::from(resolve_path(
            n,
            &string(n, &child(path, "file"))?,
            env,
        ))),
    };
    let obj = FileObject {
        name: opt_string(node, "name", path)?.or(ext_name),
        file,
        environment: opt_string(node, "environment", path)?,
        content: opt_string(node, "content", path)?,
        external: ext,
        labels: opt_string_map(node, "labels", path)?,
        other: others(
            node,
            &[
                "name",
                "file",
                "environment",
                "content",
                "external",
                "labels",
            ],
        ),
    };
    let sources = [
        obj.file.is_some(),
        obj.environment.is_some(),
        obj.content.is_some(),
        obj.external,
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if sources == 0 {
        return Err(SpecError::at(
            ErrorKind::Invalid,
            &node.mark,
            path,
            "needs one of \"file\", \"environment\", \"content\" or \"external\"",
        ));
    }
    Ok(obj)
}

const SERVICE_HANDLED: &[&str] = &[
    "image",
    "build",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "ports",
    "expose",
    "volumes",
    "tmpfs",
    "networks",
    "network_mode",
    "depends_on",
    "healthcheck",
    "restart",
    "deploy",
    "scale",
    "labels",
    "container_name",
    "working_dir",
    "user",
    "hostname",
    "domainname",
    "stop_grace_period",
    "stop_signal",
    "init",
    "cap_add",
    "cap_drop",
    "ulimits",
    "extra_hosts",
    "logging",
    "profiles",
    "configs",
    "secrets",
    "privileged",
    "read_only",
    "tty",
    "stdin_open",
    "pull_policy",
    "dns",
    "dns_search",
    "sysctls",
    "platform",
    "extends",
];

fn command(node: &Node, path: &str) -> Result<Option<Vec<String>>> {
    match &node.kind {
        Kind::Null => Ok(None),
        Kind::Scalar { text, .. } => shell_words::split(text).map(Some).map_err(|e| {
            SpecError::at(
                ErrorKind::Invalid,
                &node.mark,
                path,
                format!("cannot split command \"{text}\": {e}"),
            )
        }),
        Kind::Seq(_) => list_of_strings(node, path).map(Some),
        Kind::Map(_) => Err(type_error(node, path, "a string or a list of strings")),
    }
}

/// Env files already read for this project's services, by path: services that share one
/// read it once.
type EnvFiles = HashMap<PathBuf, Vec<(String, Option<String>)>>;

fn service(
    node: &Node,
    path: &str,
    env: &Env,
    budget: &Budget,
    env_files: &mut EnvFiles,
) -> Result<Service> {
    if node.is_null() {
        return Err(SpecError::at(
            ErrorKind::Invalid,
            &node.mark,
            path,
            "service has neither an image nor a build context",
        ));
    }
    check_keys(node, schema::SERVICE, path, true)?;
    let mut s = Service {
        image: opt_string(node, "image", path)?,
        ..Default::default()
    };
    if let Some(b) = node.get("build") {
        s.build = Some(build(b, &child(path, "build"), env)?);
    }
    if s.image.is_none() && s.build.is_none() {
        let start = node
            .as_map()
            .and_then(|m| m.first())
            .map(|e| &e.key_mark)
            .unwrap_or(&node.mark);
        return Err(SpecError::at(
            ErrorKind::Invalid,
            start,
            path,
            "service has neither an image nor a build context",
        )
        .with_hint("add \"image:\" or \"build:\""));
    }
    if let Some(n) = node.get("command") {
        s.command = command(n, &child(path, "command"))?;
    }
    if let Some(n) = node.get("entrypoint") {
        s.entrypoint = command(n, &child(path, "entrypoint"))?;
    }
    // env_file first, environment on top.
    if let Some(n) = node.get("env_file") {
        let p = child(path, "env_file");
        let items: Vec<&Node> = match &n.kind {
            Kind::Seq(items) => items.iter().collect(),
            _ => vec![n],
        };
        for (i, item) in items.into_iter().enumerate() {
            let ip = if matches!(n.kind, Kind::Seq(_)) {
                format!("{p}[{i}]")
            } else {
                p.clone()
            };
            let (file, required) = match &item.kind {
                Kind::Scalar { text, .. } => (text.clone(), true),
                Kind::Map(_) => {
                    check_keys(item, schema::ENV_FILE, &ip, false)?;
                    let Some(pn) = item.get("path") else {
                        return Err(SpecError::at(
                            ErrorKind::Invalid,
                            &item.mark,
                            &ip,
                            "missing \"path\"",
                        ));
                    };
                    (
                        string(pn, &child(&ip, "path"))?,
                        opt_bool(item, "required", &ip)?.unwrap_or(true),
                    )
                }
                _ => return Err(type_error(item, &ip, "a string or a mapping")),
            };
            let full = PathBuf::from(resolve_path(item, &file, env));
            // Only a missing file is skipped; anything else there is read, and a
            // directory or device refused by name.
            if !full.exists() {
                if required {
                    return Err(SpecError::at(
                        ErrorKind::Io,
                        &item.mark,
                        &ip,
                        format!("env file {} not found", full.display()),
                    ));
                }
                continue;
            }
            let entries = match env_files.entry(full) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => {
                    let entries = read_env_file(e.key(), Path::new(""), &|k| env.get(k), budget)?;
                    e.insert(entries)
                }
            };
            for (k, v) in entries.iter() {
                let v = v.clone().or_else(|| env.get(k));
                // Each service gets its own copy of the file's variables.
                let len = k.len() + v.as_ref().map_or(0, String::len);
                budget
                    .text(len)
                    .map_err(|m| SpecError::at(ErrorKind::Limit, &item.mark, &ip, m))?;
                s.environment.insert(k.clone(), v);
            }
        }
    }
    if let Some(n) = node.get("environment") {
        for (k, v) in list_or_dict(n, &child(path, "environment"))? {
            let v = v.or_else(|| env.get(&k));
            s.environment.insert(k, v);
        }
    }
    if let Some(n) = node.get("ports") {
        s.ports = ports(n, &child(path, "ports"), budget)?;
    }
    if let Some(n) = node.get("expose") {
        let p = child(path, "expose");
        let Kind::Seq(items) = &n.kind else {
            return Err(type_error(n, &p, "a list"));
        };
        for (i, item) in items.iter().enumerate() {
            s.expose.push(string(item, &format!("{p}[{i}]"))?);
        }
    }
    if let Some(n) = node.get("volumes") {
        let p = child(path, "volumes");
        let Kind::Seq(items) = &n.kind else {
            return Err(type_error(n, &p, "a list"));
        };
        for (i, item) in items.iter().enumerate() {
            s.volumes.push(mount(item, &format!("{p}[{i}]"), env)?);
        }
    }
    if let Some(n) = node.get("tmpfs") {
        s.tmpfs = string_or_list(n, &child(path, "tmpfs"))?;
    }
    if let Some(n) = node.get("networks") {
        s.networks = service_networks(n, &child(path, "networks"))?;
    }
    s.network_mode = opt_string(node, "network_mode", path)?;
    if let Some(n) = node.get("depends_on") {
        s.depends_on = depends_on(n, &child(path, "depends_on"))?;
    }
    if let Some(n) = node.get("healthcheck") {
        s.healthcheck = Some(healthcheck(n, &child(path, "healthcheck"))?);
    }
    s.restart = opt_string(node, "restart", path)?;
    if let Some(n) = node.get("deploy") {
        if !n.is_null() {
            s.deploy = Some(deploy(n, &child(path, "deploy"))?);
        }
    }
    if let Some(scale) = opt_int::<u32>(node, "scale", path)? {
        let d = s.deploy.get_or_insert_with(Deploy::default);
        if let Some(r) = d.replicas {
            if r != scale {
                let mark = node
                    .get("scale")
                    .map(|n| n.mark.clone())
                    .unwrap_or(node.mark.clone());
                return Err(SpecError::at(
                    ErrorKind::Conflict,
                    &mark,
                    child(path, "scale"),
                    format!("scale ({scale}) and deploy.replicas ({r}) disagree"),
                ));
            }
        }
        d.replicas = Some(scale);
    }
    s.labels = opt_string_map(node, "labels", path)?;
    s.container_name = opt_string(node, "container_name", path)?;
    s.working_dir = opt_string(node, "working_dir", path)?;
    s.user = opt_string(node, "user", path)?;
    s.hostname = opt_string(node, "hostname", path)?;
    s.domainname = opt_string(node, "domainname", path)?;
    s.stop_grace_period = opt_duration(node, "stop_grace_period", path)?;
    s.stop_signal = opt_string(node, "stop_signal", path)?;
    s.init = opt_bool(node, "init", path)?;
    for (key, field) in [
        ("cap_add", &mut s.cap_add),
        ("cap_drop", &mut s.cap_drop),
        ("dns", &mut s.dns),
        ("dns_search", &mut s.dns_search),
        ("profiles", &mut s.profiles),
    ] {
        if let Some(n) = node.get(key) {
            *field = string_or_list(n, &child(path, key))?;
        }
    }
    if let Some(n) = node.get("ulimits") {
        s.ulimits = ulimits(n, &child(path, "ulimits"))?;
    }
    if let Some(n) = node.get("extra_hosts") {
        s.extra_hosts = extra_hosts(n, &child(path, "extra_hosts"))?;
    }
    if let Some(n) = node.get("logging") {
        let p = child(path, "logging");
        check_keys(n, schema::LOGGING, &p, true)?;
        s.logging = Some(Logging {
            driver: opt_string(n, "driver", &p)?,
            options: opt_string_map(n, "options", &p)?,
        });
    }
    if let Some(n) = node.get("configs") {
        s.configs = file_refs(n, &child(path, "configs"), |src| format!("/{src}"))?;
    }
    if let Some(n) = node.get("secrets") {
        s.secrets = file_refs(n, &child(path, "secrets"), |src| {
            format!("/run/secrets/{src}")
        })?;
    }
    s.privileged = opt_bool(node, "privileged", path)?.unwrap_or(false);
    s.read_only = opt_bool(node, "read_only", path)?.unwrap_or(false);
    s.tty = opt_bool(node, "tty", path)?.unwrap_or(false);
    s.stdin_open = opt_bool(node, "stdin_open", path)?.unwrap_or(false);
    s.pull_policy = opt_string(node, "pull_policy", path)?;
    s.sysctls = opt_string_map(node, "sysctls", path)?;
    s.platform = opt_string(node, "platform", path)?;
    s.other = node
        .as_map()
        .map(|m| {
            m.iter()
                .filter(|e| !SERVICE_HANDLED.contains(&e.key.as_str()) && !e.key.starts_with("x-"))
                .map(|e| (e.key.clone(), e.value.to_json()))
                .collect()
        })
        .unwrap_or_default();
    s.baton = node.get("x-baton").map(Node::to_json);
    s.extensions = extensions(node);
    Ok(s)
}

fn build(node: &Node, path: &str, env: &Env) -> Result<Build> {
    if let Kind::Scalar { text, .. } = &node.kind {
        return Ok(Build {
            context: resolve_path(node, text, env),
            ..Default::default()
        });
    }
    check_keys(node, schema::BUILD, path, true)?;
    let context = match node.get("context") {
        Some(c) => resolve_path(c, &string(c, &child(path, "context"))?, env),
        None => resolve_path(node, ".", env),
    };
    let tags = match node.get("tags") {
        Some(t) => list_of_strings(t, &child(path, "tags"))?,
        None => Vec::new(),
    };
    Ok(Build {
        context,
        dockerfile: opt_string(node, "dockerfile", path)?,
        dockerfile_inline: opt_string(node, "dockerfile_inline", path)?,
        args: match node.get("args") {
            Some(a) => list_or_dict(a, &child(path, "args"))?,
            None => BTreeMap::new(),
        },
        target: opt_string(node, "target", path)?,
        labels: opt_string_map(node, "labels", path)?,
        tags,
        other: others(
            node,
            &[
                "context",
                "dockerfile",
                "dockerfile_inline",
                "args",
                "target",
                "labels",
                "tags",
            ],
        ),
    })
}

fn ports(node: &Node, path: &str, budget: &Budget) -> Result<Vec<Port>> {
    let Kind::Seq(items) = &node.kind else {
        return Err(type_error(node, path, "a list"));
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        match &item.kind {
            Kind::Scalar { text, .. } => {
                let parsed = parse_port(text)
                    .map_err(|m| SpecError::at(ErrorKind::Invalid, &item.mark, &p, m))?;
                // A range is one port per number: charged like the nodes it stands for.
                budget
                    .nodes(parsed.len())
                    .map_err(|m| SpecError::at(ErrorKind::Limit, &item.mark, &p, m))?;
                out.extend(parsed);
            }
            Kind::Map(_) => {
                check_keys(item, schema::PORT, &p, true)?;
                let Some(t) = item.get("target") else {
                    return Err(SpecError::at(
                        ErrorKind::Invalid,
                        &item.mark,
                        &p,
                        "missing \"target\"",
                    ));
                };
                let target = integer::<u16>(t, &child(&p, "target"))?;
                let published = match item.get("published") {
                    None => None,
                    Some(n) if n.is_null() => None,
                    Some(n) => {
                        let s = string(n, &child(&p, "published"))?;
                        if s.is_empty() {
                            None
                        } else {
                            let first = s.split('-').next().unwrap_or_default();
                            Some(first.parse::<u16>().map_err(|_| {
                                type_error(n, &child(&p, "published"), "a port number")
                            })?)
                        }
                    }
                };
                out.push(Port {
                    target,
                    published,
                    host_ip: opt_string(item, "host_ip", &p)?,
                    protocol: opt_string(item, "protocol", &p)?.unwrap_or_else(|| "tcp".into()),
                    mode: opt_string(item, "mode", &p)?,
                    name: opt_string(item, "name", &p)?,
                    app_protocol: opt_string(item, "app_protocol", &p)?,
                });
            }
            _ => return Err(type_error(item, &p, "a port string, a number or a mapping")),
        }
    }
    Ok(out)
}

fn port_range(s: &str) -> Option<(u16, u16)> {
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (a.parse().ok()?, b.parse().ok()?);
            (a <= b).then_some((a, b))
        }
        None => {
            let a = s.parse().ok()?;
            Some((a, a))
        }
    }
}

/// Short port syntax: `[[ip:]host:]container[/protocol]`, ranges expanded.
pub fn parse_port(spec: &str) -> std::result::Result<Vec<Port>, String> {
    let bad = |why: &str| format!("invalid port \"{spec}\": {why}");
    let (body, protocol) = match spec.rsplit_once('/') {
        Some((b, p)) => (b, p.to_string()),
        None => (spec, "tcp".to_string()),
    };
    if !matches!(protocol.as_str(), "tcp" | "udp" | "sctp") {
        return Err(bad("protocol must be tcp, udp or sctp"));
    }
    let (ip, rest) = if let Some(after) = body.strip_prefix('[') {
        let (ip, rest) = after.split_once(']').ok_or_else(|| bad("unclosed \"[\""))?;
        let rest = rest
            .strip_prefix(':')
            .ok_or_else(|| bad("expected \":\" after the address"))?;
        (Some(ip.to_string()), rest)
    } else {
        let parts: Vec<&str> = body.split(':').collect();
        match parts.len() {
            1 | 2 => (None, body),
            3 => {
                let (ip, rest) = body.split_once(':').ok_or_else(|| bad("malformed"))?;
                (Some(ip.to_string()), rest)
            }
            _ => return Err(bad("too many \":\" (write IPv6 addresses in brackets)")),
        }
    };
    let (host, container) = match rest.rsplit_once(':') {
        Some((h, c)) => (Some(h), c),
        None => (None, rest),
    };
    let (c0, c1) = port_range(container)
        .ok_or_else(|| bad("the container port must be a number or a range"))?;
    let host = host.filter(|h| !h.is_empty());
    let host_range = match host {
        Some(h) => {
            Some(port_range(h).ok_or_else(|| bad("the host port must be a number or a range"))?)
        }
        None => None,
    };
    let count = u32::from(c1 - c0) + 1;
    if let Some((h0, h1)) = host_range {
        let hcount = u32::from(h1 - h0) + 1;
        if hcount != count && count != 1 {
            return Err(bad("host and container port ranges differ in length"));
        }
    }
    let mut out = Vec::new();
    for k in 0..count {
        let Ok(k16) = u16::try_from(k) else { break };
        out.push(Port {
            target: c0.saturating_add(k16),
            published: host_range.map(|(h0, _)| h0.saturating_add(k16)),
            host_ip: ip.clone().filter(|s| !s.is_empty()),
            protocol: protocol.clone(),
            mode: None,
            name: None,
            app_protocol: None,
        });
    }
    Ok(out)
}

/// Split a short volume spec on `:`, keeping Windows drive letters whole.
fn volume_parts(spec: &str) -> Vec<String> {
    let mut parts: Vec<String> = Vec::new();
    for piece in spec.split(':') {
        let joins_drive = parts.last().is_some_and(|last| {
            last.len() == 1
                && last.chars().all(|c| c.is_ascii_alphabetic())
                && (piece.starts_with('\\') || piece.starts_with('/'))
        }) && parts.len() == 1;
        if joins_drive {
            if let Some(last) = parts.last_mut() {
                last.push(':');
                last.push_str(piece);
            }
        } else {
            parts.push(piece.to_string());
        }
    }
    parts
}

/// The container path of a short volume spec (for merging by target).
pub fn volume_target(spec: &str) -> Option<String> {
    let parts = volume_parts(spec);
    match parts.len() {
        1 => parts.into_iter().next(),
        _ => parts.into_iter().nth(1),
    }
}

fn is_path_source(s: &str) -> bool {
    s.starts_with('.')
        || s.starts_with('/')
        || s.starts_with('~')
        || s.starts_with('\\')
        || is_windows_abs(s)
        || s.contains('/')
}

fn mount(node: &Node, path: &str, env: &Env) -> Result<Mount> {
    match &node.kind {
        Kind::Scalar { text, .. } => {
            let parts = volume_parts(text);
            let bad = |why: &str| {
                SpecError::at(
                    ErrorKind::Invalid,
                    &node.mark,
                    path,
                    format!("invalid volume \"{text}\": {why}"),
                )
            };
            let (source, target, mode) = match parts.as_slice() {
                [t] => (None, t.clone(), None),
                [s, t] => (Some(s.clone()), t.clone(), None),
                [s, t, m] => (Some(s.clone()), t.clone(), Some(m.clone())),
                _ => return Err(bad("too many \":\"")),
            };
            if target.is_empty() || source.as_deref() == Some("") {
                return Err(bad("empty source or target"));
            }
            let bind_kind = source.as_deref().is_some_and(is_path_source);
            let mut m = Mount {
                kind: if bind_kind {
                    "bind".into()
                } else {
                    "volume".into()
                },
                source: source.map(|s| {
                    if bind_kind {
                        resolve_path(node, &s, env)
                    } else {
                        s
                    }
                }),
                target,
                read_only: false,
                consistency: None,
                bind: None,
                volume: None,
                tmpfs: None,
            };
            let mut bind = BTreeMap::new();
            let mut vol = BTreeMap::new();
            if bind_kind {
                bind.insert("create_host_path".to_string(), Json::Bool(true));
            }
            if let Some(mode) = mode {
                for opt in mode.split(',') {
                    match opt {
                        "ro" => m.read_only = true,
                        "rw" => m.read_only = false,
                        "z" | "Z" => {
                            bind.insert("selinux".into(), Json::String(opt.into()));
                        }
                        "shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate" => {
                            bind.insert("propagation".into(), Json::String(opt.into()));
                        }
                        "nocopy" => {
                            vol.insert("nocopy".into(), Json::Bool(true));
                        }
                        "cached" | "delegated" | "consistent" => m.consistency = Some(opt.into()),
                        other => return Err(bad(&format!("unknown option \"{other}\""))),
                    }
                }
            }
            if !bind.is_empty() {
                m.bind = Some(bind);
            }
            if !vol.is_empty() {
                m.volume = Some(vol);
            }
            Ok(m)
        }
        Kind::Map(_) => {
            check_keys(node, schema::MOUNT, path, true)?;
            let kind = match node.get("type") {
                Some(t) => string(t, &child(path, "type"))?,
                None => {
                    return Err(SpecError::at(
                        ErrorKind::Invalid,
                        &node.mark,
                        path,
                        "missing \"type\"",
                    ))
                }
            };
            if !matches!(
                kind.as_str(),
                "bind" | "volume" | "tmpfs" | "cluster" | "npipe" | "image"
            ) {
                let t = node.get("type").unwrap_or(node);
                return Err(SpecError::at(
                    ErrorKind::Invalid,
                    &t.mark,
                    child(path, "type"),
                    format!("unknown mount type \"{kind}\""),
                ));
            }
            let Some(target) = opt_string(node, "target", path)? else {
                return Err(SpecError::at(
                    ErrorKind::Invalid,
                    &node.mark,
                    path,
                    "missing \"target\"",
                ));
            };
            let source = match node.get("source") {
                None => None,
                Some(n) => {
                    let s = string(n, &child(path, "source"))?;
                    Some(if kind == "bind" {
                        resolve_path(n, &s, env)
                    } else {
                        s
                    })
                }
            };
            let sub = |key: &str| -> Result<Option<BTreeMap<String, Json>>> {
                match node.get(key) {
                    None => Ok(None),
                    Some(n) => match n.to_json() {
                        Json::Object(o) => Ok(Some(o.into_iter().collect())),
                        Json::Null => Ok(None),
                        _ => Err(type_error(n, &child(path, key), "a mapping")),
                    },
                }
            };
            let mut tmpfs = sub("tmpfs")?;
            if let (Some(t), Some(n)) = (tmpfs.as_mut(), node.get("tmpfs")) {
                if let Some(size) = opt_bytes(n, "size", &child(path, "tmpfs"))? {
                    t.insert("size".into(), Json::from(size));
                }
            }
            Ok(Mount {
                kind,
                source,
                target,
                read_only: opt_bool(node, "read_only", path)?.unwrap_or(false),
                consistency: opt_string(node, "consistency", path)?,
                bind: sub("bind")?,
                volume: sub("volume")?,
                tmpfs,
            })
        }
        _ => Err(type_error(node, path, "a string or a mapping")),
    }
}

fn service_networks(node: &Node, path: &str) -> Result<BTreeMap<String, ServiceNetwork>> {
    let mut out = BTreeMap::new();
    match &node.kind {
        Kind::Seq(_) => {
            for n in list_of_strings(node, path)? {
                out.insert(n, ServiceNetwork::default());
            }
        }
        Kind::Map(entries) => {
            for e in entries {
                let p = child(path, &e.key);
                let sn = if e.value.is_null() {
                    ServiceNetwork::default()
                } else {
                    check_keys(&e.value, schema::SERVICE_NETWORK, &p, true)?;
                    ServiceNetwork {
                        aliases: match e.value.get("aliases") {
                            Some(a) => list_of_strings(a, &child(&p, "aliases"))?,
                            None => Vec::new(),
                        },
                        ipv4_address: opt_string(&e.value, "ipv4_address", &p)?,
                        ipv6_address: opt_string(&e.value, "ipv6_address", &p)?,
                        priority: opt_int(&e.value, "priority", &p)?,
                        other: others(
                            &e.value,
                            &["aliases", "ipv4_address", "ipv6_address", "priority"],
                        ),
                    }
                };
                out.insert(e.key.clone(), sn);
            }
        }
        Kind::Null => {}
        _ => return Err(type_error(node, path, "a list or a mapping")),
    }
    Ok(out)
}

fn depends_on(node: &Node, path: &str) -> Result<BTreeMap<String, Dependency>> {
    let mut out = BTreeMap::new();
    let started = || Dependency {
        condition: Condition::ServiceStarted,
        required: true,
        restart: false,
    };
    match &node.kind {
        Kind::Seq(_) => {
            for n in list_of_strings(node, path)? {
                out.insert(n, started());
            }
        }
        Kind::Map(entries) => {
            for e in entries {
                let p = child(path, &e.key);
                if e.value.is_null() {
                    out.insert(e.key.clone(), started());
                    continue;
                }
                check_keys(&e.value, schema::DEPENDENCY, &p, true)?;
                let condition = match e.value.get("condition") {
                    None => Condition::ServiceStarted,
                    Some(c) => match string(c, &child(&p, "condition"))?.as_str() {
                        "service_started" => Condition::ServiceStarted,
                        "service_healthy" => Condition::ServiceHealthy,
                        "service_completed_successfully" => Condition::ServiceCompletedSuccessfully,
                        other => {
                            let mut err = SpecError::at(
                                ErrorKind::Invalid,
                                &c.mark,
                                child(&p, "condition"),
                                format!("unknown condition \"{other}\""),
                            );
                            if let Some(h) = suggest(
                                other,
                                [
                                    "service_started",
                                    "service_healthy",
                                    "service_completed_successfully",
                                ],
                            ) {
                                err = err.with_hint(h);
                            }
                            return Err(err);
                        }
                    },
                };
                out.insert(
                    e.key.clone(),
                    Dependency {
                        condition,
                        required: opt_bool(&e.value, "required", &p)?.unwrap_or(true),
                        restart: opt_bool(&e.value, "restart", &p)?.unwrap_or(false),
                    },
                );
            }
        }
        Kind::Null => {}
        _ => return Err(type_error(node, path, "a list or a mapping")),
    }
    Ok(out)
}

fn healthcheck(node: &Node, path: &str) -> Result<Healthcheck> {
    check_keys(node, schema::HEALTHCHECK, path, true)?;
    let test = match node.get("test") {
        None => Vec::new(),
        Some(t) => match &t.kind {
            Kind::Scalar { text, .. } => vec!["CMD-SHELL".to_string(), text.clone()],
            _ => list_of_strings(t, &child(path, "test"))?,
        },
    };
    if let Some(first) = test.first() {
        if !matches!(first.as_str(), "CMD" | "CMD-SHELL" | "NONE") {
            let t = node.get("test").unwrap_or(node);
            return Err(SpecError::at(
                ErrorKind::Invalid,
                &t.mark,
                child(path, "test"),
                format!("the first item must be CMD, CMD-SHELL or NONE, found \"{first}\""),
            ));
        }
    }
    Ok(Healthcheck {
        test,
        interval: opt_duration(node, "interval", path)?,
        timeout: opt_duration(node, "timeout", path)?,
        retries: opt_int(node, "retries", path)?,
        start_period: opt_duration(node, "start_period", path)?,
        start_interval: opt_duration(node, "start_interval", path)?,
        disable: opt_bool(node, "disable", path)?.unwrap_or(false),
    })
}

fn deploy(node: &Node, path: &str) -> Result<Deploy> {
    check_keys(node, schema::DEPLOY, path, true)?;
    let resources = match node.get("resources") {
        None => None,
        Some(r) => {
            let p = child(path, "resources");
            check_keys(r, schema::RESOURCES, &p, true)?;
            let spec = |key: &str| -> Result<Option<ResourceSpec>> {
                let Some(n) = r.get(key) else { return Ok(None) };
                let sp = child(&p, key);
                check_keys(n, schema::RESOURCE_SPEC, &sp, true)?;
                Ok(Some(ResourceSpec {
                    cpus: opt_float(n, "cpus", &sp)?,
                    memory: opt_bytes(n, "memory", &sp)?,
                    pids: opt_int(n, "pids", &sp)?,
                    other: others(n, &["cpus", "memory", "pids"]),
                }))
            };
            Some(Resources {
                limits: spec("limits")?,
                reservations: spec("reservations")?,
            })
        }
    };
    let restart_policy = match node.get("restart_policy") {
        None => None,
        Some(r) => {
            let p = child(path, "restart_policy");
            check_keys(r, schema::RESTART_POLICY, &p, true)?;
            Some(RestartPolicy {
                condition: opt_string(r, "condition", &p)?,
                delay: opt_duration(r, "delay", &p)?,
                max_attempts: opt_int(r, "max_attempts", &p)?,
                window: opt_duration(r, "window", &p)?,
            })
        }
    };
    let update = |key: &str| -> Result<Option<UpdateConfig>> {
        let Some(u) = node.get(key) else {
            return Ok(None);
        };
        let p = child(path, key);
        check_keys(u, schema::UPDATE_CONFIG, &p, true)?;
        Ok(Some(UpdateConfig {
            parallelism: opt_int(u, "parallelism", &p)?,
            delay: opt_duration(u, "delay", &p)?,
            failure_action: opt_string(u, "failure_action", &p)?,
            monitor: opt_duration(u, "monitor", &p)?,
            max_failure_ratio: opt_float(u, "max_failure_ratio", &p)?,
            order: opt_string(u, "order", &p)?,
        }))
    };
    Ok(Deploy {
        mode: opt_string(node, "mode", path)?,
        replicas: opt_int(node, "replicas", path)?,
        labels: opt_string_map(node, "labels", path)?,
        resources,
        restart_policy,
        update_config: update("update_config")?,
        rollback_config: update("rollback_config")?,
        other: others(
            node,
            &[
                "mode",
                "replicas",
                "labels",
                "resources",
                "restart_policy",
                "update_config",
                "rollback_config",
            ],
        ),
    })
}

fn ulimits(node: &Node, path: &str) -> Result<BTreeMap<String, Ulimit>> {
    let mut out = BTreeMap::new();
    for e in map_entries(node, path)? {
        let p = child(path, &e.key);
        let u = match &e.value.kind {
            Kind::Map(_) => {
                check_keys(&e.value, schema::ULIMIT, &p, true)?;
                let (Some(soft), Some(hard)) = (
                    opt_int(&e.value, "soft", &p)?,
                    opt_int(&e.value, "hard", &p)?,
                ) else {
                    return Err(SpecError::at(
                        ErrorKind::Invalid,
                        &e.value.mark,
                        p,
                        "needs both \"soft\" and \"hard\"",
                    ));
                };
                Ulimit { soft, hard }
            }
            _ => {
                let v = integer(&e.value, &p)?;
                Ulimit { soft: v, hard: v }
            }
        };
        out.insert(e.key.clone(), u);
    }
    Ok(out)
}

fn extra_hosts(node: &Node, path: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    match &node.kind {
        Kind::Seq(_) => {
            for h in list_of_strings(node, path)? {
                out.push(match h.split_once('=') {
                    Some((k, v)) => format!("{k}:{v}"),
                    None => h,
                });
            }
        }
        Kind::Map(entries) => {
            for e in entries {
                for ip in string_or_list(&e.value, &child(path, &e.key))? {
                    out.push(format!("{}:{ip}", e.key));
                }
            }
        }
        Kind::Null => {}
        _ => return Err(type_error(node, path, "a list or a mapping")),
    }
    Ok(out)
}

fn file_refs(
    node: &Node,
    path: &str,
    default_target: impl Fn(&str) -> String,
) -> Result<Vec<FileRef>> {
    let Kind::Seq(items) = &node.kind else {
        return Err(type_error(node, path, "a list"));
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        out.push(match &item.kind {
            Kind::Scalar { text, .. } => FileRef {
                source: text.clone(),
                target: default_target(text),
                uid: None,
                gid: None,
                mode: None,
            },
            Kind::Map(_) => {
                check_keys(item, schema::FILE_REF, &p, true)?;
                let Some(source) = opt_string(item, "source", &p)? else {
                    return Err(SpecError::at(
                        ErrorKind::Invalid,
                        &item.mark,
                        &p,
                        "missing \"source\"",
                    ));
                };
                let target =
                    opt_string(item, "target", &p)?.unwrap_or_else(|| default_target(&source));
                let mode = match item.get("mode") {
                    None => None,
                    Some(m) => {
                        let s = string(m, &child(&p, "mode"))?;
                        let parsed = if s.len() > 1 && s.starts_with('0') && !s.starts_with("0o") {
                            u32::from_str_radix(&s[1..], 8).ok()
                        } else {
                            parse_int(&s).and_then(|v| u32::try_from(v).ok())
                        };
                        Some(
                            parsed
                                .ok_or_else(|| type_error(m, &child(&p, "mode"), "a file mode"))?,
                        )
                    }
                };
                FileRef {
                    source,
                    target,
                    uid: opt_string(item, "uid", &p)?,
                    gid: opt_string(item, "gid", &p)?,
                    mode,
                }
            }
            _ => return Err(type_error(item, &p, "a string or a mapping")),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(target: u16, published: Option<u16>) -> Port {
        Port {
            target,
            published,
            host_ip: None,
            protocol: "tcp".into(),
            mode: None,
            name: None,
            app_protocol: None,
        }
    }

    #[test]
    fn short_ports() {
        assert_eq!(parse_port("80").unwrap(), vec![port(80, None)]);
        assert_eq!(parse_port("8080:80").unwrap(), vec![port(80, Some(8080))]);
        let udp = parse_port("127.0.0.1:8080:80/udp").unwrap();
        assert_eq!(udp[0].host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(udp[0].protocol, "udp");
        assert_eq!(
            parse_port("8000-8002:80-82").unwrap(),
            vec![
                port(80, Some(8000)),
                port(81, Some(8001)),
                port(82, Some(8002))
            ]
        );
        let v6 = parse_port("[::1]:80:80").unwrap();
        assert_eq!(v6[0].host_ip.as_deref(), Some("::1"));
        assert_eq!(v6[0].published, Some(80));
        assert_eq!(parse_port("127.0.0.1::80").unwrap()[0].published, None);
        assert_eq!(
            parse_port("80:abc").unwrap_err(),
            "invalid port \"80:abc\": the container port must be a number or a range"
        );
        assert_eq!(
            parse_port("80-81:90-99").unwrap_err(),
            "invalid port \"80-81:90-99\": host and container port ranges differ in length"
        );
        assert!(parse_port("80/xyz").is_err());
        assert!(parse_port("99999").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1m30s"), Ok(Duration(90_000)));
        assert_eq!(parse_duration("500ms"), Ok(Duration(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration(10_000)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration(5_400_000)));
        assert_eq!(parse_duration("10"), Ok(Duration(10_000)));
        assert_eq!(
            parse_duration("10x"),
            Err("invalid duration \"10x\"".into())
        );
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("512m"), Ok(512 << 20));
        assert_eq!(parse_bytes("1gb"), Ok(1 << 30));
        assert_eq!(parse_bytes("1024"), Ok(1024));
        assert_eq!(parse_bytes("1.5k"), Ok(1536));
        assert_eq!(parse_bytes("lots"), Err("invalid size \"lots\"".into()));
    }

    #[test]
    fn volume_targets_and_parts() {
        assert_eq!(volume_target("vol:/data:ro").as_deref(), Some("/data"));
        assert_eq!(volume_target("/anon").as_deref(), Some("/anon"));
        assert_eq!(
            volume_parts("C:\\dir:/x"),
            vec!["C:\\dir".to_string(), "/x".to_string()]
        );
    }

    #[test]
    fn project_names() {
        assert_eq!(normalize_project_name("My App.v2"), "myappv2");
        assert_eq!(normalize_project_name("_-x"), "x");
        assert_eq!(normalize_project_name("!!!"), "");
    }
}
