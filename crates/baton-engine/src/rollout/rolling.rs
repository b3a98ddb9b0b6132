//! Rolling updates in Swarm-style batches: start-first (start, wait healthy, route, stop as
//! many old) or stop-first (stop old, start new, wait healthy, route), monitor, delay.
//!
//! A batch's failures (a new replica unhealthy or gone before it is routed or within
//! `monitor` after, or not healthy within `health_timeout`) count against
//! `max_failure_ratio` = failures / new replicas started so far. Above it,
//! `failure_action` applies: `pause` leaves everything as it is; `rollback` starts again
//! as many old replicas as were stopped, routing them once healthy, and stops every new
//! one (below); `continue` (or a ratio not exceeded) leaves failed replicas in place, unrouted, for the
//! restart policy, and carries on.
//!
//! A rollback (`failure_action: rollback`, or `abort`) goes in batches too, as
//! `deploy.rollback_config` says: `parallelism` old replicas started again per batch,
//! `order`, `monitor`, `delay`; restored replicas that fail count against its
//! `max_failure_ratio`, and its `failure_action` (pause | continue) applies. Without
//! `rollback_config`, one start-first batch (`UpdateSettings::one_batch_rollback`).
//!
//! A paused rollout goes on with `resume` (below): an update replaces its failed new
//! replicas and carries on with its batches; a rollback goes on rolling back.

use super::{
    describe, fmt_ms, fmt_num, Cx, Decision, FailureAction, Health, Order, Outcome, Phase, Replica,
    RollbackBatch, Rolling,
};
use crate::rollout::UpdateSettings;

pub(super) fn step(cx: &mut Cx<'_>, r: &Rolling) {
    cx.drive(|cx| one(cx, r));
}

fn one(cx: &mut Cx<'_>, r: &Rolling) {
    let (u, rb) = (&r.update, &r.rollback);
    let now = cx.now();
    match cx.s.phase.clone() {
        Phase::Pending => begin_batch(cx, u),
        Phase::Starting { since_ms } => {
            let failing = cx.failing(|id| cx.is_pending(id));
            if !failing.is_empty() {
                let count = failing.len() as u32;
                let what = describe(&failing);
                let ids = failing.into_iter().map(|(id, _)| id).collect();
                if failed(cx, r, ids, count, what) {
                    return;
                }
            }
            let healthy = cx.healthy_unrouted();
            let not_ready = cx.not_ready(healthy.len());
            if not_ready == 0 {
                batch_done(cx, u, healthy);
            } else if cx.health_timed_out(since_ms) {
                let ids: Vec<String> = cx
                    .obs
                    .new
                    .iter()
                    .filter(|r| r.health != Health::Healthy && cx.is_pending(&r.id))
                    .map(|r| r.id.clone())
                    .collect();
                let what = format!(
                    "{not_ready} new replica(s) not healthy after {}",
                    fmt_ms(cx.spec.health_timeout_ms)
                );
                if !failed(cx, r, ids, not_ready, what) {
                    batch_done(cx, u, healthy);
                }
            }
        }
        Phase::Monitoring { until_ms } => {
            let batch = cx.s.batch.clone();
            let failing = cx.failing(|id| batch.contains(id));
            if !failing.is_empty() {
                let count = failing.len() as u32;
                let what = describe(&failing);
                let ids = failing.into_iter().map(|(id, _)| id).collect();
                if failed(cx, r, ids, count, what) {
                    return;
                }
            }
            if cx.s.promoted || now >= until_ms {
                if u.delay_ms > 0 && !cx.s.promoted && remaining(cx) > 0 {
                    cx.s.phase = Phase::Delay {
                        until_ms: now.saturating_add(u.delay_ms),
                    };
                } else {
                    begin_batch(cx, u);
                }
            }
        }
        Phase::Delay { until_ms } => {
            if cx.s.promoted || now >= until_ms {
                begin_batch(cx, u);
            }
        }
        Phase::RestoringOld { since_ms, reason } => restoring(cx, rb, since_ms, reason),
        Phase::RollbackMonitoring { until_ms, reason } => {
            rollback_monitoring(cx, rb, until_ms, reason)
        }
        Phase::RollbackDelay { until_ms, reason } => {
            if cx.s.promoted || now >= until_ms {
                begin_rollback_batch(cx, rb, reason);
            }
        }
        Phase::Finished => {}
        Phase::Analysing { .. } | Phase::KeepingOld { .. } => cx.misplaced(),
    }
}

