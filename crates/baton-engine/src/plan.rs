//! The planner: a pure function from (desired project, observed world) to an ordered
//! list of actions, each with its reason. No I/O; plans print, serialise and test as data.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use baton_spec::{Project, Service};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::graph;
use crate::hash::{changed_paths, effective_config, service_hash};
use crate::resolve::{build_spec, container_name, image_ref};
use crate::runtime::{Capabilities, ContainerState, Observed, ObservedContainer};

/// One thing to do to the world. Container actions always name the service and replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    PullImage {
        service: String,
        image: String,
        reason: String,
    },
    BuildImage {
        service: String,
        image: String,
        reason: String,
    },
    CreateNetwork {
        key: String,
        name: String,
    },
    CreateVolume {
        key: String,
        name: String,
    },
    /// Create and start a new replica.
    CreateContainer {
        service: String,
        replica: u32,
        name: String,
        reason: String,
    },
    /// Start an existing, up-to-date replica that is not running.
    StartContainer {
        service: String,
        replica: u32,
        name: String,
        id: String,
        reason: String,
    },
    /// Replace a replica whose configuration changed.
    RecreateContainer {
        service: String,
        replica: u32,
        name: String,
        id: String,
        changes: Vec<String>,
    },
    RemoveContainer {
        service: String,
        replica: u32,
        name: String,
        id: String,
        reason: String,
    },
    RemoveNetwork {
        name: String,
        id: String,
        reason: String,
    },
    RemoveVolume {
        name: String,
        reason: String,
    },
    /// Hand a service whose traffic baton manages to the daemon, which replaces its
    /// replicas with the rollout strategy (rolling, blue-green, canary).
    Rollout {
        service: String,
        from_hash: String,
        to_hash: String,
        changes: Vec<String>,
    },
    /// Create (`create`) or change an object an orchestrator keeps: a Swarm service,
    /// network, volume, secret or config; a Kubernetes object (`orchestrate.rs`).
    Put {
        kind: String,
        name: String,
        service: Option<String>,
        create: bool,
        changes: Vec<String>,
    },
    /// Delete an object an orchestrator keeps.
    Delete {
        kind: String,
        name: String,
        service: Option<String>,
        reason: String,
    },
}

impl Action {
    /// The service a container or image action belongs to.
    pub fn service(&self) -> Option<&str> {
        match self {
            Action::PullImage { service, .. }
            | Action::BuildImage { service, .. }
            | Action::CreateContainer { service, .. }
            | Action::StartContainer { service, .. }
            | Action::RecreateContainer { service, .. }
            | Action::RemoveContainer { service, .. }
            | Action::Rollout { service, .. } => Some(service),
            Action::Put { service, .. } | Action::Delete { service, .. } => service.as_deref(),
            _ => None,
        }
    }

    /// A short verb for journals and displays.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::PullImage { .. } => "pull",
            Action::BuildImage { .. } => "build",
            Action::CreateNetwork { .. } => "create-network",
            Action::CreateVolume { .. } => "create-volume",
            Action::CreateContainer { .. } => "create",
            Action::StartContainer { .. } => "start",
            Action::RecreateContainer { .. } => "recreate",
            Action::RemoveContainer { .. } => "remove",
            Action::RemoveNetwork { .. } => "remove-network",
            Action::RemoveVolume { .. } => "remove-volume",
            Action::Rollout { .. } => "rollout",
            Action::Put { create: true, .. } => "create",
            Action::Put { create: false, .. } => "update",
            Action::Delete { .. } => "delete",
        }
    }

    /// What the action acts on: an image, network, volume or container name.
    pub fn target(&self) -> &str {
        match self {
            Action::PullImage { image, .. } | Action::BuildImage { image, .. } => image,
            Action::CreateNetwork { name, .. }
            | Action::CreateVolume { name, .. }
            | Action::CreateContainer { name, .. }
            | Action::StartContainer { name, .. }
            | Action::RecreateContainer { name, .. }
            | Action::RemoveContainer { name, .. }
            | Action::RemoveNetwork { name, .. }
            | Action::RemoveVolume { name, .. }
            | Action::Put { name, .. }
            | Action::Delete { name, .. } => name,
            Action::Rollout { service, .. } => service,
        }
    }

    /// Why, in words.
    pub fn reason(&self) -> String {
        match self {
            Action::PullImage { reason, .. }
            | Action::BuildImage { reason, .. }
            | Action::CreateContainer { reason, .. }
            | Action::StartContainer { reason, .. }
            | Action::RemoveContainer { reason, .. }
            | Action::RemoveNetwork { reason, .. }
            | Action::RemoveVolume { reason, .. }
            | Action::Delete { reason, .. } => reason.clone(),
            Action::Put { create: true, .. } => "declared".into(),
            Action::CreateNetwork { .. } | Action::CreateVolume { .. } => "declared".into(),
            Action::RecreateContainer { changes, .. }
            | Action::Rollout { changes, .. }
            | Action::Put { changes, .. } => {
                format!("{} changed", changes.join(", "))
            }
        }
    }
}

