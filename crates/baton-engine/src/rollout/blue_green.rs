//! Blue-green: all new replicas start beside the old; once every one is healthy, traffic
//! switches at once, and the old set stays `keep_old` for an instant rollback.
//!
//! Before the switch, a new replica that fails or a `health_timeout` that passes stops the
//! new set and ends `RolledBack` with the old set serving as before. After the switch, a
//! routed new replica that fails (or `abort`) sends traffic back (`SetWeight 0`).

use super::{describe, fmt_ms, BlueGreen, Cx, Phase};

pub(super) fn step(cx: &mut Cx<'_>, b: &BlueGreen) {
    cx.drive(|cx| one(cx, b));
}

fn one(cx: &mut Cx<'_>, b: &BlueGreen) {
    match cx.s.phase.clone() {
        Phase::Pending if cx.s.desired == 0 => cx.complete(),
        Phase::Pending => cx.start_new(cx.s.desired),
        Phase::Starting { since_ms } => {
            let failing = cx.failing(|_| true);
            if !failing.is_empty() {
                cx.revert(format!("{} before the switch", describe(&failing)));
                return;
            }
            let healthy = cx.healthy_unrouted();
            let not_ready = cx.not_ready(healthy.len());
            if not_ready == 0 {
                cx.route_new(healthy);
                cx.set_weight(100);
                cx.s.phase = Phase::KeepingOld {
                    until_ms: cx.wait_until(b.keep_old_ms),
                };
            } else if cx.health_timed_out(since_ms) {
                cx.revert(format!(
                    "{not_ready} of {} new replica(s) not healthy after {}",
                    cx.s.new_started,
                    fmt_ms(cx.spec.health_timeout_ms)
                ));
            }
        }
        Phase::KeepingOld { until_ms } => {
            let failing = cx.failing(|_| true);
            if !failing.is_empty() {
                cx.revert(format!("{} after the switch", describe(&failing)));
            } else if cx.s.promoted || cx.now() >= until_ms {
                cx.complete();
            }
        }
        Phase::Finished => {}
        Phase::Monitoring { .. }
        | Phase::Delay { .. }
        | Phase::Analysing { .. }
        | Phase::RestoringOld { .. }
        | Phase::RollbackMonitoring { .. }
        | Phase::RollbackDelay { .. } => cx.misplaced(),
    }
}
