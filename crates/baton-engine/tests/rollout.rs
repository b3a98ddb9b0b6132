//! Rollout and restart deciders driven through whole scenarios with a scripted clock and
//! scripted observations, asserting the exact decisions and outcomes; spec parsing errors.

use baton_engine::restart::{
    restart_decision, restart_policy, Condition, ExitInfo, RestartDecision, RestartHistory,
    RestartPolicy,
};
use baton_engine::rollout::Health::{Gone, Healthy, Starting, Unhealthy};
use baton_engine::rollout::{
    abort, promote, resume, rollout_spec, start, step, superseded, unused_settings, Analysis,
    CanaryStep, Decision, FailureAction, Health, Observation, Order, Outcome, Replica,
    RevisionMetrics, RolloutSpec, RolloutState, Strategy, UpdateSettings,
};
use baton_spec::Service;
use serde_json::{json, Value};

// ---------------------------------------------------------------- helpers

fn service(v: Value) -> Service {
    serde_json::from_value(v).expect("test service")
}

fn spec(v: Value) -> RolloutSpec {
    rollout_spec(&service(v)).expect("valid spec")
}

fn spec_err(v: Value) -> String {
    rollout_spec(&service(v)).unwrap_err().to_string()
}

fn reps(list: &[(&str, Health)]) -> Vec<Replica> {
    list.iter()
        .map(|(id, health)| Replica {
            id: id.to_string(),
            health: *health,
        })
        .collect()
}

fn obs(now_ms: u64, old: &[(&str, Health)], new: &[(&str, Health)]) -> Observation {
    Observation {
        now_ms,
        old: reps(old),
        new: reps(new),
        old_metrics: None,
        new_metrics: None,
    }
}

fn with_metrics(mut o: Observation, requests: u64, errors_5xx: u64, p95: f64) -> Observation {
    o.new_metrics = Some(RevisionMetrics {
        requests,
        errors_5xx,
        p95_ms: Some(p95),
    });
    o
}

fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn start_new(count: u32) -> Decision {
    Decision::StartNew { count }
}
fn start_old(count: u32) -> Decision {
    Decision::StartOld { count }
}
fn stop_old(list: &[&str]) -> Decision {
    Decision::StopOld { ids: ids(list) }
}
fn stop_new(list: &[&str]) -> Decision {
    Decision::StopNew { ids: ids(list) }
}
fn route_new(list: &[&str]) -> Decision {
    Decision::RouteNew { ids: ids(list) }
}
fn route_old(list: &[&str]) -> Decision {
    Decision::RouteOld { ids: ids(list) }
}
fn weight(new_percent: u32) -> Decision {
    Decision::SetWeight { new_percent }
}
fn rolled_back(reason: &str) -> Option<Outcome> {
    Some(Outcome::RolledBack {
        reason: reason.into(),
    })
}

/// A rollout being driven: each `at` is one observation and its exact expected result.
struct Run {
    spec: RolloutSpec,
    state: RolloutState,
    all: Vec<Decision>,
}

impl Run {
    fn new(spec: RolloutSpec, desired: u32, old: &[&str]) -> Run {
        let state = start(&spec, desired, &ids(old), 0);
        Run {
            spec,
            state,
            all: Vec::new(),
        }
    }

    #[track_caller]
    fn at(&mut self, o: Observation, decisions: Vec<Decision>, outcome: Option<Outcome>) {
        let (state, got, got_outcome) = step(&self.spec, &self.state, &o);
        assert_eq!(
            (&got, &got_outcome),
            (&decisions, &outcome),
            "at {} ms",
            o.now_ms
        );
        self.all.extend(got);
        self.state = state;
    }
}

const OLD3: [(&str, Health); 3] = [("o1", Healthy), ("o2", Healthy), ("o3", Healthy)];

fn web(update: Value) -> Value {
    json!({"ports": [{"target": 80}], "deploy": {"replicas": 3, "update_config": update}})
}

fn canary_spec() -> RolloutSpec {
    spec(json!({
        "ports": [{"target": 80}],
        "baton": {"rollout": {
            "strategy": "canary",
            "steps": [{"weight": 10, "pause": "1m"}, {"weight": 50, "pause": "2m"}],
            "analysis": {"max_error_rate": "1%", "max_p95_latency": "500ms"}
        }}
    }))
}

const OLD4: [(&str, Health); 4] = [
    ("o1", Healthy),
    ("o2", Healthy),
    ("o3", Healthy),
    ("o4", Healthy),
];

/// A canary of 4 at step 1 (10%): n1 routed, analysing until 61 000.
fn canary_at_step_one() -> Run {
    let mut run = Run::new(canary_spec(), 4, &["o1", "o2", "o3", "o4"]);
    run.at(obs(0, &OLD4, &[]), vec![start_new(1)], None);
    run.at(
        obs(1_000, &OLD4, &[("n1", Healthy)]),
        vec![route_new(&["n1"]), weight(10), Decision::ResetMetrics],
        None,
    );
    run
}

// ---------------------------------------------------------------- rolling

#[test]
fn rolling_start_first_three_replicas_one_at_a_time() {
    let mut run = Run::new(spec(web(json!({}))), 3, &["o1", "o2", "o3"]);
    run.at(obs(0, &OLD3, &[]), vec![start_new(1)], None);
    run.at(obs(1_000, &OLD3, &[("n1", Starting)]), vec![], None);
    run.at(
        obs(2_000, &OLD3, &[("n1", Healthy)]),
        vec![route_new(&["n1"]), stop_old(&["o1"])],
        None,
    );
    let old = [("o2", Healthy), ("o3", Healthy)];
    // monitor (default 5s) runs until 7 000
    run.at(obs(6_999, &old, &[("n1", Healthy)]), vec![], None);
    run.at(
        obs(7_000, &old, &[("n1", Healthy)]),
        vec![start_new(1)],
        None,
    );
    run.at(
        obs(8_000, &old, &[("n1", Healthy), ("n2", Healthy)]),
        vec![route_new(&["n2"]), stop_old(&["o2"])],
        None,
    );
    let old = [("o3", Healthy)];
    let new2 = [("n1", Healthy), ("n2", Healthy)];
    run.at(obs(13_000, &old, &new2), vec![start_new(1)], None);
    let new3 = [("n1", Healthy), ("n2", Healthy), ("n3", Healthy)];
    run.at(
        obs(14_000, &old, &new3),
        vec![route_new(&["n3"]), stop_old(&["o3"])],
        None,
    );
    run.at(obs(18_999, &[], &new3), vec![], None);
    run.at(obs(19_000, &[], &new3), vec![], Some(Outcome::Completed));
    // finished: the same outcome again, nothing to do
    run.at(obs(20_000, &[], &new3), vec![], Some(Outcome::Completed));
    assert_eq!(run.state.new_routed, ids(&["n1", "n2", "n3"]));
    assert_eq!(run.state.old_stopped, ids(&["o1", "o2", "o3"]));
    assert_eq!(run.state.step_index, 3);
}

#[test]
fn rolling_stop_first_without_ports_with_delay() {
    let s = spec(json!({"deploy": {"update_config": {"delay": 2000, "monitor": 0}}}));
    let mut run = Run::new(s, 2, &["o1", "o2"]);
    let both = [("o1", Healthy), ("o2", Healthy)];
    run.at(
        obs(0, &both, &[]),
        vec![stop_old(&["o1"]), start_new(1)],
        None,
    );
    let o2 = [("o2", Healthy)];
    run.at(
        obs(500, &o2, &[("n1", Healthy)]),
        vec![route_new(&["n1"])],
        None,
    );
    run.at(obs(2_499, &o2, &[("n1", Healthy)]), vec![], None);
    run.at(
        obs(2_500, &o2, &[("n1", Healthy)]),
        vec![stop_old(&["o2"]), start_new(1)],
        None,
    );
    // the last batch has no delay after it
    run.at(
        obs(3_000, &[], &[("n1", Healthy), ("n2", Healthy)]),
        vec![route_new(&["n2"])],
        Some(Outcome::Completed),
    );
}

/// Batch 1 (n1) goes well; batch 2's n2 turns unhealthy. Up to that observation.
fn rolling_to_second_batch_failure(action: &str) -> (Run, Option<Outcome>, Vec<Decision>) {
    let mut run = Run::new(
        spec(web(json!({"failure_action": action}))),
        3,
        &["o1", "o2", "o3"],
    );
    run.at(obs(0, &OLD3, &[]), vec![start_new(1)], None);
    run.at(
        obs(1_000, &OLD3, &[("n1", Healthy)]),
        vec![route_new(&["n1"]), stop_old(&["o1"])],
        None,
    );
    let old = [("o2", Healthy), ("o3", Healthy)];
    run.at(
        obs(6_000, &old, &[("n1", Healthy)]),
        vec![start_new(1)],
        None,
    );
    let (state, decisions, outcome) = step(
        &run.spec,
        &run.state,
        &obs(7_000, &old, &[("n1", Healthy), ("n2", Unhealthy)]),
    );
    run.state = state;
    (run, outcome, decisions)
}