/// A plan: the actions in the order a careful human would do them (images, networks and
/// volumes, then containers service by service in dependency order, then removals).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub project: String,
    pub actions: Vec<Action>,
    /// Services considered and found up to date.
    pub up_to_date: Vec<String>,
    /// Things worth saying that are not actions (orphans left in place, …).
    pub warnings: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// The services with at least one action, sorted.
    pub fn changed_services(&self) -> Vec<String> {
        let set: BTreeSet<&str> = self.actions.iter().filter_map(Action::service).collect();
        set.into_iter().map(String::from).collect()
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.actions.is_empty() {
            writeln!(
                f,
                "project {}: nothing to do ({} service{} up to date)",
                self.project,
                self.up_to_date.len(),
                if self.up_to_date.len() == 1 { "" } else { "s" }
            )?;
        } else {
            let n = self.actions.len();
            writeln!(
                f,
                "project {}: {n} action{}",
                self.project,
                if n == 1 { "" } else { "s" }
            )?;
            for a in &self.actions {
                let sign = match a {
                    Action::RecreateContainer { .. }
                    | Action::Rollout { .. }
                    | Action::Put { create: false, .. } => '~',
                    Action::RemoveContainer { .. }
                    | Action::RemoveNetwork { .. }
                    | Action::RemoveVolume { .. }
                    | Action::Delete { .. } => '-',
                    Action::StartContainer { .. } => '>',
                    _ => '+',
                };
                let verb = match a {
                    Action::Put { kind, .. } | Action::Delete { kind, .. } => {
                        format!("{} {kind}", a.kind())
                    }
                    _ => a.kind().to_string(),
                };
                writeln!(f, "  {sign} {verb:<15} {:<32} {}", a.target(), a.reason())?;
            }
        }
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Services to bring up (with their dependencies unless `no_deps`); empty = all.
    pub services: Vec<String>,
    pub no_deps: bool,
    pub force_recreate: bool,
    pub no_recreate: bool,
    pub remove_orphans: bool,
    /// Build images even when present.
    pub build: bool,
    /// Replica counts that override the file (`--scale`, `baton scale`).
    pub scale: BTreeMap<String, u32>,
}

/// What the planner reads.
pub struct PlanInput<'a> {
    pub project: &'a Project,
    pub observed: &'a Observed,
    /// Image references present in the local image store.
    pub images_present: &'a BTreeSet<String>,
    /// The effective configuration behind an earlier config hash, if the store has it.
    pub previous_config: &'a dyn Fn(&str) -> Option<Value>,
    pub options: &'a PlanOptions,
    /// What the backend can honour; the rest is refused or warned about.
    pub capabilities: &'a Capabilities,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("no such service: {name}{hint}")]
    UnknownService { name: String, hint: String },
    #[error(
        "service {service}: container_name {container_name:?} allows one replica, not {replicas}"
    )]
    FixedNameScaled {
        service: String,
        container_name: String,
        replicas: u32,
    },
    #[error("service {service}: {kind} {name:?} is external (external: true), and this engine has no {kind} store to take it from: give it a file:, environment: or content: source, or deploy to a swarm")]
    ExternalFile {
        service: String,
        /// `secret` or `config`.
        kind: &'static str,
        name: String,
    },
}

