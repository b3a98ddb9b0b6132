//! The supervisor's decider: what the daemon must do so a project that should run keeps
//! running — replicas that vanished, were killed or stay unhealthy — given a clock.
//!
//! Pure: (project, observed, what was stopped by hand, restart history, now) → decisions.
//! dockerd's own restart policy already restarts crashed containers with a capped
//! backoff; this brings back what dockerd treats as stopped by hand (`docker kill`,
//! `docker stop`, `docker rm`) and replaces unhealthy replicas, with baton's backoff.

use std::collections::BTreeMap;

use baton_spec::{Project, Service};
use serde::Serialize;

use crate::hash::service_hash;
use crate::restart::{restart_decision, restart_policy, ExitInfo, RestartDecision, RestartHistory};
use crate::runtime::{ContainerState, Health, Observed, ObservedContainer};

/// What to do about one replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// The replica does not exist: create and start it.
    Create {
        service: String,
        replica: u32,
        reason: String,
    },
    /// The container exists but is not running: start it.
    Start {
        service: String,
        replica: u32,
        id: String,
        reason: String,
    },
    /// The container is unhealthy: replace it with a new one.
    Replace {
        service: String,
        replica: u32,
        id: String,
        reason: String,
    },
    /// Not yet: backing off until `at_ms`.
    Wait {
        service: String,
        replica: u32,
        at_ms: u64,
        reason: String,
    },
    /// The restart policy's attempts are used up: leave it down.
    GiveUp {
        service: String,
        replica: u32,
        reason: String,
    },
}

impl Decision {
    pub fn key(&self) -> (String, u32) {
        match self {
            Decision::Create {
                service, replica, ..
            }
            | Decision::Start {
                service, replica, ..
            }
            | Decision::Replace {
                service, replica, ..
            }
            | Decision::Wait {
                service, replica, ..
            }
            | Decision::GiveUp {
                service, replica, ..
            } => (service.clone(), *replica),
        }
    }
}

/// How the supervisor sees a replica that is down: it polls, so it does not know how
/// long the container ran; the time since baton last restarted it stands in (a replica
/// never restarted by baton counts as having run long).
fn exit_info(code: i64, history: &RestartHistory, now_ms: u64) -> ExitInfo {
    ExitInfo {
        code,
        ran_ms: history
            .restarts_ms
            .last()
            .map_or(u64::MAX, |t| now_ms.saturating_sub(*t)),
        stopped_by_user: false,
        daemon_start: false,
    }
}

/// Records that the supervisor restarted a replica now (call after acting on a
/// `Create`, `Start` or `Replace`).
pub fn note_restart(history: &mut RestartHistory, service: &Service, code: i64, now_ms: u64) {
    let exit = exit_info(code, history, now_ms);
    let window = restart_policy(service).ok().and_then(|p| p.window_ms);
    history.record(&exit, now_ms, window);
}

/// Whether the service's restart policy wants its replicas kept running.
pub fn keeps_running(service: &Service) -> bool {
    restart_policy(service).is_ok_and(|p| p.condition != crate::restart::Condition::Never)
}