const N2_REASON: &str =
    "n2 is unhealthy; 1 of 2 updated replica(s) failed, above max_failure_ratio 0";

#[test]
fn rolling_second_batch_unhealthy_rolls_back() {
    let (mut run, outcome, decisions) = rolling_to_second_batch_failure("rollback");
    // o1 was stopped for n1: it comes back first
    assert_eq!(decisions, vec![start_old(1)]);
    assert_eq!(outcome, None);
    let new = [("n1", Healthy), ("n2", Unhealthy)];
    let old = [("o2", Healthy), ("o3", Healthy), ("o4", Starting)];
    run.at(obs(8_000, &old, &new), vec![], None);
    let old = [("o2", Healthy), ("o3", Healthy), ("o4", Healthy)];
    run.at(
        obs(9_000, &old, &new),
        vec![route_old(&["o4"]), stop_new(&["n1", "n2"])],
        rolled_back(N2_REASON),
    );
    assert_eq!(run.state.old_running, ids(&["o2", "o3", "o4"]));
}

#[test]
fn rolling_rollback_that_cannot_restore_old_pauses() {
    let (mut run, _, _) = rolling_to_second_batch_failure("rollback");
    let new = [("n1", Healthy), ("n2", Unhealthy)];
    let old = [("o2", Healthy), ("o3", Healthy), ("o4", Unhealthy)];
    run.at(
        obs(67_000, &old, &new),
        vec![],
        Some(Outcome::Paused {
            reason: format!(
                "rollback stalled: 0 of 1 old replica(s) healthy after 1m; it was for: {N2_REASON}"
            ),
        }),
    );
}

#[test]
fn rolling_second_batch_unhealthy_pauses_then_abort_rolls_back() {
    let (mut run, outcome, decisions) = rolling_to_second_batch_failure("pause");
    assert_eq!(decisions, vec![]);
    let paused = Some(Outcome::Paused {
        reason: N2_REASON.into(),
    });
    assert_eq!(outcome, paused);
    let old = [("o2", Healthy), ("o3", Healthy)];
    let new = [("n1", Healthy), ("n2", Unhealthy)];
    run.at(obs(8_000, &old, &new), vec![], paused);
    run.state = promote(&run.state, 8_500);
    run.at(obs(8_500, &old, &new), vec![], paused_again(N2_REASON));
    run.state = abort(&run.state, 9_000);
    run.at(obs(9_000, &old, &new), vec![start_old(1)], None);
    let old = [("o2", Healthy), ("o3", Healthy), ("o5", Healthy)];
    run.at(
        obs(10_000, &old, &new),
        vec![route_old(&["o5"]), stop_new(&["n1", "n2"])],
        rolled_back("aborted"),
    );
}

fn paused_again(reason: &str) -> Option<Outcome> {
    Some(Outcome::Paused {
        reason: reason.into(),
    })
}

/// Paused in batch 2 before n2 was routed: `resume` stops n2, starts a replacement
/// within the same batch, which routes it once healthy and only then stops o2
/// (start-first); batch 3 follows and the rollout completes.
#[test]
fn rolling_paused_update_resumes_where_it_stopped() {
    let (mut run, outcome, _) = rolling_to_second_batch_failure("pause");
    assert_eq!(outcome, paused_again(N2_REASON));
    assert!(
        run.state.paused_phase.is_some(),
        "the pause keeps its phase"
    );
    let old = [("o2", Healthy), ("o3", Healthy)];
    let new = [("n1", Healthy), ("n2", Unhealthy)];
    run.at(obs(8_000, &old, &new), vec![], paused_again(N2_REASON));
    run.state = resume(&run.state, 9_000);
    assert!(run.state.resume_requested);
    run.at(
        obs(9_000, &old, &new),
        vec![stop_new(&["n2"]), start_new(1)],
        None,
    );
    assert_eq!(run.state.outcome, None, "no longer paused");
    assert_eq!(run.state.failures, 0, "the failure count starts again");
    assert_eq!(run.state.new_started, 2);
    // n2 is gone; n3 replaces it, healthy: routed, then o2 goes
    run.at(
        obs(9_500, &old, &[("n1", Healthy), ("n3", Starting)]),
        vec![],
        None,
    );
    run.at(
        obs(10_000, &old, &[("n1", Healthy), ("n3", Healthy)]),
        vec![route_new(&["n3"]), stop_old(&["o2"])],
        None,
    );
    // monitor 5s, then batch 3
    let old = [("o3", Healthy)];
    let new = [("n1", Healthy), ("n3", Healthy)];
    run.at(obs(14_999, &old, &new), vec![], None);
    run.at(obs(15_000, &old, &new), vec![start_new(1)], None);
    let new = [("n1", Healthy), ("n3", Healthy), ("n2", Healthy)];
    run.at(
        obs(16_000, &old, &new),
        vec![route_new(&["n2"]), stop_old(&["o3"])],
        None,
    );
    run.at(obs(21_000, &[], &new), vec![], Some(Outcome::Completed));
    // a replacement took the freed name n2: it is served like any other
    assert_eq!(run.state.new_routed, ids(&["n1", "n3", "n2"]));
    assert_eq!(run.state.old_stopped, ids(&["o1", "o2", "o3"]));
    let messages: Vec<&str> = run
        .state
        .history
        .iter()
        .map(|e| e.message.as_str())
        .collect();
    assert!(messages.contains(&"resume requested"), "{messages:?}");
    assert!(
        messages.contains(&"resumed: 1 failed new replica(s) to start again"),
        "{messages:?}"
    );
}

/// A second failure after `resume` pauses again, with the count started from zero.
#[test]
fn rolling_resumed_update_that_fails_again_pauses_again() {
    let (mut run, _, _) = rolling_to_second_batch_failure("pause");
    let old = [("o2", Healthy), ("o3", Healthy)];
    run.state = resume(&run.state, 9_000);
    run.at(
        obs(9_000, &old, &[("n1", Healthy), ("n2", Unhealthy)]),
        vec![stop_new(&["n2"]), start_new(1)],
        None,
    );
    run.at(
        obs(10_000, &old, &[("n1", Healthy), ("n3", Gone)]),
        vec![],
        paused_again("n3 exited; 1 of 2 updated replica(s) failed, above max_failure_ratio 0"),
    );
    // and abort from there rolls back: o1 comes back, every new replica goes
    run.state = abort(&run.state, 11_000);
    run.at(
        obs(11_000, &old, &[("n1", Healthy), ("n3", Gone)]),
        vec![start_old(1)],
        None,
    );
    let old = [("o2", Healthy), ("o3", Healthy), ("o4", Healthy)];
    run.at(
        obs(12_000, &old, &[("n1", Healthy), ("n3", Gone)]),
        vec![route_old(&["o4"]), stop_new(&["n1", "n3"])],
        rolled_back("aborted"),
    );
}

/// Paused within the monitor window after the batch was routed (its old replica already
/// stopped): the replacement is routed without stopping another old one.
#[test]
fn rolling_paused_while_monitored_resumes_without_stopping_more_old() {
    let mut run = Run::new(
        spec(web(json!({"failure_action": "pause", "monitor": 10000}))),
        3,
        &["o1", "o2", "o3"],
    );
    run.at(obs(0, &OLD3, &[]), vec![start_new(1)], None);
    run.at(
        obs(1_000, &OLD3, &[("n1", Healthy)]),
        vec![route_new(&["n1"]), stop_old(&["o1"])],
        None,
    );
    let old = [("o2", Healthy), ("o3", Healthy)];
    let reason = "n1 is unhealthy; 1 of 1 updated replica(s) failed, above max_failure_ratio 0";
    run.at(
        obs(3_000, &old, &[("n1", Unhealthy)]),
        vec![],
        paused_again(reason),
    );
    run.state = resume(&run.state, 4_000);
    run.at(
        obs(4_000, &old, &[("n1", Unhealthy)]),
        vec![stop_new(&["n1"]), start_new(1)],
        None,
    );
    assert!(
        run.state.new_routed.is_empty(),
        "n1 no longer counts as routed"
    );
    run.at(
        obs(5_000, &old, &[("n2", Healthy)]),
        vec![route_new(&["n2"])],
        None,
    );
    // monitored 10s, then batch 2 as usual
    run.at(
        obs(15_000, &old, &[("n2", Healthy)]),
        vec![start_new(1)],
        None,
    );
    run.at(
        obs(16_000, &old, &[("n2", Healthy), ("n3", Healthy)]),
        vec![route_new(&["n3"]), stop_old(&["o2"])],
        None,
    );
    assert_eq!(run.state.old_running, ids(&["o3"]));
}

