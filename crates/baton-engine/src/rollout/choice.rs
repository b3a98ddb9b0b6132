//! What a new rollout starts from, decided as plain data: whether a running rollout is
//! reused or superseded, which configuration and replicas are the stable set, and which
//! earlier revision `rollout undo` goes back to.

use super::{Phase, RolloutState, StrategyKind};

/// A rollout already recorded for the service, as the choice needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub id: i64,
    pub from_hash: String,
    pub to_hash: String,
    /// Still being carried out (not finished, not paused).
    pub running: bool,
    /// Its decider state; `None` when it cannot be read.
    pub state: Option<RolloutState>,
}

/// What to do with a planned rollout to `to_hash`.
#[derive(Debug, Clone, PartialEq)]
pub enum Handover<'a> {
    /// A running rollout already goes to this configuration: follow it.
    Reuse(i64),
    /// Start a new one, replacing the running one if any (its id).
    Start { superseded: Option<&'a Recorded> },
}

/// Reuse the newest running rollout to the same configuration, else start a new one
/// that supersedes the newest running rollout (to another configuration).
pub fn handover<'a>(rollouts: &'a [Recorded], to_hash: &str) -> Handover<'a> {
    if let Some(r) = rollouts
        .iter()
        .rev()
        .find(|r| r.running && r.to_hash == to_hash)
    {
        return Handover::Reuse(r.id);
    }
    Handover::Start {
        superseded: rollouts.iter().rev().find(|r| r.running),
    }
}

/// A replica of the service as observed: its name and configuration hash.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaConfig<'a> {
    pub name: &'a str,
    pub config_hash: &'a str,
}

/// What a new rollout replaces: the configuration and the replicas that serve once a
/// rollout still running (`superseded`) has been undone — its old set for a canary or a
/// blue-green that has not switched, its new set for a blue-green that has, and for a
/// rolling update the old set plus the new replicas it already routed. Without one (or
/// with an unreadable state), the planner's `from_hash` and its replicas.
pub fn stable_set(
    replicas: &[ReplicaConfig<'_>],
    from_hash: &str,
    superseded: Option<&Recorded>,
) -> (String, Vec<String>) {
    let of = |hash: &str| -> Vec<String> {
        replicas
            .iter()
            .filter(|r| r.config_hash == hash)
            .map(|r| r.name.to_string())
            .collect()
    };
    let Some((r, state)) = superseded.and_then(|r| r.state.as_ref().map(|s| (r, s))) else {
        return (from_hash.to_string(), of(from_hash));
    };
    match state.strategy {
        StrategyKind::BlueGreen if matches!(state.phase, Phase::KeepingOld { .. }) => {
            (r.to_hash.clone(), of(&r.to_hash))
        }
        StrategyKind::BlueGreen | StrategyKind::Canary => (r.from_hash.clone(), of(&r.from_hash)),
        StrategyKind::Rolling => {
            let mut old = of(&r.from_hash);
            old.extend(
                of(&r.to_hash)
                    .into_iter()
                    .filter(|n| state.new_routed.contains(n)),
            );
            (r.from_hash.clone(), old)
        }
    }
}

/// The revision `rollout undo` goes back to when none is named: the newest revision,
/// before the one that introduced what runs now, whose configuration of the service
/// differs from it. `history` is (revision number, the service's configuration hash
/// at that revision, `None` when it had no such service), in any order.
pub fn undo_target(history: &[(i64, Option<String>)], running: &str) -> Option<i64> {
    let mut revisions: Vec<&(i64, Option<String>)> = history.iter().collect();
    revisions.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
    let runs = |h: &Option<String>| h.as_deref() == Some(running);
    // Skip the newest revisions until one runs what runs now (a later one may not have
    // been applied yet), then the ones that still do: the next one is the target.
    let mut it = revisions.into_iter().skip_while(|(_, h)| !runs(h));
    it.find(|(_, h)| !runs(h)).map(|(n, _)| *n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::{start, BlueGreen, RolloutSpec, Strategy};

    fn recorded(id: i64, from: &str, to: &str, running: bool) -> Recorded {
        Recorded {
            id,
            from_hash: from.into(),
            to_hash: to.into(),
            running,
            state: None,
        }
    }

    #[test]
    fn a_running_rollout_to_the_same_configuration_is_reused() {
        let all = [recorded(1, "a", "b", false), recorded(2, "b", "c", true)];
        assert_eq!(handover(&all, "c"), Handover::Reuse(2));
        assert_eq!(
            handover(&all, "d"),
            Handover::Start {
                superseded: Some(&all[1])
            }
        );
        assert_eq!(
            handover(&all[..1], "d"),
            Handover::Start { superseded: None }
        );
        // A finished one to the same configuration is not reused.
        assert_eq!(
            handover(&all[..1], "b"),
            Handover::Start { superseded: None }
        );
    }

    #[test]
    fn the_stable_set_follows_what_the_superseded_rollout_serves() {
        let replicas = [
            ReplicaConfig {
                name: "w-1",
                config_hash: "a",
            },
            ReplicaConfig {
                name: "w-2",
                config_hash: "a",
            },
            ReplicaConfig {
                name: "w-3",
                config_hash: "b",
            },
        ];
        assert_eq!(
            stable_set(&replicas, "a", None),
            ("a".to_string(), vec!["w-1".to_string(), "w-2".to_string()])
        );
        let spec = RolloutSpec {
            strategy: Strategy::BlueGreen(BlueGreen { keep_old_ms: 1000 }),
            health_timeout_ms: 1000,
            drain_timeout_ms: 1000,
        };
        let mut state = start(&spec, 2, &["w-1".into(), "w-2".into()], 0);
        let mut r = recorded(7, "a", "b", true);
        r.state = Some(state.clone());
        // A blue-green that has not switched: the old set is stable.
        assert_eq!(stable_set(&replicas, "b", Some(&r)).0, "a");
        // Switched (keeping the old set for an instant rollback): the new set is.
        state.phase = Phase::KeepingOld { until_ms: 10 };
        r.state = Some(state);
        assert_eq!(
            stable_set(&replicas, "a", Some(&r)),
            ("b".to_string(), vec!["w-3".to_string()])
        );
    }

    #[test]
    fn undo_goes_to_the_newest_revision_that_ran_something_else() {
        let h = |list: &[(i64, Option<&str>)]| -> Vec<(i64, Option<String>)> {
            list.iter()
                .map(|(n, s)| (*n, s.map(str::to_string)))
                .collect()
        };
        // 1: a, 2: a, 3: b (runs now): back to 2.
        assert_eq!(
            undo_target(&h(&[(1, Some("a")), (2, Some("a")), (3, Some("b"))]), "b"),
            Some(2)
        );
        // A newer revision not applied yet (4: c) is skipped; 3 and 2 run b: back to 1.
        assert_eq!(
            undo_target(
                &h(&[
                    (1, Some("a")),
                    (2, Some("b")),
                    (3, Some("b")),
                    (4, Some("c"))
                ]),
                "b"
            ),
            Some(1)
        );
        // A revision without the service counts as different.
        assert_eq!(undo_target(&h(&[(1, None), (2, Some("b"))]), "b"), Some(1));
        // Nothing earlier.
        assert_eq!(undo_target(&h(&[(1, Some("b"))]), "b"), None);
        // What runs is in no revision: nothing to go back from.
        assert_eq!(undo_target(&h(&[(1, Some("a"))]), "z"), None);
    }
}
