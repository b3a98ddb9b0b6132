//! The restart decider: after a container exits, Compose's `restart:` or
//! `deploy.restart_policy` says restart now, restart later (capped backoff), give up, or leave.
//!
//! Pure: (policy, history, exit, now) → decision; the daemon keeps the `RestartHistory`
//! (plain data) and calls `RestartHistory::record` after each restart it carries out.
//! Backoff: `delay` (default 100 ms) doubled per consecutive restart, capped at 30 s (or
//! at `delay` when that is longer), back to the base once a run lasted 10 s. Attempts for
//! `max_attempts` / `on-failure:N` are the consecutive ones (reset by such a stable run),
//! and when `window` is set, only those within it. `0` attempts means no limit.

use baton_spec::Service;
use serde::{Deserialize, Serialize};

pub const DEFAULT_DELAY_MS: u64 = 100;
pub const MAX_BACKOFF_MS: u64 = 30_000;
/// A run at least this long resets the backoff and the attempt count.
pub const STABLE_UPTIME_MS: u64 = 10_000;
/// `CRASH_LOOP_RESTARTS` restarts within `CRASH_LOOP_WINDOW_MS` is a crash loop.
pub const CRASH_LOOP_RESTARTS: usize = 5;
pub const CRASH_LOOP_WINDOW_MS: u64 = 60_000;

/// When a container that exited is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Condition {
    /// `no`, `condition: none`.
    Never,
    /// Only after a non-zero exit code.
    OnFailure,
    /// After any exit; after a manual stop, once the daemon itself restarts.
    /// `condition: any` is this.
    Always,
    /// As `Always`, except a manual stop is final, daemon restart or not.
    UnlessStopped,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    pub condition: Condition,
    /// Base of the backoff; `None` = `DEFAULT_DELAY_MS`.
    pub delay_ms: Option<u64>,
    /// `None` (or 0 in the file) = no limit.
    pub max_attempts: Option<u32>,
    pub window_ms: Option<u64>,
}

impl RestartPolicy {
    pub fn never() -> Self {
        RestartPolicy {
            condition: Condition::Never,
            delay_ms: None,
            max_attempts: None,
            window_ms: None,
        }
    }
}

/// How a container ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    pub code: i64,
    /// How long it ran before it exited.
    pub ran_ms: u64,
    /// Stopped by a person (`baton stop`, `docker stop`), not by itself.
    pub stopped_by_user: bool,
    /// The decision is taken as the daemon starts and finds the container exited.
    pub daemon_start: bool,
}

/// The restarts of one replica so far. Plain data, kept by the daemon.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartHistory {
    /// When recent restarts happened, oldest first.
    pub restarts_ms: Vec<u64>,
    /// Restarts since the last run that lasted `STABLE_UPTIME_MS`.
    pub consecutive: u32,
}

impl RestartHistory {
    /// Notes a restart carried out at `at_ms` after `exit`, and forgets restarts too old
    /// to matter (older than the crash-loop window and than `window_ms`).
    pub fn record(&mut self, exit: &ExitInfo, at_ms: u64, window_ms: Option<u64>) {
        if exit.ran_ms >= STABLE_UPTIME_MS {
            self.consecutive = 0;
        }
        self.consecutive = self.consecutive.saturating_add(1);
        self.restarts_ms.push(at_ms);
        let keep = CRASH_LOOP_WINDOW_MS.max(window_ms.unwrap_or(0));
        let oldest = at_ms.saturating_sub(keep);
        self.restarts_ms.retain(|&t| t >= oldest);
    }

    /// At least `CRASH_LOOP_RESTARTS` restarts within the last `CRASH_LOOP_WINDOW_MS`.
    pub fn crash_looping(&self, now_ms: u64) -> bool {
        self.within(now_ms, CRASH_LOOP_WINDOW_MS) >= CRASH_LOOP_RESTARTS
    }

    /// Restarts within the last `window_ms`.
    pub fn within(&self, now_ms: u64, window_ms: u64) -> usize {
        let oldest = now_ms.saturating_sub(window_ms);
        self.restarts_ms
            .iter()
            .filter(|&&t| t >= oldest && t <= now_ms)
            .count()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "decision")]