/// Goes on with a paused rolling rollout from the phase the pause interrupted.
///
/// A paused update: its failed new replicas (routed or not) are stopped, and as many are
/// started again within the batch the pause interrupted, which then waits for health as
/// any batch does. Their names are forgotten, so a replacement may take one again. The
/// failure count starts again from zero. A batch paused before it was routed still stops
/// its old replicas once routed (start-first); one paused while monitored already did.
/// Without failed replicas, the interrupted phase starts again with fresh timers. The
/// next `step` goes on.
///
/// A paused rollback goes on rolling back (starting again the old replicas still
/// missing), as `abort` does.
pub(super) fn resume(cx: &mut Cx<'_>, r: &Rolling) {
    let from = match cx.s.paused_phase.take() {
        Some(p) => p,
        // Paused by a baton that did not record the phase: guess it from the state.
        None if cx.s.old_requested > 0 || !cx.s.rollback_batches.is_empty() => {
            Phase::RestoringOld {
                since_ms: cx.now(),
                reason: "resumed".into(),
            }
        }
        None if !cx.s.batch.is_empty() => Phase::Monitoring { until_ms: 0 },
        None => Phase::Starting { since_ms: 0 },
    };
    cx.s.outcome = None;
    let now = cx.now();
    match from {
        Phase::RestoringOld { reason, .. }
        | Phase::RollbackMonitoring { reason, .. }
        | Phase::RollbackDelay { reason, .. } => {
            cx.log("resumed: rolling back");
            roll_back(cx, &r.rollback, reason);
            return;
        }
        Phase::Pending
        | Phase::Starting { .. }
        | Phase::Monitoring { .. }
        | Phase::Delay { .. } => {}
        Phase::Analysing { .. } | Phase::KeepingOld { .. } | Phase::Finished => {
            cx.s.phase = from;
            return cx.misplaced();
        }
    }
    let s = &cx.s;
    let failed: Vec<String> = s
        .new_failed
        .iter()
        .filter(|id| !s.new_stopped.contains(id))
        .cloned()
        .collect();
    let slots = s.failures;
    cx.log(format!(
        "resumed: {slots} failed new replica(s) to start again"
    ));
    if !failed.is_empty() {
        cx.emit(Decision::StopNew {
            ids: failed.clone(),
        });
    }
    for list in [
        &mut cx.s.new_seen,
        &mut cx.s.new_routed,
        &mut cx.s.new_failed,
        &mut cx.s.batch,
    ] {
        list.retain(|id| !failed.contains(id));
    }
    cx.s.new_started = cx.s.new_started.saturating_sub(slots);
    cx.s.failures = 0;
    if matches!(from, Phase::Monitoring { .. }) {
        // Its old replicas went when it was routed: the replacements take no more.
        cx.s.batch_size = 0;
    }
    if slots > 0 {
        cx.start_new(slots);
    } else {
        cx.s.phase = match from {
            Phase::Starting { .. } => Phase::Starting { since_ms: now },
            Phase::Monitoring { .. } => Phase::Monitoring {
                until_ms: cx.wait_until(r.update.monitor_ms),
            },
            Phase::Delay { .. } => Phase::Delay { until_ms: now },
            other => other,
        };
    }
    // Nothing more this step: the observation still shows the replicas being stopped.
}

fn remaining(cx: &Cx<'_>) -> u32 {
    cx.s.desired.saturating_sub(cx.s.new_started)
}

fn begin_batch(cx: &mut Cx<'_>, u: &UpdateSettings) {
    let remaining = remaining(cx);
    if remaining == 0 {
        cx.complete();
        return;
    }
    let k = match u.parallelism {
        0 => remaining,
        p => p.min(remaining),
    };
    cx.s.step_index = cx.s.step_index.saturating_add(1);
    cx.s.batch_size = k;
    cx.s.batch.clear();
    let i = cx.s.step_index;
    cx.log(format!("batch {i}: {k} replica(s)"));
    if u.order == Order::StopFirst {
        cx.stop_old(k as usize);
    }
    cx.start_new(k);
}

fn batch_done(cx: &mut Cx<'_>, u: &UpdateSettings, healthy: Vec<String>) {
    cx.s.batch = healthy.clone();
    cx.route_new(healthy);
    if u.order == Order::StartFirst {
        cx.stop_old(cx.s.batch_size as usize);
    }
    cx.s.phase = Phase::Monitoring {
        until_ms: cx.wait_until(u.monitor_ms),
    };
}

