//! Rollout deciders: pure functions from (spec, state, observation) to (state, decisions)
//! for rolling, blue-green and canary updates. No I/O and no clock: time comes in `now_ms`.
//!
//! The daemon owns the loop: `start` once, then `step` with a fresh `Observation` until an
//! `Outcome` comes back, carrying out each returned `Decision` in order, each finished
//! before the next (`StopOld` = drain from the proxy, then stop and remove). The state is
//! plain data, stored between steps and after a restart.
//!
//! Traffic: `RouteNew` / `RouteOld` add replicas to the proxy's backend set. Rolling never
//! sets weights (traffic spreads over every routed replica of either revision); blue-green
//! and canary split traffic between the two revisions with `SetWeight`.
//!
//! Health: a new replica that is `Unhealthy` or `Gone`, or that an earlier observation
//! showed and the current one no longer lists, has failed. Replicas asked for with
//! `StartNew` but not yet listed count as not healthy yet.

mod blue_green;
mod canary;
mod choice;
mod rolling;
pub(crate) mod spec;

use serde::{Deserialize, Serialize};

pub use choice::{handover, stable_set, undo_target, Handover, Recorded, ReplicaConfig};
pub use spec::{
    rollout_spec, unused_settings, Analysis, BlueGreen, Canary, CanaryStep, FailureAction, Order,
    Rolling, RolloutSpec, RolloutSpecError, Strategy, StrategyKind, UpdateSettings,
    DEFAULT_DRAIN_TIMEOUT_MS, DEFAULT_HEALTH_TIMEOUT_MS, DEFAULT_KEEP_OLD_MS, DEFAULT_MIN_REQUESTS,
};

/// What the daemon knows of one replica's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Health {
    /// Running, health check not yet passed (or the container is still being created).
    Starting,
    Healthy,
    Unhealthy,
    /// Exited or removed.
    Gone,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replica {
    pub id: String,
    pub health: Health,
}

/// A revision's traffic since the last `ResetMetrics`, as the proxy counted it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RevisionMetrics {
    pub requests: u64,
    pub errors_5xx: u64,
    pub p95_ms: Option<f64>,
}

/// The world as the daemon sees it at `now_ms`: the replicas of the old and the new
/// revision (ids the daemon chose), and their metrics when the proxy has them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    pub now_ms: u64,
    pub old: Vec<Replica>,
    pub new: Vec<Replica>,
    pub old_metrics: Option<RevisionMetrics>,
    pub new_metrics: Option<RevisionMetrics>,
}

/// One thing for the daemon to do. A step's decisions are carried out in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "decision")]
pub enum Decision {
    /// Create and start that many replicas of the new revision (not routed yet).
    StartNew { count: u32 },
    /// Drain from the proxy, then stop and remove.
    StopOld { ids: Vec<String> },
    /// Drain from the proxy if routed, then stop and remove.
    StopNew { ids: Vec<String> },
    /// Rollback: create and start that many replicas of the old revision again.
    StartOld { count: u32 },
    /// Add these new replicas to the proxy's backend set.
    RouteNew { ids: Vec<String> },
    /// Rollback: add these restored old replicas to the proxy's backend set.
    RouteOld { ids: Vec<String> },
    /// Percent of the traffic (0..=100) for the new revision; the rest goes to the old.
    SetWeight { new_percent: u32 },
    /// Start a fresh analysis window for the metrics of both revisions.
    ResetMetrics,
}

/// How a rollout ended. `Paused` leaves everything as it is for a person to look at;
/// `abort` (roll back) and `resume` (go on) still work on a paused rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "outcome")]
pub enum Outcome {
    Completed,
    RolledBack { reason: String },
    Paused { reason: String },
}

