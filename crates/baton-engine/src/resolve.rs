//! From the model to engine-level names and runtime specs: container names, image
//! references, networks and volumes with baton's labels.

use std::collections::BTreeMap;
use std::path::PathBuf;

use baton_spec::{Mount, Project, Service};

use crate::hash::hash_value;
use crate::runtime::{
    labels, BuildSpec, ContainerSpec, FileMount, NetworkAttachment, NetworkSpec, VolumeSpec,
};

/// Whether baton's traffic proxy carries the service's traffic: the service has published
/// ports and an `x-baton.rollout` section, or routes on the edge (`x-baton.routes`). Its
/// containers then publish nothing themselves; `baton serve` listens on the ports (and
/// routes the edge's hosts) and forwards to healthy replicas, so replicas can be replaced
/// without a failed request.
pub fn traffic_managed(service: &Service) -> bool {
    let baton = service.baton.as_ref();
    let routed = baton
        .and_then(|b| b.get("routes"))
        .and_then(|r| r.as_array())
        .is_some_and(|r| !r.is_empty());
    routed
        || (service.ports.iter().any(|p| p.published.is_some())
            && baton.is_some_and(|b| b.get("rollout").is_some()))
}

/// How the daemon's proxy handles a traffic-managed service, from its
/// `x-baton.proxy: {protocol: http | tcp, balance: round-robin | least-connections,
/// provider: builtin | nginx | haproxy, config: FILE, reload: [ARGV], check: [ARGV]}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct ProxySettings {
    /// `true` for plain TCP forwarding (one backend per connection), else HTTP.
    pub tcp: bool,
    pub least_connections: bool,
    /// `response_timeout`: how long a replica may take to answer an HTTP request
    /// (`None`: 60 s, as nginx's `proxy_read_timeout`).
    pub response_timeout_ms: Option<u64>,
    /// `None`: baton's own proxy owns the port. Else a server the user runs.
    pub external: Option<ExternalProxy>,
}

/// A server the user already runs, which baton writes a routing file for and reloads.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ExternalProxy {
    pub provider: ProviderKind,
    /// The file baton owns (relative paths: from the project directory).
    pub config: String,
    /// Makes the server read the file again.
    pub reload: Vec<String>,
    /// Checks the written file; on failure the previous file is put back.
    pub check: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Nginx,
    Haproxy,
}

fn argv(value: &serde_json::Value, key: &str) -> Result<Vec<String>, String> {
    let items = value.as_array().ok_or_else(|| {
        format!("x-baton.proxy.{key}: expected a command as a list, e.g. [nginx, -s, reload]")
    })?;
    let argv: Vec<String> = items
        .iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .collect::<Option<_>>()
        .ok_or_else(|| format!("x-baton.proxy.{key}: expected a list of strings"))?;
    if argv.is_empty() {
        return Err(format!("x-baton.proxy.{key}: the command is empty"));
    }
    Ok(argv)
}

