//! Named targets: the `targets:` section (also under `x-baton:`), read with every error
//! located at its setting, and the choice of one by name (`--target`, `BATON_TARGET`).
//!
//! ```yaml
//! targets:
//!   local: {docker: {}}                                  # DOCKER_HOST or the local socket
//!   lab: {docker: {host: tcp://10.0.0.7:2375}}
//!   staging: {swarm: {host: ssh://ops@10.0.0.5}}
//!   prod: {kubernetes: {context: prod, namespace: shop}}
//! ```
//!
//! Pure: reads the project it is given, nothing else.

use std::collections::BTreeMap;
use std::fmt;

use baton_spec::{closest, ErrorKind, Project, Section, SpecError};
use serde_json::Value;

/// The target used when none is named: `local`, the file's if it defines one, else
/// `{docker: {}}`.
pub const DEFAULT: &str = "local";

const KINDS: &[&str] = &["docker", "swarm", "kubernetes"];
const DOCKER_KEYS: &[&str] = &["host"];
const KUBE_KEYS: &[&str] = &["context", "namespace"];
/// The engine address schemes a `host:` may use.
const SCHEMES: &[&str] = &["unix://", "tcp://", "ssh://"];

/// Where a target's containers run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetKind {
    /// One Docker engine; `host` as `DOCKER_HOST` takes it (`None`: `DOCKER_HOST`, else
    /// the local socket).
    Docker { host: Option<String> },
    /// A Docker engine that is a swarm manager.
    Swarm { host: Option<String> },
    /// A Kubernetes cluster, from the kubeconfig (`None`: its current context and
    /// namespace).
    Kubernetes {
        context: Option<String>,
        namespace: Option<String>,
    },
}

impl TargetKind {
    /// `docker`, `swarm` or `kubernetes`, as the file writes it.
    pub fn name(&self) -> &'static str {
        match self {
            TargetKind::Docker { .. } => "docker",
            TargetKind::Swarm { .. } => "swarm",
            TargetKind::Kubernetes { .. } => "kubernetes",
        }
    }
}

/// One named target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub kind: TargetKind,
    /// Written in the file (false for the implicit `local`).
    pub declared: bool,
}

impl Target {
    /// The implicit default: `local: {docker: {}}`.
    pub fn implicit_local() -> Target {
        Target {
            name: DEFAULT.to_string(),
            kind: TargetKind::Docker { host: None },
            declared: false,
        }
    }

    /// Whether this is the target used when none is named (its state is the project's
    /// own; any other target's is kept apart).
    pub fn is_default(&self) -> bool {
        self.name == DEFAULT
    }
}

impl fmt::Display for Target {
    /// `prod (kubernetes)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.kind.name())
    }
}