/// What the backend cannot honour in the selected services: an error for what would make
/// a container start without something it needs (an external secret with no store to
/// take it from), one warning line per setting it ignores.
pub fn unsupported(
    project: &Project,
    services: &[String],
    caps: &Capabilities,
) -> Result<Vec<String>, PlanError> {
    let mut warnings = Vec::new();
    for name in services {
        let svc = &project.services[name];
        for (kind, refs, objects) in [
            ("secret", &svc.secrets, &project.secrets),
            ("config", &svc.configs, &project.configs),
        ] {
            for r in refs {
                let external = objects.get(&r.source).is_some_and(|o| o.external);
                if external && !caps.external_files {
                    return Err(PlanError::ExternalFile {
                        service: name.clone(),
                        kind,
                        name: r.source.clone(),
                    });
                }
            }
        }
        let Some(deploy) = &svc.deploy else { continue };
        let ignored =
            |key: &str, what: &str| format!("service {name}: deploy.{key} is ignored: {what}");
        if deploy.mode.as_deref() == Some("global") && !caps.global_mode {
            warnings.push(ignored(
                "mode: global",
                "this engine is one machine, so the service runs its replicas here",
            ));
        }
        if deploy.other.contains_key("placement") && !caps.placement {
            warnings.push(ignored(
                "placement",
                "this engine is one machine, there is nowhere else to place replicas",
            ));
        }
        if deploy.other.contains_key("endpoint_mode") && !caps.endpoint_mode {
            warnings.push(ignored(
                "endpoint_mode",
                "this engine resolves a service name to its containers' addresses",
            ));
        }
    }
    Ok(warnings)
}

/// Plans `up`: everything needed for the selected services to run as the file says.
pub fn plan_up(input: &PlanInput<'_>) -> Result<Plan, PlanError> {
    let project = input.project;
    let opts = input.options;
    let selected = select_services(project, &opts.services, opts.no_deps)?;
    let order = graph::start_order(project, &selected);

    let mut actions = Vec::new();
    let mut up_to_date = Vec::new();
    let mut warnings = unsupported(project, &order, input.capabilities)?;

    // Images, once per reference.
    let mut seen_images = BTreeSet::new();
    for name in &order {
        let svc = &project.services[name];
        let image = image_ref(&project.name, name, svc);
        if !seen_images.insert(image.clone()) {
            continue;
        }
        let present = input.images_present.contains(&image);
        if build_spec(&project.name, name, svc).is_some() && (opts.build || !present) {
            let reason = if present {
                "--build"
            } else {
                "image not built yet"
            };
            actions.push(Action::BuildImage {
                service: name.clone(),
                image,
                reason: reason.into(),
            });
        } else if !present || svc.pull_policy.as_deref() == Some("always") {
            let reason = if present {
                "pull_policy: always"
            } else {
                "image not present"
            };
            actions.push(Action::PullImage {
                service: name.clone(),
                image,
                reason: reason.into(),
            });
        }
    }

    // Networks and volumes the selected services use.
    let mut net_keys = BTreeSet::new();
    let mut vol_keys = BTreeSet::new();
    for name in &order {
        let svc = &project.services[name];
        net_keys.extend(svc.networks.keys().cloned());
        for m in &svc.volumes {
            if m.kind == "volume" {
                if let Some(src) = &m.source {
                    if project.volumes.contains_key(src) {
                        vol_keys.insert(src.clone());
                    }
                }
            }
        }
    }
    let mut by_name: BTreeMap<&str, Vec<&crate::runtime::ObservedNetwork>> = BTreeMap::new();
    for n in &input.observed.networks {
        by_name.entry(n.name.as_str()).or_default().push(n);
    }
    for key in &net_keys {
        let Some(n) = project.networks.get(key) else {
            continue;
        };
        if !n.external && !by_name.contains_key(n.name.as_str()) {
            actions.push(Action::CreateNetwork {
                key: key.clone(),
                name: n.name.clone(),
            });
        }
    }
    let observed_vols: BTreeSet<&str> = input
        .observed
        .volumes
        .iter()
        .map(|v| v.name.as_str())
        .collect();
    for key in &vol_keys {
        let v = &project.volumes[key];
        if !v.external && !observed_vols.contains(v.name.as_str()) {
            actions.push(Action::CreateVolume {
                key: key.clone(),
                name: v.name.clone(),
            });
        }
    }

    // Containers, service by service.
    let mut by_service: BTreeMap<&str, Vec<&ObservedContainer>> = BTreeMap::new();
    for c in input.observed.containers.iter().filter(|c| !c.oneoff) {
        by_service.entry(c.service.as_str()).or_default().push(c);
    }
    for name in &order {
        let svc = &project.services[name];
        let replicas = opts
            .scale
            .get(name)
            .copied()
            .unwrap_or_else(|| svc.replicas());
        if let Some(cn) = &svc.container_name {
            if replicas > 1 {
                return Err(PlanError::FixedNameScaled {
                    service: name.clone(),
                    container_name: cn.clone(),
                    replicas,
                });
            }
        }
        let before = actions.len();
        plan_service(
            input,
            name,
            svc,
            replicas,
            by_service.remove(name.as_str()).unwrap_or_default(),
            &mut actions,
        );
        if actions.len() == before {
            up_to_date.push(name.clone());
        }
    }

    // Containers of services the file no longer has.
    for (service, containers) in by_service {
        if project.services.contains_key(service) || project.disabled_services.contains_key(service)
        {
            continue;
        }
        for c in containers {
            if opts.remove_orphans {
                actions.push(remove(
                    c,
                    format!("orphan: service {service:?} is not in the file"),
                ));
            } else {
                warnings.push(format!(
                    "orphan container {} (service {service:?} is not in the file); --remove-orphans removes it",
                    c.name
                ));
            }
        }
    }

    // Duplicate networks (a killed run can leave two with one name): keep the oldest.
    for (name, mut nets) in by_name {
        if nets.len() > 1 {
            nets.sort_by_key(|n| (n.created, n.id.clone()));
            for n in &nets[1..] {
                actions.push(Action::RemoveNetwork {
                    name: name.to_string(),
                    id: n.id.clone(),
                    reason: "duplicate network".into(),
                });
            }
        }
    }

    Ok(Plan {
        project: project.name.clone(),
        actions,
        up_to_date,
        warnings,
    })
}