/// The decisions for one project. `stopped` are services stopped by hand; `histories`
/// are keyed by (service, replica).
pub fn supervise(
    project: &Project,
    observed: &Observed,
    stopped: &[String],
    histories: &BTreeMap<(String, u32), RestartHistory>,
    now_ms: u64,
) -> Vec<Decision> {
    let mut by_key: BTreeMap<(&str, u32), &ObservedContainer> = BTreeMap::new();
    for c in observed.containers.iter().filter(|c| !c.oneoff) {
        by_key.entry((c.service.as_str(), c.replica)).or_insert(c);
    }
    let empty = RestartHistory::default();
    let mut out = Vec::new();
    for (name, svc) in &project.services {
        let Ok(policy) = restart_policy(svc) else {
            continue;
        };
        if stopped.contains(name) || !keeps_running(svc) {
            continue;
        }
        let hash = service_hash(svc);
        for replica in 1..=svc.replicas() {
            let key = (name.clone(), replica);
            let history = histories.get(&key).unwrap_or(&empty);
            let wanted = match by_key.get(&(name.as_str(), replica)) {
                None => Some((None, "replica missing".to_string(), false, 1)),
                // Another revision: `up` and rollouts own those, not the supervisor.
                Some(c) if c.config_hash != hash => None,
                Some(c) => match (c.state, c.health) {
                    (ContainerState::Running, Health::Unhealthy) => {
                        Some((Some(*c), "unhealthy".to_string(), true, 1))
                    }
                    (
                        ContainerState::Exited | ContainerState::Dead | ContainerState::Created,
                        _,
                    ) => {
                        let code = c.exit_code.unwrap_or(0);
                        Some((Some(*c), format!("exited with code {code}"), false, code))
                    }
                    _ => None,
                },
            };
            let Some((container, reason, replace, code)) = wanted else {
                continue;
            };
            // The backoff runs from the last restart, not from this tick; a replica baton
            // never restarted comes back at once.
            let exit = exit_info(code, history, now_ms);
            let decision = match history.restarts_ms.last() {
                Some(&since) => restart_decision(&policy, history, exit, since),
                None => match restart_decision(&policy, history, exit, now_ms) {
                    RestartDecision::RestartAt { .. } => RestartDecision::RestartNow,
                    other => other,
                },
            };
            let at = match decision {
                RestartDecision::Leave => continue,
                RestartDecision::GiveUp { reason: why } => {
                    out.push(Decision::GiveUp {
                        service: name.clone(),
                        replica,
                        reason: format!("{reason}; {why}"),
                    });
                    continue;
                }
                RestartDecision::RestartNow => now_ms,
                RestartDecision::RestartAt { at_ms } => at_ms,
            };
            if at > now_ms {
                out.push(Decision::Wait {
                    service: name.clone(),
                    replica,
                    at_ms: at,
                    reason: if history.crash_looping(now_ms) {
                        format!("{reason}; crash-looping, backing off")
                    } else {
                        format!("{reason}; backing off")
                    },
                });
                continue;
            }
            out.push(match container {
                None => Decision::Create {
                    service: name.clone(),
                    replica,
                    reason,
                },
                Some(c) if replace => Decision::Replace {
                    service: name.clone(),
                    replica,
                    id: c.id.clone(),
                    reason,
                },
                Some(c) => Decision::Start {
                    service: name.clone(),
                    replica,
                    id: c.id.clone(),
                    reason,
                },
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_spec::Deploy;

    fn project(restart: Option<&str>, replicas: u32) -> Project {
        let svc = Service {
            image: Some("busybox".into()),
            restart: restart.map(String::from),
            deploy: Some(Deploy {
                replicas: Some(replicas),
                ..Default::default()
            }),
            ..Default::default()
        };
        Project {
            name: "p".into(),
            services: [("web".to_string(), svc)].into(),
            ..Default::default()
        }
    }

    fn container(
        p: &Project,
        replica: u32,
        state: ContainerState,
        health: Health,
    ) -> ObservedContainer {
        ObservedContainer {
            id: format!("id{replica}"),
            name: format!("p-web-{replica}"),
            service: "web".into(),
            replica,
            config_hash: service_hash(&p.services["web"]),
            oneoff: false,
            image: "busybox".into(),
            state,
            health,
            exit_code: Some(137),
            status: String::new(),
            ports: vec![],
            labels: Default::default(),
            created: 0,
            restart_count: 0,
            addresses: Default::default(),
        }
    }

    #[test]
    fn killed_and_missing_replicas_come_back_healthy_ones_are_left_alone() {
        let p = project(Some("always"), 3);
        let observed = Observed {
            containers: vec![
                container(&p, 1, ContainerState::Running, Health::Healthy),
                container(&p, 2, ContainerState::Exited, Health::None),
            ],
            ..Default::default()
        };
        let d = supervise(&p, &observed, &[], &BTreeMap::new(), 1_000);
        assert_eq!(
            d,
            vec![
                Decision::Start {
                    service: "web".into(),
                    replica: 2,
                    id: "id2".into(),
                    reason: "exited with code 137".into()
                },
                Decision::Create {
                    service: "web".into(),
                    replica: 3,
                    reason: "replica missing".into()
                },
            ]
        );
    }

    #[test]
    fn stopped_services_and_no_restart_policy_are_respected() {
        let p = project(Some("always"), 1);
        let observed = Observed {
            containers: vec![container(&p, 1, ContainerState::Exited, Health::None)],
            ..Default::default()
        };
        assert!(supervise(&p, &observed, &["web".into()], &BTreeMap::new(), 0).is_empty());
        let p = project(None, 1);
        assert!(supervise(&p, &Observed::default(), &[], &BTreeMap::new(), 0).is_empty());
    }

    #[test]
    fn unhealthy_replicas_are_replaced() {
        let p = project(Some("unless-stopped"), 1);
        let observed = Observed {
            containers: vec![container(&p, 1, ContainerState::Running, Health::Unhealthy)],
            ..Default::default()
        };
        let d = supervise(&p, &observed, &[], &BTreeMap::new(), 0);
        assert!(matches!(&d[0], Decision::Replace { reason, .. } if reason == "unhealthy"));
    }

    #[test]
    fn waiting_replicas_say_so() {
        let p = project(Some("always"), 1);
        let h = RestartHistory {
            restarts_ms: vec![0, 100, 300, 700, 1500],
            consecutive: 5,
        };
        let histories = BTreeMap::from([(("web".to_string(), 1), h)]);
        let observed = Observed {
            containers: vec![container(&p, 1, ContainerState::Exited, Health::None)],
            ..Default::default()
        };
        let d = supervise(&p, &observed, &[], &histories, 1600);
        assert_eq!(
            d,
            vec![Decision::Wait {
                service: "web".into(),
                replica: 1,
                at_ms: 1500 + 3200,
                reason: "exited with code 137; crash-looping, backing off".into()
            }]
        );
    }
}
