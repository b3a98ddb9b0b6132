//! Rolling updates in Swarm-style batches: start-first (start, wait healthy, route, stop as
//! many old) or stop-first (stop old, start new, wait healthy, route), monitor, delay.
//!
//! A batch's failures (a new replica unhealthy or gone before it is routed or within
//! `monitor` after, or not healthy within `health_timeout`) count against
//! `max_failure_ratio` = failures / new replicas started so far. Above it,
//! `failure_action` applies: `pause` leaves everything as it is; `rollback` starts as many
//! old replicas as were stopped, routes them once healthy, then stops every new one;
//! `continue` (or a ratio not exceeded) leaves failed replicas in place, unrouted, for the
//! restart policy, and carries on.

use super::{describe, fmt_ms, fmt_num, Cx, Decision, Health, Order, Outcome, Phase, Rolling};
use crate::rollout::UpdateSettings;

pub(super) fn step(cx: &mut Cx<'_>, r: &Rolling) {
    let u = &r.update;
    cx.drive(|cx| one(cx, u));
}

fn one(cx: &mut Cx<'_>, u: &UpdateSettings) {
    let now = cx.now();
    match cx.s.phase.clone() {
        Phase::Pending => begin_batch(cx, u),
        Phase::Starting { since_ms } => {
            let failing = cx.failing(|id| cx.is_pending(id));
            if !failing.is_empty() {
                let count = failing.len() as u32;
                let what = describe(&failing);
                let ids = failing.into_iter().map(|(id, _)| id).collect();
                if failed(cx, u, ids, count, what) {
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
                if !failed(cx, u, ids, not_ready, what) {
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
                if failed(cx, u, ids, count, what) {
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
        Phase::RestoringOld { since_ms, reason } => restoring(cx, since_ms, reason),
        Phase::Finished => {}
        Phase::Analysing { .. } | Phase::KeepingOld { .. } => cx.misplaced(),
    }
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
fn failed(cx: &mut Cx<'_>, u: &UpdateSettings, ids: Vec<String>, count: u32, what: String) -> bool {
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
        super::FailureAction::Continue => {
            cx.log(format!("continuing: {reason}"));
            false
        }
        super::FailureAction::Pause => {
            cx.finish(Outcome::Paused { reason });
            true
        }
        super::FailureAction::Rollback => {
            roll_back(cx, reason);
            true
        }
    }
}

/// Back to the old revision: start as many old replicas as were stopped, route them once
/// healthy, then stop every new one. With none stopped, the new ones just go.
pub(super) fn roll_back(cx: &mut Cx<'_>, reason: String) {
    let count = cx.s.old_stopped.len() as u32;
    if count == 0 {
        cx.stop_all_new();
        cx.finish(Outcome::RolledBack { reason });
        return;
    }
    cx.log(format!("rolling back: {reason}"));
    cx.s.old_requested = count;
    cx.emit(Decision::StartOld { count });
    cx.s.phase = Phase::RestoringOld {
        since_ms: cx.now(),
        reason,
    };
}

fn restoring(cx: &mut Cx<'_>, since_ms: u64, reason: String) {
    let s = &cx.s;
    let healthy: Vec<String> = cx
        .obs
        .old
        .iter()
        .filter(|r| {
            r.health == Health::Healthy
                && !s.old_running.contains(&r.id)
                && !s.old_stopped.contains(&r.id)
                && !s.old_restored.contains(&r.id)
        })
        .map(|r| r.id.clone())
        .collect();
    let ready = s.old_restored.len() + healthy.len();
    if ready >= s.old_requested as usize {
        if !healthy.is_empty() {
            cx.s.old_restored.extend(healthy.iter().cloned());
            cx.s.old_running.extend(healthy.iter().cloned());
            cx.emit(Decision::RouteOld { ids: healthy });
        }
        cx.stop_all_new();
        cx.finish(Outcome::RolledBack { reason });
    } else if cx.health_timed_out(since_ms) {
        let reason = format!(
            "rollback stalled: {ready} of {} old replica(s) healthy after {}; it was for: {reason}",
            cx.s.old_requested,
            fmt_ms(cx.spec.health_timeout_ms)
        );
        cx.finish(Outcome::Paused { reason });
    }
}