/// Where a rollout is. Timers are absolute times in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "phase")]
pub enum Phase {
    /// `start` ran; the first `step` begins.
    Pending,
    /// Waiting for the new replicas asked for to become healthy.
    Starting { since_ms: u64 },
    /// Rolling: watching the last batch for failures.
    Monitoring { until_ms: u64 },
    /// Rolling: `delay` between batches.
    Delay { until_ms: u64 },
    /// Canary: traffic at the step's weight, metrics judged at every observation.
    Analysing { until_ms: u64 },
    /// Blue-green: switched; the old set stays for an instant rollback.
    KeepingOld { until_ms: u64 },
    /// Rolling rollback: waiting for the batch's restarted old replicas to become healthy.
    RestoringOld { since_ms: u64, reason: String },
    /// Rolling rollback: watching the last rollback batch (`rollback_config.monitor`).
    RollbackMonitoring { until_ms: u64, reason: String },
    /// Rolling rollback: `rollback_config.delay` between rollback batches.
    RollbackDelay { until_ms: u64, reason: String },
    /// See `RolloutState::outcome`.
    Finished,
}

impl Phase {
    /// A rolling rollback is under way.
    pub fn rolling_back(&self) -> bool {
        matches!(
            self,
            Phase::RestoringOld { .. }
                | Phase::RollbackMonitoring { .. }
                | Phase::RollbackDelay { .. }
        )
    }
}

/// One batch of a rolling rollback: old replicas started again, then routed, and the new
/// replicas it took out of service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackBatch {
    pub started_ms: u64,
    /// How many old replicas the batch started again (`StartOld`).
    pub old: u32,
    /// The restored old replicas it routed, once healthy.
    pub routed: Vec<String>,
    /// The new replicas it stopped.
    pub stopped_new: Vec<String>,
    /// Restored old replicas that failed (unhealthy, exited, or not healthy in time;
    /// one never seen counts without an id).
    pub failed: Vec<String>,
    pub failures: u32,
    /// When its replicas were routed (and, start-first, the new ones stopped).
    pub routed_ms: Option<u64>,
}

/// Something that happened, for `baton` to show and for people to read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub at_ms: u64,
    pub message: String,
}

/// A rollout in progress (or finished). Plain data: store it, load it, step it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutState {
    pub strategy: StrategyKind,
    pub desired: u32,
    pub started_ms: u64,
    pub phase: Phase,
    /// Rolling: batches begun. Canary: the current step (`steps.len()` = the final 100%).
    pub step_index: u32,
    /// Old replicas the rollout has not stopped, in the order they will be stopped.
    pub old_running: Vec<String>,
    pub old_stopped: Vec<String>,
    /// Old replicas started again by a rollback and routed.
    pub old_restored: Vec<String>,
    /// How many old replicas a rollback asked for with `StartOld`, over its batches.
    pub old_requested: u32,
    /// Rolling rollback: old replicas still to start again (batches not begun yet).
    #[serde(default)]
    pub rollback_left: u32,
    /// Rolling rollback: its batches, in order (`rollback_config`).
    #[serde(default)]
    pub rollback_batches: Vec<RollbackBatch>,
    /// Rolling rollback: restored old replicas that failed; never routed.
    #[serde(default)]
    pub old_failed: Vec<String>,
    /// How many new replicas were asked for with `StartNew`, in total.
    pub new_started: u32,
    /// Every new replica id observed, in the order first seen.
    pub new_seen: Vec<String>,
    pub new_routed: Vec<String>,
    /// Rolling: the replicas routed by the last batch (the ones `monitor` watches).
    pub batch: Vec<String>,
    /// Rolling: how many old replicas the current batch replaces.
    pub batch_size: u32,
    pub new_failed: Vec<String>,
    pub new_stopped: Vec<String>,
    /// New replicas that failed, including ones that never showed up in time.
    pub failures: u32,
    /// Percent of the traffic sent to the new revision (blue-green, canary).
    pub weight: u32,
    /// Set by `promote`: every remaining wait and canary step is skipped.
    pub promoted: bool,
    /// Set by `abort`: the next `step` rolls back.
    pub abort_requested: bool,
    /// Set by `resume` on a paused rollout: the next `step` goes on from where it paused.
    #[serde(default)]
    pub resume_requested: bool,
    /// The phase a pause interrupted, for `resume`.
    #[serde(default)]
    pub paused_phase: Option<Phase>,
    pub outcome: Option<Outcome>,
    pub history: Vec<Event>,
}