/// Reads `x-baton.proxy`; the defaults are HTTP, round-robin and baton's own proxy.
pub fn proxy_settings(service: &Service) -> Result<ProxySettings, String> {
    let mut out = ProxySettings::default();
    let Some(proxy) = service.baton.as_ref().and_then(|b| b.get("proxy")) else {
        return Ok(out);
    };
    let Some(map) = proxy.as_object() else {
        return Err("x-baton.proxy: expected a mapping".into());
    };
    let mut provider = None;
    let (mut config, mut reload, mut check) = (None, None, None);
    for (key, value) in map {
        let text = value.as_str().unwrap_or_default();
        match (key.as_str(), text) {
            ("protocol", "http") => out.tcp = false,
            ("protocol", "tcp") => out.tcp = true,
            ("protocol", other) => {
                return Err(format!(
                    "x-baton.proxy.protocol: expected http or tcp, found {other:?}"
                ))
            }
            ("balance", "round-robin") => out.least_connections = false,
            ("balance", "least-connections") => out.least_connections = true,
            ("balance", other) => {
                return Err(format!(
                "x-baton.proxy.balance: expected round-robin or least-connections, found {other:?}"
            ))
            }
            ("provider", "builtin") => provider = None,
            ("provider", "nginx") => provider = Some(ProviderKind::Nginx),
            ("provider", "haproxy") => provider = Some(ProviderKind::Haproxy),
            ("provider", other) => {
                return Err(format!(
                    "x-baton.proxy.provider: expected builtin, nginx or haproxy, found {other:?}"
                ))
            }
            ("config", "") => return Err("x-baton.proxy.config: expected a file path".into()),
            ("config", path) => config = Some(path.to_string()),
            ("response_timeout", _) => {
                let ms = baton_spec::parse_duration(text)
                    .ok()
                    .map(|d| d.0)
                    .filter(|ms| *ms > 0)
                    .ok_or_else(|| {
                        format!("x-baton.proxy.response_timeout: expected a duration such as 30s, found {value}")
                    })?;
                out.response_timeout_ms = Some(ms);
            }
            ("reload", _) => reload = Some(argv(value, "reload")?),
            ("check", _) => check = Some(argv(value, "check")?),
            (other, _) => {
                return Err(format!(
                    "x-baton.proxy: unknown key {other:?} (known: protocol, balance, response_timeout, provider, config, reload, check)"
                ))
            }
        }
    }
    match provider {
        None => {
            if config.is_some() || reload.is_some() || check.is_some() {
                return Err(
                    "x-baton.proxy: config, reload and check are for provider nginx or haproxy"
                        .into(),
                );
            }
        }
        Some(kind) => {
            let config = config.ok_or("x-baton.proxy.config: required with provider nginx or haproxy: the file baton writes, which the server includes")?;
            let (reload, check) = match kind {
                ProviderKind::Nginx => {
                    if out.tcp {
                        return Err("x-baton.proxy: the nginx provider serves HTTP only (use protocol: http, or provider haproxy)".into());
                    }
                    (
                        reload.unwrap_or_else(|| vec!["nginx".into(), "-s".into(), "reload".into()]),
                        check.or_else(|| Some(vec!["nginx".into(), "-t".into(), "-q".into()])),
                    )
                }
                ProviderKind::Haproxy => (
                    reload.ok_or("x-baton.proxy.reload: required with provider haproxy, e.g. [systemctl, reload, haproxy]")?,
                    check.or_else(|| {
                        Some(vec!["haproxy".into(), "-c".into(), "-q".into(), "-f".into(), config.clone()])
                    }),
                ),
            };
            out.external = Some(ExternalProxy {
                provider: kind,
                config,
                reload,
                check,
            });
        }
    }
    Ok(out)
}

/// `container_name` when set, else `<project>-<service>-<replica>` (Compose's scheme).
pub fn container_name(project: &str, name: &str, service: &Service, replica: u32) -> String {
    match &service.container_name {
        Some(n) => n.clone(),
        None => format!("{project}-{name}-{replica}"),
    }
}

/// The image a service runs: its `image`, else `<project>-<service>` for a built one.
pub fn image_ref(project: &str, name: &str, service: &Service) -> String {
    match &service.image {
        Some(i) => i.clone(),
        None => format!("{project}-{name}"),
    }
}

/// The build to run for a service with `build:`.
pub fn build_spec(project: &str, name: &str, service: &Service) -> Option<BuildSpec> {
    let b = service.build.as_ref()?;
    let mut tags = vec![image_ref(project, name, service)];
    tags.extend(b.tags.iter().cloned());
    Some(BuildSpec {
        context: PathBuf::from(&b.context),
        dockerfile: b.dockerfile.clone().unwrap_or_else(|| "Dockerfile".into()),
        dockerfile_inline: b.dockerfile_inline.clone(),
        args: b
            .args
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k.clone(), v.clone())))
            .collect(),
        target: b.target.clone(),
        labels: b.labels.clone(),
        tags,
    })
}

