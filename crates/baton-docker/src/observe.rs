//! Reading what exists: a project's containers, networks and volumes found by label,
//! and one container's inspect, turned into the engine's `Observed*` types.

use std::collections::{BTreeMap, HashMap};

use baton_engine::runtime::{
    labels, ContainerState, Health, Observed, ObservedContainer, ObservedNetwork, ObservedVolume,
    RuntimeError,
};
use bollard::models::{
    ContainerInspectResponse, ContainerStateStatusEnum, ContainerSummary,
    ContainerSummaryStateEnum, HealthStatusEnum, PortTypeEnum,
};
use bollard::query_parameters::{
    InspectContainerOptions, ListContainersOptions, ListNetworksOptions, ListVolumesOptions,
};

use crate::client::engine_error;
use crate::Docker;

impl Docker {
    pub(crate) async fn observe_project(&self, project: &str) -> Result<Observed, RuntimeError> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{}={project}", labels::PROJECT)],
        )]);
        let what = format!("project {project}");
        let containers = self
            .api
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters.clone()),
                ..Default::default()
            }))
            .await
            .map_err(|e| engine_error(e, "list containers", &what))?;
        let networks = self
            .api
            .list_networks(Some(ListNetworksOptions {
                filters: Some(filters.clone()),
            }))
            .await
            .map_err(|e| engine_error(e, "list networks", &what))?;
        let volumes = self
            .api
            .list_volumes(Some(ListVolumesOptions {
                filters: Some(filters),
            }))
            .await
            .map_err(|e| engine_error(e, "list volumes", &what))?;

        let mut observed = Observed {
            containers: containers.into_iter().map(from_summary).collect(),
            networks: networks
                .into_iter()
                .map(|n| ObservedNetwork {
                    id: n.id.unwrap_or_default(),
                    name: n.name.unwrap_or_default(),
                    labels: sorted(n.labels.unwrap_or_default()),
                    created: n.created.as_deref().and_then(parse_rfc3339).unwrap_or(0),
                })
                .collect(),
            volumes: volumes
                .volumes
                .unwrap_or_default()
                .into_iter()
                .map(|v| ObservedVolume {
                    name: v.name,
                    labels: sorted(v.labels),
                })
                .collect(),
        };
        // The engine lists in no promised order; plans are snapshot-tested, so be stable.
        observed.containers.sort_by(|a, b| {
            (&a.service, a.replica, &a.name).cmp(&(&b.service, b.replica, &b.name))
        });
        observed.networks.sort_by(|a, b| a.name.cmp(&b.name));
        observed.volumes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(observed)
    }

    pub(crate) async fn inspect(&self, id: &str) -> Result<ObservedContainer, RuntimeError> {
        let reply = self
            .api
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(|e| {
                engine_error(
                    e,
                    &format!("inspect container {id}"),
                    &format!("container {id}"),
                )
            })?;
        Ok(from_inspect(reply))
    }
}

/// The container's IPv4 address on each network, by network name.
fn addresses(
    networks: Option<HashMap<String, bollard::models::EndpointSettings>>,
) -> BTreeMap<String, String> {
    networks
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(net, ep)| {
            ep.ip_address
                .filter(|ip| !ip.is_empty())
                .map(|ip| (net, ip))
        })
        .collect()
}

fn sorted(map: HashMap<String, String>) -> BTreeMap<String, String> {
    map.into_iter().collect()
}

fn from_labels(container: &mut ObservedContainer) {
    let l = &container.labels;
    container.service = l.get(labels::SERVICE).cloned().unwrap_or_default();
    container.replica = l
        .get(labels::REPLICA)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    container.config_hash = l.get(labels::CONFIG_HASH).cloned().unwrap_or_default();
    container.oneoff = l.get(labels::ONEOFF).is_some_and(|v| v == "true");
}

fn from_summary(s: ContainerSummary) -> ObservedContainer {
    let status = s.status.unwrap_or_default();
    let state = match s.state {
        Some(ContainerSummaryStateEnum::CREATED) => ContainerState::Created,
        Some(ContainerSummaryStateEnum::RUNNING) => ContainerState::Running,
        Some(ContainerSummaryStateEnum::PAUSED) => ContainerState::Paused,
        Some(ContainerSummaryStateEnum::RESTARTING) => ContainerState::Restarting,
        Some(ContainerSummaryStateEnum::EXITED) => ContainerState::Exited,
        Some(ContainerSummaryStateEnum::REMOVING) => ContainerState::Removing,
        Some(ContainerSummaryStateEnum::DEAD) => ContainerState::Dead,
        _ => ContainerState::Unknown,
    };
    let mut ports: Vec<String> = s
        .ports
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| {
            let published = p.public_port?;
            let proto = match p.typ {
                Some(PortTypeEnum::UDP) => "udp",
                Some(PortTypeEnum::SCTP) => "sctp",
                _ => "tcp",
            };
            Some(port_string(
                p.ip.as_deref().unwrap_or(""),
                &published.to_string(),
                &p.private_port.to_string(),
                proto,
            ))
        })
        .collect();
    ports.sort();
    ports.dedup();
    let addresses = addresses(s.network_settings.and_then(|n| n.networks));
    let mut container = ObservedContainer {
        id: s.id.unwrap_or_default(),
        name: s
            .names
            .and_then(|n| n.into_iter().next())
            .map(|n| n.trim_start_matches('/').to_string())
            .unwrap_or_default(),
        service: String::new(),
        replica: 0,
        config_hash: String::new(),
        oneoff: false,
        image: s.image.unwrap_or_default(),
        state,
        health: health_from_status(&status),
        exit_code: matches!(state, ContainerState::Exited | ContainerState::Dead)
            .then(|| exit_code_from_status(&status))
            .flatten(),
        status,
        ports,
        labels: sorted(s.labels.unwrap_or_default()),
        created: s.created.unwrap_or(0),
        restart_count: 0,
        addresses,
    };
    from_labels(&mut container);
    container
}