/// Counts failures and applies `failure_action` when the ratio is exceeded. True when
/// the rollout stopped (paused or rolling back).
fn failed(cx: &mut Cx<'_>, r: &Rolling, ids: Vec<String>, count: u32, what: String) -> bool {
    let u = &r.update;
    cx.s.new_failed.extend(ids);
    cx.s.failures = cx.s.failures.saturating_add(count);
    let (failures, updated) = (cx.s.failures, cx.s.new_started.max(1));
    cx.log(format!("failure: {what}"));
    if f64::from(failures) / f64::from(updated) <= u.max_failure_ratio {
        return false;
    }
    let reason = format!(
        "{what}; {failures} of {updated} updated replica(s) failed, above max_failure_ratio {}",
        fmt_num(u.max_failure_ratio)
    );
    match u.failure_action {
        FailureAction::Continue => {
            cx.log(format!("continuing: {reason}"));
            false
        }
        FailureAction::Pause => {
            cx.finish(Outcome::Paused { reason });
            true
        }
        FailureAction::Rollback => {
            roll_back(cx, &r.rollback, reason);
            true
        }
    }
}

/// Back to the old revision, in batches as `rollback_config` (`rb`) says: each batch starts
/// `parallelism` old replicas again (0: all at once), routes them once healthy and stops
/// as many new ones (stop-first: the new ones first), watches them for `monitor`, then
/// waits `delay`. The last batch stops every new replica left. With no old replica
/// stopped, the new ones just go.
///
/// A paused rollback resumed (`abort` or `resume`) comes here too: its restored replicas
/// that failed are stopped and count as missing, started again like the others; their
/// names are forgotten, so a replacement may take one again.
pub(super) fn roll_back(cx: &mut Cx<'_>, rb: &UpdateSettings, reason: String) {
    let failed = std::mem::take(&mut cx.s.old_failed);
    if !failed.is_empty() {
        cx.s.old_restored.retain(|id| !failed.contains(id));
        cx.s.old_running.retain(|id| !failed.contains(id));
        cx.emit(Decision::StopOld { ids: failed });
    }
    let left =
        cx.s.old_stopped
            .len()
            .saturating_sub(cx.s.old_restored.len()) as u32;
    if left == 0 {
        let _ = cx.stop_all_new();
        cx.finish(Outcome::RolledBack { reason });
        return;
    }
    cx.log(format!("rolling back: {reason}"));
    cx.s.rollback_left = left;
    begin_rollback_batch(cx, rb, reason);
}

fn begin_rollback_batch(cx: &mut Cx<'_>, rb: &UpdateSettings, reason: String) {
    let left = cx.s.rollback_left;
    if left == 0 {
        let _ = cx.stop_all_new();
        cx.finish(Outcome::RolledBack { reason });
        return;
    }
    let k = match rb.parallelism {
        0 => left,
        p => p.min(left),
    };
    let now = cx.now();
    cx.s.rollback_batches.push(RollbackBatch {
        started_ms: now,
        old: k,
        routed: Vec::new(),
        stopped_new: Vec::new(),
        failed: Vec::new(),
        failures: 0,
        routed_ms: None,
    });
    let n = cx.s.rollback_batches.len();
    cx.log(format!("rollback batch {n}: {k} replica(s)"));
    cx.s.rollback_left = left - k;
    if rb.order == Order::StopFirst {
        stop_new_for_batch(cx, k);
    }
    // Old replicas an interrupted batch started that are alive and not yet counted (a
    // paused rollback resumed) join this batch instead of being started again.
    // (Not the failed ones this step stops.)
    let stopping: Vec<&String> = cx
        .out
        .iter()
        .flat_map(|d| match d {
            Decision::StopOld { ids } => ids.iter().collect(),
            _ => Vec::new(),
        })
        .collect();
    let adopted = restarted(cx)
        .filter(|r| matches!(r.health, Health::Starting | Health::Healthy))
        .filter(|r| !stopping.contains(&&r.id))
        .count() as u32;
    let start = k.saturating_sub(adopted);
    cx.s.old_requested = cx.s.old_requested.saturating_add(start);
    if start > 0 {
        cx.emit(Decision::StartOld { count: start });
    }
    cx.s.phase = Phase::RestoringOld {
        since_ms: now,
        reason,
    };
}

