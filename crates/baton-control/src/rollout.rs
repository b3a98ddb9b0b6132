//! Rollouts as the front doors steer them: record one, request promote/abort/resume on
//! the newest, undo to an earlier revision, and follow their progress; `baton serve`
//! carries them out.

use std::collections::{BTreeMap, BTreeSet};

use baton_engine::hash::{effective_config, hash_value, service_hash};
use baton_engine::rollout::{undo_target, Recorded, RolloutSpec, RolloutState};
use baton_engine::runtime::Runtime;
use baton_spec::{Project, Service};
use baton_state::{RolloutRecord, RolloutRequest, RolloutStatus};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::converge::refused;
use crate::views::RolloutProgress;
use crate::{Control, Result};

/// A store record as the engine's choices read it.
pub(crate) fn recorded(r: &RolloutRecord) -> Recorded {
    Recorded {
        id: r.id,
        from_hash: r.from_hash.clone(),
        to_hash: r.to_hash.clone(),
        running: r.status == RolloutStatus::Running,
        state: serde_json::from_str(&r.state_json).ok(),
    }
}

/// A request that was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RequestOutcome {
    pub rollout: i64,
    /// The rollout's status when the request came (a paused one runs again).
    pub was: RolloutStatus,
    /// History lines it had then: what happens from the request on comes after them.
    pub history_seen: usize,
    /// Whether the request asks for a rollback in the end (an abort, or resuming a
    /// paused rollback): a rolled-back rollout then did what was asked.
    pub wants_rollback: bool,
}

/// What `undo` set going.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Undone {
    /// What runs is already the configuration of that revision.
    AlreadyThere { revision: i64 },
    /// A rollout to it, recorded as a new revision.
    Rolling {
        revision: i64,
        new_revision: i64,
        rollout: i64,
    },
    /// A backend that keeps services itself went back to the service's previous
    /// version (Swarm's rollback, Kubernetes' previous ReplicaSet).
    Orchestrator { service: String, state: String },
}

impl<R: Runtime> Control<R> {
    /// Stores a new running rollout of `service` from one configuration hash to another,
    /// replacing the replicas named in `old`; the daemon picks it up on its next tick.
    #[allow(clippy::too_many_arguments)]
    pub fn record_rollout(
        &self,
        project: &str,
        service: &str,
        revision: i64,
        (from_hash, to_hash): (&str, &str),
        spec: &RolloutSpec,
        replicas: u32,
        old: &[String],
    ) -> Result<i64> {
        let now = (self.clock)();
        let state =
            baton_engine::rollout::start(spec, replicas, old, u64::try_from(now).unwrap_or(0));
        let id = self.store.start_rollout(&RolloutRecord {
            id: 0,
            project: project.to_string(),
            service: service.to_string(),
            revision,
            from_hash: from_hash.to_string(),
            to_hash: to_hash.to_string(),
            strategy: state.strategy.to_string(),
            status: RolloutStatus::Running,
            state_json: serde_json::to_string(&state).map_err(|e| refused(e.to_string()))?,
            requested: None,
            outcome: None,
            started_at: now,
            finished_at: None,
        })?;
        let _ = self.store.event(
            project,
            "rollout",
            service,
            &format!("rollout {id} requested ({})", state.strategy),
            now,
        );
        Ok(id)
    }

    /// Puts `request` on the newest rollout of the service when its status allows it (a
    /// paused one runs again); the daemon carries it out.
    pub fn request_rollout(
        &self,
        project: &str,
        service: &str,
        request: RolloutRequest,
    ) -> Result<RequestOutcome> {
        let Some((record, taken)) = self
            .store
            .request_newest_rollout(project, service, request)?
        else {
            return Err(refused(format!(
                "service {service}: no rollout yet; nothing to {request}"
            )));
        };
        if !taken {
            let allowed: Vec<&str> = request.applies_to().iter().map(|s| s.as_str()).collect();
            return Err(refused(format!(
                "service {service}: rollout {} is {}, not {}; nothing to {request}",
                record.id,
                record.status,
                allowed.join(" or ")
            )));
        }
        let before = serde_json::from_str::<RolloutState>(&record.state_json).ok();
        let rolling_back = before
            .as_ref()
            .is_some_and(|s| s.old_requested > 0 || !s.rollback_batches.is_empty());
        let _ = self.store.event(
            project,
            "rollout",
            service,
            &format!("rollout {}: {request} requested", record.id),
            (self.clock)(),
        );
        Ok(RequestOutcome {
            rollout: record.id,
            was: record.status,
            history_seen: before.map_or(0, |s| s.history.len()),
            wants_rollback: request == RolloutRequest::Abort
                || (request == RolloutRequest::Resume && rolling_back),
        })
    }