/// `resume` is ignored on a rollout that is not paused (running or finished).
#[test]
fn resume_is_ignored_unless_paused() {
    let mut run = Run::new(spec(web(json!({}))), 3, &["o1", "o2", "o3"]);
    run.state = resume(&run.state, 0);
    assert!(!run.state.resume_requested);
    assert_eq!(
        run.state.history.last().map(|e| e.message.as_str()),
        Some("resume ignored: the rollout is not paused")
    );
    run.at(obs(0, &OLD3, &[]), vec![start_new(1)], None);
    let (mut done, _, _) = rolling_to_second_batch_failure("rollback");
    let new = [("n1", Healthy), ("n2", Unhealthy)];
    let old = [("o2", Healthy), ("o3", Healthy), ("o4", Healthy)];
    done.at(
        obs(9_000, &old, &new),
        vec![route_old(&["o4"]), stop_new(&["n1", "n2"])],
        rolled_back(N2_REASON),
    );
    done.state = resume(&done.state, 10_000);
    done.at(obs(10_000, &old, &[]), vec![], rolled_back(N2_REASON));
}

#[test]
fn rolling_continue_leaves_the_failed_replica_and_goes_on() {
    let (mut run, outcome, decisions) = rolling_to_second_batch_failure("continue");
    // n2 failed and stays unrouted; o2 goes for it (start-first, one batch of one)
    assert_eq!(decisions, vec![stop_old(&["o2"])]);
    assert_eq!(outcome, None);
    let new = [("n1", Healthy), ("n2", Unhealthy)];
    run.at(
        obs(12_000, &[("o3", Healthy)], &new),
        vec![start_new(1)],
        None,
    );
    let new = [("n1", Healthy), ("n2", Unhealthy), ("n3", Healthy)];
    run.at(
        obs(13_000, &[("o3", Healthy)], &new),
        vec![route_new(&["n3"]), stop_old(&["o3"])],
        None,
    );
    run.at(obs(18_000, &[], &new), vec![], Some(Outcome::Completed));
    assert_eq!(run.state.failures, 1);
    assert_eq!(run.state.new_failed, ids(&["n2"]));
}

#[test]
fn rolling_failure_within_the_monitor_window_counts() {
    let s = spec(web(
        json!({"failure_action": "rollback", "max_failure_ratio": 0.5}),
    ));
    let mut run = Run::new(s, 3, &["o1", "o2", "o3"]);
    run.at(obs(0, &OLD3, &[]), vec![start_new(1)], None);
    run.at(
        obs(1_000, &OLD3, &[("n1", Healthy)]),
        vec![route_new(&["n1"]), stop_old(&["o1"])],
        None,
    );
    let old = [("o2", Healthy), ("o3", Healthy)];
    // n1 exits within its monitor window: 1 of 1 failed, above 0.5
    run.at(obs(3_000, &old, &[("n1", Gone)]), vec![start_old(1)], None);
    let old = [("o2", Healthy), ("o3", Healthy), ("o9", Healthy)];
    run.at(
        obs(4_000, &old, &[]),
        vec![route_old(&["o9"]), stop_new(&["n1"])],
        rolled_back("n1 exited; 1 of 1 updated replica(s) failed, above max_failure_ratio 0.5"),
    );
}

#[test]
fn rolling_health_timeout_is_a_failure() {
    let mut run = Run::new(spec(web(json!({}))), 3, &["o1", "o2", "o3"]);
    run.at(obs(0, &OLD3, &[]), vec![start_new(1)], None);
    run.at(obs(59_999, &OLD3, &[("n1", Starting)]), vec![], None);
    run.at(
        obs(60_000, &OLD3, &[("n1", Starting)]),
        vec![],
        paused_again(
            "1 new replica(s) not healthy after 1m; 1 of 1 updated replica(s) failed, above max_failure_ratio 0",
        ),
    );
}

#[test]
fn rolling_promote_skips_monitor_and_delay() {
    let s = spec(web(json!({"delay": 30000})));
    let mut run = Run::new(s, 3, &["o1", "o2", "o3"]);
    run.at(obs(0, &OLD3, &[]), vec![start_new(1)], None);
    run.at(
        obs(1_000, &OLD3, &[("n1", Healthy)]),
        vec![route_new(&["n1"]), stop_old(&["o1"])],
        None,
    );
    run.state = promote(&run.state, 1_500);
    let old = [("o2", Healthy), ("o3", Healthy)];
    run.at(
        obs(1_500, &old, &[("n1", Healthy)]),
        vec![start_new(1)],
        None,
    );
}

// ---------------------------------------------------------------- rolling rollback (rollback_config)

/// 4 replicas updated all at once (start-first, monitor 10s, failure_action rollback),
/// with `rollback` as `deploy.rollback_config`.
fn four_with_rollback(rollback: Value) -> RolloutSpec {
    spec(json!({
        "ports": [{"target": 80}],
        "deploy": {
            "replicas": 4,
            "update_config": {"parallelism": 0, "monitor": 10000, "failure_action": "rollback"},
            "rollback_config": rollback,
        }
    }))
}

const NEW4: [(&str, Health); 4] = [
    ("n1", Healthy),
    ("n2", Healthy),
    ("n3", Healthy),
    ("n4", Healthy),
];
const N1_BAD: [(&str, Health); 4] = [
    ("n1", Unhealthy),
    ("n2", Healthy),
    ("n3", Healthy),
    ("n4", Healthy),
];
const N1_REASON: &str =
    "n1 is unhealthy; 1 of 4 updated replica(s) failed, above max_failure_ratio 0";

/// All 4 new replicas routed and the 4 old stopped at 1 000; n1 turns unhealthy at
/// 3 000, within the monitor window: the rollback begins. Returns that step's decisions.
fn four_updated_then_n1_fails(rollback: Value) -> (Run, Vec<Decision>) {
    let mut run = Run::new(four_with_rollback(rollback), 4, &["o1", "o2", "o3", "o4"]);
    run.at(obs(0, &OLD4, &[]), vec![start_new(4)], None);
    run.at(
        obs(1_000, &OLD4, &NEW4),
        vec![
            route_new(&["n1", "n2", "n3", "n4"]),
            stop_old(&["o1", "o2", "o3", "o4"]),
        ],
        None,
    );
    let (state, decisions, outcome) = step(&run.spec, &run.state, &obs(3_000, &[], &N1_BAD));
    assert_eq!(outcome, None);
    run.state = state;
    (run, decisions)
}

fn batch_sizes(run: &Run) -> Vec<u32> {
    run.state.rollback_batches.iter().map(|b| b.old).collect()
}

#[test]
fn rollback_config_start_first_one_at_a_time_with_monitor_and_delay() {
    let (mut run, first) = four_updated_then_n1_fails(json!({
        "parallelism": 1, "delay": 1000, "monitor": 2000, "order": "start-first"
    }));
    // batch 1: one old replica first; nothing is stopped before it is healthy
    assert_eq!(first, vec![start_old(1)]);
    run.at(obs(3_500, &[("o5", Starting)], &N1_BAD), vec![], None);
    run.at(
        obs(4_000, &[("o5", Healthy)], &N1_BAD),
        // start-first: routed, then the failed new replica goes
        vec![route_old(&["o5"]), stop_new(&["n1"])],
        None,
    );
    let new = [("n2", Healthy), ("n3", Healthy), ("n4", Healthy)];
    // monitor 2s until 6 000, then delay 1s until 7 000
    run.at(obs(5_999, &[("o5", Healthy)], &new), vec![], None);
    run.at(obs(6_000, &[("o5", Healthy)], &new), vec![], None);
    run.at(obs(6_999, &[("o5", Healthy)], &new), vec![], None);
    run.at(
        obs(7_000, &[("o5", Healthy)], &new),
        vec![start_old(1)],
        None,
    );
    let old = [("o5", Healthy), ("o6", Healthy)];
    // then the last routed new replica first
    run.at(
        obs(7_500, &old, &new),
        vec![route_old(&["o6"]), stop_new(&["n4"])],
        None,
    );
    let new = [("n2", Healthy), ("n3", Healthy)];
    // the delay counts from the end of the monitor window as observed
    run.at(obs(9_500, &old, &new), vec![], None);
    run.at(obs(10_500, &old, &new), vec![start_old(1)], None);
    let old = [("o5", Healthy), ("o6", Healthy), ("o7", Healthy)];
    run.at(
        obs(11_000, &old, &new),
        vec![route_old(&["o7"]), stop_new(&["n3"])],
        None,
    );
    let new = [("n2", Healthy)];
    run.at(obs(13_000, &old, &new), vec![], None);
    run.at(obs(14_000, &old, &new), vec![start_old(1)], None);
    let old = [
        ("o5", Healthy),
        ("o6", Healthy),
        ("o7", Healthy),
        ("o8", Healthy),
    ];
    run.at(
        obs(14_500, &old, &new),
        vec![route_old(&["o8"]), stop_new(&["n2"])],
        None,
    );
    // the last batch is monitored too, with no delay after it
    run.at(obs(16_499, &old, &[]), vec![], None);
    run.at(obs(16_500, &old, &[]), vec![], rolled_back(N1_REASON));
    assert_eq!(batch_sizes(&run), vec![1, 1, 1, 1]);
    let b = &run.state.rollback_batches;
    let started: Vec<u64> = b.iter().map(|b| b.started_ms).collect();
    assert_eq!(started, vec![3_000, 7_000, 10_500, 14_000]);
    let stopped: Vec<Vec<String>> = b.iter().map(|b| b.stopped_new.clone()).collect();
    assert_eq!(
        stopped,
        vec![ids(&["n1"]), ids(&["n4"]), ids(&["n3"]), ids(&["n2"])]
    );
    assert_eq!(b[3].routed, ids(&["o8"]));
    assert_eq!(b[3].routed_ms, Some(14_500));
    assert_eq!(run.state.old_running, ids(&["o5", "o6", "o7", "o8"]));
    let lines: Vec<&str> = run
        .state
        .history
        .iter()
        .map(|e| e.message.as_str())
        .filter(|m| m.starts_with("rollback batch"))
        .collect();
    assert_eq!(
        lines,
        [
            "rollback batch 1: 1 replica(s)",
            "rollback batch 2: 1 replica(s)",
            "rollback batch 3: 1 replica(s)",
            "rollback batch 4: 1 replica(s)"
        ]
    );
}