/// Reads and validates the project's targets (empty when it has none).
pub fn read(project: &Project) -> Result<BTreeMap<String, Target>, SpecError> {
    let s = Section::new(project);
    let path = "targets";
    let mut out = BTreeMap::new();
    let map = match project.baton.get("targets") {
        None | Some(Value::Null) => return Ok(out),
        Some(v) => s.map(v, path)?,
    };
    for (name, v) in map {
        let here = format!("{path}.{name}");
        if !valid_name(name) {
            return Err(s.err(
                ErrorKind::Invalid,
                &here,
                format!(
                    "target name {name:?}: use letters, digits, '-' and '_' (at most 63, \
                     starting with a letter or digit)"
                ),
            ));
        }
        let m = s.map(v, &here)?;
        s.keys(m, KINDS, &here)?;
        let mut kinds = m.iter();
        let (kind, body) = match (kinds.next(), kinds.next()) {
            (Some(one), None) => one,
            (None, _) => {
                return Err(s.err(
                    ErrorKind::Invalid,
                    &here,
                    "a target is one of docker:, swarm: or kubernetes:",
                ))
            }
            (Some(_), Some((second, _))) => {
                return Err(s.err(
                    ErrorKind::Conflict,
                    &format!("{here}.{second}"),
                    "a target is exactly one of docker:, swarm: or kubernetes:",
                ))
            }
        };
        let kpath = format!("{here}.{kind}");
        let empty = serde_json::Map::new();
        let body = match body {
            Value::Null => &empty,
            v => s.map(v, &kpath)?,
        };
        let opt = |key: &str| -> Result<Option<String>, SpecError> {
            match body.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => {
                    let text = s.string(v, &format!("{kpath}.{key}"))?;
                    if text.is_empty() {
                        return Err(s.err(
                            ErrorKind::Invalid,
                            &format!("{kpath}.{key}"),
                            "must not be empty (leave the key out for the default)",
                        ));
                    }
                    Ok(Some(text))
                }
            }
        };
        let kind = match kind.as_str() {
            "docker" | "swarm" => {
                s.keys(body, DOCKER_KEYS, &kpath)?;
                let host = opt("host")?;
                if let Some(h) = &host {
                    check_host(&s, h, &format!("{kpath}.host"))?;
                }
                if kind == "docker" {
                    TargetKind::Docker { host }
                } else {
                    TargetKind::Swarm { host }
                }
            }
            _ => {
                s.keys(body, KUBE_KEYS, &kpath)?;
                let namespace = opt("namespace")?;
                if let Some(ns) = &namespace {
                    if !dns_label(ns) {
                        return Err(s.err(
                            ErrorKind::Invalid,
                            &format!("{kpath}.namespace"),
                            format!(
                                "namespace {ns:?} is not a DNS label (lowercase letters, \
                                 digits and '-', at most 63)"
                            ),
                        ));
                    }
                }
                TargetKind::Kubernetes {
                    context: opt("context")?,
                    namespace,
                }
            }
        };
        out.insert(
            name.clone(),
            Target {
                name: name.clone(),
                kind,
                declared: true,
            },
        );
    }
    Ok(out)
}

fn check_host(s: &Section<'_>, host: &str, path: &str) -> Result<(), SpecError> {
    let Some(scheme) = SCHEMES.iter().find(|p| host.starts_with(**p)) else {
        return Err(s.err(
            ErrorKind::Invalid,
            path,
            format!("engine address {host:?}: expected unix:///PATH, tcp://HOST:PORT or ssh://[USER@]HOST"),
        ));
    };
    let rest = &host[scheme.len()..];
    let ok = match *scheme {
        "unix://" => rest.starts_with('/') && rest.len() > 1,
        _ => !rest.is_empty() && !rest.starts_with('/') && !rest.contains(char::is_whitespace),
    };
    if ok {
        Ok(())
    } else {
        Err(s.err(
            ErrorKind::Invalid,
            path,
            format!("engine address {host:?}: nothing usable after {scheme}"),
        ))
    }
}

/// A target name: letters, digits, `-` and `_`, at most 63, starting with a letter or
/// digit (so it is safe as one path component).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A target named on the command line that the file does not define.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown target {name:?}{hint}; known targets: {known}", hint = .hint.as_ref().map(|h| format!(" (did you mean {h:?}?)")).unwrap_or_default(), known = .known.join(", "))]
pub struct UnknownTarget {
    pub name: String,
    pub hint: Option<String>,
    pub known: Vec<String>,
}