/// A new rollout to `desired` replicas of the new revision, replacing `old` (ids of the
/// replicas serving now). Decisions come from the first `step`.
pub fn start(
    spec: &RolloutSpec,
    desired_replicas: u32,
    old: &[String],
    now_ms: u64,
) -> RolloutState {
    let strategy = spec.strategy.kind();
    RolloutState {
        strategy,
        desired: desired_replicas,
        started_ms: now_ms,
        phase: Phase::Pending,
        step_index: 0,
        old_running: old.to_vec(),
        old_stopped: Vec::new(),
        old_restored: Vec::new(),
        old_requested: 0,
        rollback_left: 0,
        rollback_batches: Vec::new(),
        old_failed: Vec::new(),
        new_started: 0,
        new_seen: Vec::new(),
        new_routed: Vec::new(),
        batch: Vec::new(),
        batch_size: 0,
        new_failed: Vec::new(),
        new_stopped: Vec::new(),
        failures: 0,
        weight: 0,
        promoted: false,
        abort_requested: false,
        resume_requested: false,
        paused_phase: None,
        outcome: None,
        history: vec![Event {
            at_ms: now_ms,
            message: format!(
                "{strategy} rollout of {desired_replicas} replica(s) started, replacing {}",
                old.len()
            ),
        }],
    }
}

/// Moves the rollout on from what `obs` shows. Returns the new state, the decisions to
/// carry out in order, and the outcome once the rollout is finished (then on every later
/// call too, with no decisions).
pub fn step(
    spec: &RolloutSpec,
    state: &RolloutState,
    obs: &Observation,
) -> (RolloutState, Vec<Decision>, Option<Outcome>) {
    let mut cx = Cx {
        spec,
        obs,
        s: state.clone(),
        out: Vec::new(),
    };
    cx.observe();
    if cx.s.strategy != spec.strategy.kind() && cx.s.phase != Phase::Finished {
        let reason = format!(
            "the strategy changed from {} to {} during the rollout",
            cx.s.strategy,
            spec.strategy.kind()
        );
        cx.s.resume_requested = false;
        cx.finish(Outcome::Paused { reason });
    } else if cx.s.abort_requested {
        cx.s.abort_requested = false;
        cx.s.resume_requested = false;
        let abortable = match &cx.s.outcome {
            None => true,
            Some(Outcome::Paused { .. }) => true,
            Some(_) => false,
        };
        if abortable {
            cx.log("aborted");
            // A paused rollout rolls back: it is not paused any more.
            cx.s.outcome = None;
            cx.s.paused_phase = None;
            match &spec.strategy {
                Strategy::Rolling(r) => rolling::roll_back(&mut cx, &r.rollback, "aborted".into()),
                Strategy::BlueGreen(_) | Strategy::Canary(_) => cx.revert("aborted".into()),
            }
        }
    } else if cx.s.resume_requested {
        cx.s.resume_requested = false;
        let paused = matches!(cx.s.outcome, Some(Outcome::Paused { .. }));
        match &spec.strategy {
            _ if cx.s.strategy != spec.strategy.kind() => cx.log(format!(
                "resume ignored: the strategy changed from {} to {}",
                cx.s.strategy,
                spec.strategy.kind()
            )),
            Strategy::Rolling(r) if paused && cx.s.phase == Phase::Finished => {
                rolling::resume(&mut cx, r)
            }
            Strategy::Rolling(_) => cx.log("resume ignored: the rollout is not paused"),
            // Only a strategy change or a misplaced phase pauses these: nothing to go on
            // with, so the pause stands.
            Strategy::BlueGreen(_) | Strategy::Canary(_) => cx.log(format!(
                "resume ignored: a {} rollout cannot resume",
                cx.s.strategy
            )),
        }
    } else if cx.s.phase != Phase::Finished {
        match &spec.strategy {
            Strategy::Rolling(r) => rolling::step(&mut cx, r),
            Strategy::BlueGreen(b) => blue_green::step(&mut cx, b),
            Strategy::Canary(c) => canary::step(&mut cx, c),
        }
    }
    let outcome = match cx.s.phase {
        Phase::Finished => cx.s.outcome.clone(),
        _ => None,
    };
    (cx.s, cx.out, outcome)
}