#[test]
fn rollback_config_stop_first_in_batches_of_two() {
    let (mut run, first) = four_updated_then_n1_fails(json!({
        "parallelism": 2, "monitor": 0, "order": "stop-first"
    }));
    // stop-first: the failed one and the last routed go before the old ones start
    assert_eq!(first, vec![stop_new(&["n1", "n4"]), start_old(2)]);
    let new = [("n2", Healthy), ("n3", Healthy)];
    run.at(obs(3_500, &[("o5", Healthy)], &new), vec![], None);
    run.at(
        obs(4_000, &[("o5", Healthy), ("o6", Healthy)], &new),
        // monitor 0, delay 0: the next batch follows at once, stopping what is left
        vec![
            route_old(&["o5", "o6"]),
            stop_new(&["n2", "n3"]),
            start_old(2),
        ],
        None,
    );
    let old = [
        ("o5", Healthy),
        ("o6", Healthy),
        ("o7", Healthy),
        ("o8", Healthy),
    ];
    run.at(
        obs(5_000, &old, &[]),
        vec![route_old(&["o7", "o8"])],
        rolled_back(N1_REASON),
    );
    assert_eq!(batch_sizes(&run), vec![2, 2]);
}

#[test]
fn rollback_config_parallelism_zero_is_one_batch() {
    let (mut run, first) = four_updated_then_n1_fails(json!({"parallelism": 0, "monitor": 0}));
    assert_eq!(first, vec![start_old(4)]);
    let old = [
        ("o5", Healthy),
        ("o6", Healthy),
        ("o7", Healthy),
        ("o8", Healthy),
    ];
    run.at(
        obs(4_000, &old, &N1_BAD),
        vec![
            route_old(&["o5", "o6", "o7", "o8"]),
            stop_new(&["n1", "n2", "n3", "n4"]),
        ],
        rolled_back(N1_REASON),
    );
    assert_eq!(batch_sizes(&run), vec![4]);
}

#[test]
fn without_rollback_config_the_rollback_is_one_start_first_batch() {
    let s = spec(json!({
        "ports": [{"target": 80}],
        "deploy": {"update_config": {"parallelism": 0, "failure_action": "rollback"}}
    }));
    let mut run = Run::new(s, 4, &["o1", "o2", "o3", "o4"]);
    run.at(obs(0, &OLD4, &[]), vec![start_new(4)], None);
    run.at(
        obs(1_000, &OLD4, &NEW4),
        vec![
            route_new(&["n1", "n2", "n3", "n4"]),
            stop_old(&["o1", "o2", "o3", "o4"]),
        ],
        None,
    );
    run.at(obs(3_000, &[], &N1_BAD), vec![start_old(4)], None);
    let old = [
        ("o5", Healthy),
        ("o6", Healthy),
        ("o7", Healthy),
        ("o8", Healthy),
    ];
    run.at(
        obs(4_000, &old, &N1_BAD),
        vec![
            route_old(&["o5", "o6", "o7", "o8"]),
            stop_new(&["n1", "n2", "n3", "n4"]),
        ],
        rolled_back(N1_REASON),
    );
}

#[test]
fn rollback_failure_action_pause_stops_at_a_failed_restored_replica() {
    let (mut run, first) = four_updated_then_n1_fails(json!({"parallelism": 1, "monitor": 0}));
    assert_eq!(first, vec![start_old(1)]);
    run.at(
        obs(4_000, &[("o5", Unhealthy)], &N1_BAD),
        vec![],
        paused_again(&format!(
            "rollback paused: o5 is unhealthy; 1 of 1 restored replica(s) failed, above max_failure_ratio 0; it was for: {N1_REASON}"
        )),
    );
    // nothing was taken from the new revision: it still serves
    assert_eq!(run.state.new_stopped, Vec::<String>::new());
    assert_eq!(run.state.old_failed, ids(&["o5"]));
}

#[test]
fn rollback_failure_within_its_monitor_window_pauses() {
    let (mut run, _) = four_updated_then_n1_fails(json!({"parallelism": 1, "monitor": 5000}));
    run.at(
        obs(4_000, &[("o5", Healthy)], &N1_BAD),
        vec![route_old(&["o5"]), stop_new(&["n1"])],
        None,
    );
    let new = [("n2", Healthy), ("n3", Healthy), ("n4", Healthy)];
    run.at(
        obs(6_000, &[("o5", Gone)], &new),
        vec![],
        paused_again(&format!(
            "rollback paused: o5 exited; 1 of 1 restored replica(s) failed, above max_failure_ratio 0; it was for: {N1_REASON}"
        )),
    );
    // abort resumes a paused rollback: the failed o5 is removed, and all 4 are missing
    // again, o5 included
    run.state = abort(&run.state, 7_000);
    run.at(
        obs(7_000, &[("o5", Gone)], &new),
        vec![stop_old(&["o5"]), start_old(1)],
        None,
    );
    assert_eq!(run.state.rollback_left, 3);
    assert_eq!(batch_sizes(&run), vec![1, 1]);
    assert!(run.state.old_failed.is_empty(), "o5 is forgotten");
    let old = [("o9", Healthy)];
    run.at(
        obs(8_000, &old, &new),
        vec![route_old(&["o9"]), stop_new(&["n4"])],
        None,
    );
}

/// `resume` on a paused rollback goes on rolling back, like `abort`.
#[test]
fn paused_rollback_resumes_rolling_back() {
    let (mut run, _) = four_updated_then_n1_fails(json!({"parallelism": 2, "monitor": 0}));
    run.at(
        obs(4_000, &[("o5", Healthy), ("o6", Gone)], &N1_BAD),
        vec![],
        paused_again(&format!(
            "rollback paused: o6 exited; 1 of 2 restored replica(s) failed, above max_failure_ratio 0; it was for: {N1_REASON}"
        )),
    );
    let new = N1_BAD;
    run.state = resume(&run.state, 5_000);
    // the failed o6 is removed; 4 are missing, two per batch; o5, healthy but never
    // routed (its batch paused first), joins the first one: a single one is started
    run.at(
        obs(5_000, &[("o5", Healthy), ("o6", Gone)], &new),
        vec![stop_old(&["o6"]), start_old(1)],
        None,
    );
    assert_eq!(run.state.rollback_left, 2);
    let messages: Vec<&str> = run
        .state
        .history
        .iter()
        .map(|e| e.message.as_str())
        .collect();
    assert!(messages.contains(&"resumed: rolling back"), "{messages:?}");
    // a second abort while it rolls back is ignored
    run.state = abort(&run.state, 5_500);
    assert!(!run.state.abort_requested);
    run.at(
        obs(6_000, &[("o5", Healthy), ("o7", Healthy)], &new),
        vec![
            route_old(&["o5", "o7"]),
            stop_new(&["n1", "n4"]),
            start_old(2),
        ],
        None,
    );
    let old = [
        ("o5", Healthy),
        ("o7", Healthy),
        ("o8", Healthy),
        ("o9", Healthy),
    ];
    run.at(
        obs(7_000, &old, &[("n2", Healthy), ("n3", Healthy)]),
        vec![route_old(&["o8", "o9"]), stop_new(&["n2", "n3"])],
        rolled_back(N1_REASON),
    );
    // exactly the 4 stopped come back, o5 among them
    assert_eq!(run.state.old_restored, ids(&["o5", "o7", "o8", "o9"]));
}