fn project_labels(project: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(labels::PROJECT.to_string(), project.to_string())])
}

pub fn network_spec(project: &Project, key: &str) -> Option<NetworkSpec> {
    let n = project.networks.get(key)?;
    let mut l = n.labels.clone();
    l.extend(project_labels(&project.name));
    l.insert(labels::NETWORK.into(), key.into());
    l.insert(
        labels::RESOURCE_HASH.into(),
        hash_value(&serde_json::to_value(n).unwrap_or_default()),
    );
    Some(NetworkSpec {
        name: n.name.clone(),
        driver: n.driver.clone(),
        driver_opts: n.driver_opts.clone(),
        internal: n.internal,
        attachable: n.attachable,
        enable_ipv6: n.enable_ipv6,
        ipam: n.ipam.clone(),
        labels: l,
    })
}

pub fn volume_spec(project: &Project, key: &str) -> Option<VolumeSpec> {
    let v = project.volumes.get(key)?;
    let mut l = v.labels.clone();
    l.extend(project_labels(&project.name));
    l.insert(labels::VOLUME.into(), key.into());
    Some(VolumeSpec {
        name: v.name.clone(),
        driver: v.driver.clone(),
        driver_opts: v.driver_opts.clone(),
        labels: l,
    })
}

/// Where configs and secrets were written (or found) on the host, by `config:NAME` /
/// `secret:NAME`.
pub type FileSources = BTreeMap<String, PathBuf>;

/// Where each config and secret is on the host: `file:` sources where they are, the
/// others (`content:`, `environment:`) at `<files_dir>/<project>/<kind>-<name>`, where the
/// CLI writes them before `up`.
pub fn file_sources(project: &Project, files_dir: &std::path::Path) -> FileSources {
    let mut out = FileSources::new();
    for (kind, objects) in [("config", &project.configs), ("secret", &project.secrets)] {
        for (name, obj) in objects {
            let path = match &obj.file {
                Some(f) => f.clone(),
                None if obj.content.is_some() || obj.environment.is_some() => {
                    files_dir.join(&project.name).join(format!("{kind}-{name}"))
                }
                None => continue,
            };
            out.insert(format!("{kind}:{name}"), path);
        }
    }
    out
}

/// Everything the runtime needs to create one replica of a service.
pub fn container_spec(
    project: &Project,
    name: &str,
    service: &Service,
    replica: u32,
    config_hash: &str,
    files: &FileSources,
) -> ContainerSpec {
    let mut l = service.labels.clone();
    if let Some(d) = &service.deploy {
        l.extend(d.labels.clone());
    }
    l.extend(project_labels(&project.name));
    l.insert(labels::SERVICE.into(), name.into());
    l.insert(labels::REPLICA.into(), replica.to_string());
    l.insert(labels::CONFIG_HASH.into(), config_hash.into());

    let networks = service
        .networks
        .iter()
        .map(|(key, sn)| {
            let mut aliases = vec![name.to_string()];
            aliases.extend(sn.aliases.iter().cloned());
            NetworkAttachment {
                network: project
                    .networks
                    .get(key)
                    .map(|n| n.name.clone())
                    .unwrap_or_else(|| format!("{}_{key}", project.name)),
                aliases,
                ipv4_address: sn.ipv4_address.clone(),
                ipv6_address: sn.ipv6_address.clone(),
            }
        })
        .collect();

    let mounts = service
        .volumes
        .iter()
        .map(|m| resolve_mount(project, m))
        .collect();

    let mut file_mounts = Vec::new();
    for (kind, refs) in [("config", &service.configs), ("secret", &service.secrets)] {
        for r in refs {
            if let Some(src) = files.get(&format!("{kind}:{}", r.source)) {
                file_mounts.push(FileMount {
                    source: src.clone(),
                    target: r.target.clone(),
                    mode: r.mode,
                });
            }
        }
    }

    // The proxy owns a managed service's host ports: its containers only expose them.
    let mut service = service.clone();
    if traffic_managed(&service) {
        for p in &mut service.ports {
            p.published = None;
            p.host_ip = None;
        }
        service.ports.retain(|p| p.protocol == "tcp");
        let targets: Vec<String> = service.ports.iter().map(|p| p.target.to_string()).collect();
        service.expose.extend(targets);
        service.ports.clear();
    }
    let service = &service;
    ContainerSpec {
        name: container_name(&project.name, name, service, replica),
        project: project.name.clone(),
        service_name: name.to_string(),
        replica,
        image: image_ref(&project.name, name, service),
        service: service.clone(),
        labels: l,
        env: service
            .environment
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
            .collect(),
        networks,
        mounts,
        files: file_mounts,
        hostname: service.hostname.clone(),
    }
}