/// Skips every remaining wait (monitor, delay, canary pauses and steps, keep_old) from the
/// next `step` on. Health waits are never skipped. Ignored once the rollout is finished.
pub fn promote(state: &RolloutState, now_ms: u64) -> RolloutState {
    let mut s = state.clone();
    let message = if s.phase == Phase::Finished {
        "promote ignored: the rollout is finished"
    } else {
        s.promoted = true;
        "promoted"
    };
    s.history.push(Event {
        at_ms: now_ms,
        message: message.into(),
    });
    s
}

/// Asks the next `step` to roll back (reason "aborted"). Works on a paused rollout;
/// ignored on a completed or rolled-back one, and while a rollback is under way.
pub fn abort(state: &RolloutState, now_ms: u64) -> RolloutState {
    let mut s = state.clone();
    let message = match &s.outcome {
        Some(Outcome::Completed) | Some(Outcome::RolledBack { .. }) => {
            "abort ignored: the rollout is finished"
        }
        None if s.phase.rolling_back() => "abort ignored: already rolling back",
        _ => {
            s.abort_requested = true;
            "abort requested"
        }
    };
    s.history.push(Event {
        at_ms: now_ms,
        message: message.into(),
    });
    s
}

/// Asks the next `step` to go on with a paused rollout from where it paused: a rolling
/// update replaces its failed new replicas and carries on with its batches (the failure
/// count starts again from zero, with the same health gating and `failure_action`); a
/// paused rolling rollback goes on rolling back. Ignored unless the rollout is paused.
pub fn resume(state: &RolloutState, now_ms: u64) -> RolloutState {
    let mut s = state.clone();
    let message = match &s.outcome {
        Some(Outcome::Paused { .. }) => {
            s.resume_requested = true;
            "resume requested"
        }
        _ => "resume ignored: the rollout is not paused",
    };
    s.history.push(Event {
        at_ms: now_ms,
        message: message.into(),
    });
    s
}

/// What to do when a newer revision arrives mid-rollout. The daemon carries these out,
/// drops this state, and starts the next rollout with `old` = every replica of either
/// revision still running afterwards, which is the set serving now:
/// - rolling: replicas of the new revision not routed yet are stopped; routed ones keep
///   serving beside the old ones still running;
/// - blue-green before the switch, and canary: traffic back to the old set
///   (`SetWeight 0` if it had moved) and every new replica stopped;
/// - blue-green after the switch: the new set serves all traffic, so the old set goes.
///
/// `StopNew` names the new replicas observed; the daemon also removes any replica of the
/// superseded revision that it started and no observation listed yet.
pub fn superseded(state: &RolloutState) -> Vec<Decision> {
    let s = state;
    let live = |ids: &[String]| -> Vec<String> {
        ids.iter()
            .filter(|id| !s.new_stopped.contains(id))
            .cloned()
            .collect()
    };
    let mut out = Vec::new();
    match s.strategy {
        StrategyKind::Rolling => {
            let unrouted: Vec<String> = live(&s.new_seen)
                .into_iter()
                .filter(|id| !s.new_routed.contains(id))
                .collect();
            if !unrouted.is_empty() {
                out.push(Decision::StopNew { ids: unrouted });
            }
        }
        StrategyKind::BlueGreen if matches!(s.phase, Phase::KeepingOld { .. }) => {
            if !s.old_running.is_empty() {
                out.push(Decision::StopOld {
                    ids: s.old_running.clone(),
                });
            }
        }
        StrategyKind::BlueGreen | StrategyKind::Canary => {
            if s.phase == Phase::Finished {
                return out;
            }
            if s.weight > 0 {
                out.push(Decision::SetWeight { new_percent: 0 });
            }
            let ids = live(&s.new_seen);
            if !ids.is_empty() {
                out.push(Decision::StopNew { ids });
            }
        }
    }
    out
}