#[test]
fn rollback_accepts_a_restored_replica_named_like_one_it_stopped() {
    let (mut run, _) = four_updated_then_n1_fails(json!({"parallelism": 0, "monitor": 0}));
    // the old replicas come back under their old names
    run.at(
        obs(4_000, &OLD4, &N1_BAD),
        vec![
            route_old(&["o1", "o2", "o3", "o4"]),
            stop_new(&["n1", "n2", "n3", "n4"]),
        ],
        rolled_back(N1_REASON),
    );
}

#[test]
fn rollback_failure_action_continue_and_max_failure_ratio() {
    let (mut run, first) = four_updated_then_n1_fails(json!({
        "parallelism": 2, "monitor": 0, "failure_action": "pause", "max_failure_ratio": 0.5
    }));
    assert_eq!(first, vec![start_old(2)]);
    // 1 of 2 restored failed: not above 0.5, the batch goes on with the healthy one
    run.at(
        obs(4_000, &[("o5", Healthy), ("o6", Unhealthy)], &N1_BAD),
        vec![route_old(&["o5"]), stop_new(&["n1", "n4"]), start_old(2)],
        None,
    );
    // 2 of 4 failed: 0.5, still not above
    let old = [
        ("o5", Healthy),
        ("o6", Unhealthy),
        ("o7", Healthy),
        ("o8", Gone),
    ];
    run.at(
        obs(5_000, &old, &[("n2", Healthy), ("n3", Healthy)]),
        vec![route_old(&["o7"]), stop_new(&["n2", "n3"])],
        rolled_back(N1_REASON),
    );
    assert_eq!(run.state.old_failed, ids(&["o6", "o8"]));

    // continue: every failure is tolerated, the failed replicas stay for the restart policy
    let (mut run, _) = four_updated_then_n1_fails(json!({
        "parallelism": 2, "monitor": 0, "failure_action": "continue"
    }));
    run.at(
        obs(4_000, &[("o5", Unhealthy), ("o6", Unhealthy)], &N1_BAD),
        vec![stop_new(&["n1", "n4"]), start_old(2)],
        None,
    );
    let old = [
        ("o5", Unhealthy),
        ("o6", Unhealthy),
        ("o7", Healthy),
        ("o8", Healthy),
    ];
    run.at(
        obs(5_000, &old, &[("n2", Healthy), ("n3", Healthy)]),
        vec![route_old(&["o7", "o8"]), stop_new(&["n2", "n3"])],
        rolled_back(N1_REASON),
    );
    assert!(run.state.history.iter().any(|e| e.message
        == "rollback continuing: 2 of 2 restored replica(s) failed, above max_failure_ratio 0"));
}

#[test]
fn rollback_not_healthy_in_time_stalls() {
    let (mut run, _) = four_updated_then_n1_fails(json!({"parallelism": 1}));
    run.at(obs(62_999, &[("o5", Starting)], &N1_BAD), vec![], None);
    run.at(
        obs(63_000, &[("o5", Starting)], &N1_BAD),
        vec![],
        paused_again(&format!(
            "rollback stalled: 0 of 1 old replica(s) healthy after 1m; it was for: {N1_REASON}"
        )),
    );
}

#[test]
fn abort_during_a_rollback_is_ignored_and_promote_skips_its_waits() {
    let (mut run, _) = four_updated_then_n1_fails(json!({
        "parallelism": 1, "delay": 60000, "monitor": 60000
    }));
    run.state = abort(&run.state, 3_500);
    assert!(!run.state.abort_requested);
    assert_eq!(
        run.state.history.last().map(|e| e.message.as_str()),
        Some("abort ignored: already rolling back")
    );
    run.at(
        obs(4_000, &[("o5", Healthy)], &N1_BAD),
        vec![route_old(&["o5"]), stop_new(&["n1"])],
        None,
    );
    run.state = promote(&run.state, 4_500);
    let new = [("n2", Healthy), ("n3", Healthy), ("n4", Healthy)];
    run.at(
        obs(4_500, &[("o5", Healthy)], &new),
        vec![start_old(1)],
        None,
    );
}

#[test]
fn spec_rollback_config_defaults_and_errors() {
    let Strategy::Rolling(r) = four_with_rollback(json!({})).strategy else {
        panic!("expected rolling")
    };
    // present: Swarm's defaults, start-first because the service publishes ports
    assert_eq!(
        r.rollback,
        UpdateSettings {
            parallelism: 1,
            delay_ms: 0,
            failure_action: FailureAction::Pause,
            monitor_ms: 5_000,
            max_failure_ratio: 0.0,
            order: Order::StartFirst,
        }
    );
    assert_eq!(
        spec_err(json!({"deploy": {"rollback_config": {"failure_action": "rollback"}}})),
        "deploy.rollback_config.failure_action: expected \"continue\" or \"pause\", found \"rollback\""
    );
    assert_eq!(
        spec_err(json!({"deploy": {"rollback_config": {"max_failure_ratio": 2.0}}})),
        "deploy.rollback_config.max_failure_ratio: expected a number between 0 and 1, found 2"
    );
}

// ---------------------------------------------------------------- blue-green

fn blue_green(extra: Value) -> RolloutSpec {
    let mut rollout = json!({"strategy": "blue-green"});
    if let (Value::Object(r), Value::Object(e)) = (&mut rollout, extra) {
        r.extend(e);
    }
    spec(json!({"ports": [{"target": 80}], "baton": {"rollout": rollout}}))
}

const OLD2: [(&str, Health); 2] = [("o1", Healthy), ("o2", Healthy)];

#[test]
fn blue_green_switches_at_once_and_keeps_old_for_five_minutes() {
    let mut run = Run::new(blue_green(json!({})), 2, &["o1", "o2"]);
    run.at(obs(0, &OLD2, &[]), vec![start_new(2)], None);
    run.at(
        obs(1_000, &OLD2, &[("n1", Healthy), ("n2", Starting)]),
        vec![],
        None,
    );
    let new = [("n1", Healthy), ("n2", Healthy)];
    run.at(
        obs(2_000, &OLD2, &new),
        vec![route_new(&["n1", "n2"]), weight(100)],
        None,
    );
    run.at(obs(301_999, &OLD2, &new), vec![], None);
    run.at(
        obs(302_000, &OLD2, &new),
        vec![stop_old(&["o1", "o2"])],
        Some(Outcome::Completed),
    );
}

#[test]
fn blue_green_never_healthy_never_switches() {
    let mut run = Run::new(
        blue_green(json!({"health_timeout": "30s"})),
        2,
        &["o1", "o2"],
    );
    run.at(obs(0, &OLD2, &[]), vec![start_new(2)], None);
    let new = [("n1", Healthy), ("n2", Starting)];
    run.at(obs(29_999, &OLD2, &new), vec![], None);
    run.at(
        obs(30_000, &OLD2, &new),
        vec![stop_new(&["n1", "n2"])],
        rolled_back("1 of 2 new replica(s) not healthy after 30s"),
    );
    assert!(!run
        .all
        .iter()
        .any(|d| matches!(d, Decision::SetWeight { .. })));
    assert_eq!(run.state.old_running, ids(&["o1", "o2"]));
}

#[test]
fn blue_green_new_replica_exits_before_the_switch() {
    let mut run = Run::new(blue_green(json!({})), 2, &["o1", "o2"]);
    run.at(obs(0, &OLD2, &[]), vec![start_new(2)], None);
    run.at(
        obs(1_000, &OLD2, &[("n1", Healthy), ("n2", Gone)]),
        vec![stop_new(&["n1", "n2"])],
        rolled_back("n2 exited before the switch"),
    );
}

#[test]
fn blue_green_abort_within_keep_old_switches_back() {
    let mut run = Run::new(blue_green(json!({"keep_old": "1m"})), 2, &["o1", "o2"]);
    run.at(obs(0, &OLD2, &[]), vec![start_new(2)], None);
    let new = [("n1", Healthy), ("n2", Healthy)];
    run.at(
        obs(1_000, &OLD2, &new),
        vec![route_new(&["n1", "n2"]), weight(100)],
        None,
    );
    assert_eq!(superseded(&run.state), vec![stop_old(&["o1", "o2"])]);
    run.state = abort(&run.state, 20_000);
    run.at(
        obs(20_000, &OLD2, &new),
        vec![weight(0), stop_new(&["n1", "n2"])],
        rolled_back("aborted"),
    );
    // too late for anything else
    run.state = abort(&run.state, 21_000);
    run.at(obs(21_000, &OLD2, &[]), vec![], rolled_back("aborted"));
}

#[test]
fn blue_green_new_replica_unhealthy_after_the_switch_switches_back() {
    let mut run = Run::new(blue_green(json!({})), 2, &["o1", "o2"]);
    run.at(obs(0, &OLD2, &[]), vec![start_new(2)], None);
    run.at(
        obs(1_000, &OLD2, &[("n1", Healthy), ("n2", Healthy)]),
        vec![route_new(&["n1", "n2"]), weight(100)],
        None,
    );
    run.at(
        obs(50_000, &OLD2, &[("n1", Healthy), ("n2", Unhealthy)]),
        vec![weight(0), stop_new(&["n1", "n2"])],
        rolled_back("n2 is unhealthy after the switch"),
    );
}