/// The target called `name` (the default when `None`) among `targets`. `local` is
/// always known: `{docker: {}}` unless the file says otherwise.
pub fn select(
    targets: &BTreeMap<String, Target>,
    name: Option<&str>,
) -> Result<Target, UnknownTarget> {
    let name = name.unwrap_or(DEFAULT);
    if let Some(t) = targets.get(name) {
        return Ok(t.clone());
    }
    if name == DEFAULT {
        return Ok(Target::implicit_local());
    }
    let mut known: Vec<String> = targets.keys().cloned().collect();
    if !targets.contains_key(DEFAULT) {
        known.insert(0, DEFAULT.to_string());
    }
    Err(UnknownTarget {
        name: name.to_string(),
        hint: closest(name, known.iter().map(String::as_str)).map(str::to_string),
        known,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(targets: Value) -> Project {
        let mut p = Project::default();
        p.baton.insert("targets".into(), targets);
        p
    }

    #[test]
    fn reads_each_kind() {
        let p = project(serde_json::json!({
            "local": {"docker": {}},
            "lab": {"docker": {"host": "tcp://10.0.0.7:2375"}},
            "staging": {"swarm": {"host": "ssh://ops@10.0.0.5"}},
            "prod": {"kubernetes": {"context": "prod", "namespace": "shop"}},
            "bare": {"docker": null},
        }));
        let t = read(&p).unwrap();
        assert_eq!(t.len(), 5);
        assert_eq!(t["local"].kind, TargetKind::Docker { host: None });
        assert_eq!(t["bare"].kind, TargetKind::Docker { host: None });
        assert_eq!(
            t["lab"].kind,
            TargetKind::Docker {
                host: Some("tcp://10.0.0.7:2375".into())
            }
        );
        assert_eq!(
            t["staging"].kind,
            TargetKind::Swarm {
                host: Some("ssh://ops@10.0.0.5".into())
            }
        );
        assert_eq!(
            t["prod"].kind,
            TargetKind::Kubernetes {
                context: Some("prod".into()),
                namespace: Some("shop".into())
            }
        );
        assert_eq!(t["prod"].to_string(), "prod (kubernetes)");
    }

    #[test]
    fn refuses_bad_settings_naming_them() {
        let cases = [
            (
                serde_json::json!({"a": {"dokcer": {}}}),
                "targets.a.dokcer",
                Some("docker"),
            ),
            (
                serde_json::json!({"a": {"docker": {"hots": "unix:///x"}}}),
                "targets.a.docker.hots",
                Some("host"),
            ),
            (
                serde_json::json!({"a": {"kubernetes": {"namespace": "Shop"}}}),
                "targets.a.kubernetes.namespace",
                None,
            ),
            (
                serde_json::json!({"a": {"docker": {"host": "http://x"}}}),
                "targets.a.docker.host",
                None,
            ),
            (
                serde_json::json!({"a": {"docker": {"host": "unix://"}}}),
                "targets.a.docker.host",
                None,
            ),
            (
                serde_json::json!({"a": {"docker": {}, "swarm": {}}}),
                "targets.a.swarm",
                None,
            ),
            (serde_json::json!({"a": {}}), "targets.a", None),
            (
                serde_json::json!({"a b": {"docker": {}}}),
                "targets.a b",
                None,
            ),
            (serde_json::json!(["local"]), "targets", None),
        ];
        for (v, path, hint) in cases {
            let e = read(&project(v.clone())).expect_err(&v.to_string());
            assert_eq!(e.path, path, "{v}");
            if let Some(h) = hint {
                assert_eq!(e.hint, Some(format!("did you mean \"{h}\"?")), "{v}");
            }
        }
    }

    #[test]
    fn selects_by_name_with_an_implicit_local() {
        let p = project(serde_json::json!({"staging": {"swarm": {}}, "prod": {"kubernetes": {}}}));
        let t = read(&p).unwrap();
        assert_eq!(select(&t, None).unwrap(), Target::implicit_local());
        assert_eq!(select(&t, Some("local")).unwrap(), Target::implicit_local());
        assert_eq!(select(&t, Some("prod")).unwrap().kind.name(), "kubernetes");
        let e = select(&t, Some("stagign")).unwrap_err();
        assert_eq!(e.hint.as_deref(), Some("staging"));
        assert_eq!(e.known, ["local", "prod", "staging"]);
        assert_eq!(
            e.to_string(),
            "unknown target \"stagign\" (did you mean \"staging\"?); known targets: local, prod, staging"
        );
        let own = read(&project(
            serde_json::json!({"local": {"docker": {"host": "unix:///s"}}}),
        ))
        .unwrap();
        assert!(select(&own, None).unwrap().declared);
    }
}