/// Takes `k` new replicas out of service for a rollback batch, or every one left in the
/// last batch: failed ones first, then unrouted ones (they serve nothing), then routed
/// ones, the last routed first.
fn stop_new_for_batch(cx: &mut Cx<'_>, k: u32) {
    let ids = if cx.s.rollback_left == 0 {
        cx.stop_all_new()
    } else {
        let s = &cx.s;
        let live = |id: &&String| !s.new_stopped.contains(id);
        let failed = s.new_failed.iter().filter(live);
        let unrouted = s
            .new_seen
            .iter()
            .filter(live)
            .filter(|id| !s.new_routed.contains(id) && !s.new_failed.contains(id));
        let routed = s
            .new_routed
            .iter()
            .rev()
            .filter(live)
            .filter(|id| !s.new_failed.contains(id));
        let ids: Vec<String> = failed
            .chain(unrouted)
            .chain(routed)
            .take(k as usize)
            .cloned()
            .collect();
        if !ids.is_empty() {
            cx.s.new_stopped.extend(ids.iter().cloned());
            cx.emit(Decision::StopNew { ids: ids.clone() });
        }
        ids
    };
    if let Some(b) = cx.s.rollback_batches.last_mut() {
        b.stopped_new.extend(ids);
    }
}

/// Old replicas the current rollback batch started: listed, but neither serving before,
/// restored nor failed. A restored replica may reuse the name of one the update stopped
/// (and removed), so a stopped name counts unless it shows an exited container.
fn restarted<'a>(cx: &'a Cx<'_>) -> impl Iterator<Item = &'a Replica> + 'a {
    let s = &cx.s;
    cx.obs.old.iter().filter(move |r| {
        let stopped_and_gone = s.old_stopped.contains(&r.id) && r.health == Health::Gone;
        let known = s.old_running.contains(&r.id)
            || s.old_restored.contains(&r.id)
            || s.old_failed.contains(&r.id);
        !known && !stopped_and_gone
    })
}