#[test]
fn blue_green_promote_stops_old_at_once() {
    let mut run = Run::new(blue_green(json!({})), 1, &["o1"]);
    run.at(obs(0, &[("o1", Healthy)], &[]), vec![start_new(1)], None);
    run.at(
        obs(1_000, &[("o1", Healthy)], &[("n1", Healthy)]),
        vec![route_new(&["n1"]), weight(100)],
        None,
    );
    run.state = promote(&run.state, 2_000);
    run.at(
        obs(2_000, &[("o1", Healthy)], &[("n1", Healthy)]),
        vec![stop_old(&["o1"])],
        Some(Outcome::Completed),
    );
}

// ---------------------------------------------------------------- canary

#[test]
fn canary_through_two_steps() {
    let mut run = canary_at_step_one();
    let n1 = [("n1", Healthy)];
    run.at(
        with_metrics(obs(30_000, &OLD4, &n1), 100, 1, 120.0),
        vec![],
        None,
    );
    // step 2 (50%) wants 2 of 4
    run.at(obs(61_000, &OLD4, &n1), vec![start_new(1)], None);
    let n12 = [("n1", Healthy), ("n2", Healthy)];
    run.at(
        obs(62_000, &OLD4, &n12),
        vec![route_new(&["n2"]), weight(50), Decision::ResetMetrics],
        None,
    );
    run.at(
        with_metrics(obs(181_999, &OLD4, &n12), 500, 4, 300.0),
        vec![],
        None,
    );
    run.at(obs(182_000, &OLD4, &n12), vec![start_new(2)], None);
    let all = [
        ("n1", Healthy),
        ("n2", Healthy),
        ("n3", Healthy),
        ("n4", Healthy),
    ];
    run.at(
        obs(183_000, &OLD4, &all),
        vec![
            route_new(&["n3", "n4"]),
            weight(100),
            stop_old(&["o1", "o2", "o3", "o4"]),
        ],
        Some(Outcome::Completed),
    );
}

#[test]
fn canary_error_rate_breach_reverts_at_the_first_observation_with_enough_requests() {
    let mut run = canary_at_step_one();
    let n1 = [("n1", Healthy)];
    // 5 of 10 is 50%, but 10 requests are too few to judge
    run.at(
        with_metrics(obs(10_000, &OLD4, &n1), 10, 5, 80.0),
        vec![],
        None,
    );
    run.at(
        with_metrics(obs(20_000, &OLD4, &n1), 40, 2, 80.0),
        vec![weight(0), stop_new(&["n1"])],
        rolled_back("step 1 (10%): error rate 5% (2 of 40 requests) above 1%"),
    );
    assert!(!run.all.contains(&weight(50)));
    assert_eq!(run.state.step_index, 0);
    // later observations change nothing
    run.at(
        obs(61_000, &OLD4, &[]),
        vec![],
        rolled_back("step 1 (10%): error rate 5% (2 of 40 requests) above 1%"),
    );
}

#[test]
fn canary_p95_breach_reverts() {
    let mut run = canary_at_step_one();
    run.at(
        with_metrics(obs(5_000, &OLD4, &[("n1", Healthy)]), 25, 0, 612.5),
        vec![weight(0), stop_new(&["n1"])],
        rolled_back("step 1 (10%): p95 latency 612.5ms above 500ms (25 requests)"),
    );
}

#[test]
fn canary_unhealthy_replica_reverts() {
    let mut run = canary_at_step_one();
    run.at(
        obs(5_000, &OLD4, &[("n1", Unhealthy)]),
        vec![weight(0), stop_new(&["n1"])],
        rolled_back("step 1 (10%): n1 is unhealthy"),
    );
}

#[test]
fn canary_first_replicas_not_healthy_in_time_revert_without_weights() {
    let mut run = Run::new(canary_spec(), 4, &["o1", "o2", "o3", "o4"]);
    run.at(obs(0, &OLD4, &[]), vec![start_new(1)], None);
    run.at(
        obs(60_000, &OLD4, &[("n1", Starting)]),
        vec![stop_new(&["n1"])],
        rolled_back("step 1 (10%): 1 new replica(s) not healthy after 1m"),
    );
}

#[test]
fn canary_promote_goes_straight_to_all_replicas_and_100() {
    let mut run = canary_at_step_one();
    run.state = promote(&run.state, 2_000);
    let n1 = [("n1", Healthy)];
    run.at(obs(2_000, &OLD4, &n1), vec![start_new(3)], None);
    let all = [
        ("n1", Healthy),
        ("n2", Healthy),
        ("n3", Healthy),
        ("n4", Healthy),
    ];
    run.at(
        obs(3_000, &OLD4, &all),
        vec![
            route_new(&["n2", "n3", "n4"]),
            weight(100),
            stop_old(&["o1", "o2", "o3", "o4"]),
        ],
        Some(Outcome::Completed),
    );
    assert!(!run.all.contains(&weight(50)));
}

#[test]
fn canary_abort_reverts() {
    let mut run = canary_at_step_one();
    run.state = abort(&run.state, 2_000);
    run.at(
        obs(2_000, &OLD4, &[("n1", Healthy)]),
        vec![weight(0), stop_new(&["n1"])],
        rolled_back("aborted"),
    );
}

#[test]
fn canary_superseded_sends_traffic_back_and_stops_new() {
    let run = canary_at_step_one();
    assert_eq!(superseded(&run.state), vec![weight(0), stop_new(&["n1"])]);
}

#[test]
fn rolling_superseded_stops_only_unrouted_new() {
    let mut run = Run::new(spec(web(json!({}))), 3, &["o1", "o2", "o3"]);
    run.at(obs(0, &OLD3, &[]), vec![start_new(1)], None);
    run.at(
        obs(1_000, &OLD3, &[("n1", Healthy)]),
        vec![route_new(&["n1"]), stop_old(&["o1"])],
        None,
    );
    let old = [("o2", Healthy), ("o3", Healthy)];
    run.at(
        obs(6_000, &old, &[("n1", Healthy)]),
        vec![start_new(1)],
        None,
    );
    run.at(
        obs(6_500, &old, &[("n1", Healthy), ("n2", Starting)]),
        vec![],
        None,
    );
    assert_eq!(superseded(&run.state), vec![stop_new(&["n2"])]);
}

#[test]
fn state_round_trips_through_json_mid_rollout() {
    let run = canary_at_step_one();
    let text = serde_json::to_string(&run.state).unwrap();
    let back: RolloutState = serde_json::from_str(&text).unwrap();
    assert_eq!(back, run.state);
    for o in [
        with_metrics(obs(20_000, &OLD4, &[("n1", Healthy)]), 40, 2, 80.0),
        obs(61_000, &OLD4, &[("n1", Healthy)]),
    ] {
        assert_eq!(step(&run.spec, &back, &o), step(&run.spec, &run.state, &o));
    }
    // a spec changed to another strategy mid-rollout pauses instead of guessing
    let rolling = spec(web(json!({})));
    let (_, decisions, outcome) = step(&rolling, &back, &obs(2_000, &OLD4, &[]));
    assert_eq!(decisions, vec![]);
    assert_eq!(
        outcome,
        paused_again("the strategy changed from canary to rolling during the rollout")
    );
}

#[test]
fn zero_replicas_stops_the_old_ones() {
    let mut run = Run::new(canary_spec(), 0, &["o1"]);
    run.at(
        obs(0, &[("o1", Healthy)], &[]),
        vec![stop_old(&["o1"])],
        Some(Outcome::Completed),
    );
}

#[test]
fn history_records_decisions_with_times() {
    let run = canary_at_step_one();
    let lines: Vec<(u64, &str)> = run
        .state
        .history
        .iter()
        .map(|e| (e.at_ms, e.message.as_str()))
        .collect();
    assert_eq!(
        lines,
        vec![
            (0, "canary rollout of 4 replica(s) started, replacing 4"),
            (0, "step 1 (10%)"),
            (0, "start 1 new"),
            (1_000, "route new n1"),
            (1_000, "weight 10% to new"),
            (1_000, "reset metrics"),
        ]
    );
}

// ---------------------------------------------------------------- spec

#[test]
fn spec_defaults_follow_swarm_with_stop_first_without_ports() {
    let s = spec(json!({}));
    let Strategy::Rolling(r) = &s.strategy else {
        panic!("expected rolling, got {:?}", s.strategy)
    };
    let swarm = UpdateSettings {
        parallelism: 1,
        delay_ms: 0,
        failure_action: FailureAction::Pause,
        monitor_ms: 5_000,
        max_failure_ratio: 0.0,
        order: Order::StopFirst,
    };
    assert_eq!(r.update, swarm);
    // no rollback_config: one start-first batch, see `one_batch_rollback`
    assert_eq!(r.rollback, UpdateSettings::one_batch_rollback());
    assert_eq!((s.health_timeout_ms, s.drain_timeout_ms), (60_000, 10_000));
}