pub enum RestartDecision {
    RestartNow,
    RestartAt {
        at_ms: u64,
    },
    GiveUp {
        reason: String,
    },
    /// The policy does not restart this exit.
    Leave,
}

/// Where in the service a restart setting is wrong, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct RestartPolicyError {
    pub path: String,
    pub message: String,
}

/// The service's policy: `deploy.restart_policy` when set (condition default `any`, as in
/// Swarm), else `restart:` (default `no`).
pub fn restart_policy(service: &Service) -> Result<RestartPolicy, RestartPolicyError> {
    if let Some(p) = service
        .deploy
        .as_ref()
        .and_then(|d| d.restart_policy.as_ref())
    {
        let condition = match p.condition.as_deref() {
            None | Some("any") => Condition::Always,
            Some("on-failure") => Condition::OnFailure,
            Some("none") => Condition::Never,
            Some(other) => {
                return Err(RestartPolicyError {
                    path: "deploy.restart_policy.condition".into(),
                    message: format!(
                        "expected \"none\", \"on-failure\" or \"any\", found \"{other}\""
                    ),
                })
            }
        };
        return Ok(RestartPolicy {
            condition,
            delay_ms: p.delay.map(|d| d.0),
            max_attempts: p.max_attempts.filter(|&n| n > 0),
            window_ms: p.window.map(|d| d.0),
        });
    }
    let Some(restart) = service.restart.as_deref() else {
        return Ok(RestartPolicy::never());
    };
    let bad = || {
        RestartPolicyError {
        path: "restart".into(),
        message: format!(
            "expected \"no\", \"always\", \"on-failure[:N]\" or \"unless-stopped\", found \"{restart}\""
        ),
    }
    };
    let (condition, max_attempts) = match restart.trim() {
        "no" => (Condition::Never, None),
        "always" => (Condition::Always, None),
        "unless-stopped" => (Condition::UnlessStopped, None),
        "on-failure" => (Condition::OnFailure, None),
        other => match other.strip_prefix("on-failure:") {
            Some(n) => {
                let n: u32 = n.trim().parse().map_err(|_| bad())?;
                (Condition::OnFailure, Some(n).filter(|&n| n > 0))
            }
            None => return Err(bad()),
        },
    };
    Ok(RestartPolicy {
        condition,
        delay_ms: None,
        max_attempts,
        window_ms: None,
    })
}

/// What to do about a container that exited (`exit`) at `now_ms`.
pub fn restart_decision(
    policy: &RestartPolicy,
    history: &RestartHistory,
    exit: ExitInfo,
    now_ms: u64,
) -> RestartDecision {
    match policy.condition {
        Condition::Never => return RestartDecision::Leave,
        Condition::OnFailure if exit.code == 0 || exit.stopped_by_user => {
            return RestartDecision::Leave
        }
        Condition::Always if exit.stopped_by_user => {
            return match exit.daemon_start {
                true => RestartDecision::RestartNow,
                false => RestartDecision::Leave,
            };
        }
        Condition::UnlessStopped if exit.stopped_by_user => return RestartDecision::Leave,
        _ => {}
    }
    let consecutive = if exit.ran_ms >= STABLE_UPTIME_MS {
        0
    } else {
        history.consecutive
    };
    let attempts = match policy.window_ms {
        Some(w) => consecutive.min(history.within(now_ms, w) as u32),
        None => consecutive,
    };
    if let Some(max) = policy.max_attempts.filter(|&n| n > 0) {
        if attempts >= max {
            return RestartDecision::GiveUp {
                reason: format!(
                    "gave up after {attempts} restart(s), the most allowed; last exit code {}",
                    exit.code
                ),
            };
        }
    }
    let base = policy.delay_ms.unwrap_or(DEFAULT_DELAY_MS);
    let factor = 1u64.checked_shl(consecutive).unwrap_or(u64::MAX);
    let delay = base.saturating_mul(factor).min(MAX_BACKOFF_MS.max(base));
    match delay {
        0 => RestartDecision::RestartNow,
        d => RestartDecision::RestartAt {
            at_ms: now_ms.saturating_add(d),
        },
    }
}