fn plan_service(
    input: &PlanInput<'_>,
    name: &str,
    svc: &Service,
    replicas: u32,
    observed: Vec<&ObservedContainer>,
    actions: &mut Vec<Action>,
) {
    let project = &input.project.name;
    let opts = input.options;
    let hash = service_hash(svc);
    // A service whose traffic baton manages changes by rollout, as a whole, in the daemon.
    if crate::resolve::traffic_managed(svc) && !opts.no_recreate {
        if let Some(old) = observed.iter().find(|c| c.config_hash != hash) {
            let changes = match (input.previous_config)(&old.config_hash) {
                Some(prev) => changed_paths(&prev, &effective_config(svc)),
                None => vec!["configuration (earlier version unknown)".into()],
            };
            actions.push(Action::Rollout {
                service: name.into(),
                from_hash: old.config_hash.clone(),
                to_hash: hash,
                changes,
            });
            return;
        }
    }
    let mut by_replica: BTreeMap<u32, Vec<&ObservedContainer>> = BTreeMap::new();
    for c in observed {
        by_replica.entry(c.replica).or_default().push(c);
    }
    for replica in 1..=replicas {
        let mut found = by_replica.remove(&replica).unwrap_or_default();
        if found.is_empty() {
            actions.push(Action::CreateContainer {
                service: name.into(),
                replica,
                name: container_name(project, name, svc, replica),
                reason: "new replica".into(),
            });
            continue;
        }
        // Keep the best candidate: up to date and running first, then the newest.
        found.sort_by_key(|c| {
            (
                c.config_hash != hash,
                c.state != ContainerState::Running,
                -c.created,
            )
        });
        let keep = found[0];
        for dup in &found[1..] {
            actions.push(remove(dup, "duplicate replica".into()));
        }
        if opts.force_recreate || (keep.config_hash != hash && !opts.no_recreate) {
            let changes = if opts.force_recreate && keep.config_hash == hash {
                vec!["--force-recreate".to_string()]
            } else {
                match (input.previous_config)(&keep.config_hash) {
                    Some(old) => {
                        let c = changed_paths(&old, &effective_config(svc));
                        if c.is_empty() {
                            vec!["configuration".into()]
                        } else {
                            c
                        }
                    }
                    None => vec!["configuration (earlier version unknown)".into()],
                }
            };
            actions.push(Action::RecreateContainer {
                service: name.into(),
                replica,
                name: keep.name.clone(),
                id: keep.id.clone(),
                changes,
            });
        } else if keep.state != ContainerState::Running && !completed_job(input, name, keep) {
            actions.push(Action::StartContainer {
                service: name.into(),
                replica,
                name: keep.name.clone(),
                id: keep.id.clone(),
                reason: format!("container is {}", state_word(keep.state)),
            });
        }
    }
    for (replica, extra) in by_replica {
        for c in extra {
            let reason = if replica == 0 {
                "container without a replica number".to_string()
            } else {
                format!("scale down to {replicas}")
            };
            actions.push(remove(c, reason));
        }
    }
}