#[test]
fn spec_publishing_ports_defaults_to_start_first_unless_told() {
    let Strategy::Rolling(r) = spec(web(json!({"parallelism": 2}))).strategy else {
        panic!("expected rolling")
    };
    assert_eq!(
        (r.update.order, r.update.parallelism),
        (Order::StartFirst, 2)
    );
    let Strategy::Rolling(r) = spec(web(json!({"order": "stop-first"}))).strategy else {
        panic!("expected rolling")
    };
    assert_eq!(r.update.order, Order::StopFirst);
}

#[test]
fn spec_canary_reads_steps_and_analysis() {
    let s = canary_spec();
    let Strategy::Canary(c) = &s.strategy else {
        panic!("expected canary")
    };
    assert_eq!(
        c.steps,
        vec![
            CanaryStep {
                weight: 10,
                pause_ms: 60_000
            },
            CanaryStep {
                weight: 50,
                pause_ms: 120_000
            },
        ]
    );
    assert_eq!(
        c.analysis,
        Analysis {
            max_error_rate: Some(0.01),
            max_p95_latency_ms: Some(500),
            min_requests: 20,
        }
    );
    let s = spec(json!({"baton": {"rollout": {
        "strategy": "canary", "steps": [{"weight": "25%"}],
        "analysis": {"max_error_rate": 0.02, "min_requests": 5},
        "health_timeout": "1m30s", "drain_timeout": "500ms"
    }}}));
    let Strategy::Canary(c) = &s.strategy else {
        panic!("expected canary")
    };
    assert_eq!(c.steps[0].weight, 25);
    assert_eq!(c.analysis.max_error_rate, Some(0.02));
    assert_eq!(c.analysis.min_requests, 5);
    assert_eq!((s.health_timeout_ms, s.drain_timeout_ms), (90_000, 500));
}

#[test]
fn settings_of_another_strategy_are_kept_and_only_warned_about() {
    // The same file with `strategy` switched (say from an environment variable) stays
    // valid both ways: canary steps under rolling are checked, unused and warned about.
    let canary = json!({"strategy": "canary", "steps": [{"weight": 10}]});
    let rolling = json!({"strategy": "rolling", "steps": [{"weight": 10}], "keep_old": "1m"});
    assert!(matches!(
        spec(json!({"baton": {"rollout": canary.clone()}})).strategy,
        Strategy::Canary(_)
    ));
    let s = service(json!({"baton": {"rollout": rolling}}));
    assert!(matches!(
        rollout_spec(&s).expect("valid").strategy,
        Strategy::Rolling(_)
    ));
    assert_eq!(
        unused_settings(&s),
        [
            (
                "x-baton.rollout.steps".to_string(),
                "only used by strategy canary, not rolling: ignored".to_string()
            ),
            (
                "x-baton.rollout.keep_old".to_string(),
                "only used by strategy blue-green, not rolling: ignored".to_string()
            ),
        ]
    );
    assert!(unused_settings(&service(json!({"baton": {"rollout": canary}}))).is_empty());
    // Unused is not unchecked: a malformed one is still an error.
    assert_eq!(
        spec_err(json!({"baton": {"rollout": {"steps": [{"weight": 150}]}}})),
        "x-baton.rollout.steps[0].weight: expected a whole percentage from 1 to 100, found 150"
    );
}

#[test]
fn spec_blue_green_keep_old() {
    let s = blue_green(json!({"keep_old": "10m"}));
    assert_eq!(
        s.strategy,
        Strategy::BlueGreen(baton_engine::rollout::BlueGreen {
            keep_old_ms: 600_000
        })
    );
}

#[test]
fn spec_errors_name_the_place_and_the_value() {
    let rollout = |r: Value| spec_err(json!({"baton": {"rollout": r}}));
    assert_eq!(
        rollout(json!({"stratgy": "canary"})),
        "x-baton.rollout: unknown key \"stratgy\" (did you mean \"strategy\"?)"
    );
    assert_eq!(
        rollout(json!({"zzz": 1})),
        "x-baton.rollout: unknown key \"zzz\""
    );
    assert_eq!(
        rollout(json!({"strategy": "canery"})),
        "x-baton.rollout.strategy: unknown strategy \"canery\" (did you mean \"canary\"?)"
    );
    assert_eq!(
        rollout(json!({"strategy": "canary", "steps": [{"weight": 10}],
            "analysis": {"max_error_rate": "abc"}})),
        "x-baton.rollout.analysis.max_error_rate: expected a percentage like \"1%\" or a number between 0 and 1, found \"abc\""
    );
    assert_eq!(
        rollout(json!({"strategy": "canary", "steps": [{"weight": 10}],
            "analysis": {"max_error_rate": 5}})),
        "x-baton.rollout.analysis.max_error_rate: expected a percentage like \"1%\" or a number between 0 and 1, found 5"
    );
    assert_eq!(
        rollout(json!({"strategy": "canary", "steps": [{"weight": 10}],
            "analysis": {"max_p95_latency": 500}})),
        "x-baton.rollout.analysis.max_p95_latency: expected a duration like \"30s\", \"1m30s\" or \"500ms\", found 500"
    );
    assert_eq!(
        rollout(json!({"strategy": "blue-green", "keep_old": "5 minutes"})),
        "x-baton.rollout.keep_old: expected a duration like \"30s\", \"1m30s\" or \"500ms\", found \"5 minutes\""
    );
    assert_eq!(
        rollout(json!({"strategy": "canary"})),
        "x-baton.rollout.steps: strategy canary needs at least one step"
    );
    assert_eq!(
        rollout(json!({"strategy": "canary", "steps": [{"weight": 50}, {"weight": 10}]})),
        "x-baton.rollout.steps[1].weight: weights must increase, 10 follows 50"
    );
    assert_eq!(
        rollout(json!({"strategy": "canary", "steps": [{"wieght": 50}]})),
        "x-baton.rollout.steps[0]: unknown key \"wieght\" (did you mean \"weight\"?)"
    );
    assert_eq!(
        rollout(json!({"strategy": "canary", "steps": [{"weight": 150}]})),
        "x-baton.rollout.steps[0].weight: expected a whole percentage from 1 to 100, found 150"
    );
    assert_eq!(
        spec_err(json!({"baton": {"rollout": "canary"}})),
        "x-baton.rollout: expected a mapping, found \"canary\""
    );
    assert_eq!(
        spec_err(json!({"deploy": {"update_config": {"failure_action": "explode"}}})),
        "deploy.update_config.failure_action: expected \"continue\", \"rollback\" or \"pause\", found \"explode\""
    );
    assert_eq!(
        spec_err(json!({"deploy": {"rollback_config": {"order": "first"}}})),
        "deploy.rollback_config.order: expected \"stop-first\" or \"start-first\", found \"first\""
    );
    assert_eq!(
        spec_err(json!({"deploy": {"update_config": {"max_failure_ratio": 1.5}}})),
        "deploy.update_config.max_failure_ratio: expected a number between 0 and 1, found 1.5"
    );
}

// ---------------------------------------------------------------- restart

fn crash(ran_ms: u64) -> ExitInfo {
    ExitInfo {
        code: 1,
        ran_ms,
        stopped_by_user: false,
        daemon_start: false,
    }
}

fn policy(restart: &str) -> RestartPolicy {
    restart_policy(&service(json!({"restart": restart}))).expect("valid restart")
}

#[test]
fn restart_policies_parse() {
    assert_eq!(
        restart_policy(&service(json!({}))),
        Ok(RestartPolicy::never())
    );
    assert_eq!(policy("on-failure:3").condition, Condition::OnFailure);
    assert_eq!(policy("on-failure:3").max_attempts, Some(3));
    assert_eq!(policy("on-failure").max_attempts, None);
    assert_eq!(policy("unless-stopped").condition, Condition::UnlessStopped);
    assert_eq!(
        restart_policy(&service(json!({"restart": "sometimes"})))
            .unwrap_err()
            .to_string(),
        "restart: expected \"no\", \"always\", \"on-failure[:N]\" or \"unless-stopped\", found \"sometimes\""
    );
    // deploy.restart_policy wins over restart:
    let p = restart_policy(&service(json!({
        "restart": "no",
        "deploy": {"restart_policy": {"delay": 2000, "max_attempts": 0, "window": 30000}}
    })))
    .unwrap();
    assert_eq!(
        p,
        RestartPolicy {
            condition: Condition::Always,
            delay_ms: Some(2_000),
            max_attempts: None,
            window_ms: Some(30_000),
        }
    );
    assert_eq!(
        restart_policy(&service(json!({"deploy": {"restart_policy": {"condition": "never"}}})))
            .unwrap_err()
            .to_string(),
        "deploy.restart_policy.condition: expected \"none\", \"on-failure\" or \"any\", found \"never\""
    );
}