/// One step's working set: the spec, the observation, the state being built and the
/// decisions so far.
pub(crate) struct Cx<'a> {
    pub spec: &'a RolloutSpec,
    pub obs: &'a Observation,
    pub s: RolloutState,
    pub out: Vec<Decision>,
}

impl Cx<'_> {
    fn now(&self) -> u64 {
        self.obs.now_ms
    }

    fn observe(&mut self) {
        for r in &self.obs.new {
            if !self.s.new_seen.contains(&r.id) {
                self.s.new_seen.push(r.id.clone());
            }
        }
    }

    fn log(&mut self, message: impl Into<String>) {
        let at_ms = self.now();
        self.s.history.push(Event {
            at_ms,
            message: message.into(),
        });
    }

    fn emit(&mut self, d: Decision) {
        let message = match &d {
            Decision::StartNew { count } => format!("start {count} new"),
            Decision::StopOld { ids } => format!("stop old {}", ids.join(", ")),
            Decision::StopNew { ids } => format!("stop new {}", ids.join(", ")),
            Decision::StartOld { count } => format!("start {count} old"),
            Decision::RouteNew { ids } => format!("route new {}", ids.join(", ")),
            Decision::RouteOld { ids } => format!("route old {}", ids.join(", ")),
            Decision::SetWeight { new_percent } => format!("weight {new_percent}% to new"),
            Decision::ResetMetrics => "reset metrics".into(),
        };
        self.log(message);
        self.out.push(d);
    }

    fn finish(&mut self, outcome: Outcome) {
        let message = match &outcome {
            Outcome::Completed => "completed".to_string(),
            Outcome::RolledBack { reason } => format!("rolled back: {reason}"),
            Outcome::Paused { reason } => format!("paused: {reason}"),
        };
        self.log(message);
        if matches!(outcome, Outcome::Paused { .. }) && self.s.phase != Phase::Finished {
            self.s.paused_phase = Some(self.s.phase.clone());
        }
        self.s.phase = Phase::Finished;
        self.s.outcome = Some(outcome);
    }

    fn start_new(&mut self, count: u32) {
        self.s.new_started = self.s.new_started.saturating_add(count);
        self.emit(Decision::StartNew { count });
        self.s.phase = Phase::Starting {
            since_ms: self.now(),
        };
    }

    /// Healthy new replicas not routed, failed or stopped, in observation order.
    fn healthy_unrouted(&self) -> Vec<String> {
        self.obs
            .new
            .iter()
            .filter(|r| r.health == Health::Healthy && self.is_pending(&r.id))
            .map(|r| r.id.clone())
            .collect()
    }

    fn is_pending(&self, id: &String) -> bool {
        !self.s.new_routed.contains(id)
            && !self.s.new_failed.contains(id)
            && !self.s.new_stopped.contains(id)
    }

    /// New replicas that fail now among those `pick` selects, with what went wrong; ones
    /// already counted as failed or stopped are left out.
    fn failing(&self, pick: impl Fn(&String) -> bool) -> Vec<(String, &'static str)> {
        let mut out = Vec::new();
        for id in &self.s.new_seen {
            if !pick(id) || self.s.new_failed.contains(id) || self.s.new_stopped.contains(id) {
                continue;
            }
            match self.obs.new.iter().find(|r| &r.id == id).map(|r| r.health) {
                Some(Health::Unhealthy) => out.push((id.clone(), "is unhealthy")),
                Some(Health::Gone) => out.push((id.clone(), "exited")),
                None => out.push((id.clone(), "disappeared")),
                Some(Health::Starting | Health::Healthy) => {}
            }
        }
        out
    }

    /// How many asked-for new replicas are neither routed, failed, nor healthy yet.
    fn not_ready(&self, healthy_unrouted: usize) -> u32 {
        let settled =
            self.s.new_routed.len() as u64 + healthy_unrouted as u64 + self.s.failures as u64;
        (self.s.new_started as u64).saturating_sub(settled) as u32
    }

    fn health_timed_out(&self, since_ms: u64) -> bool {
        self.now().saturating_sub(since_ms) >= self.spec.health_timeout_ms
    }

    fn route_new(&mut self, ids: Vec<String>) {
        if !ids.is_empty() {
            self.s.new_routed.extend(ids.iter().cloned());
            self.emit(Decision::RouteNew { ids });
        }
    }

    /// Takes up to `count` old replicas off the running list and stops them.
    fn stop_old(&mut self, count: usize) {
        let n = count.min(self.s.old_running.len());
        let ids: Vec<String> = self.s.old_running.drain(..n).collect();
        if !ids.is_empty() {
            self.s.old_stopped.extend(ids.iter().cloned());
            self.emit(Decision::StopOld { ids });
        }
    }

    /// Stops every new replica not stopped yet; returns their ids.
    fn stop_all_new(&mut self) -> Vec<String> {
        let ids: Vec<String> = self
            .s
            .new_seen
            .iter()
            .filter(|id| !self.s.new_stopped.contains(id))
            .cloned()
            .collect();
        if !ids.is_empty() {
            self.s.new_stopped.extend(ids.iter().cloned());
            self.emit(Decision::StopNew { ids: ids.clone() });
        }
        ids
    }

    fn set_weight(&mut self, new_percent: u32) {
        if self.s.weight != new_percent {
            self.s.weight = new_percent;
            self.emit(Decision::SetWeight { new_percent });
        }
    }

    /// Blue-green and canary: traffic back to the old set, every new replica stopped.
    fn revert(&mut self, reason: String) {
        self.set_weight(0);
        let _ = self.stop_all_new();
        self.finish(Outcome::RolledBack { reason });
    }

    /// Runs `one` until the phase stops changing, so waits of zero chain within a step.
    fn drive(&mut self, mut one: impl FnMut(&mut Self)) {
        for _ in 0..64 {
            let before = self.s.phase.clone();
            one(self);
            if self.s.phase == before || self.s.phase == Phase::Finished {
                break;
            }
        }
    }

    /// Stops every old replica still running and ends the rollout as completed.
    fn complete(&mut self) {
        self.stop_old(usize::MAX);
        self.finish(Outcome::Completed);
    }

    fn misplaced(&mut self) {
        let reason = format!(
            "the state's phase {:?} does not belong to a {} rollout",
            self.s.phase, self.s.strategy
        );
        self.finish(Outcome::Paused { reason });
    }

    /// A wait of `ms` from now, or none once promoted.
    fn wait_until(&self, ms: u64) -> u64 {
        if self.s.promoted {
            self.now()
        } else {
            self.now().saturating_add(ms)
        }
    }
}

/// `60s`, `1m30s`, `500ms`, `2h`: a duration as people write it.
pub(crate) fn fmt_ms(ms: u64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let (h, m, s) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60);
    let mut out = String::new();
    for (v, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if v > 0 {
            out.push_str(&format!("{v}{unit}"));
        }
    }
    out
}

/// `12.5`, `1`, `0.33`: a number with at most two decimals and no trailing zeros.
pub(crate) fn fmt_num(x: f64) -> String {
    let s = format!("{x:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// `n2 is unhealthy, n3 exited`.
pub(crate) fn describe(failing: &[(String, &'static str)]) -> String {
    failing
        .iter()
        .map(|(id, what)| format!("{id} {what}"))
        .collect::<Vec<_>>()
        .join(", ")
}