/// A container that exited 0 and that another service waits for with
/// `service_completed_successfully` is done, not down: don't start it again.
fn completed_job(input: &PlanInput<'_>, name: &str, c: &ObservedContainer) -> bool {
    c.state == ContainerState::Exited
        && c.exit_code == Some(0)
        && input.project.services.values().any(|s| {
            s.depends_on
                .get(name)
                .is_some_and(|d| d.condition == baton_spec::Condition::ServiceCompletedSuccessfully)
        })
}

fn state_word(s: ContainerState) -> &'static str {
    match s {
        ContainerState::Created => "created",
        ContainerState::Running => "running",
        ContainerState::Paused => "paused",
        ContainerState::Restarting => "restarting",
        ContainerState::Exited => "exited",
        ContainerState::Dead => "dead",
        ContainerState::Removing => "being removed",
        ContainerState::Unknown => "in an unknown state",
    }
}

fn remove(c: &ObservedContainer, reason: String) -> Action {
    Action::RemoveContainer {
        service: c.service.clone(),
        replica: c.replica,
        name: c.name.clone(),
        id: c.id.clone(),
        reason,
    }
}

/// The services to act on: the named ones plus (unless `no_deps`) what they depend on;
/// all active services when none is named.
pub fn select_services(
    project: &Project,
    named: &[String],
    no_deps: bool,
) -> Result<BTreeSet<String>, PlanError> {
    if named.is_empty() {
        return Ok(project.services.keys().cloned().collect());
    }
    let mut out = BTreeSet::new();
    let mut stack: Vec<String> = Vec::new();
    for n in named {
        if !project.services.contains_key(n) {
            let known = project
                .services
                .keys()
                .chain(project.disabled_services.keys())
                .map(String::as_str);
            let hint = baton_spec::suggest(n, known)
                .map(|h| format!(" ({h})"))
                .unwrap_or_default();
            return Err(PlanError::UnknownService {
                name: n.clone(),
                hint,
            });
        }
        stack.push(n.clone());
    }
    while let Some(n) = stack.pop() {
        if !out.insert(n.clone()) || no_deps {
            continue;
        }
        if let Some(s) = project.services.get(&n) {
            for dep in s.depends_on.keys() {
                if project.services.contains_key(dep) {
                    stack.push(dep.clone());
                }
            }
        }
    }
    Ok(out)
}

/// Plans `down`: every container, then the networks, and with `volumes` the volumes, of
/// the project as observed (so it works without the file, and finds leftovers).
pub fn plan_down(project: &str, observed: &Observed, volumes: bool) -> Plan {
    let mut actions: Vec<Action> = observed
        .containers
        .iter()
        .map(|c| remove(c, "down".into()))
        .collect();
    for n in &observed.networks {
        actions.push(Action::RemoveNetwork {
            name: n.name.clone(),
            id: n.id.clone(),
            reason: "down".into(),
        });
    }
    if volumes {
        for v in &observed.volumes {
            actions.push(Action::RemoveVolume {
                name: v.name.clone(),
                reason: "down -v".into(),
            });
        }
    }
    Plan {
        project: project.to_string(),
        actions,
        up_to_date: Vec::new(),
        warnings: Vec::new(),
    }
}
