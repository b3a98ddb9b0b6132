//! Canary: new replicas in proportion to each step's weight (ceil(desired × weight / 100),
//! at least 1), routed, then that share of traffic while the new revision's metrics are
//! judged for the step's pause; after the last step, all `desired` and 100%.
//!
//! Every observation is judged: a new replica unhealthy or gone, or, once the window has
//! `min_requests`, a 5xx rate above `max_error_rate` or a p95 above `max_p95_latency`,
//! reverts at once (`SetWeight 0` if traffic had moved, `StopNew`, `RolledBack`).

use super::{describe, fmt_ms, fmt_num, Analysis, Canary, Cx, Decision, Phase, RevisionMetrics};

pub(super) fn step(cx: &mut Cx<'_>, c: &Canary) {
    cx.drive(|cx| one(cx, c));
}

fn one(cx: &mut Cx<'_>, c: &Canary) {
    match cx.s.phase.clone() {
        Phase::Pending if cx.s.desired == 0 => cx.complete(),
        Phase::Pending => enter_step(cx, c, 0),
        Phase::Starting { since_ms } => {
            let failing = cx.failing(|_| true);
            if !failing.is_empty() {
                let reason = format!("{}: {}", step_name(cx, c), describe(&failing));
                cx.revert(reason);
                return;
            }
            let healthy = cx.healthy_unrouted();
            let not_ready = cx.not_ready(healthy.len());
            if not_ready == 0 {
                cx.route_new(healthy);
                complete_step(cx, c);
            } else if cx.health_timed_out(since_ms) {
                let reason = format!(
                    "{}: {not_ready} new replica(s) not healthy after {}",
                    step_name(cx, c),
                    fmt_ms(cx.spec.health_timeout_ms)
                );
                cx.revert(reason);
            }
        }
        Phase::Analysing { until_ms } => {
            let failing = cx.failing(|_| true);
            if !failing.is_empty() {
                let reason = format!("{}: {}", step_name(cx, c), describe(&failing));
                cx.revert(reason);
                return;
            }
            if let Some(breach) = cx
                .obs
                .new_metrics
                .as_ref()
                .and_then(|m| breach(&c.analysis, m))
            {
                let reason = format!("{}: {breach}", step_name(cx, c));
                cx.revert(reason);
                return;
            }
            if cx.s.promoted || cx.now() >= until_ms {
                let next = cx.s.step_index.saturating_add(1);
                enter_step(cx, c, next);
            }
        }
        Phase::Finished => {}
        Phase::Monitoring { .. }
        | Phase::Delay { .. }
        | Phase::KeepingOld { .. }
        | Phase::RestoringOld { .. }
        | Phase::RollbackMonitoring { .. }
        | Phase::RollbackDelay { .. } => cx.misplaced(),
    }
}

/// Scales the new revision to step `i`'s share (`steps.len()` = the final 100%), then
/// moves traffic once they are healthy.
fn enter_step(cx: &mut Cx<'_>, c: &Canary, i: u32) {
    let last = c.steps.len() as u32;
    let i = if cx.s.promoted { last } else { i.min(last) };
    cx.s.step_index = i;
    let desired = cx.s.desired;
    let target = match c.steps.get(i as usize) {
        Some(step) => {
            let share = (u64::from(desired) * u64::from(step.weight)).div_ceil(100);
            (share as u32).max(1).min(desired)
        }
        None => desired,
    };
    let name = step_name(cx, c);
    cx.log(name);
    if target > cx.s.new_started {
        cx.start_new(target - cx.s.new_started);
    } else {
        complete_step(cx, c);
    }
}

/// The step's replicas are healthy and routed: set its weight and analyse, or finish.
fn complete_step(cx: &mut Cx<'_>, c: &Canary) {
    let i = cx.s.step_index;
    match c.steps.get(i as usize) {
        Some(_) if cx.s.promoted => enter_step(cx, c, i),
        Some(step) => {
            cx.set_weight(step.weight);
            cx.emit(Decision::ResetMetrics);
            cx.s.phase = Phase::Analysing {
                until_ms: cx.wait_until(step.pause_ms),
            };
        }
        None => {
            cx.set_weight(100);
            cx.complete();
        }
    }
}

fn step_name(cx: &Cx<'_>, c: &Canary) -> String {
    let i = cx.s.step_index as usize;
    match c.steps.get(i) {
        Some(step) => format!("step {} ({}%)", i + 1, step.weight),
        None => "final step (100%)".into(),
    }
}

/// What in this window breaks the analysis' limits, with the measured values.
pub(crate) fn breach(a: &Analysis, m: &RevisionMetrics) -> Option<String> {
    if m.requests == 0 || m.requests < a.min_requests {
        return None;
    }
    if let Some(max) = a.max_error_rate {
        let rate = m.errors_5xx as f64 / m.requests as f64;
        if rate > max {
            return Some(format!(
                "error rate {}% ({} of {} requests) above {}%",
                fmt_num(rate * 100.0),
                m.errors_5xx,
                m.requests,
                fmt_num(max * 100.0)
            ));
        }
    }
    if let (Some(max), Some(p95)) = (a.max_p95_latency_ms, m.p95_ms) {
        if p95 > max as f64 {
            return Some(format!(
                "p95 latency {}ms above {} ({} requests)",
                fmt_num(p95),
                fmt_ms(max),
                m.requests
            ));
        }
    }
    None
}