    /// The service as revision `n` of the project had it.
    fn service_at(&self, project: &str, n: i64, service: &str) -> Option<Service> {
        let json = self.store.revision_spec(project, n).ok()??;
        let p: Project = serde_json::from_str(&json).ok()?;
        p.services.get(service).cloned()
    }

    /// Rolls the service back to an earlier revision's configuration: the one named, or
    /// the newest before what runs now whose configuration differs
    /// (`baton_engine::rollout::undo_target`). Recorded as a new revision, so the daemon
    /// rolls to it like to any other change; the file still says otherwise, so the next
    /// `up` rolls forward again.
    pub async fn undo_rollout(
        &self,
        project: &str,
        service: &str,
        to_revision: Option<i64>,
        daemon_running: bool,
    ) -> Result<Undone> {
        let lock = self.lock(project).await?;
        let Some(latest) = self.store.latest_revision(project)? else {
            return Err(refused(format!(
                "project {project}: nothing was applied yet"
            )));
        };
        let observed = self.runtime.observe(project).await?;
        let Some(running) = observed
            .containers
            .iter()
            .find(|c| c.service == service && !c.oneoff)
            .map(|c| c.config_hash.clone())
        else {
            return Err(refused(format!(
                "service {service}: no replica runs; nothing to undo"
            )));
        };
        let target = match to_revision {
            Some(n) => Some(n),
            None => {
                let history: Vec<(i64, Option<String>)> = (1..=latest.number)
                    .map(|n| {
                        (
                            n,
                            self.service_at(project, n, service)
                                .map(|s| service_hash(&s)),
                        )
                    })
                    .collect();
                undo_target(&history, &running)
            }
        };
        let Some((target, old)) =
            target.and_then(|n| self.service_at(project, n, service).map(|s| (n, s)))
        else {
            return Err(refused(match to_revision {
                Some(n) => format!("service {service}: revision {n} does not exist or has no such service (see `baton rollout history {service}`)"),
                None => format!("service {service}: no earlier revision with another configuration of it (see `baton rollout history {service}`)"),
            }));
        };
        let to_hash = service_hash(&old);
        if to_hash == running {
            return Ok(Undone::AlreadyThere { revision: target });
        }
        let spec = baton_engine::rollout::rollout_spec(&old).map_err(|e| {
            refused(format!(
                "service {service} at revision {target}: x-baton.rollout: {e}"
            ))
        })?;
        if !daemon_running {
            return Err(refused(format!("service {service}: rollouts are carried out by `baton serve`, which is not running")));
        }
        let json = self
            .store
            .revision_spec(project, latest.number)?
            .ok_or_else(|| refused(format!("revision {} is missing", latest.number)))?;
        let mut current: Project =
            serde_json::from_str(&json).map_err(|e| refused(e.to_string()))?;
        current.services.insert(service.to_string(), old.clone());
        let now = (self.clock)();
        let value = serde_json::to_value(&current).map_err(|e| refused(e.to_string()))?;
        let (rev, _) =
            self.store
                .record_revision(project, &hash_value(&value), &value.to_string(), now)?;
        self.store.save_service_config(
            &to_hash,
            project,
            service,
            &effective_config(&old).to_string(),
            now,
        )?;
        let old_names: Vec<String> = observed
            .containers
            .iter()
            .filter(|c| c.service == service && !c.oneoff && c.config_hash == running)
            .map(|c| c.name.clone())
            .collect();
        let id = self.record_rollout(
            project,
            service,
            rev.number,
            (&running, &to_hash),
            &spec,
            old.replicas(),
            &old_names,
        )?;
        let _ = self.store.event(
            project,
            "rollout",
            service,
            &format!("undo to revision {target}"),
            now,
        );
        drop(lock);
        Ok(Undone::Rolling {
            revision: target,
            new_revision: rev.number,
            rollout: id,
        })
    }

    /// One look at rollouts being followed: the history lines not seen yet (`seen`
    /// counts them per rollout and is updated) and the ones that ended (`reported`
    /// remembers them).
    pub fn rollout_progress(
        &self,
        project: &str,
        rollouts: &[(String, i64)],
        seen: &mut BTreeMap<i64, usize>,
        reported: &mut BTreeSet<i64>,
    ) -> Result<RolloutProgress> {
        let views = self.rollouts(project, None)?;
        Ok(crate::views::progress(&views, rollouts, seen, reported))
    }
}