fn resolve_mount(project: &Project, m: &Mount) -> Mount {
    let mut m = m.clone();
    if m.kind == "volume" {
        if let Some(src) = &m.source {
            if let Some(v) = project.volumes.get(src) {
                m.source = Some(v.name.clone());
            }
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(baton: serde_json::Value) -> Service {
        Service {
            baton: Some(baton),
            ..Default::default()
        }
    }

    #[test]
    fn proxy_settings_default_and_parse_and_refuse() {
        assert_eq!(
            proxy_settings(&Service::default()),
            Ok(ProxySettings::default())
        );
        let s =
            svc(serde_json::json!({"proxy": {"protocol": "tcp", "balance": "least-connections"}}));
        assert_eq!(
            proxy_settings(&s),
            Ok(ProxySettings {
                tcp: true,
                least_connections: true,
                response_timeout_ms: None,
                external: None,
            })
        );
        let s = svc(serde_json::json!({"proxy": {"response_timeout": "1m30s"}}));
        assert_eq!(
            proxy_settings(&s).unwrap().response_timeout_ms,
            Some(90_000)
        );
        let s = svc(serde_json::json!({"proxy": {"provider": "nginx", "config": "web.conf"}}));
        assert_eq!(
            proxy_settings(&s).unwrap().external,
            Some(ExternalProxy {
                provider: ProviderKind::Nginx,
                config: "web.conf".into(),
                reload: vec!["nginx".into(), "-s".into(), "reload".into()],
                check: Some(vec!["nginx".into(), "-t".into(), "-q".into()]),
            })
        );
        let err = |x| proxy_settings(&svc(serde_json::json!({ "proxy": x }))).unwrap_err();
        assert!(
            err(serde_json::json!({"provider": "haproxy", "config": "a.cfg"}))
                .contains("reload: required")
        );
        assert!(err(serde_json::json!({"provider": "nginx"})).contains("config: required"));
        assert!(
            err(serde_json::json!({"provider": "nginx", "config": "a", "protocol": "tcp"}))
                .contains("HTTP only")
        );
        assert!(err(serde_json::json!({"config": "a"})).contains("for provider nginx or haproxy"));
        for bad in [
            serde_json::json!("soon"),
            serde_json::json!("0s"),
            serde_json::json!(5),
        ] {
            assert!(
                err(serde_json::json!({ "response_timeout": bad })).contains("response_timeout"),
                "{bad}"
            );
        }
        assert!(err(
            serde_json::json!({"provider": "nginx", "config": "a", "reload": "nginx -s reload"})
        )
        .contains("as a list"));
        let s = svc(serde_json::json!({"proxy": {"protocol": "udp"}}));
        assert_eq!(
            proxy_settings(&s),
            Err("x-baton.proxy.protocol: expected http or tcp, found \"udp\"".to_string())
        );
        let s = svc(serde_json::json!({"proxy": {"balanse": "x"}}));
        assert!(proxy_settings(&s)
            .unwrap_err()
            .contains("unknown key \"balanse\""));
    }
}