fn restoring(cx: &mut Cx<'_>, rb: &UpdateSettings, since_ms: u64, reason: String) {
    if cx.s.rollback_batches.is_empty() {
        // Stored by a baton that rolled back in one batch: that batch is under way.
        cx.s.rollback_batches.push(RollbackBatch {
            started_ms: since_ms,
            old: cx.s.old_requested,
            routed: Vec::new(),
            stopped_new: Vec::new(),
            failed: Vec::new(),
            failures: 0,
            routed_ms: None,
        });
    }
    let (wanted, failures) =
        cx.s.rollback_batches
            .last()
            .map_or((0, 0), |b| (b.old, b.failures));
    let healthy: Vec<String> = restarted(cx)
        .filter(|r| r.health == Health::Healthy)
        .map(|r| r.id.clone())
        .collect();
    let ready = healthy.len() as u32 + failures;
    if ready >= wanted {
        return batch_restored(cx, rb, healthy, reason);
    }
    if cx.health_timed_out(since_ms) {
        let ids: Vec<String> = restarted(cx)
            .filter(|r| r.health != Health::Healthy)
            .map(|r| r.id.clone())
            .collect();
        let what = format!(
            "{} of {wanted} old replica(s) healthy after {}",
            healthy.len(),
            fmt_ms(cx.spec.health_timeout_ms)
        );
        if rollback_failed(cx, rb, ids, wanted - ready, &what).is_some() {
            let reason = format!("rollback stalled: {what}; it was for: {reason}");
            return cx.finish(Outcome::Paused { reason });
        }
        return batch_restored(cx, rb, healthy, reason);
    }
    let failing: Vec<(String, &'static str)> = restarted(cx)
        .filter_map(|r| match r.health {
            Health::Unhealthy => Some((r.id.clone(), "is unhealthy")),
            Health::Gone => Some((r.id.clone(), "exited")),
            Health::Starting | Health::Healthy => None,
        })
        .collect();
    if failing.is_empty() {
        return;
    }
    let count = failing.len() as u32;
    let what = describe(&failing);
    let ids = failing.into_iter().map(|(id, _)| id).collect();
    if let Some(ratio) = rollback_failed(cx, rb, ids, count, &what) {
        return rollback_paused(cx, &what, &ratio, &reason);
    }
    if healthy.len() as u32 + failures + count >= wanted {
        batch_restored(cx, rb, healthy, reason);
    }
}

fn rollback_paused(cx: &mut Cx<'_>, what: &str, ratio: &str, reason: &str) {
    let reason = format!("rollback paused: {what}; {ratio}; it was for: {reason}");
    cx.finish(Outcome::Paused { reason });
}

/// The batch's restored replicas are healthy: route them, (start-first) stop as many new
/// ones, and watch them for `monitor`.
fn batch_restored(cx: &mut Cx<'_>, rb: &UpdateSettings, healthy: Vec<String>, reason: String) {
    if !healthy.is_empty() {
        cx.s.old_restored.extend(healthy.iter().cloned());
        cx.s.old_running.extend(healthy.iter().cloned());
        cx.emit(Decision::RouteOld {
            ids: healthy.clone(),
        });
    }
    let now = cx.now();
    let routed = healthy.len() as u32;
    let k = match cx.s.rollback_batches.last_mut() {
        Some(b) => {
            b.routed = healthy;
            b.routed_ms = Some(now);
            b.old
        }
        None => 0,
    };
    // More than the batch asked for (replicas of an interrupted batch adopted): fewer
    // are left for the next batches.
    cx.s.rollback_left = cx.s.rollback_left.saturating_sub(routed.saturating_sub(k));
    if rb.order == Order::StartFirst {
        stop_new_for_batch(cx, k);
    }
    cx.s.phase = Phase::RollbackMonitoring {
        until_ms: cx.wait_until(rb.monitor_ms),
        reason,
    };
}

fn rollback_monitoring(cx: &mut Cx<'_>, rb: &UpdateSettings, until_ms: u64, reason: String) {
    let routed =
        cx.s.rollback_batches
            .last()
            .map(|b| b.routed.clone())
            .unwrap_or_default();
    let failing: Vec<(String, &'static str)> = routed
        .iter()
        .filter(|id| !cx.s.old_failed.contains(id))
        .filter_map(
            |id| match cx.obs.old.iter().find(|r| &r.id == id).map(|r| r.health) {
                Some(Health::Unhealthy) => Some((id.clone(), "is unhealthy")),
                Some(Health::Gone) => Some((id.clone(), "exited")),
                None => Some((id.clone(), "disappeared")),
                Some(Health::Starting | Health::Healthy) => None,
            },
        )
        .collect();
    if !failing.is_empty() {
        let count = failing.len() as u32;
        let what = describe(&failing);
        let ids = failing.into_iter().map(|(id, _)| id).collect();
        if let Some(ratio) = rollback_failed(cx, rb, ids, count, &what) {
            return rollback_paused(cx, &what, &ratio, &reason);
        }
    }
    let now = cx.now();
    if cx.s.promoted || now >= until_ms {
        if cx.s.rollback_left == 0 {
            let _ = cx.stop_all_new();
            cx.finish(Outcome::RolledBack { reason });
        } else if rb.delay_ms > 0 && !cx.s.promoted {
            cx.s.phase = Phase::RollbackDelay {
                until_ms: now.saturating_add(rb.delay_ms),
                reason,
            };
        } else {
            begin_rollback_batch(cx, rb, reason);
        }
    }
}

/// Counts restored old replicas that failed against `rollback_config.max_failure_ratio`
/// (failures / old replicas started again so far). Returns the ratio's account when it
/// is exceeded and `failure_action` is pause; with continue, failed replicas stay,
/// unrouted, for the restart policy, and the rollback carries on.
fn rollback_failed(
    cx: &mut Cx<'_>,
    rb: &UpdateSettings,
    ids: Vec<String>,
    count: u32,
    what: &str,
) -> Option<String> {
    cx.s.old_failed.extend(ids.iter().cloned());
    if let Some(b) = cx.s.rollback_batches.last_mut() {
        b.failed.extend(ids);
        b.failures = b.failures.saturating_add(count);
    }
    cx.log(format!("rollback failure: {what}"));
    let failures: u32 = cx.s.rollback_batches.iter().map(|b| b.failures).sum();
    let started: u32 = cx.s.rollback_batches.iter().map(|b| b.old).sum();
    let started = started.max(1);
    if f64::from(failures) / f64::from(started) <= rb.max_failure_ratio {
        return None;
    }
    let ratio = format!(
        "{failures} of {started} restored replica(s) failed, above max_failure_ratio {}",
        fmt_num(rb.max_failure_ratio)
    );
    match rb.failure_action {
        FailureAction::Continue => {
            cx.log(format!("rollback continuing: {ratio}"));
            None
        }
        FailureAction::Pause | FailureAction::Rollback => Some(ratio),
    }
}