#[test]
fn restart_backoff_doubles_from_100ms_up_to_30s() {
    let p = policy("always");
    let mut h = RestartHistory::default();
    let mut delays = Vec::new();
    for i in 0..11u64 {
        let now = i * 100_000;
        match restart_decision(&p, &h, crash(1_000), now) {
            RestartDecision::RestartAt { at_ms } => delays.push(at_ms - now),
            other => panic!("restart {i}: {other:?}"),
        }
        h.record(&crash(1_000), now, p.window_ms);
    }
    assert_eq!(
        delays,
        vec![100, 200, 400, 800, 1_600, 3_200, 6_400, 12_800, 25_600, 30_000, 30_000]
    );
    // a run of 9.999 s is not stable; 10 s is, and the backoff starts over
    assert_eq!(
        restart_decision(&p, &h, crash(9_999), 2_000_000),
        RestartDecision::RestartAt { at_ms: 2_030_000 }
    );
    assert_eq!(
        restart_decision(&p, &h, crash(10_000), 2_000_000),
        RestartDecision::RestartAt { at_ms: 2_000_100 }
    );
    h.record(&crash(10_000), 2_000_100, None);
    assert_eq!(h.consecutive, 1);
    assert_eq!(
        restart_decision(&p, &h, crash(500), 2_100_000),
        RestartDecision::RestartAt { at_ms: 2_100_200 }
    );
}

#[test]
fn restart_configured_delay_is_the_base_and_zero_restarts_now() {
    let p = RestartPolicy {
        condition: Condition::Always,
        delay_ms: Some(5_000),
        max_attempts: None,
        window_ms: None,
    };
    let h = RestartHistory {
        restarts_ms: vec![],
        consecutive: 3,
    };
    assert_eq!(
        restart_decision(&p, &h, crash(0), 0),
        RestartDecision::RestartAt { at_ms: 30_000 }
    );
    let p = RestartPolicy {
        delay_ms: Some(0),
        ..p
    };
    assert_eq!(
        restart_decision(&p, &h, crash(0), 0),
        RestartDecision::RestartNow
    );
}

#[test]
fn restart_on_failure_n_gives_up_after_n() {
    let p = policy("on-failure:3");
    let mut h = RestartHistory::default();
    for now in [0, 1_000, 2_000] {
        assert!(matches!(
            restart_decision(&p, &h, crash(100), now),
            RestartDecision::RestartAt { .. }
        ));
        h.record(&crash(100), now, None);
    }
    assert_eq!(
        restart_decision(&p, &h, crash(100), 3_000),
        RestartDecision::GiveUp {
            reason: "gave up after 3 restart(s), the most allowed; last exit code 1".into()
        }
    );
    // a clean exit is not a failure
    let clean = ExitInfo {
        code: 0,
        ..crash(100)
    };
    assert_eq!(
        restart_decision(&p, &RestartHistory::default(), clean, 0),
        RestartDecision::Leave
    );
    // a stable run before the crash starts the count over
    assert_eq!(
        restart_decision(&p, &h, crash(60_000), 3_000),
        RestartDecision::RestartAt { at_ms: 3_100 }
    );
}

#[test]
fn restart_max_attempts_counts_only_within_the_window() {
    let p = RestartPolicy {
        condition: Condition::OnFailure,
        delay_ms: None,
        max_attempts: Some(2),
        window_ms: Some(10_000),
    };
    let h = RestartHistory {
        restarts_ms: vec![0, 1_000],
        consecutive: 2,
    };
    assert!(matches!(
        restart_decision(&p, &h, crash(100), 5_000),
        RestartDecision::GiveUp { .. }
    ));
    assert_eq!(
        restart_decision(&p, &h, crash(100), 20_000),
        RestartDecision::RestartAt { at_ms: 20_400 }
    );
}

#[test]
fn restart_after_a_manual_stop_always_vs_unless_stopped() {
    let stopped = ExitInfo {
        code: 0,
        ran_ms: 3_600_000,
        stopped_by_user: true,
        daemon_start: false,
    };
    let at_boot = ExitInfo {
        daemon_start: true,
        ..stopped
    };
    let h = RestartHistory::default();
    for name in ["always", "unless-stopped", "on-failure", "no"] {
        assert_eq!(
            restart_decision(&policy(name), &h, stopped, 0),
            RestartDecision::Leave,
            "{name}"
        );
    }
    assert_eq!(
        restart_decision(&policy("always"), &h, at_boot, 0),
        RestartDecision::RestartNow
    );
    assert_eq!(
        restart_decision(&policy("unless-stopped"), &h, at_boot, 0),
        RestartDecision::Leave
    );
    // a crash is restarted by both
    for name in ["always", "unless-stopped"] {
        assert_eq!(
            restart_decision(&policy(name), &h, crash(100), 0),
            RestartDecision::RestartAt { at_ms: 100 },
            "{name}"
        );
    }
    assert_eq!(
        restart_decision(&policy("no"), &h, crash(100), 0),
        RestartDecision::Leave
    );
}

#[test]
fn restart_crash_loop_is_five_restarts_within_a_minute() {
    let mut h = RestartHistory::default();
    for at in [0, 1_000, 2_000, 3_000] {
        h.record(&crash(100), at, None);
    }
    assert!(!h.crash_looping(3_000));
    h.record(&crash(100), 4_000, None);
    assert!(h.crash_looping(4_000));
    assert!(h.crash_looping(60_000));
    assert!(!h.crash_looping(60_001));
    // old restarts are forgotten as new ones are recorded
    h.record(&crash(100), 200_000, None);
    assert_eq!(h.restarts_ms, vec![200_000]);
}

// ---------------------------------------------------------------- any input

/// Scripted chaos: random health, replicas appearing and vanishing, random metrics and
/// clock jumps, promote/abort at random. Never a panic; a finished rollout stays finished
/// with no decisions; weights stay within 0..=100; no replica is stopped twice.
#[test]
fn any_observation_sequence_is_handled() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n.max(1)
    };
    let specs = [
        spec(web(json!({"failure_action": "rollback", "parallelism": 2}))),
        spec(web(
            json!({"failure_action": "continue", "max_failure_ratio": 0.5}),
        )),
        spec(json!({"deploy": {"update_config": {"failure_action": "pause"}}})),
        blue_green(json!({"keep_old": "20s"})),
        canary_spec(),
    ];
    let healths = [Starting, Healthy, Healthy, Healthy, Unhealthy, Gone];
    for round in 0..200 {
        let s = &specs[round % specs.len()];
        let desired = next(5) as u32;
        let mut state = start(s, desired, &ids(&["o1", "o2", "o3"]), 0);
        let mut now = 0;
        let mut finished = false;
        let mut stopped: Vec<String> = Vec::new();
        for _ in 0..60 {
            now += next(40_000);
            let mut o = obs(now, &[], &[]);
            for i in 0..next(6) {
                o.old.push(Replica {
                    id: format!("o{}", i + 1),
                    health: healths[next(6) as usize],
                });
            }
            for i in 0..next(7) {
                o.new.push(Replica {
                    id: format!("n{}", i + 1),
                    health: healths[next(6) as usize],
                });
            }
            if next(2) == 0 {
                let requests = next(100);
                o.new_metrics = Some(RevisionMetrics {
                    requests,
                    errors_5xx: next(requests + 1),
                    p95_ms: Some(next(1_000) as f64),
                });
            }
            match next(30) {
                0 => state = promote(&state, now),
                1 => state = abort(&state, now),
                2 => state = resume(&state, now),
                _ => {}
            }
            let resuming = state.resume_requested && !state.abort_requested;
            // A paused rollback resumed stops its failed restored replicas and forgets
            // them: a name the update stopped may have come back among them.
            let reusable = if state.resume_requested || state.abort_requested {
                state.old_failed.clone()
            } else {
                Vec::new()
            };
            let (next_state, decisions, outcome) = step(s, &state, &o);
            if finished {
                assert_eq!(decisions, vec![], "round {round}");
            }
            for d in &decisions {
                match d {
                    Decision::SetWeight { new_percent } => assert!(*new_percent <= 100),
                    Decision::StopNew { ids } | Decision::StopOld { ids } => {
                        for id in ids {
                            assert!(
                                !stopped.contains(id) || reusable.contains(id),
                                "round {round}: {id} twice"
                            );
                            stopped.push(id.clone());
                        }
                    }
                    _ => {}
                }
            }
            // A resumed update forgets the failed replicas it stops: their names may
            // come back as replacements.
            if let (true, Some(Decision::StopNew { ids })) = (resuming, decisions.first()) {
                stopped.retain(|id| !ids.contains(id));
            }
            finished = outcome
                .as_ref()
                .is_some_and(|o| !matches!(o, Outcome::Paused { .. }));
            state = next_state;
        }
    }
}