fn from_inspect(r: ContainerInspectResponse) -> ObservedContainer {
    let st = r.state.unwrap_or_default();
    let state = match st.status {
        Some(ContainerStateStatusEnum::CREATED) => ContainerState::Created,
        Some(ContainerStateStatusEnum::RUNNING) => ContainerState::Running,
        Some(ContainerStateStatusEnum::PAUSED) => ContainerState::Paused,
        Some(ContainerStateStatusEnum::RESTARTING) => ContainerState::Restarting,
        Some(ContainerStateStatusEnum::EXITED) => ContainerState::Exited,
        Some(ContainerStateStatusEnum::REMOVING) => ContainerState::Removing,
        Some(ContainerStateStatusEnum::DEAD) => ContainerState::Dead,
        _ => ContainerState::Unknown,
    };
    let health = match st.health.and_then(|h| h.status) {
        Some(HealthStatusEnum::STARTING) => Health::Starting,
        Some(HealthStatusEnum::HEALTHY) => Health::Healthy,
        Some(HealthStatusEnum::UNHEALTHY) => Health::Unhealthy,
        _ => Health::None,
    };
    let exit_code = matches!(state, ContainerState::Exited | ContainerState::Dead)
        .then_some(st.exit_code)
        .flatten();
    let status = match (state, health, exit_code) {
        (ContainerState::Exited, _, Some(code)) => format!("exited ({code})"),
        (ContainerState::Running, Health::Healthy, _) => "running (healthy)".to_string(),
        (ContainerState::Running, Health::Unhealthy, _) => "running (unhealthy)".to_string(),
        (ContainerState::Running, Health::Starting, _) => "running (health: starting)".to_string(),
        (state, _, _) => serde_json::to_value(state)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default(),
    };
    let mut ports = Vec::new();
    for (key, bindings) in r
        .network_settings
        .as_ref()
        .and_then(|n| n.ports.clone())
        .unwrap_or_default()
    {
        let (target, proto) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
        for b in bindings.unwrap_or_default() {
            if let Some(host_port) = b.host_port.filter(|p| !p.is_empty()) {
                ports.push(port_string(
                    b.host_ip.as_deref().unwrap_or(""),
                    &host_port,
                    target,
                    proto,
                ));
            }
        }
    }
    ports.sort();
    ports.dedup();
    let config = r.config.unwrap_or_default();
    let addresses = addresses(r.network_settings.as_ref().and_then(|n| n.networks.clone()));
    let mut container = ObservedContainer {
        id: r.id.unwrap_or_default(),
        name: r
            .name
            .map(|n| n.trim_start_matches('/').to_string())
            .unwrap_or_default(),
        service: String::new(),
        replica: 0,
        config_hash: String::new(),
        oneoff: false,
        image: config.image.unwrap_or_default(),
        state,
        health,
        exit_code,
        status,
        ports,
        labels: sorted(config.labels.unwrap_or_default()),
        created: r.created.as_deref().and_then(parse_rfc3339).unwrap_or(0),
        restart_count: r.restart_count.map_or(0, |n| n.max(0) as u32),
        addresses,
    };
    from_labels(&mut container);
    container
}

fn port_string(host_ip: &str, published: &str, target: &str, proto: &str) -> String {
    if host_ip.contains(':') {
        format!("[{host_ip}]:{published}->{target}/{proto}")
    } else {
        format!("{host_ip}:{published}->{target}/{proto}")
    }
}

/// The engine's list call gives health only inside the human status.
fn health_from_status(status: &str) -> Health {
    if status.contains("(healthy)") {
        Health::Healthy
    } else if status.contains("(unhealthy)") {
        Health::Unhealthy
    } else if status.contains("(health: starting)") {
        Health::Starting
    } else {
        Health::None
    }
}

/// `Exited (137) 5 seconds ago` → 137.
fn exit_code_from_status(status: &str) -> Option<i64> {
    let rest = status.split_once('(')?.1;
    rest.split_once(')')?.0.trim().parse().ok()
}

/// Unix seconds of an RFC 3339 timestamp as the engine writes them
/// (`2024-05-01T12:00:00.123456789Z` or with a `+02:00` offset).
pub(crate) fn parse_rfc3339(s: &str) -> Option<i64> {
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: i64 = d.next()?.parse().ok()?;
    let day: i64 = d.next()?.parse().ok()?;
    let hms = time.get(..8)?;
    let mut t = hms.split(':');
    let hour: i64 = t.next()?.parse().ok()?;
    let min: i64 = t.next()?.parse().ok()?;
    let sec: i64 = t.next()?.parse().ok()?;
    let zone = time[8..].trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    let offset = match zone {
        "Z" | "z" | "" => 0,
        z => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let (h, m) = z.get(1..)?.split_once(':')?;
            sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60)
        }
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + min * 60 + sec - offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2024-05-01T12:00:00.123456789Z"),
            Some(1_714_564_800)
        );
        assert_eq!(
            parse_rfc3339("2024-05-01T14:00:00+02:00"),
            Some(1_714_564_800)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn status_parsing() {
        assert_eq!(
            health_from_status("Up 3 seconds (healthy)"),
            Health::Healthy
        );
        assert_eq!(
            health_from_status("Up 1 second (health: starting)"),
            Health::Starting
        );
        assert_eq!(health_from_status("Up 1 second"), Health::None);
        assert_eq!(
            exit_code_from_status("Exited (137) 5 seconds ago"),
            Some(137)
        );
        assert_eq!(exit_code_from_status("Created"), None);
    }
}
